"""MediaPipe FaceMesh 468 → iBUG 68: the index map, learned as the paper does (IndexMatching).

For each of the 68 teacher points, the mesh vertex whose position agrees best with it over many
faces (least mean distance, normalised by face size). `learn_index_map` is the algorithm;
`stages/data/mediapipe_index_map.json` is the shipped default (its provenance is in the file).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from pltd.stages.landmarks.geometry import face_size


def learn_index_map(teacher: list[np.ndarray], mesh: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """teacher: F arrays of 68x2, mesh: F arrays of 468x2 on the same faces → (68 indices, mean error)."""
    if len(teacher) != len(mesh) or not teacher:
        raise ValueError(
            f"need the same non-zero number of teacher and mesh results, got {len(teacher)} and {len(mesh)}"
        )
    total = np.zeros((68, np.asarray(mesh[0]).shape[0]))
    for t, m in zip(teacher, mesh, strict=True):
        t, m = np.asarray(t, float).reshape(68, 2), np.asarray(m, float)[:, :2]
        total += np.linalg.norm(t[:, None, :] - m[None, :, :], axis=2) / face_size(t)
    total /= len(teacher)
    idx = total.argmin(axis=1)
    return idx, total[np.arange(68), idx]


def default_index_map_path() -> Path:
    return Path(str(resources.files("pltd.stages") / "data" / "mediapipe_index_map.json"))


def load_index_map(path: str | Path | None = None) -> np.ndarray:
    p = Path(path) if path else default_index_map_path()
    if not p.is_file():
        raise FileNotFoundError(f"MediaPipe index map {p} not found (make one with `pltd index-match`)")
    doc = json.loads(p.read_text())
    idx = np.asarray(doc["indices"], dtype=int)
    if idx.shape != (68,) or idx.min() < 0 or idx.max() >= 468:
        raise ValueError(f"{p}: 'indices' must be 68 integers in 0..467")
    return idx


def save_index_map(path: str | Path, indices: np.ndarray, errors: np.ndarray, provenance: dict) -> None:
    doc = {
        "indices": [int(i) for i in indices],
        "mean_error_over_face_size": [round(float(e), 5) for e in errors],
        "provenance": provenance,
    }
    Path(path).write_text(json.dumps(doc, indent=1))
