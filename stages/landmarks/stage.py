"""The landmarks stage (Algorithm 1) over one partition of ingest rows. No Dask here.

Per chunk of `batch_images` images: decode and box each image, make its views once, run the
teacher, the second source and the blink network once over every view of the chunk (batched),
then the algorithm per image (`algorithm.label_views`), the batched pose fit, and the rows
(`rows.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pltd import worker_cache
from pltd.schemas import LANDMARKS, REJECTED
from pltd.stages.fetch import Fetcher
from pltd.stages.images import ImageProblem, decode_rgb
from pltd.stages.landmarks.algorithm import (
    ImageLabel,
    Sigma,
    cross_check_poses,
    fill_fitted_poses,
    fit_labels,
    label_views,
    pose_mode,
    spread_points,
)
from pltd.stages.landmarks.blink import eye_aspect_ratio, eye_crops, sigma_from_ear
from pltd.stages.landmarks.rows import audit_columns, label_row, rejection_detail, truth_in_style
from pltd.stages.landmarks.settings import LandmarkSettings
from pltd.stages.landmarks.sources import Sample
from pltd.stages.landmarks.views import View, make_views, seed_of
from pltd.stages.problems import reason_of, rejected_row

STAGE = "landmarks"


class Models:
    """Everything a worker needs, built once per worker process (see `worker_cache`)."""

    def __init__(self, s: LandmarkSettings):
        from pltd.stages.landmarks.detect import FaceDetector
        from pltd.stages.landmarks.mean_face import load_mean_face
        from pltd.stages.landmarks.mesh_map import load_index_map

        mean_face = self.mean_face = load_mean_face(s.mean_face)
        chosen = s.backends()  # each role's backend and its manifest options (the start-up checks read the same)
        self.teacher = chosen["teacher"].backend(mean_face=mean_face, **chosen["teacher"].options)
        self.second = None
        if "second" in chosen:
            index_map = load_index_map(s.index_map)
            self.second = chosen["second"].backend(mean_face=mean_face, index_map=index_map, **chosen["second"].options)
        self.blink = chosen["blink"].backend(**chosen["blink"].options)
        self.detector = FaceDetector()


def models_for(s: LandmarkSettings) -> Models:
    """The worker's models for these settings. Keyed by the whole frozen settings, so no field that
    decides a model can be left out of the key; one entry per worker (a changed setting on a
    long-lived cluster rebuilds rather than keeps both)."""
    return worker_cache.cached(("landmarks", s.model_dump_json()), lambda: Models(s), slot="landmarks")


@dataclass
class Work:
    """One image of a chunk and what the batched passes made of it."""

    row: dict
    image: np.ndarray
    box: np.ndarray
    views: list[View]
    teacher: list[Sample | None] | None = None
    second: list[Sample | None] | None = None
    sigmas: list[Sigma | None] | None = None


def run_sources(work: list[Work], s: LandmarkSettings, m: Models) -> None:
    """The teacher, the second source and the blink backend, each once over every view of the chunk."""
    flat = [v for w in work for v in w.views]
    teacher = m.teacher(flat) if flat else []
    second = m.second(flat) if m.second is not None and flat else [None] * len(flat)
    pose_from = pose_mode(s, m.teacher)
    if pose_from in ("own", "teacher"):  # per-sample poses are needed: fitted ones in one batch
        teacher = fill_fitted_poses(teacher, m.mean_face)
        second = fill_fitted_poses(second, m.mean_face) if pose_from == "own" else second
    sigmas = blink_sigmas(flat, teacher, second, s, m)
    start = 0
    for w in work:
        part = slice(start, start + len(w.views))
        w.teacher, w.second, w.sigmas = teacher[part], second[part], sigmas[part]
        start = part.stop


def blink_sigmas(views: list[View], teacher: list[Sample | None], second: list[Sample | None], s, m) -> list:
    """σ per view and eye: from the view's FaceMesh (EAR), or from the blink network on the teacher's
    eye crops, every crop of the chunk in one batch."""
    sig: list[Sigma | None] = [None] * len(views)
    if m.blink.reads == "mesh":
        for i, smp in enumerate(second):
            if smp is not None and smp.mesh is not None:
                sig[i] = tuple(sigma_from_ear(e) for e in eye_aspect_ratio(smp.mesh))
    elif m.blink.reads == "eye_crops":
        owners = [i for i, t in enumerate(teacher) if t is not None]
        crops = [c for i in owners for c in eye_crops(views[i].image, teacher[i].landmarks, m.blink.size)]
        probs = m.blink(crops).reshape(-1, 2) if crops else np.zeros((0, 2))
        for i, p in zip(owners, probs, strict=True):
            sig[i] = (float(p[0]), float(p[1]))
    return sig


def label_chunk(work: list[Work], s: LandmarkSettings, m: Models) -> list[ImageLabel]:
    """Algorithm 1 for every image of a chunk: batched sources, the algorithm per image, batched pose fit."""
    run_sources(work, s, m)
    pose_from, points = pose_mode(s, m.teacher), spread_points(s, m.teacher)
    styles = (m.teacher.jaw_style, m.second.jaw_style if m.second is not None else s.jaw_style)
    refs = (m.teacher.reference, m.second.reference if m.second is not None else False)
    labels = [label_views(w.views, w.teacher, w.second, w.sigmas, s, pose_from, points, styles, refs) for w in work]
    if pose_from in ("fit", "blend"):
        fit_labels(labels, m.mean_face, blend=pose_from == "blend")
    cross_check_poses(labels, [w.row for w in work], [w.image.shape[1::-1] for w in work], s, m.mean_face)
    return labels


def label_image(image: np.ndarray, box: np.ndarray, image_id: str, s: LandmarkSettings, m: Models):
    """Algorithm 1 for one image (tests, tools): (Fit, ImageLabel), coordinates in source pixels."""
    views = make_views(image, box, s.views, s.view_size, seed_of(image_id), s.mirror)
    w = Work({"image_id": image_id}, image, box, views)
    label = label_chunk([w], s, m)[0]
    return label.fit, label


def _chunks(rows: list[dict], n: int) -> Iterator[list[dict]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def label_partition(ingest: pa.Table, s: LandmarkSettings) -> tuple[pa.Table, pa.Table]:
    """Label every ingest row: accepted rows (LANDMARKS) and rejected rows (REJECTED)."""
    m = models_for(s)
    out: list[dict] = []
    rej: list[dict] = []
    with Fetcher() as fetch:
        for chunk in _chunks(ingest.to_pylist(), s.batch_images):
            work = []
            for row in chunk:
                try:
                    image = decode_rgb(fetch.bytes_of(row))
                except (ImageProblem, OSError) as exc:
                    rej.append(rejected_row(row, STAGE, *reason_of(exc)))
                    continue
                box = np.asarray(row["bbox"], float) if row.get("bbox") else m.detector(image)
                if box is None:
                    rej.append(rejected_row(row, STAGE, "no_face", "no face box from the dataset and none detected"))
                    continue
                views = make_views(image, box, s.views, s.view_size, seed_of(row["image_id"]), s.mirror)
                work.append(Work(row, image, box, views))
            for w, label in zip(work, label_chunk(work, s, m), strict=True):
                truth = truth_in_style(w.row, s.jaw_style)
                gt = truth is not None
                if label.fit.reason is not None and not gt:
                    rej.append(rejected_row(w.row, STAGE, label.fit.reason, rejection_detail(label, s.t_d)))
                    continue
                rec = label_row(w.row, label, w.box, truth)
                if gt:
                    t0, s0 = fill_fitted_poses([w.teacher[0], w.second[0]], m.mean_face)
                    rec |= audit_columns(label, w.views[0], t0, s0)
                out.append(rec)
    return pa.Table.from_pylist(out, schema=LANDMARKS), pa.Table.from_pylist(rej, schema=REJECTED)
