"""Evaluation: speed on the CPU, and the size of each protocol change (previous pltd vs reference).

    python benchmarks/evaluate.py [--templates 100000] [--pairs 15658489] [--skip-speed]

Speed: pairs/s of the 10-fold verification metric (6,000 pairs, as LFW), IJB-C template-pair scoring
(100 K templates x 512-d; IJB-C has 15.66 M pairs) and ROC + TAR@FAR, sklearn's `roc_curve` (what
insightface calls, used now) against pltd's previous hand-written ROC (the baseline).

Protocol changes, on synthetic sets (no benchmark dataset ships here), previous pltd → now:
- verification: plain vs squared distance thresholds, accuracy points at 1,003 and 6,000 pairs;
- TAR@FAR: lowest vs highest TPR at the nearest FPR, 2 M negatives, raw and 0.01-rounded scores;
- IJB-C: per-image normalised, no faceness vs insightface's features (pair scores and TAR@FAR);
- AFLW2000-3D: bins [0,30) [30,60) [60,90] vs 3DDFA's [0,30] (30,60] >60 (faces beyond 90° kept);
- Wing: mean vs sum over the 136 coordinates, λ1·Wing at typical errors.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from pltd.trainer.evaluation.metrics import nme, squared_distances, tar_at_far, ten_fold_accuracy, yaw_binned_nme
from pltd.trainer.evaluation.protocols import image_features, pair_scores, template_features

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def old_tar_at_far(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """pltd's previous TAR@FAR (the baseline): own ROC at every distinct score, first nearest point."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.int64)
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, ((distinct + 1) - tps) / max(len(y) - y.sum(), 1)]
    return {f"{far:g}": float(tpr[int(np.argmin(np.abs(fpr - far)))]) for far in FARS}


def unit_pairs(rng, n, same_cos, diff_cos, dim=64):
    same = rng.random(n) < 0.5
    cos = np.clip(np.where(same, rng.normal(*same_cos, n), rng.normal(*diff_cos, n)), -1, 1)
    a = rng.standard_normal((n, dim))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    u = rng.standard_normal((n, dim))
    u -= np.sum(u * a, axis=1, keepdims=True) * a
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return a, cos[:, None] * a + np.sqrt(1 - cos[:, None] ** 2) * u, same


def verification_change(seeds: int = 10) -> dict:
    out = {}
    for name, sc, dc in (("lfw_like", (0.55, 0.12), (0.05, 0.10)), ("cfp_fp_like", (0.45, 0.15), (0.10, 0.12))):
        for n in (1003, 6000):
            d = []
            for seed in range(seeds):
                a, b, same = unit_pairs(np.random.default_rng(seed), n, sc, dc)
                d2 = squared_distances(a, b)
                new, old = ten_fold_accuracy(d2, same)[0], ten_fold_accuracy(np.sqrt(d2), same)[0]
                d.append((new - old) * 100)
            out[f"{name}_{n}"] = {"accuracy_new_pct": new * 100, "mean_abs_diff_pts": float(np.mean(np.abs(d))),
                                  "max_abs_diff_pts": float(np.max(np.abs(d)))}  # fmt: skip
    return out


def tar_change(n_neg: int = 2_000_000, n_pos: int = 20_000) -> dict:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(n_pos, np.int8), np.zeros(n_neg, np.int8)]
    raw = np.r_[rng.normal(0.6, 0.15, n_pos), rng.normal(0.0, 0.1, n_neg)]
    out = {}
    for name, s in (("raw", raw), ("rounded_0.01", np.round(raw, 2))):
        new, old = tar_at_far(s, labels, FARS), old_tar_at_far(s, labels)
        out[name] = {f: {"old": old[f], "new": new[f], "diff_pts": (new[f] - old[f]) * 100} for f in new}
    return out


def ijbc_change(n_img: int = 20_000, dim: int = 128, n_pairs: int = 400_000) -> dict:
    rng = np.random.default_rng(0)
    ident = rng.integers(0, 1000, n_img)
    centres = rng.standard_normal((1000, dim))
    templates = ident * 4 + rng.integers(0, 4, n_img)
    medias = templates * 10 + rng.integers(0, 5, n_img)
    quality = rng.uniform(0, 1, n_img)  # low quality: small norm, low faceness, noisier
    feat = (centres[ident] + (2.5 - 1.5 * quality)[:, None] * rng.standard_normal((n_img, dim))) * (5 + 25 * quality)[
        :, None
    ]
    faceness = (0.3 + 0.7 * quality * rng.uniform(0.8, 1, n_img)).astype(np.float32)
    uniq = np.unique(templates)
    t1, t2 = rng.choice(uniq, n_pairs), rng.choice(uniq, n_pairs)
    same_id = (t1 // 4) == (t2 // 4)
    out = {}
    scores = {}
    for name, norm, face in (("insightface", False, True), ("previous_pltd", True, False)):
        tids, tf = template_features(image_features(feat, faceness, norm, face), templates, medias)
        scores[name] = pair_scores(tids, tf, t1, t2)
        out[name] = tar_at_far(scores[name], same_id, FARS[3:])
    out["max_abs_score_diff"] = float(np.abs(scores["insightface"] - scores["previous_pltd"]).max())
    return out


def aflw_change(n: int = 2000) -> dict:
    """Synthetic AFLW2000-3D-like set with 305 faces at |yaw| > 60°, 7 of them beyond 90° (hardest)."""
    rng = np.random.default_rng(0)
    sign = lambda k: rng.choice([-1, 1], k)  # noqa: E731
    profile = np.r_[sign(298) * rng.uniform(60.01, 89.9, 298), sign(7) * rng.uniform(90.5, 120, 7)]
    yaw = np.r_[rng.uniform(-60, 60, n - 305), profile]
    gt = rng.uniform(0, 200, (n, 68, 2)) + rng.uniform(0, 300, (n, 1, 2))
    err = (0.02 + 0.0006 * np.abs(yaw))[:, None, None] * 150 * rng.standard_normal((n, 68, 2))
    err[np.abs(yaw) > 90] *= 4
    pred = gt + err
    new = yaw_binned_nme(pred, gt, yaw)
    e, a = nme(pred, gt) * 100, np.abs(yaw)
    old_bins = [a < 30, (a >= 30) & (a < 60), (a >= 60) & (a <= 90)]
    old = [float(e[m].mean()) for m in old_bins]
    return {"third_bin_faces": {"old": int(old_bins[2].sum()), "new": new["60-90"]["n"]},
            "third_bin_nme": {"old": old[2], "new": new["60-90"]["nme"]},
            "mean_of_bins": {"old": float(np.mean(old)), "new": new["mean"]}}  # fmt: skip


def wing_scale() -> dict:
    c = 10 - 10 * math.log(6)
    per = {px: (10 * math.log1p(px / 2) if px < 10 else px - c) for px in (0.5, 1.0, 2.0)}
    return {f"{px}px": {"lambda1_x_wing_mean": 100 * v, "lambda1_x_wing_sum": 100 * 136 * v} for px, v in per.items()}


def speed(templates: int, pairs: int) -> dict:
    rng = np.random.default_rng(0)
    a, b, same = unit_pairs(rng, 6000, (0.55, 0.12), (0.05, 0.1))
    t0 = time.perf_counter()
    ten_fold_accuracy(squared_distances(a, b), same)
    ver = 6000 / (time.perf_counter() - t0)
    tf = rng.standard_normal((templates, 512), dtype=np.float32)
    tf /= np.linalg.norm(tf, axis=1, keepdims=True)
    tids = np.arange(templates) * 3 + 1  # sparse ids, as IJB-C's
    t1, t2 = tids[rng.integers(0, templates, pairs)], tids[rng.integers(0, templates, pairs)]
    label = rng.random(pairs) < 0.001
    t0 = time.perf_counter()
    scores = pair_scores(tids, tf, t1, t2)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    tar_at_far(scores, label, FARS)
    t_roc = time.perf_counter() - t0
    t0 = time.perf_counter()
    old_tar_at_far(scores, label)
    t_old = time.perf_counter() - t0
    return {"verification_pairs_per_s": ver, "ijbc_templates": templates, "ijbc_pairs": pairs,
            "ijbc_score_pairs_per_s": pairs / t_score, "ijbc_roc_seconds": t_roc,
            "ijbc_roc_seconds_baseline": t_old}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=15_658_489)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--out", default="benchmarks/out/evaluate.json")
    args = ap.parse_args()
    res: dict = {}
    if not args.skip_speed:
        res["speed"] = sp = speed(args.templates, args.pairs)
        print(f"10-fold verification metric: {sp['verification_pairs_per_s']:,.0f} pairs/s (6,000 pairs)")
        roc, base = sp["ijbc_roc_seconds"], sp["ijbc_roc_seconds_baseline"]
        print(f"IJB-C scoring: {args.pairs:,} pairs over {args.templates:,} templates x 512-d: "
              f"{sp['ijbc_score_pairs_per_s']:,.0f} pairs/s; ROC + TAR@FAR {roc:.1f} s with sklearn's "
              f"roc_curve vs {base:.1f} s baseline (ratio {roc / base:.2f}x the time)")  # fmt: skip
    res["verification"] = v = verification_change()
    for k, r in v.items():
        diff = f"mean |diff| {r['mean_abs_diff_pts']:.3f} pts, max {r['max_abs_diff_pts']:.3f} pts (10 sets)"
        print(f"verification {k}: accuracy {r['accuracy_new_pct']:.2f} %, squared vs plain distance: {diff}")
    res["tar_at_far"] = t = tar_change()
    for k, r in t.items():
        print(f"TAR@FAR ({k} scores, 2 M negatives), highest - lowest TPR at the nearest FPR, pts: "
              + ", ".join(f"{f}: {x['diff_pts']:+.2f}" for f, x in r.items()))  # fmt: skip
    res["ijbc"] = j = ijbc_change()
    ins, prev = j["insightface"], j["previous_pltd"]
    tars = ", ".join(f"{f}: {ins[f] * 100:.2f} vs {prev[f] * 100:.2f}" for f in ins)
    print(f"IJB-C features, insightface (unnormalised x faceness) vs previous (normalised): max |score diff| "
          f"{j['max_abs_score_diff']:.3f}; TAR@FAR {tars}")  # fmt: skip
    res["aflw2000"] = a = aflw_change()
    print(f"AFLW2000 bins: |yaw| > 60 faces {a['third_bin_faces']['old']} -> {a['third_bin_faces']['new']}; "
          "third-bin NME "
          f"{a['third_bin_nme']['old']:.3f} -> {a['third_bin_nme']['new']:.3f} %; mean of bins "
          f"{a['mean_of_bins']['old']:.3f} -> {a['mean_of_bins']['new']:.3f} %")  # fmt: skip
    res["wing"] = w = wing_scale()
    print("100 x Wing (mean | sum over 136 coordinates): " + ", ".join(
        f"{k}: {x['lambda1_x_wing_mean']:.0f} | {x['lambda1_x_wing_sum']:,.0f}" for k, x in w.items()))  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
