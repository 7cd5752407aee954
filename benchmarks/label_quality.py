"""Label quality on real faces: the landmarks stage's labels against AFLW2000-3D's ground truth.

    python benchmarks/label_quality.py [--root ../shared/conformance/aflw2000] [--limit N] [--curve]
                                       [--sets full,112] [--configs default,"paper dlib68"] [--profile CONFIG]

Two sets of the same photos:
- `full`: the 450 × 450 AFLW2000-3D photos as the `aflw2000` reader gives them, with its tight box
  around the ground-truth landmarks — the field's protocol for this set (3DDFA, 3DDFA_V2 and
  SynergyNet crop from the ground-truth landmarks' box).
- `112`: a 112 × 112 crop of each photo made here, placed as insightface's aligned faces (MS1MV3's
  input): the least-squares **scale and shift** (no rotation, so the ground-truth pose stays exact)
  taking the five points of the ground truth — eye centres (mean of iBUG 36–41 and 42–47), nose tip
  30, mouth corners 48 and 54 — onto insightface's ArcFace template (deepinsight/insightface,
  `python-package/insightface/utils/face_align.py`, commit e896172e45157d5101448b5b9e327073073bfb1b,
  `arcface_src`; `arcface_dst` in later versions; warped with cv2.warpAffine as its `norm_crop`).
  Each crop is written as JPEG (quality 95) with a `.mat` holding the transformed `pt3d_68` and the
  same `Pose_Para`, and read through the same `aflw2000` reader; its rows then get **no box**
  (bbox = None), as MS1MV3's rows, so the stage boxes them itself (stages/landmarks/detect.py: the
  detector, else the aligned-face region) instead of from the ground truth.

Per configuration (LandmarkSettings; fields this code does not have are left out and said so):
`default` (LandmarkSettings()), `paper dlib68` (the old default: dlib68 + MediaPipe, 8 views, no
mirror, the paper's selective fitting, jaw_style 2d — both its sources give the visible-outline
jaw; the rows' ground-truth style is cleared for it, so that the stage keeps AFLW2000-3D's 3D-style
ground truth instead of pseudo-labelling the photos, and its NME68 counts the style difference on
points 0–16 while the inner 51 points compare alike), `paper 3ddfa_v2` (the same with 3DDFA_V2 as the teacher, jaw_style
as the default);
`--curve` adds the default at views 1/2/4/8 × mirror on/off on the full set. The single passes (view
0 of one source) come from the stage's audit columns of ground-truth rows: dlib68 from `paper
dlib68`, 3DDFA_V2 and MediaPipe from `paper 3ddfa_v2`.

Metrics: `pltd.trainer.evaluation.labels.label_metrics`, the code behind `pltd eval labels`. CPU
time: `time.process_time()` around `label_partition` (decode, box, views, every network, the
fusion, the rows) after a warm-up call that loads the models; one thread per library
(OMP_NUM_THREADS=1, onnxruntime intra-op threads 1, LiteRT 1 as the stage's default, OpenCV 1), all
configurations side by side in this one process.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from pltd.pipeline.plan import make_plan, read_partition  # noqa: E402
from pltd.stages.ingest import IngestSettings, ingest_partition  # noqa: E402
from pltd.stages.landmarks.settings import LandmarkSettings  # noqa: E402
from pltd.stages.landmarks.stage import label_partition  # noqa: E402
from pltd.stages.readers.base import ReaderOptions, Source  # noqa: E402
from pltd.trainer.evaluation.labels import label_metrics, markdown_lines  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "conformance" / "aflw2000"
# insightface's ArcFace template for 112 × 112 crops (see the module docstring for the source)
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
CONFIGS = {
    "default": {},
    # dlib68 and MediaPipe both give the 2D-style jaw: with jaw_style 3d no source of this configuration
    # could give points 0–16 (every row rejected as no_jaw_source), so the old default runs 2d as it did,
    # against the 3D-style ground truth (`style_unrecorded`)
    "paper dlib68": {"teacher": "dlib68", "views": 8, "mirror": False, "fusion": "paper", "jaw_style": "2d"},
    "paper 3ddfa_v2": {"teacher": "3ddfa_v2", "views": 8, "mirror": False, "fusion": "paper"},
}
# one pass of each source: (report row, configuration whose audit columns hold it, method)
SINGLE_PASSES = [
    ("one dlib68 pass", "paper dlib68", "single_teacher"),
    ("one 3DDFA_V2 pass", "paper 3ddfa_v2", "single_teacher"),
    ("one MediaPipe pass", "paper 3ddfa_v2", "single_second"),
    # the same passes on the default's accepted rows: the faces its label is measured on
    ("one teacher pass, the default's accepted faces", "default", "single_teacher_accepted"),
    ("one second-source pass, the default's accepted faces", "default", "single_second_accepted"),
]
BASELINE = "paper dlib68"  # the old default, for the CPU ratio


def single_threaded() -> None:
    """One thread per library: onnxruntime sessions get 1 intra-op thread where the stage asks for
    its default (0 = every core), OpenCV and torch 1."""
    import cv2

    from pltd.stages.landmarks import onnx_backend

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    original = onnx_backend.session.__wrapped__

    @functools.cache
    def session(path: str, batched: bool = True, threads: int = 0):
        return original(path, batched, threads or 1)

    onnx_backend.session = session


def settings_of(fields: dict) -> tuple[LandmarkSettings, list[str]]:
    """LandmarkSettings with the fields this code has; the names of those it lacks."""
    known = {k: v for k, v in fields.items() if k in LandmarkSettings.model_fields}
    return LandmarkSettings(**known), sorted(set(fields) - set(known))


# ---- the 112 × 112 set ------------------------------------------------------------------------


def five_points(pts68: np.ndarray) -> np.ndarray:
    """Eye centres (image-left eye first), nose tip, mouth corners of 68 iBUG points (68, 2)."""
    return np.stack([pts68[36:42].mean(axis=0), pts68[42:48].mean(axis=0), pts68[30], pts68[48], pts68[54]])


def scale_shift(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares s, t minimising Σ‖s·src_i + t − dst_i‖² (no rotation)."""
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - ms, dst - md
    s = float((a * b).sum() / (a * a).sum())
    return s, md - s * ms


def make_aligned_set(root: Path, names: list[str], out: Path, size: int = 112) -> None:
    """`out/<name>.jpg` + `.mat` for each AFLW2000-3D photo: the face placed as an ArcFace crop."""
    import cv2
    import scipy.io
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        mat = scipy.io.loadmat(root / f"{name}.mat")
        pt3d = np.asarray(mat["pt3d_68"], float)  # 3 × 68
        s, t = scale_shift(five_points(pt3d[:2].T), ARCFACE_112 * size / 112.0)
        m = np.array([[s, 0.0, t[0]], [0.0, s, t[1]]])
        image = np.asarray(Image.open(root / f"{name}.jpg").convert("RGB"))
        crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
        Image.fromarray(crop).save(out / f"{name}.jpg", quality=95)
        moved = np.vstack([s * pt3d[0] + t[0], s * pt3d[1] + t[1], s * pt3d[2]])
        scipy.io.savemat(out / f"{name}.mat", {"pt3d_68": moved, "Pose_Para": mat["Pose_Para"]})


# ---- rows and runs ------------------------------------------------------------------------------


def box_sources(folder: Path, names: list[str]) -> dict:
    """How the stage will box the 112 set's rows (no dataset box): MediaPipe's detection or, where it
    finds none, the aligned-face region (stages/landmarks/detect.py)."""
    from PIL import Image

    from pltd.stages.landmarks.detect import FaceDetector

    det = FaceDetector()
    found = sum(
        bool(det.det.process(np.asarray(Image.open(folder / f"{n}.jpg").convert("RGB"))).detections) for n in names
    )
    return {"detected": found, "aligned_region": len(names) - found}


def ingest_rows(root: Path, run: Path, name: str, names: list[str], boxes: bool) -> pa.Table:
    """Ingest rows of an `aflw2000` source read by the real reader, the photos `names` only, in the
    order of their names; without `boxes`, bbox = None."""
    import pyarrow.compute as pc

    src = Source(name, "aflw2000", str(root), ReaderOptions())
    make_plan(str(run), src, 100_000)
    rows, rejected = ingest_partition(src, read_partition(str(run), src.name, 0), IngestSettings())
    if rejected.num_rows:
        print(f"{name}: {rejected.num_rows} rows rejected by the reader: {rejected.column('reason').to_pylist()}")
    stems = pa.array([Path(p).stem for p in rows.column("source_path").to_pylist()])
    rows = rows.append_column("_stem", stems).filter(pc.is_in(stems, pa.array(names))).sort_by("_stem").drop(["_stem"])
    if not boxes:
        i = rows.schema.get_field_index("bbox")
        rows = rows.set_column(i, rows.schema.field(i), pa.nulls(rows.num_rows, rows.schema.field(i).type))
    return rows


def style_unrecorded(rows: pa.Table, s: LandmarkSettings) -> tuple[pa.Table, str | None]:
    """The rows for a configuration whose jaw style differs from the ground truth's (AFLW2000-3D is
    3D-style): the stage would pseudo-label them as photos without ground truth (a PLTD keeps one
    style), leaving nothing to compare. Their `landmarks_gt_style` is cleared — read as "not
    recorded", so the stage keeps the ground truth — and the note says what the comparison then is."""
    style = getattr(s, "jaw_style", None)
    if style is None or "landmarks_gt_style" not in rows.column_names:
        return rows, None
    native = {v for v in rows.column("landmarks_gt_style").to_pylist() if v is not None}
    if native <= {style}:
        return rows, None
    i = rows.schema.get_field_index("landmarks_gt_style")
    rows = rows.set_column(i, rows.schema.field(i), pa.nulls(rows.num_rows, rows.schema.field(i).type))
    note = (
        f"labels of jaw style {style} against {'/'.join(sorted(native))}-style ground truth: NME68 counts the "
        "style difference on points 0–16, the inner 51 points do not"
    )
    return rows, note


def run_config(rows: pa.Table, s: LandmarkSettings, profile: bool = False) -> tuple[pa.Table, float]:
    """The stage's output for `rows` and its CPU ms per image (models loaded by a warm-up call)."""
    label_partition(rows.slice(0, 2), s)
    prof = cProfile.Profile() if profile else None
    t0 = time.process_time()
    if prof:
        prof.enable()
    table, _ = label_partition(rows, s)
    if prof:
        prof.disable()
    cpu = (time.process_time() - t0) / rows.num_rows * 1e3
    if prof:
        print(f"--- profile ({cpu:.0f} ms CPU per image with the profiler's overhead)")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return table, cpu


# ---- the tables ---------------------------------------------------------------------------------


def _f(x, digits: int = 2, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _bins(b: dict | None) -> str:
    if not b:
        return "–"
    return (
        f"{_f(b['all'])} ({_f(b['0-30']['nme'])} / {_f(b['30-60']['nme'])} / {_f(b['60-90']['nme'])}; {_f(b['mean'])})"
    )


def summary_row(set_name: str, name: str, m: dict, report: dict | None = None, cpu: float | None = None) -> str:
    p, bias = m.get("pose") or {}, m.get("bias") or {}
    pose = f"{_f(p.get('mean'))} ({_f(p.get('yaw'))} / {_f(p.get('pitch'))} / {_f(p.get('roll'))})" if p else "–"
    signed = " / ".join(_f(bias.get(k), 1, True) for k in ("yaw", "pitch", "roll")) if bias else "–"
    acc = rej = conf = "–"
    if report is not None:
        acc = f"{report['accepted_share'] * 100:.1f}"
        ar = report["accepted_vs_rejected"]
        rej = f"{_f(ar.get('accepted', {}).get('nme68'))} / {_f(ar.get('rejected', {}).get('nme68'))}"
        conf = _f(report["confidence"].get("spearman_nme68"))
    return (
        f"| {set_name} | {name} | {m['n']} | {_bins(m.get('nme68'))} | {_bins(m.get('inner51'))} | {pose} | "
        f"{signed} | {acc} | {rej} | {conf} | {_f(cpu, 0)} |"
    )


HEADER = [
    "| set | configuration / pass | faces | NME68 % all (\\|yaw\\| 0–30 / 30–60 / 60–90; mean of bins) "
    "| inner 51 % (same) | pose MAE ° mean (yaw / pitch / roll) | bias ° yaw / pitch / roll | accepted % "
    "| NME68 accepted / rejected | Spearman fit_error | CPU ms / image |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]


def same_faces_check(results: dict, sets: dict) -> list[str]:
    """Per set and |yaw| bin: the default's inner-51 NME vs the better single pass (teacher or second
    source, view 0) on the same faces (the default's accepted rows), from the default's own run."""
    out = []
    for set_name in sets:
        r = results["configs"].get(f"{set_name} / default")
        if r is None:
            continue
        m = r["report"]["methods"]
        cells, wins = [], 0
        for b in ("0-30", "30-60", "60-90", "all"):
            ours = m["label"].get("inner51", {})
            ours = ours["all"] if b == "all" else ours.get(b, {}).get("nme")
            passes = [m[k].get("inner51") for k in ("single_teacher_accepted", "single_second_accepted")]
            vals = [(p["all"] if b == "all" else p[b]["nme"]) for p in passes if p]
            best = min((v for v in vals if v is not None), default=None)
            if ours is not None and best is not None:
                wins += ours < best
                cells.append(f"{b} {ours:.2f} vs {best:.2f}")
        out.append(f"- {set_name}: {'; '.join(cells)} ({wins} of {len(cells)} below)")
    return (
        ["", "Default inner-51 NME vs the best single pass on the same faces (its accepted rows):", *out] if out else []
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--limit", type=int, default=None, help="the first N photos (sorted names) only")
    ap.add_argument("--sets", default="full,112")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names of CONFIGS")
    ap.add_argument("--curve", action="store_true", help="also the default at views 1/2/4/8 × mirror on/off")
    ap.add_argument("--profile", default=None, help="cProfile this configuration (full set)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "label_quality.json")
    args = ap.parse_args()
    single_threaded()
    names = sorted(p.stem for p in args.root.glob("image*.jpg") if p.with_suffix(".mat").is_file())
    if not names:
        raise SystemExit(f"{args.root}: no AFLW2000-3D photos (image*.jpg with .mat)")
    names = names[: args.limit] if args.limit else names
    tmp = Path(tempfile.mkdtemp(prefix="pltd-label-quality-"))
    sets = {}
    for set_name in args.sets.split(","):
        if set_name == "full":
            sets["full"] = ingest_rows(args.root, tmp / "run-full", "aflw2000", names, boxes=True)
        elif set_name == "112":
            make_aligned_set(args.root, names, tmp / "aflw2000_112")
            sets["112"] = ingest_rows(tmp / "aflw2000_112", tmp / "run-112", "aflw2000_112", names, boxes=False)
            boxes_112 = box_sources(tmp / "aflw2000_112", names)
        else:
            raise SystemExit(f"unknown set {set_name!r} (full, 112)")
    configs = {k: CONFIGS[k] for k in args.configs.split(",")}
    runs: list[tuple[str, str, dict]] = [(st, c, f) for st in sets for c, f in configs.items()]
    if args.curve:
        runs += [
            ("full", f"default views {v} mirror {'on' if mir else 'off'}", {"views": v, "mirror": mir})
            for v in (1, 2, 4, 8)
            for mir in (True, False)
        ]
    results: dict = {"images": len(names), "root": str(args.root), "configs": {}, "date": time.strftime("%Y-%m-%d")}
    if "112" in sets:
        results["boxes_112"] = boxes_112
    for set_name, cname, fields in runs:
        s, missing = settings_of(fields)
        if missing:
            print(f"note: this code has no LandmarkSettings field {', '.join(missing)}; {cname} runs without it")
        rows, note = style_unrecorded(sets[set_name], s)
        print(f"--- {set_name} / {cname}: {rows.num_rows} images ...", flush=True)
        table, cpu = run_config(rows, s, profile=args.profile == cname and set_name == "full")
        try:
            report = label_metrics(table)
        except ValueError as exc:
            print(f"    {cpu:.0f} ms CPU/image; no report: {exc}")
            continue
        results["configs"][f"{set_name} / {cname}"] = {
            "set": set_name,
            "config": cname,
            "settings": json.loads(s.model_dump_json()),
            "cpu_ms_per_image": cpu,
            "note": note,
            "report": report,
        }
        print(f"    {cpu:.0f} ms CPU/image; NME68 {_bins(report['methods']['label'].get('nme68'))}", flush=True)

    lines = [f"# Label quality on {len(names)} AFLW2000-3D photos ({results['date']})", "", *HEADER]
    notes = []
    for r in results["configs"].values():
        name = r["config"]
        if r["note"]:
            notes.append(f"- {r['set']} / {name}: {r['note']}")
            name += " ¹"
        lines.append(summary_row(r["set"], name, r["report"]["methods"]["label"], r["report"], r["cpu_ms_per_image"]))
    for set_name in sets:
        for title, cname, method in SINGLE_PASSES:
            r = results["configs"].get(f"{set_name} / {cname}")
            if r is not None:
                lines.append(summary_row(set_name, title, r["report"]["methods"][method]))
    if notes:
        lines += ["", "¹ ground truth of another jaw style:", *dict.fromkeys(notes)]
    lines += same_faces_check(results, sets)
    if "boxes_112" in results:
        b = results["boxes_112"]
        lines += [
            "",
            f"112 set boxes: {b['detected']} by MediaPipe's detector, {b['aligned_region']} the aligned-face region",
        ]
    lines += ["", "Ratios (same process, same photos):"]
    for set_name in sets:
        d, b = results["configs"].get(f"{set_name} / default"), results["configs"].get(f"{set_name} / {BASELINE}")
        if d and b:
            ratio = d["cpu_ms_per_image"] / b["cpu_ms_per_image"]
            results[f"cpu_ratio_default_vs_{BASELINE.replace(' ', '_')}_{set_name}"] = ratio
            lines.append(f"- {set_name}: CPU default / {BASELINE} = {ratio:.2f}")
    d112, dfull = results["configs"].get("112 / default"), results["configs"].get("full / default")
    if d112 and dfull:
        a, b = d112["report"]["methods"]["label"], dfull["report"]["methods"]["label"]
        for what, x, y in (
            ("NME68", a["nme68"]["all"], b["nme68"]["all"]),
            ("inner 51", a["inner51"]["all"], b["inner51"]["all"]),
            ("pose MAE", a.get("pose", {}).get("mean"), b.get("pose", {}).get("mean")),
        ):
            if x is not None and y:
                results[f"ratio_112_vs_full_{what.replace(' ', '')}"] = x / y
                lines.append(f"- default, 112 / full: {what} {x / y:.2f} (target ≤ 1.25)")
    full = [*lines, ""]
    for key, r in results["configs"].items():
        full += [f"## {key} ({r['cpu_ms_per_image']:.0f} ms CPU / image)", "", *markdown_lines(r["report"]), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text("\n".join(full) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')} (each configuration's full report)")


if __name__ == "__main__":
    main()
