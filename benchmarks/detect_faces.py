"""Face-detection front-end: detector time per photo per core.

    python benchmarks/detect_faces.py [--dlib-photos 16]

The embedded sample's VGGFace2 photos (about 230x230 px, one face each) read as an `image_folder`
source through `ingest_partition`, without a detector (the baseline: read + full verification, what
ingest costs today) and with `detect: blazeface` / `dlib_cnn`; then the astronaut photo at 512 and
1024 px through each detector alone. Time per photo is process CPU seconds (all threads) per photo,
i.e. time on one core; wall time is printed beside it. Writes benchmarks/out/detect_faces.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from pltd.pipeline.sample import default_sample_dir, make_sample
from pltd.stages.detect_faces import DetectOptions, detect_faces
from pltd.stages.ingest import ingest_partition
from pltd.stages.readers.base import PLAN, Source
from pltd.stages.readers.folders import ImageFolderOptions
from pltd.stages.readers.rows import IngestSettings


def photos(n: int | None) -> Path:
    """A folder with the sample's good VGGFace2 photos (the first n)."""
    sample = default_sample_dir()
    if not (sample / "vggface2").exists():
        make_sample(sample)
    files = sorted((sample / "vggface2/train").glob("*/0*.jpg"))[:n]
    root = Path(tempfile.mkdtemp(prefix="pltd-detect-"))
    for f in files:
        (root / f.parent.name).mkdir(exist_ok=True)
        shutil.copy(f, root / f.parent.name / f.name)
    return root


def timed_ingest(root: Path, **options) -> dict:
    items = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    plan = pa.Table.from_pylist(
        [{"part": 0, "item": i, "offset": None, "label": i.split("/")[0], "bbox": None} for i in items], schema=PLAN
    )
    src = Source("photos", "image_folder", str(root), ImageFolderOptions(**options))
    if options.get("detect", "none") != "none":  # build the detector outside the timing
        detect_faces(np.zeros((64, 64, 3), np.uint8), DetectOptions(**options))
    cpu, wall = time.process_time(), time.perf_counter()
    acc, rej = ingest_partition(src, plan, IngestSettings())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"photos": len(items), "faces": acc.num_rows, "rejected": rej.num_rows,
            "cpu_ms_per_photo": 1e3 * cpu / len(items), "wall_ms_per_photo": 1e3 * wall / len(items)}  # fmt: skip


def timed_detector(image: np.ndarray, detect: str, repeats: int) -> float:
    o = DetectOptions(detect=detect)
    detect_faces(image, o)
    cpu = time.process_time()
    for _ in range(repeats):
        detect_faces(image, o)
    return 1e3 * (time.process_time() - cpu) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dlib-photos", type=int, default=16, help="photos for dlib_cnn (about 0.5 s each)")
    args = ap.parse_args()
    out: dict = {}
    everything, some = photos(None), photos(args.dlib_photos)
    try:
        base = out["none"] = timed_ingest(everything)
        out["blazeface"] = timed_ingest(everything, detect="blazeface")
        out["none_small"] = timed_ingest(some)
        out["dlib_cnn"] = timed_ingest(some, detect="dlib_cnn")
    finally:
        shutil.rmtree(everything), shutil.rmtree(some)
    for name, ref in (("blazeface", base), ("dlib_cnn", out["none_small"])):
        r = out[name]
        r["ratio_vs_ingest_without_detection"] = r["cpu_ms_per_photo"] / ref["cpu_ms_per_photo"]
        print(f"{name:9} {r['photos']:3} photos → {r['faces']} faces: {r['cpu_ms_per_photo']:7.1f} ms CPU/photo "
              f"(wall {r['wall_ms_per_photo']:.1f}); ingest without detection {ref['cpu_ms_per_photo']:.2f} ms: "
              f"×{r['ratio_vs_ingest_without_detection']:.0f}")  # fmt: skip
    import skimage.data

    astronaut = skimage.data.astronaut()
    for side in (512, 1024):
        img = np.asarray(Image.fromarray(astronaut).resize((side, side), Image.BILINEAR))
        for detect, reps in (("blazeface", 20), ("dlib_cnn", 2)):
            ms = out[f"{detect}_astronaut_{side}px_cpu_ms"] = timed_detector(img, detect, reps)
            print(f"{detect:9} astronaut {side}x{side}: {ms:7.1f} ms CPU per photo")
    dest = Path(__file__).parent / "out" / "detect_faces.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
