"""The label audit per source with dlib68 vs 3DDFA_V2 as the teacher, on the embedded
sample's 300W-LP renders, without Dask. Caution: the sample's pt2d is the mean of dlib's and
MediaPipe's points and its Pose_Para assumes yaw = pitch = 0 (pipeline/sample.py): a reference that
favours dlib68 by construction, not ground truth.

    python benchmarks/label_audit.py [--images 24]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from pltd.pipeline.plan import make_plan, read_partition
from pltd.pipeline.sample import default_sample_dir, make_sample
from pltd.stages.ingest import IngestSettings, ingest_partition
from pltd.stages.landmarks.audit import audit, format_audit
from pltd.stages.landmarks.settings import LandmarkSettings
from pltd.stages.landmarks.stage import label_partition
from pltd.stages.readers.base import ReaderOptions, Source


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=24)
    n = ap.parse_args().images
    root = make_sample(os.environ.get("PLTD_SAMPLE_DIR") or default_sample_dir())
    run = tempfile.mkdtemp(prefix="pltd-audit-")
    src = Source("300w_lp", "300w_lp", str(root / "300w_lp"), ReaderOptions())
    make_plan(run, src, 10_000)
    rows = ingest_partition(src, read_partition(run, src.name, 0), IngestSettings())[0].slice(0, n)
    for teacher in ("dlib68", "3ddfa_v2"):
        t0 = time.process_time()
        settings = LandmarkSettings(teacher=teacher, jaw_style="2d")  # the reference is pt2d: 2D-style
        table, rejected = label_partition(rows, settings)
        dt = (time.process_time() - t0) / rows.num_rows
        print(
            f"--- teacher {teacher}: {rows.num_rows} images, {dt * 1e3:.0f} ms CPU/image, {rejected.num_rows} rejected"
        )
        for line in format_audit(audit(table)):
            print(line)


if __name__ == "__main__":
    main()
