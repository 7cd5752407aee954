"""The `pltd` command line; the only place that parses arguments."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pltd.pipeline.config import ManifestError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build pseudo-labeled face datasets (PLTD) on Dask and inspect them.",
    pretty_exceptions_enable=False,
)
# Logs and CI are not terminals: give tables room instead of Rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
bars = Console(stderr=True)  # progress of single-process commands: stderr, silenced by -q like `console`


_verbosity = {"level": 0}  # -v 1, -q -1: set by the app's callback for the command that follows


def _version(value: bool) -> None:
    if value:
        from pltd import __version__

        console.print(f"pltd {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show worker logs (MediaPipe, TFLite, absl, Dask) here.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print pltd's version and exit.")
    ] = False,
) -> None:
    """Build pseudo-labeled face datasets (PLTD) on Dask, inspect them, train and evaluate on them."""
    if verbose and quiet:
        _fail("-v and -q: choose one")
    _verbosity["level"] = 1 if verbose else -1 if quiet else 0
    console.quiet = bars.quiet = quiet


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {msg}", highlight=False, soft_wrap=True)  # one line, however long the path
    raise typer.Exit(code)


def _parse_roots(values: list[str]) -> dict[str, str]:
    roots = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            _fail(f"--root {v!r}: expected NAME=PATH, e.g. --root vggface2=/data/vggface2/train")
        roots[name] = path
    return roots


@app.command()
def build(
    manifest: Annotated[Path | None, typer.Argument(help="Build recipe; default: the embedded sample.")] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Run directory (path or fsspec URL); default runs/<manifest name>."),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(help="Cluster profile (local, scheduler, slurm, kubernetes) or tcp://HOST:PORT."),
    ] = None,
    cluster_file: Annotated[
        Path | None,
        typer.Option(help="Cluster profile file; default $PLTD_CLUSTER_FILE, else the profiles shipped with pltd."),
    ] = None,
    force: Annotated[list[str], typer.Option(help="Recompute STAGE and every stage after it (repeatable).")] = [],  # noqa: B006
    root: Annotated[list[str], typer.Option(help="Override a source root: NAME=PATH (repeatable).")] = [],  # noqa: B006
    until: Annotated[str | None, typer.Option(help="Stop after this stage (e.g. ingest).")] = None,
) -> None:
    """Run the pipeline's stages over a manifest's sources into RUN."""
    # The manifest and the flags are checked first, before the heavy modules (Dask, the stages'
    # models) are imported: a typo is reported in about a second.
    from pltd.pipeline.cluster import ClusterError, load_profile, reachable
    from pltd.pipeline.config import default_manifest, load_manifest
    from pltd.pipeline.sample import default_sample_dir

    os.environ.setdefault("PLTD_SAMPLE_DIR", str(default_sample_dir()))
    path = manifest or default_manifest()
    try:
        m = load_manifest(path, roots=_parse_roots(root))
        profile = load_profile(cluster, cluster_file)
        reachable(profile)  # a dead scheduler address: refused in seconds, before the heavy imports
    except (ManifestError, ClusterError) as exc:
        _fail(str(exc))
    out = out or f"runs/{m.name}"
    logs = _check_out(out)
    from pltd.pipeline.build import BuildError, StartupError
    from pltd.pipeline.build import build as run_build
    from pltd.pipeline.sample import make_sample
    from pltd.pipeline.worker_logs import stderr_to
    from pltd.stages.readers.base import SourceError

    if m.prepare == "sample":
        sample_dir = os.environ["PLTD_SAMPLE_DIR"]
        with stderr_to(logs and f"{sample_dir}.log"):  # MediaPipe labels the sample's 300W-LP part here
            console.print(f"embedded sample: {make_sample(sample_dir)}")
    console.print(f"manifest [bold]{m.name}[/] ({path}) → {out}; cluster: {cluster or 'default profile'}")
    again = _resume_build(manifest, out, cluster, cluster_file, root, until)
    try:
        run_build(m, str(path), out, profile, list(force), console, until=until, worker_logs=logs, resume=again)
    except SourceError as exc:
        _fail(str(exc))
    except StartupError as exc:
        _fail(str(exc), code=2)
    except BuildError as exc:
        _fail(str(exc), code=1)
    except ClusterError as exc:
        _fail(str(exc), code=1)


def _resume_build(manifest, out: str, cluster, cluster_file, root: list[str], until) -> str:
    """The command that resumes this build: the same flags, without --force (resume, not redo)."""
    import shlex

    again = ["pltd", "build", *([str(manifest)] if manifest else []), "--out", out]
    again += ["--cluster", cluster] if cluster else []
    again += ["--cluster-file", str(cluster_file)] if cluster_file else []
    again += [a for r in root for a in ("--root", r)] + (["--until", until] if until else [])
    return shlex.join(again)


def _check_out(out: str) -> str | None:
    """Refuse an --out that is a file; the folder for worker logs (None with -v: they stay on the terminal)."""
    import tempfile

    from fsspec.implementations.local import LocalFileSystem

    from pltd.pipeline import storage
    from pltd.pipeline.layout import RunLayout

    fs, path = storage.fs_path(out)
    if fs.isfile(path):
        _fail(f"--out {out}: is a file; name a run directory (new, or one a build wrote)")
    if _verbosity["level"] > 0:
        return None
    if isinstance(fs, LocalFileSystem):
        return storage.fs_path(RunLayout(out).logs)[1]
    return str(Path(tempfile.gettempdir()) / "pltd-logs")  # the run is on an object store: logs stay local


@app.command()
def inspect(run: Annotated[str, typer.Argument(help="Run directory written by `pltd build`.")]) -> None:
    """Print a run's counts, stage statistics and reconciliation."""
    from pltd.pipeline import storage
    from pltd.pipeline.layout import RunLayout
    from pltd.pipeline.reconcile import print_reconciliation
    from pltd.pipeline.text import counts_text, numbers_text

    layout = RunLayout(run)
    try:
        info = storage.read_json(layout.build_json)
    except FileNotFoundError:
        _fail(f"{run}: no build.json — not a finished `pltd build` run directory")
    for name, p in info["plans"].items():
        console.print(f"source [bold]{name}[/] ({p['format']}, {p['root']}): {p['images']} images")
    for stage in info["stages_run"]:
        try:
            s = storage.read_json(layout.stats(stage))
        except FileNotFoundError:  # a run built before global stages wrote their stats
            s = {}
        wall = f"{s['wall_seconds']:.1f} s wall" if "wall_seconds" in s else "time not recorded"
        if stage == "identities":
            r = info["identities"]
            console.print(
                f"stage [bold]identities[/]: {r['identities_in']} identities in → {r['identities_out']} after merging; "
                f"{r['duplicate_pairs_pass1']} duplicate pairs between datasets, "
                f"{r['duplicate_pairs_pass2_300w_lp']} with 300W-LP; thresholds {numbers_text(r['thresholds'])}; "
                f"{wall}",
                highlight=False,
            )
            continue
        console.print(
            f"stage [bold]{stage}[/]: {s['rows_in']} in → {s['rows_out']} out, rejected {counts_text(s['rejected'])}, "
            f"{s['partitions']} partitions, {s['task_seconds']:.1f} task-s, {wall}",
            highlight=False,
        )
    print_reconciliation(storage.read_json(layout.reconciliation), console)
    if info.get("pltd"):
        from pltd.pipeline.card import summary_lines

        d = info["pltd"]
        console.print(
            f"PLTD: {d['rows']:,} rows, {d['identities']:,} identities, {len(d['shards'])} shards in {run}/pltd/ "
            f"(schema {d['schema_version']}, card {run}/pltd/README.md)"
        )
        for line in summary_lines(d["summary"]):
            console.print("  " + line, highlight=False)


@app.command()
def verify(
    run: Annotated[str, typer.Argument(help="Run directory written by `pltd build`.")],
    fix: Annotated[
        bool,
        typer.Option(help="Drop what is damaged (partition markers; dataset.json for a shard) so a build redoes it."),
    ] = False,
) -> None:
    """Check every partition and shard of RUN against its marker and dataset.json (rc 0 clean, 1 problems)."""
    from pltd.pipeline import storage
    from pltd.pipeline.layout import RunLayout
    from pltd.pipeline.verify import repair, verify_run

    if not storage.exists(run):
        _fail(f"{run}: no such run directory")
    layout = RunLayout(run)
    report = verify_run(layout)
    for line in report.notes:
        console.print(f"note: {line}", highlight=False)
    for line in report.problems:
        console.print(f"[red]problem[/] {line}", highlight=False)
    verdict = "clean" if report.ok else f"{len(report.problems)} problem(s)"
    console.print(f"{run}: {report.checked_partitions} partitions, {report.checked_shards} shards checked: {verdict}")
    if report.ok:
        return
    if fix:
        for url in repair(layout, report):
            console.print(f"removed {url}: the next `pltd build` recomputes it", highlight=False)
    raise typer.Exit(1)


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="Run directory written by `pltd build`.")],
    out: Annotated[
        str, typer.Option("--out", "-o", help="PNG for labelled faces; rejected ones go to *_rejected.png.")
    ] = "grid.png",
    limit: Annotated[int, typer.Option(help="Faces per sheet.")] = 48,
) -> None:
    """Draw labelled faces (landmarks, pose axes: x red, y green, z blue) and rejected images with reasons."""
    from pltd.pipeline.show import show as draw

    try:
        a, b, n_ok, n_bad = draw(run, out, limit)
    except FileNotFoundError as exc:
        _fail(str(exc))
    console.print(f"{a}: {n_ok} labelled faces; {b}: {n_bad} rejected images")


@app.command("index-match")
def index_match(
    run: Annotated[str, typer.Argument(help="Run directory with ingest output (faces to learn from).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index map JSON to write (name it in landmarks.index_map).")],
    teacher: Annotated[
        str, typer.Option(help="Teacher whose 68 points define the targets: dlib68 or resnet50.")
    ] = "dlib68",
    teacher_checkpoint: Annotated[str | None, typer.Option(help="Checkpoint for --teacher resnet50.")] = None,
    max_images: Annotated[int, typer.Option(help="Images to use at most.")] = 2000,
    views: Annotated[int, typer.Option(help="Views per image.")] = 2,
) -> None:
    """Learn the MediaPipe 468 → 68 index map from teacher outputs (IndexMatching of Algorithm 1)."""
    import datetime as dt

    from pltd.stages.landmarks.index_match import index_map_from
    from pltd.stages.landmarks.mesh_map import save_index_map
    from pltd.stages.landmarks.sources import create_source

    rows = _ingest_rows(run, max_images, exclude_formats=())
    t = create_source(teacher, mean_face=None, checkpoint=teacher_checkpoint)
    mesh = create_source("mediapipe", mean_face=None, index_map=list(range(68)))
    try:
        idx, err, n = index_map_from(rows, t, mesh, views)
    except ValueError as exc:
        _fail(str(exc))
    prov = {"teacher": teacher, "teacher_checkpoint": teacher_checkpoint, "run": run, "views": n,
            "made": dt.date.today().isoformat(), "command": "pltd index-match"}  # fmt: skip
    save_index_map(out, idx, err, prov)
    console.print(
        f"{out}: 68 indices from {n} views; mean error {err.mean():.4f} of the face size (max {err.max():.4f})"
    )


@app.command("mean-face")
def mean_face(
    run: Annotated[str, typer.Argument(help="Run directory whose ingest holds 300W-LP (or AFLW2000) rows.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Mean face JSON to write (name it in landmarks.mean_face).")],
    max_angle: Annotated[
        float, typer.Option(help="Near-frontal: |yaw|, |pitch|, |roll| at most this (degrees).")
    ] = 10.0,
) -> None:
    """Recompute the mean 3D face: x, y from near-frontal ground truth, depth from the shipped model."""
    import datetime as dt

    from pltd.stages.landmarks.mean_face import from_ground_truth, save_mean_face

    rows = [r for r in _ingest_rows(run, 10**9) if r.get("landmarks_gt") and r.get("pose_gt")]
    made = from_ground_truth([(r["landmarks_gt"], r["pose_gt"]) for r in rows], max_angle)
    if made is None:
        _fail(f"{run}: fewer than 5 ground-truth rows within {max_angle}° of frontal")
    points, provenance = made
    save_mean_face(out, points, {**provenance, "run": run, "made": dt.date.today().isoformat()})
    console.print(f"{out}: mean face from {provenance['shapes']} near-frontal shapes")


@app.command()
def calibrate(
    pairs: Annotated[Path, typer.Argument(help="insightface .bin, or LFW pairs.txt (with --images).")],
    network: Annotated[str, typer.Option(help="dlib, checkpoint, insightface, onnx or facenet.")] = "dlib",
    checkpoint: Annotated[str | None, typer.Option(help="Weights file (every network but dlib).")] = None,
    architecture: Annotated[str | None, typer.Option(help="insightface: iresnet18/34/50/100.")] = None,
    images: Annotated[Path | None, typer.Option(help="Image folder for pairs.txt (name/name_0001.jpg).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
) -> None:
    """The cosine threshold that maximises verification accuracy on a pair file (Algorithm 2, step 3)."""
    import json

    from pltd.stages.identities.calibrate import (
        UnsafePickle,
        best_threshold,
        load_bin,
        load_pairs_txt,
        whole_image_landmarker,
    )
    from pltd.stages.identities.networks import create_network

    try:
        if pairs.suffix == ".bin":
            bins, same = load_bin(pairs)
        else:
            if images is None:
                _fail("--images is required with a pairs.txt file")
            bins, same = load_pairs_txt(pairs, images)
        net = create_network(network, checkpoint, **({"architecture": architecture} if architecture else {}))
    except (UnsafePickle, ValueError, FileNotFoundError, KeyError) as exc:
        _fail(str(exc))
    from pltd.pipeline.progress import bar, pair_cosines

    with bar(f"embedding {len(same):,} pairs ({network})", len(same), bars) as advance:
        t, acc = best_threshold(pair_cosines(bins, net, whole_image_landmarker(), advance), same)
    result = {"pairs": str(pairs), "n_pairs": len(same), "network": network, "checkpoint": checkpoint,
              "threshold": t, "accuracy": acc}  # fmt: skip
    console.print(f"{network}: threshold {t:.4f} → accuracy {acc:.4f} on {len(same)} pairs")
    if out:
        out.write_text(json.dumps(result, indent=2))


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="mtl, stl-fr, fr, teacher-300wlp or blink (trainer/presets/).")],
    data: Annotated[Path, typer.Option(help="PLTD directory (RUN/pltd) with part-*.parquet.")],
    out: Annotated[Path, typer.Option(help="Output directory: checkpoint.pt, model.pt, logs.")],
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt exactly.")] = False,
    set_: Annotated[list[str], typer.Option("--set", help="Override a preset field: KEY=VALUE (repeatable).")] = [],  # noqa: B006
) -> None:
    """Train a network of the paper on a PLTD (single process, or under torchrun for DDP)."""
    from pltd.trainer.config import load_config

    try:
        cfg = load_config(preset, set_)
    except ValueError as exc:
        _fail(str(exc))
    _check_data(data)
    from pltd.trainer.guard import Diverged
    from pltd.trainer.loop import train as run  # torch: imported once the flags are known to be right

    if resume and not (out / "checkpoint.pt").is_file():
        _fail(f"--resume: {out / 'checkpoint.pt'} not found")
    import shlex

    again = ["pltd", "train", "--preset", preset, "--data", str(data), "--out", str(out), "--resume"]
    again += ["--max-steps", str(max_steps)] if max_steps is not None else []
    again += [a for s in set_ for a in ("--set", s)]
    console.print(f"logs: {out}/log_rank0.csv and TensorBoard (tensorboard --logdir {out}/tb)", highlight=False)
    try:
        result = run(cfg, str(data), str(out), max_steps=max_steps, resume=resume)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except Diverged as exc:
        _fail(f"training diverged: {exc}", 3)
    except KeyboardInterrupt:
        _fail(f"interrupted; the last checkpoint (if any) resumes with: {shlex.join(again)}", 130)
    if result["interrupted"]:
        err.print(f"resume with: {shlex.join(again)}", highlight=False, soft_wrap=True)
        raise typer.Exit(130 if result["interrupted"] == "SIGINT" else 143)
    last = ", ".join(f"{k} {v:.4g}" for k, v in result["last"].items())
    console.print(f"trained {result['step']} steps ({result['epoch']} epochs done); last losses: {last}")
    ts = f" and {out}/model.torchscript.pt" if cfg.export_torchscript else ""
    console.print(f"{out}/model.pt (pltd checkpoint){ts}; training state {out}/checkpoint.pt; logs {out}/log_rank0.csv")


def _check_data(data: Path) -> None:
    """--data names a PLTD folder; a run directory gets the path of its PLTD suggested."""
    if not data.exists():
        _fail(f"--data {data}: no such directory")
    if data.is_dir() and not any(data.glob("part-*.parquet")):
        inside = data / "pltd"
        hint = f"; {data} is a run directory: use --data {inside}" if any(inside.glob("part-*.parquet")) else ""
        _fail(f"--data {data}: no PLTD shards (part-*.parquet) here{hint}")


eval_app = typer.Typer(
    help="The paper's evaluation protocols (reports: JSON and Markdown; aflw2000 also a CED plot).",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


def _report(kind: str, model: str, data: str, out: Path, compute) -> None:
    from pltd.trainer.evaluation.report import write_report

    try:
        result = compute()
    except (FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
    md = write_report(out, kind, model, data, result)
    console.print(md.read_text(), highlight=False)


@eval_app.command("verification")
def eval_verification(
    model: Annotated[Path, typer.Option(help="pltd checkpoint (model.pt) or TorchScript file.")],
    pairs: Annotated[list[Path], typer.Option(help="insightface .bin pair files (repeatable).")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval"),
) -> None:
    """10-fold verification accuracy (LFW, CFP-FP, AgeDB-30), insightface's protocol."""
    from pltd.pipeline.progress import EmbeddingProgress
    from pltd.trainer.evaluation.model import EvalModel
    from pltd.trainer.evaluation.protocols import verification

    _report("verification", str(model), ", ".join(map(str, pairs)), out,
            lambda: verification(EmbeddingProgress(EvalModel(model), bars), [str(p) for p in pairs]))  # fmt: skip


@eval_app.command("ijbc")
def eval_ijbc(
    model: Annotated[Path, typer.Option(help="pltd checkpoint or TorchScript file.")],
    root: Annotated[Path, typer.Option(help="IJB-C folder with meta/ and loose_crop/.")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval"),
    normalise_images: Annotated[bool, typer.Option(help="Normalise image features (insightface: no).")] = False,
    faceness: Annotated[bool, typer.Option(help="Weight images by faceness score (insightface: yes).")] = True,
) -> None:
    """IJB-C 1:1 TAR@FAR with media-averaged templates, and soft/medium/hard probes by predicted yaw."""
    from pltd.trainer.evaluation.model import EvalModel
    from pltd.trainer.evaluation.protocols import ijbc

    _report("ijbc", str(model), str(root), out, lambda: ijbc(EvalModel(model), root, normalise_images, faceness))


@eval_app.command("aflw2000")
def eval_aflw2000(
    model: Annotated[Path, typer.Option(help="pltd checkpoint or TorchScript file.")],
    root: Annotated[Path, typer.Option(help="AFLW2000-3D folder (image*.jpg + .mat).")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval"),
) -> None:
    """Pose MAE (|angles| ≤ 99°) and NME by yaw bin, with the cumulative error curve."""
    from pltd.trainer.evaluation.model import EvalModel
    from pltd.trainer.evaluation.protocols import aflw2000

    _report("aflw2000", str(model), str(root), out, lambda: aflw2000(EvalModel(model), root))


@eval_app.command("biwi")
def eval_biwi(
    model: Annotated[Path, typer.Option(help="pltd checkpoint or TorchScript file.")],
    npz: Annotated[Path, typer.Option(help="BIWI as FSA-Net's BIWI_noTrack.npz (image, pose).")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval"),
) -> None:
    """Pose MAE on BIWI."""
    from pltd.trainer.evaluation.model import EvalModel
    from pltd.trainer.evaluation.protocols import biwi

    _report("biwi", str(model), str(npz), out, lambda: biwi(EvalModel(model), npz))


@eval_app.command("labels")
def eval_labels(
    run: Annotated[str, typer.Argument(help="Run directory whose sources include ground truth.")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("eval"),
) -> None:
    """A run's pseudo-labels against the ground truth of its aflw2000 / 300w_lp rows, per yaw bin.

    For the label and one pass of each source: NME68 and inner-51 NME per |yaw| bin, pose MAE and
    signed bias; the accepted share, accepted vs rejected NME, and how well fit_error ranks the error
    (Spearman; keep the X % most confident → NME)."""
    from pltd.pipeline.show import _tables
    from pltd.trainer.evaluation.labels import label_metrics

    def compute():
        t = _tables(run, "landmarks")
        if t is None:
            raise FileNotFoundError(f"{run}: no landmarks output")
        return label_metrics(t)

    _report("labels", "pseudo-labels", run, out, compute)


def _ingest_rows(run: str, limit: int, exclude_formats: tuple[str, ...] = ()) -> list[dict]:
    from pltd.pipeline.show import _tables

    table = _tables(run, "ingest")
    if table is None:
        _fail(f"{run}: no ingest output; run `pltd build` first")
    return table.slice(0, limit).to_pylist()


@app.command()
def sample(
    out: Annotated[Path | None, typer.Option(help="Where to write it; default $PLTD_SAMPLE_DIR or ~/.cache.")] = None,
) -> None:
    """Write the embedded sample datasets (VGGFace2-, MS1MV3- and 300W-LP-style) and print where."""
    from pltd.pipeline.sample import default_sample_dir, make_sample

    target = out or Path(os.environ.get("PLTD_SAMPLE_DIR") or default_sample_dir())
    console.print(str(make_sample(target)))


def main() -> None:
    app(prog_name="pltd")


if __name__ == "__main__":
    sys.exit(main())
