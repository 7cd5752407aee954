"""Landmarks stage CPU time per image: pltd 0.1.0 (f0e7dd0) vs now, same images, same run.

Both run `label_partition` (Algorithm 1 with the embedded sample's settings: dlib68 + MediaPipe +
EAR, N = 8) on the same sample VGGFace2 images with their boxes, each in its own process with one
thread per library; the figure is process CPU time (all threads) per image after a warm-up that
loads the models. Target: new ≤ 0.5× old.

    git worktree add /tmp/old f0e7dd0     # the 0.1.0 code (top-level `pipeline`, `stages` packages)
    python benchmarks/landmarks_stage_cpu.py [--old /tmp/old] [--images 48]   # also runs facemesh_passes: 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import pyarrow as pa
    rows = json.loads(sys.argv[2])
    if sys.argv[1] == "old":
        from pipeline.schemas import INGEST
        from stages.landmarks.stage import LandmarkSettings, label_partition
    else:
        from pltd.schemas import INGEST
        from pltd.stages.landmarks.settings import LandmarkSettings
        from pltd.stages.landmarks.stage import label_partition
    s = LandmarkSettings(**json.loads(sys.argv[3]))
    table = pa.Table.from_pylist(rows, schema=INGEST)
    label_partition(table.slice(0, 2), s)  # warm-up: models load once per worker
    t = time.process_time()
    ok, rej = label_partition(table.slice(2), s)
    print(json.dumps({"cpu": time.process_time() - t, "images": table.num_rows - 2, "ok": ok.num_rows}))
    """
)


def sample_rows(root: Path, n: int) -> list[dict]:
    csv = root / "vggface2" / "bb_landmark" / "loose_bb_train.csv"
    rows = []
    for line in csv.read_text().splitlines()[1:]:
        name, x, y, w, h = (v.strip('"') for v in line.split(","))
        path = root / "vggface2" / "train" / f"{name}.jpg"
        if not path.is_file():
            continue
        x, y, w, h = (float(v) for v in (x, y, w, h))
        rows.append({"image_id": name, "source": "vggface2", "source_label": name.split("/")[0],
                     "source_path": str(path), "bbox": [x, y, x + w, y + h]})  # fmt: skip
        if len(rows) == n + 2:
            break
    return rows


def run(kind: str, rows: list[dict], old: str, settings: dict | None = None) -> dict:
    settings = settings or {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "GLOG_minloglevel": "2"}
    if kind == "old":
        env["PYTHONPATH"] = old
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, json.dumps(rows), json.dumps(settings)], capture_output=True, text=True,
        env=env,
        cwd=old if kind == "old" else None, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="/tmp/old")
    ap.add_argument("--images", type=int, default=48)
    args = ap.parse_args()
    from pltd.pipeline.sample import default_sample_dir, make_sample

    rows = sample_rows(make_sample(default_sample_dir()), args.images)
    old = run("old", rows, args.old)
    per_old = old["cpu"] / old["images"] * 1e3
    print(f"images: {old['images']}; 0.1.0: {per_old:.0f} ms CPU per image ({old['ok']} accepted)")
    for label, settings in (
        ("now (default, FaceMesh 2 passes)", {}),
        ("now, facemesh_passes: 1", {"facemesh_passes": 1}),
    ):
        new = run("new", rows, args.old, settings)
        per_new = new["cpu"] / new["images"] * 1e3
        print(f"{label}: {per_new:.0f} ms CPU per image ({new['ok']} accepted); "
              f"ratio to 0.1.0 {per_new / per_old:.2f}x (target <= 0.5x)")  # fmt: skip


if __name__ == "__main__":
    main()
