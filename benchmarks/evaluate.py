"""Evaluation speed on the CPU: verification metric and IJB-C template-pair scoring.

    python benchmarks/evaluate.py [--templates 100000] [--pairs 15658489]

Figures: pairs/s for the 10-fold verification metric (6,000 pairs, as LFW) and for scoring IJB-C
template pairs (100 K templates x 512-d; IJB-C has 15.66 M pairs) plus TAR@FAR from the ROC.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pltd.trainer.evaluation.metrics import tar_at_far, ten_fold_accuracy
from pltd.trainer.evaluation.protocols import pair_scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=15_658_489)
    ap.add_argument("--out", default="benchmarks/out/evaluate.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    same = rng.random(6000) < 0.5
    dist = np.where(same, rng.normal(0.9, 0.3, 6000), rng.normal(1.4, 0.3, 6000)).clip(0, 4)
    t0 = time.perf_counter()
    ten_fold_accuracy(dist, same)
    ver = 6000 / (time.perf_counter() - t0)
    tf = rng.standard_normal((args.templates, 512), dtype=np.float32)
    tf /= np.linalg.norm(tf, axis=1, keepdims=True)
    tids = np.arange(args.templates) * 3 + 1  # sparse ids, as IJB-C's
    t1 = tids[rng.integers(0, args.templates, args.pairs)]
    t2 = tids[rng.integers(0, args.templates, args.pairs)]
    label = rng.random(args.pairs) < 0.001
    t0 = time.perf_counter()
    scores = pair_scores(tids, tf, t1, t2)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    tar_at_far(scores, label)
    t_roc = time.perf_counter() - t0
    res = {"verification_pairs_per_s": ver, "ijbc_templates": args.templates, "ijbc_pairs": args.pairs,
           "ijbc_score_pairs_per_s": args.pairs / t_score, "ijbc_roc_seconds": t_roc}  # fmt: skip
    print(f"10-fold verification metric: {ver:,.0f} pairs/s (6,000 pairs)")
    print(
        f"IJB-C scoring: {args.pairs:,} pairs over {args.templates:,} templates x 512-d in {t_score:.1f} s "
        f"= {args.pairs / t_score:,.0f} pairs/s; ROC + TAR@FAR {t_roc:.1f} s"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
