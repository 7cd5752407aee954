"""Conformance: IJB-C 1:1 features, template scores and TAR@FAR against insightface.

Reference: deepinsight/insightface, `recognition/arcface_torch/eval_ijbc.py`, commit
1b8d9281f16044b1dccafacc191ba3ddb5612022: `use_norm_score = True`, `use_detector_score = True`,
`use_flip_test = True` (flip features added, not normalised, × faceness = the last column of
`ijbc_name_5pts_score.txt`), `image2template_feature`, `verification`, and the TPR@FPR table
(`roc_curve(label, score)`, `np.flipud`, `min(zip(abs(fpr - x), range(len(fpr))))`). The helpers
prefixed `_insightface_` follow that code line by line.
"""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.preprocessing
from sklearn.metrics import roc_curve

from pltd.trainer.evaluation.metrics import tar_at_far
from pltd.trainer.evaluation.protocols import image_features, pair_scores, read_ijbc_meta, template_features

X_LABELS = [10**-6, 10**-5, 10**-4, 10**-3, 10**-2, 10**-1]


def _insightface_tpr_row(label, score):
    fpr, tpr, _ = roc_curve(label, score)
    fpr = np.flipud(fpr)
    tpr = np.flipud(tpr)  # select largest tpr at same fpr
    row = []
    for fpr_iter in np.arange(len(X_LABELS)):
        _, min_index = min(list(zip(abs(fpr - X_LABELS[fpr_iter]), range(len(fpr)), strict=False)))
        row.append(tpr[min_index])
    return row


def _insightface_image2template_feature(img_feats, templates, medias):
    unique_templates = np.unique(templates)
    template_feats = np.zeros((len(unique_templates), img_feats.shape[1]))
    for count_template, uqt in enumerate(unique_templates):
        (ind_t,) = np.where(templates == uqt)
        face_norm_feats = img_feats[ind_t]
        face_medias = medias[ind_t]
        unique_medias, unique_media_counts = np.unique(face_medias, return_counts=True)
        media_norm_feats = []
        for u, ct in zip(unique_medias, unique_media_counts, strict=True):
            (ind_m,) = np.where(face_medias == u)
            if ct == 1:
                media_norm_feats += [face_norm_feats[ind_m]]
            else:
                media_norm_feats += [np.mean(face_norm_feats[ind_m], axis=0, keepdims=True)]
        media_norm_feats = np.array(media_norm_feats)
        template_feats[count_template] = np.sum(media_norm_feats, axis=0)
    return sklearn.preprocessing.normalize(template_feats), unique_templates


def _insightface_scores(img_feats, faceness_scores, templates, medias, p1, p2, use_norm_score, use_detector_score):
    img_input_feats = img_feats[:, 0 : img_feats.shape[1] // 2] + img_feats[:, img_feats.shape[1] // 2 :]
    if not use_norm_score:
        img_input_feats = img_input_feats / np.sqrt(np.sum(img_input_feats**2, -1, keepdims=True))
    if use_detector_score:
        img_input_feats = img_input_feats * faceness_scores[:, np.newaxis]
    template_norm_feats, unique_templates = _insightface_image2template_feature(img_input_feats, templates, medias)
    template2id = np.zeros((max(unique_templates) + 1, 1), dtype=int)
    for count_template, uqt in enumerate(unique_templates):
        template2id[uqt] = count_template
    feat1 = template_norm_feats[template2id[p1]]
    feat2 = template_norm_feats[template2id[p2]]
    return np.sum(feat1 * feat2, -1).flatten()


def _ijbc_like(seed=0, n_img=600, dim=32, n_pairs=4000):
    rng = np.random.default_rng(seed)
    ident = rng.integers(0, 40, n_img)
    centres = rng.standard_normal((40, dim))
    templates = ident * 10 + rng.integers(0, 3, n_img) + 1  # 3 templates per identity
    medias = rng.integers(0, 4, n_img) + templates * 100
    # raw flip halves with norms that vary by image (quality), as a network's un-normalised output
    scale = rng.uniform(5, 30, n_img)[:, None]
    plain = (centres[ident] + 1.2 * rng.standard_normal((n_img, dim))) * scale
    flipped = plain + 0.3 * scale * rng.standard_normal((n_img, dim))
    faceness = rng.uniform(0.3, 1.0, n_img).astype(np.float32)
    uniq = np.unique(templates)
    p1, p2 = rng.choice(uniq, n_pairs), rng.choice(uniq, n_pairs)
    return plain, flipped, faceness, templates, medias, p1, p2


@pytest.mark.parametrize("normalise_images,use_faceness", [(False, True), (True, False), (False, False), (True, True)])
def test_pair_scores_equal_insightface(normalise_images, use_faceness):
    """Conformance: for each combination of insightface's switches, pltd's image features →
    templates → pair scores equal the reference's (default: norm kept, × faceness)."""
    plain, flipped, faceness, templates, medias, p1, p2 = _ijbc_like()
    ref = _insightface_scores(np.c_[plain, flipped], faceness, templates, medias, p1, p2,
                              use_norm_score=not normalise_images, use_detector_score=use_faceness)  # fmt: skip
    feats = image_features(plain + flipped, faceness, normalise_images=normalise_images, use_faceness=use_faceness)
    tids, tf = template_features(feats, templates, medias)
    assert np.allclose(pair_scores(tids, tf, p1, p2), ref, atol=1e-12)


def test_the_old_pltd_default_gives_other_scores():
    """The previous pltd default (normalised per image, no faceness) differs from insightface's."""
    plain, flipped, faceness, templates, medias, p1, p2 = _ijbc_like()
    ref = _insightface_scores(np.c_[plain, flipped], faceness, templates, medias, p1, p2, True, True)
    tids, tf = template_features(image_features(plain + flipped, faceness, True, False), templates, medias)
    assert np.abs(pair_scores(tids, tf, p1, p2) - ref).max() > 0.01


def test_tar_at_far_equals_insightface_table():
    """Conformance: TAR@FAR equals insightface's table row, on scores rounded to 0.01 (many ties,
    vertical ROC segments); the lowest-TPR choice pltd made before differs at some FAR."""
    rng = np.random.default_rng(3)
    label = np.r_[np.ones(3000, int), np.zeros(200_000, int)]
    score = np.round(np.r_[rng.normal(0.55, 0.15, 3000), rng.normal(0.0, 0.12, 200_000)], 2)
    ref = _insightface_tpr_row(label, score)
    ours = tar_at_far(score, label, fars=X_LABELS)
    assert list(ours.values()) == pytest.approx(ref, abs=0)
    fpr, tpr, _ = roc_curve(label, score)
    lowest = [tpr[int(np.argmin(np.abs(fpr - f)))] for f in X_LABELS]
    assert any(a != b for a, b in zip(lowest, ref, strict=True))


def test_tar_at_far_by_hand():
    """Conformance (hand computation of insightface's rule): 4 positives, 10 negatives. Scores:
    positives 0.9, 0.8, 0.8, 0.3; negatives 0.85, 0.2 ×9. Thresholds 0.9, 0.85, 0.8, 0.3, 0.2 give
    (FPR, TPR) (0, .25), (.1, .25), (.1, .75), (.1, 1), (1, 1) after the origin (roc_curve drops
    only equally spaced collinear points: none here). Nearest to FAR 0.1: the three points at FPR
    0.1; insightface takes TPR 1.0 (threshold 0.3), the lowest-TPR rule 0.25."""
    score = np.array([0.9, 0.8, 0.8, 0.3, 0.85] + [0.2] * 9)
    label = np.array([1, 1, 1, 1] + [0] * 10)
    fpr, tpr, _ = roc_curve(label, score)
    assert fpr.tolist() == [0, 0, 0.1, 0.1, 0.1, 1] and tpr.tolist() == [0, 0.25, 0.25, 0.75, 1, 1]
    assert tpr[int(np.argmin(np.abs(fpr - 0.1)))] == 0.25  # the rule pltd used before
    assert _insightface_tpr_row(label, score)[5] == 1.0
    assert tar_at_far(score, label, fars=(0.1,))["0.1"] == 1.0


def test_faceness_is_read_from_the_last_column(tmp_path):
    """Real format: `name x1 y1 … x5 y5 score` per line; faceness = the score column; rows of the two
    files must name the same images."""
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "ijbc_face_tid_mid.txt").write_text("1.jpg 5 0\n2.jpg 5 1\n")
    pts = " ".join(["10.0"] * 10)
    (meta / "ijbc_name_5pts_score.txt").write_text(f"1.jpg {pts} 0.93\n2.jpg {pts} 0.41\n")
    (meta / "ijbc_template_pair_label.txt").write_text("5 5 1\n")
    assert read_ijbc_meta(tmp_path)["faceness"].tolist() == pytest.approx([0.93, 0.41])
    (meta / "ijbc_name_5pts_score.txt").write_text(f"2.jpg {pts} 0.93\n1.jpg {pts} 0.41\n")
    with pytest.raises(ValueError, match="different images"):
        read_ijbc_meta(tmp_path)
