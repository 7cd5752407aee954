"""Algorithm 1 speed on the CPU: end to end vs its components, batched teacher, peak memory.

    python benchmarks/label.py [--images 48] [--views 8]

Runs on the embedded sample's faces (made on first use). Baselines: the sum of the components
measured alone (target: end to end ≥ 0.8 of what they allow), one view at a time for the torch
teacher (target: batched ≥ 3x), 3 GB per worker for memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from pltd.pipeline.plan import make_plan
from pltd.pipeline.sample import default_sample_dir, make_sample
from pltd.stages.fetch import Fetcher
from pltd.stages.images import decode_rgb
from pltd.stages.ingest import IngestSettings, ingest_partition
from pltd.stages.landmarks.blink import adjust_upper_eyes, eye_aspect_ratio, sigma_from_ear
from pltd.stages.landmarks.fitting import selective_fit
from pltd.stages.landmarks.stage import LandmarkSettings, label_partition, models_for
from pltd.stages.landmarks.views import make_views, seed_of
from pltd.stages.readers.base import Source
from pltd.stages.readers.folders import VGGFace2Options
from pltd.stages.readers.insightface_rec import RecOptions


def sample_rows(n: int) -> pa.Table:
    root = make_sample(os.environ.get("PLTD_SAMPLE_DIR") or default_sample_dir())
    run = tempfile.mkdtemp(prefix="pltd-bench-")
    tables = []
    for src in (
        Source("vggface2", "vggface2", str(root / "vggface2/train"),
               VGGFace2Options(boxes=str(root / "vggface2/bb_landmark/loose_bb_train.csv"))),
        Source("ms1mv3", "insightface_rec", str(root / "ms1mv3"), RecOptions()),
    ):  # fmt: skip
        make_plan(run, src, 10_000)
        from pltd.pipeline.plan import read_partition

        tables.append(ingest_partition(src, read_partition(run, src.name, 0), IngestSettings())[0])
    rows = pa.concat_tables(tables)
    return rows.take(np.random.default_rng(0).permutation(rows.num_rows)[:n])  # both sources, boxed or not


def per_image(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / n


def components(rows: pa.Table, s: LandmarkSettings) -> dict:
    m = models_for(s)
    recs = rows.to_pylist()
    with Fetcher() as fetch:
        raw = [fetch.bytes_of(r) for r in recs]
    n = len(recs)
    out: dict = {}
    out["decode"] = per_image(lambda: [decode_rgb(b) for b in raw], n)
    images = [decode_rgb(b) for b in raw]
    boxes = [np.asarray(r["bbox"], float) if r["bbox"] else m.detector(im) for r, im in zip(recs, images, strict=True)]
    out["detect (rows without a box)"] = per_image(
        lambda: [m.detector(im) for r, im in zip(recs, images, strict=True) if not r["bbox"]], n
    )
    views = []
    out["views"] = per_image(
        lambda: views.extend(
            make_views(im, b, s.views, s.view_size, seed_of(r["image_id"]))
            for r, im, b in zip(recs, images, boxes, strict=True)
        ),
        n,
    )
    teacher, second = [], []
    out["teacher (dlib68 + pose fit)"] = per_image(lambda: teacher.extend(m.teacher(v) for v in views), n)
    out["mediapipe (FaceMesh + map + pose fit)"] = per_image(lambda: second.extend(m.second(v) for v in views), n)

    def blink_and_fit():
        for t, sec, vs in zip(teacher, second, views, strict=True):
            pts, poses = [], []
            for v, a, b in zip(vs, t, sec, strict=True):
                sg = tuple(sigma_from_ear(e) for e in eye_aspect_ratio(b.mesh)) if b is not None else (0.0, 0.0)
                pts.append(v.to_source(adjust_upper_eyes(a.landmarks, sg)))
                poses.append(a.pose)
                if b is not None:
                    pts.append(v.to_source(b.landmarks))
                    poses.append(a.pose)
            selective_fit(pts, poses, s.t_d)

    out["blink + selective fitting"] = per_image(blink_and_fit, n)
    return out


def batched_teacher(views_total: int = 64) -> dict:
    import torch

    from pltd.checkpoints import save_checkpoint
    from pltd.networks import create
    from pltd.stages.landmarks.sources import create_source

    torch.set_num_threads(1)
    path = Path(tempfile.mkdtemp()) / "r50.pt"
    save_checkpoint(path, create("resnet50"), "resnet50", "landmarks_pose", 128)  # random weights: speed only
    teacher = create_source("resnet50", checkpoint=str(path), batch_size=64)
    imgs = np.random.default_rng(0).integers(0, 255, (views_total, 128, 128, 3), dtype=np.uint8)
    teacher.predict(imgs[:4])  # warm-up
    t_batch = per_image(lambda: teacher.predict(imgs), views_total)
    t_one = per_image(lambda: [teacher.predict(imgs[i : i + 1]) for i in range(views_total)], views_total)
    return {
        "resnet50_ms_per_view_batched": t_batch * 1e3,
        "resnet50_ms_per_view_single": t_one * 1e3,
        "speedup": t_one / t_batch,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/out/label.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # one core, as a Dask worker gets
    s = LandmarkSettings(views=args.views)
    rows = sample_rows(args.images)
    models_for(s)  # model loading is once per worker: keep it out of the figures
    label_partition(rows.slice(0, 2), s)  # warm-up
    t0 = time.perf_counter()
    acc, _ = label_partition(rows, s)
    e2e = (time.perf_counter() - t0) / rows.num_rows
    comp = components(rows, s)
    bound = sum(comp.values())
    res = {
        "images": rows.num_rows,
        "views": args.views,
        "accepted": acc.num_rows,
        "end_to_end_ms_per_image": e2e * 1e3,
        "images_per_s_per_core": 1 / e2e,
        "components_ms_per_image": {k: v * 1e3 for k, v in comp.items()},
        "components_allow_images_per_s": 1 / bound,
        "efficiency": bound / e2e,
        "batched_teacher": batched_teacher(),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    print(f"{rows.num_rows} images x {args.views} views, {s.teacher} + {s.second} + {s.blink} blink, one core:")
    e2e_ms, ips = res["end_to_end_ms_per_image"], res["images_per_s_per_core"]
    print(f"  end to end: {e2e_ms:.1f} ms/image = {ips:.1f} images/s per core")
    for k, v in res["components_ms_per_image"].items():
        print(f"    {k:<40} {v:7.2f} ms/image")
    allow, eff = res["components_allow_images_per_s"], res["efficiency"]
    print(f"  components alone allow {allow:.1f} images/s → efficiency {eff:.2f} (target ≥ 0.8)")
    b = res["batched_teacher"]
    print(
        f"  ResNet50 teacher 128x128 (random weights, speed only): {b['resnet50_ms_per_view_batched']:.1f} ms/view "
        f"batched vs {b['resnet50_ms_per_view_single']:.1f} one at a time → {b['speedup']:.1f}x (target ≥ 3x)"
    )
    print(f"  peak memory of this process (worker equivalent): {res['peak_rss_gb']:.2f} GB (target ≤ 3 GB)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
