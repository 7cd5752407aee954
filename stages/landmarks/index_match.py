"""`pltd index-match`: learn the MediaPipe 468→68 index map from a run."""

from __future__ import annotations

import numpy as np

from pltd.stages.fetch import Fetcher
from pltd.stages.images import ImageProblem, decode_rgb
from pltd.stages.landmarks.detect import FaceDetector
from pltd.stages.landmarks.mesh_map import learn_index_map
from pltd.stages.landmarks.views import make_views, seed_of


def paired_outputs(rows: list[dict], teacher, mesh_source, views_per_image: int = 2, size: int = 256):
    """Teacher 68 points and MediaPipe meshes on the same views, for every view both could label."""
    detector = FaceDetector()
    teacher_pts, meshes = [], []
    with Fetcher() as fetch:
        for row in rows:
            try:
                image = decode_rgb(fetch.bytes_of(row))
            except ImageProblem:
                continue
            box = np.asarray(row["bbox"], float) if row.get("bbox") else detector(image)
            if box is None:
                continue
            views = make_views(image, box, views_per_image, size, seed_of(row["image_id"]))
            for t, m in zip(teacher(views), mesh_source(views), strict=True):
                if t is not None and m is not None:
                    teacher_pts.append(t.landmarks)
                    meshes.append(m.mesh)
    return teacher_pts, meshes


def index_map_from(rows, teacher, mesh_source, views_per_image: int = 2):
    t, m = paired_outputs(rows, teacher, mesh_source, views_per_image)
    if len(t) < 10:
        raise ValueError(f"only {len(t)} views labelled by both sources; index matching needs at least 10")
    idx, err = learn_index_map(t, m)
    return idx, err, len(t)
