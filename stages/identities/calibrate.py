"""Verification pairs and cosine thresholds (Algorithm 2, step 3: the threshold that maximises
verification accuracy, as the paper does on LFW).

Pair files: insightface `.bin` — a pickle of (list of encoded images, list of is-same flags), image
2k and 2k+1 forming pair k — read with an unpickler that refuses every global it has not been
told is safe, so a crafted file cannot run code; or LFW `pairs.txt` with an image folder.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pltd import safe_pickle

# A .bin is a pickle: loaded with the ground package's restricted unpickler (numpy arrays, bytes).
UnsafePickle = safe_pickle.UnsafePickle


def load_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """Images and is-same flags of an insightface verification `.bin`."""
    data = Path(path).read_bytes()
    try:
        bins, issame = safe_pickle.loads(data, encoding="bytes")
    except UnsafePickle:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not an insightface .bin pair file ({type(exc).__name__}: {exc})") from None
    bins = [bytes(b) for b in bins]
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{path}: {len(bins)} images for {len(issame)} pairs (expected twice as many)")
    return bins, issame


def save_bin(path: str | Path, bins: list[bytes], issame: list[bool]) -> None:
    """Write a `.bin` as insightface does (pickle of the two lists)."""
    with open(path, "wb") as f:
        pickle.dump((list(bins), list(issame)), f, protocol=pickle.HIGHEST_PROTOCOL)


def load_pairs_txt(pairs: str | Path, images: str | Path, ext: str = "jpg") -> tuple[list[bytes], np.ndarray]:
    """LFW `pairs.txt` (header line, then `name i j` or `name1 i name2 j`) with `images/name/name_000i.jpg`."""
    root = Path(images)
    lines = [ln.split() for ln in Path(pairs).read_text().splitlines()[1:] if ln.strip()]
    bins, same = [], []
    for n, f in enumerate(lines, 2):
        if len(f) == 3:
            a, b, s = (f[0], int(f[1])), (f[0], int(f[2])), True
        elif len(f) == 4:
            a, b, s = (f[0], int(f[1])), (f[2], int(f[3])), False
        else:
            raise ValueError(f"{pairs}: line {n}: expected 3 or 4 fields, got {len(f)}")
        for name, i in (a, b):
            p = root / name / f"{name}_{i:04d}.{ext}"
            if not p.is_file():
                raise FileNotFoundError(f"{pairs}: line {n}: image {p} not found")
            bins.append(p.read_bytes())
        same.append(s)
    return bins, np.asarray(same, bool)


def best_threshold(sims: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The cosine threshold (midway between neighbouring scores) with the best accuracy, and that accuracy."""
    order = np.argsort(sims)
    s, y = sims[order], issame[order].astype(np.int64)
    # threshold just above s[k-1]: predicted same for s[k:]; accuracy = negatives below + positives above
    neg_below = np.r_[0, np.cumsum(1 - y)]
    pos_above = y.sum() - np.r_[0, np.cumsum(y)]
    acc = (neg_below + pos_above) / len(s)
    k = int(np.argmax(acc))
    lo = s[k - 1] if k > 0 else s[0] - 1e-3
    hi = s[k] if k < len(s) else s[-1] + 1e-3
    return float((lo + hi) / 2), float(acc[k])


def pair_similarities(bins: list[bytes], network, landmarker) -> np.ndarray:
    """Cosine of each pair: decode, 68 landmarks (to align as the network expects), embed."""
    from pltd.stages.images import decode_rgb

    images = [decode_rgb(b) for b in bins]
    lms = [landmarker(img) for img in images]
    emb = network(images, lms)
    return np.einsum("nd,nd->n", emb[0::2], emb[1::2])


def whole_image_landmarker():
    """68 points for an already cropped face (pair files hold crops): dlib's predictor, two passes."""
    from pltd.stages.landmarks.sources import create_source
    from pltd.stages.landmarks.views import make_views

    dlib68 = create_source("dlib68", mean_face=None)

    def run(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        box = np.array([0.12 * w, 0.12 * h, 0.88 * w, 0.95 * h])
        view = make_views(image, box, 1, 256, seed=0)[0]
        return view.to_source(dlib68([view])[0].landmarks)

    return run
