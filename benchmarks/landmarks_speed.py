"""Algorithm 1's models, side by side in one run, ratios printed.

1. Batched FaceMesh (`facemesh.py`, LiteRT, batch 64, 1 thread) vs MediaPipe's graph
   (`mediapipe_graph`), per view. Target ≥ 3×.
2. 3DDFA_V2 teacher per view: one `run` over the batch (dynamic batch) vs one view per `run`
   (the graph as shipped, batch 1), onnxruntime on 1 thread.
3. Pose fit per sample: `fit_pose_batch` vs `fit_pose` vs pltd 0.1.0's scipy fit
   (benchmarks/pose_fit.py `old_fit_pose`). Target ≥ 10× vs 0.1.0.

    python benchmarks/landmarks_speed.py [--views 64]

Runs on the embedded sample's 300W-LP renders (made on first use). CPU times per view (one core).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pltd.pipeline.sample import default_sample_dir, make_sample
from pltd.stages.landmarks import facemesh, tddfa
from pltd.stages.landmarks.bfm import package_file
from pltd.stages.landmarks.geometry import fit_pose, fit_pose_batch
from pltd.stages.landmarks.mean_face import load_mean_face
from pltd.stages.landmarks.mesh_map import load_index_map
from pltd.stages.landmarks.onnx_backend import PRESETS
from pltd.stages.landmarks.sources import create_source
from pltd.stages.landmarks.views import make_views

sys.path.insert(0, str(Path(__file__).parent))
from pose_fit import old_fit_pose


def cpu(fn, n: int) -> float:
    """CPU seconds per item (process time: the machine is shared, wall time is not ours)."""
    fn()  # warm-up
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) / n


def sample_views(n: int):
    root = make_sample(os.environ.get("PLTD_SAMPLE_DIR") or default_sample_dir())
    views = []
    for f in sorted((root / "300w_lp").glob("*/*.jpg")):
        img = np.asarray(Image.open(f).convert("RGB"))
        pt = scipy.io.loadmat(f.with_suffix(".mat"))["pt2d"].T
        views += make_views(img, np.r_[pt.min(axis=0), pt.max(axis=0)], 8, 256, seed=0)
        if len(views) >= n:
            return views[:n]
    return views


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--views", type=int, default=64)
    n = ap.parse_args().views
    views = sample_views(n)
    n = len(views)
    idx = load_index_map()

    graph = create_source("mediapipe_graph", mean_face=None, index_map=idx)
    batched = facemesh.BatchedMesh(None, idx, passes=2, threads=1)
    one_pass = facemesh.BatchedMesh(None, idx, passes=1, threads=1)
    t_graph = cpu(lambda: graph(views), n)
    t_b2, t_b1 = cpu(lambda: batched(views), n), cpu(lambda: one_pass(views), n)
    print(f"FaceMesh per view (batch {n}): graph {t_graph * 1e3:.2f} ms, batched 2 passes {t_b2 * 1e3:.2f} ms "
          f"({t_graph / t_b2:.1f}×), 1 pass {t_b1 * 1e3:.2f} ms ({t_graph / t_b1:.1f}×)")  # fmt: skip

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    fixed = ort.InferenceSession(
        str(package_file("weights/mb1_120x120.onnx")), opts, providers=["CPUExecutionProvider"]
    )
    teacher = tddfa.Tddfa(passes=1, threads=1)
    rois = np.stack([tddfa.roi_from_bbox(tddfa.nominal_box(v)) for v in views])
    x = PRESETS["3ddfa_v2"].numpy_input(np.stack([tddfa.crop(v.image, r) for v, r in zip(views, rois, strict=True)]))
    t_fixed = cpu(lambda: [fixed.run(None, {"input": x[i : i + 1]}) for i in range(n)], n)
    t_dyn = cpu(lambda: teacher.net.session.run(None, {"input": x}), n)
    t_full = cpu(lambda: teacher(views), n)
    print(f"3DDFA_V2 network per view: one view per run {t_fixed * 1e3:.2f} ms, batch {n} {t_dyn * 1e3:.2f} ms "
          f"({t_fixed / t_dyn:.2f}×); teacher with crops + decode, 2 passes: {2 * t_full * 1e3:.2f} ms")  # fmt: skip

    mean_face = load_mean_face()
    pts = np.stack([s.landmarks for s in batched(views)])
    t_batch = cpu(lambda: fit_pose_batch(pts, mean_face), n)
    t_single = cpu(lambda: [fit_pose(p, mean_face) for p in pts], n)
    t_old = cpu(lambda: [old_fit_pose(p, mean_face) for p in pts[: max(8, n // 4)]], max(8, n // 4))
    print(f"pose fit per sample: 0.1.0 scipy {t_old * 1e6:.0f} µs, fit_pose {t_single * 1e6:.0f} µs, "
          f"fit_pose_batch {t_batch * 1e6:.0f} µs: {t_old / t_batch:.1f}× vs 0.1.0, "
          f"{t_single / t_batch:.1f}× vs fit_pose")  # fmt: skip


if __name__ == "__main__":
    main()
