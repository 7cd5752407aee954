"""Conformance: verification accuracy and `.bin` loading against insightface.

Reference: deepinsight/insightface, `recognition/arcface_torch/eval/verification.py`, commit
166d74309f060d23d002dc60308bbf870d0ab753 (`calculate_roc`, `calculate_accuracy`, `evaluate`,
`load_bin`). `_insightface_accuracy` below follows that code line by line (KFold, the threshold loop,
`np.less`, `np.argmax`), so the expected numbers come from insightface's algorithm, not pltd's.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

from pltd.stages.identities.calibrate import UnsafePickle, load_bin
from pltd.trainer.evaluation.metrics import squared_distances, ten_fold_accuracy


def _calculate_accuracy(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    return float(tp + tn) / dist.size


def _insightface_accuracy(embeddings, actual_issame, nrof_folds=10):
    """`evaluate` → `calculate_roc` with pca = 0: the accuracy part, as insightface writes it."""
    thresholds = np.arange(0, 4, 0.01)
    embeddings1, embeddings2 = embeddings[0::2], embeddings[1::2]
    actual_issame = np.asarray(actual_issame)
    k_fold = KFold(n_splits=nrof_folds, shuffle=False)
    accuracy = np.zeros(nrof_folds)
    indices = np.arange(min(len(actual_issame), embeddings1.shape[0]))
    diff = np.subtract(embeddings1, embeddings2)
    dist = np.sum(np.square(diff), 1)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        acc_train = np.zeros(len(thresholds))
        for threshold_idx, threshold in enumerate(thresholds):
            acc_train[threshold_idx] = _calculate_accuracy(threshold, dist[train_set], actual_issame[train_set])
        best_threshold_index = np.argmax(acc_train)
        accuracy[fold_idx] = _calculate_accuracy(
            thresholds[best_threshold_index], dist[test_set], actual_issame[test_set]
        )
    return np.mean(accuracy), np.std(accuracy)


def _pairs(n: int, seed: int, same_cos=(0.45, 0.15), diff_cos=(0.10, 0.12), dim: int = 64):
    """Unit embeddings (2n, dim), pair k = rows 2k, 2k+1, with cosines drawn per class."""
    rng = np.random.default_rng(seed)
    issame = rng.random(n) < 0.5
    cos = np.clip(np.where(issame, rng.normal(*same_cos, n), rng.normal(*diff_cos, n)), -1, 1)
    a = normalize(rng.standard_normal((n, dim)))
    u = rng.standard_normal((n, dim))
    u = normalize(u - np.sum(u * a, axis=1, keepdims=True) * a)
    b = cos[:, None] * a + np.sqrt(1 - cos[:, None] ** 2) * u
    emb = np.empty((2 * n, dim))
    emb[0::2], emb[1::2] = a, b
    return emb, issame


@pytest.mark.parametrize("n", [1003, 6000])
def test_ten_fold_accuracy_equals_insightface_and_differs_from_plain_distance(n):
    """Conformance: pltd's accuracy and std equal insightface's on the same embeddings; the plain
    (not squared) distance that pltd used before gives a different accuracy on these sets (≈ 90 %
    accurate, as CFP-FP; the two grids pick different thresholds)."""
    emb, issame = _pairs(n, seed=1)
    ref_acc, ref_std = _insightface_accuracy(emb, issame)
    d2 = squared_distances(emb[0::2], emb[1::2])
    acc, std, thr = ten_fold_accuracy(d2, issame)
    assert acc == pytest.approx(ref_acc, abs=1e-12) and std == pytest.approx(ref_std, abs=1e-12)
    assert 0 < thr < 4  # insightface's units: squared distance of unit vectors
    old, _, _ = ten_fold_accuracy(np.sqrt(d2), issame)
    assert old != pytest.approx(ref_acc, abs=1e-9)


def test_squared_threshold_by_hand():
    """Conformance (documented formula): 4 pairs at squared distances 0.3, 0.5, 0.7, 0.9 with flags
    T, T, F, F and 2 folds. Fold 1 trains on pairs 3–4 (both different): every threshold ≤ 0.70
    is right on both, the first is 0.00, so the test pairs 1–2 (same) are both wrong: 0.0. Fold 2
    trains on pairs 1–2: the first threshold above 0.5 is 0.51 (0.5 < 0.51 in squared units; in
    plain units 0.51 would be 0.51² = 0.26 < 0.5), and on the test pairs 0.7, 0.9 ≥ 0.51: both
    right, 1.0. Mean 0.5, std 0.5, mean threshold (0 + 0.51) / 2."""
    d2, same = np.array([0.3, 0.5, 0.7, 0.9]), np.array([True, True, False, False])
    acc, std, thr = ten_fold_accuracy(d2, same, folds=2)
    assert (acc, std, thr) == pytest.approx((0.5, 0.5, 0.255))
    # insightface's own code on embeddings with exactly these squared distances agrees
    emb = np.zeros((8, 2))
    for k, d in enumerate(d2):
        c = 1 - d / 2
        emb[2 * k], emb[2 * k + 1] = [1, 0], [c, np.sqrt(1 - c * c)]
    assert _insightface_accuracy(emb, same, nrof_folds=2) == pytest.approx((0.5, 0.5))


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_protocol_5_bin_with_numpy_arrays_loads(tmp_path):
    """Conformance (real file format): a `.bin` whose images are numpy uint8 arrays and whose flags
    are a numpy bool array, pickled with protocol 5 (numpy's `_frombuffer` + in-band buffers),
    loads through the restricted unpickler into the same JPEG bytes."""
    jpegs = [_jpeg(i) for i in range(4)]
    payload = ([np.frombuffer(j, dtype=np.uint8) for j in jpegs], np.array([True, False]))
    raw = pickle.dumps(payload, protocol=5)
    assert b"_frombuffer" in raw  # the protocol-5 reconstruction path, not _reconstruct
    (tmp_path / "p5.bin").write_bytes(raw)
    bins, issame = load_bin(tmp_path / "p5.bin")
    assert bins == jpegs and issame.tolist() == [True, False]
    assert Image.open(io.BytesIO(bins[3])).size == (16, 16)


class _Shell:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


class _ObjectArray:
    def __reduce__(self):  # protocol-5 path abused to build an object array from raw memory
        from numpy.core.numeric import _frombuffer

        return (_frombuffer, (bytearray(8), np.dtype("O"), (1,), "C"))


def test_pickles_that_would_run_code_are_refused(tmp_path):
    """A protocol-5 pickle referencing os.system is refused before anything runs; one that asks
    `_frombuffer` for an object array is refused by numpy (no object array from raw memory)."""
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_Shell()], [True]), protocol=5))
    with pytest.raises(UnsafePickle, match="refusing to load"):
        load_bin(tmp_path / "evil.bin")
    (tmp_path / "obj.bin").write_bytes(pickle.dumps(([_ObjectArray(), b""], [True]), protocol=5))
    with pytest.raises(ValueError, match="OBJECT array"):
        load_bin(tmp_path / "obj.bin")
