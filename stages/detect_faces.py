"""Face-detection front-end for raw photos (after YOLOMT's joint detection): one ingest row per
detected face, not per photo, so photo collections without dataset boxes can be labelled too.

A source without dataset boxes (`image_folder` with `detect:`) runs a detector that ships offline:
- `blazeface`: MediaPipe's BlazeFace short-range model (`face_detection_short_range.tflite` in the
  mediapipe 0.10.21 wheel) through `mp.solutions.face_detection`; its box runs from the brows to the
  mouth, so it is extended down by 15 % to the chin, as `stages/landmarks/detect.py` does;
- `dlib_cnn`: dlib's MMOD CNN face detector (`mmod_human_face_detector.dat` in face-recognition-models),
  `upsample` times upsampled (its 80 px window finds faces down to ~40 px after one upsampling).

Faces are ordered left to right (box x0, then y0): face k of photo `item` has the image id of
`item#face<k>` — stable while the detector returns the same boxes, whatever their scores. A face
whose box's shorter side is under `min_face_size` pixels is a rejected row `face_too_small` (with its
face index); a photo without any detection is one rejected row `no_face` (the photo's own id).
Accounting: a photo gives its faces' rows, or one rejected row; `faces_beyond_first` counts the rows
beyond one per photo, so that photos in + faces beyond the first = rows out + rejected rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pltd import worker_cache
from pltd.schemas import image_id
from pltd.stages.images import Header, ImageProblem, decode_rgb

CHIN = 1.15  # BlazeFace's box height × this reaches the chin (the landmarks stage's detector does the same)


class DetectOptions(BaseModel):
    """A source's face-detection options (`image_folder` sources: `detect`, `min_face_size`, …); a mixin
    of a reader's options (not a `ReaderOptions` itself: the readers import this module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detect: Literal["none", "blazeface", "dlib_cnn"] = "none"  # none: one row per photo, as before
    min_face_size: int = Field(32, ge=1)  # shorter side of a detected box, pixels; smaller: face_too_small
    min_detection_score: float = Field(0.5, ge=0.0, le=1.0)  # BlazeFace's confidence threshold
    upsample: int = Field(0, ge=0, le=3)  # dlib_cnn: image upsamplings before detecting


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in source pixels, clipped to the image
    score: float  # BlazeFace's confidence in [0, 1]; dlib MMOD's detection score (unbounded, > 0 kept)

    @property
    def side(self) -> float:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


def _clip(x0, y0, x1, y1, w, h) -> tuple[float, float, float, float]:
    return (float(max(0.0, x0)), float(max(0.0, y0)), float(min(w, x1)), float(min(h, y1)))


class BlazeFace:
    def __init__(self, min_score: float):
        import mediapipe as mp

        self.det = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_score)

    def __call__(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        faces = []
        for d in self.det.process(image).detections or []:
            b = d.location_data.relative_bounding_box
            x0, y0 = b.xmin * w, b.ymin * h
            faces.append(Face(_clip(x0, y0, x0 + b.width * w, y0 + b.height * h * CHIN, w, h), float(d.score[0])))
        return faces


class DlibCNN:
    def __init__(self, upsample: int):
        import dlib

        from pltd.stages.landmarks.sources import shipped_model

        self.det = dlib.cnn_face_detection_model_v1(shipped_model("mmod_human_face_detector.dat"))
        self.upsample = upsample

    def __call__(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        out = []
        for d in self.det(np.ascontiguousarray(image), self.upsample):
            r = d.rect
            out.append(Face(_clip(r.left(), r.top(), r.right() + 1, r.bottom() + 1, w, h), float(d.confidence)))
        return out


def detector(o: DetectOptions):
    """The source's detector, built once per worker process."""
    key = ("detect_faces", o.detect, o.min_detection_score, o.upsample)
    make = {"blazeface": lambda: BlazeFace(o.min_detection_score), "dlib_cnn": lambda: DlibCNN(o.upsample)}
    return worker_cache.cached(key, make[o.detect])


def detect_faces(image: np.ndarray, o: DetectOptions) -> list[Face]:
    """Every face the source's detector finds, left to right (the order of the face index)."""
    return sorted(detector(o)(image), key=lambda f: (f.box[0], f.box[1]))


def face_location(item: str, k: int) -> str:
    """The location hashed into face k's image id (`pltd.schemas.image_id(source, location)`)."""
    return f"{item}#face{k}"


def faces_beyond_first(accepted: pa.Table, rejected: pa.Table) -> int:
    """Rows of an ingest partition beyond one per photo: faces with index ≥ 1, accepted or rejected."""
    n = 0
    for t in (accepted, rejected):
        if "face_index" in t.column_names and t.num_rows:
            idx = t.column("face_index").to_numpy(zero_copy_only=False)
            n += int(np.sum(np.nan_to_num(idx.astype(float), nan=0.0) >= 1))
    return n


def add_detected_faces(rows, source: str, item: str, label, url: str, data: bytes, header: Header, o, settings) -> None:
    """The ingest rows of one verified photo (`rows`: a `readers.rows.Rows`): one per face, or `no_face`."""
    try:
        image = decode_rgb(data, settings.max_image_pixels)
    except ImageProblem as exc:
        rows.reject(image_id(source, item), exc.reason, exc.detail, url)
        return
    faces = detect_faces(image, o)
    if not faces:
        rows.reject(
            image_id(source, item), "no_face", f"{o.detect} found no face in {header.width}x{header.height}", url
        )
        return
    for k, f in enumerate(faces):
        iid = image_id(source, face_location(item, k))
        if f.side < o.min_face_size:
            w, h = f.box[2] - f.box[0], f.box[3] - f.box[1]
            detail = (
                f"face {k} of {len(faces)}: {w:.0f}x{h:.0f} px < min_face_size {o.min_face_size} (score {f.score:.2f})"
            )
            rows.reject(iid, "face_too_small", detail, url, face_index=k)
            continue
        rows.accept_image(iid, url, len(data), header, source_label=label, offset=0, bbox=list(f.box),
                          face_index=k, face_score=f.score)  # fmt: skip
