"""Cosine thresholds from a verification pair file: at a target false-accept rate, or the paper's rule.

Deduplication compares every identity of one dataset with every identity of the other: 8.7e8
centroid pairs at the paper's 9 K × 93 K. A threshold tuned for balanced pairs (the paper's
LFW-accuracy-maximising one, `rule="accuracy"`) lets FAR × 8.7e8 false merges through, so the
default (`rule="far"`) takes the threshold at a target false-accept rate on the negative pairs and
the report states the expected number of false merges, FAR × pairs compared.

A pair file of N negatives observes a false-accept rate down to 1/N only (LFW: 3,000 negatives,
the sample: 50). At a target FAR of at least `MIN_OBSERVED`/N the threshold is the empirical one:
the lowest threshold whose false-accept rate on the negatives is at most FAR (what
`sklearn.metrics.roc_curve` gives). Below that, the negatives' tail is extrapolated: the negative
cosines' Fisher transform z = atanh(cos) — the usual variance-stabilising map of a bounded
similarity — is fitted with a normal law, and the threshold is tanh(mean + sd · Φ⁻¹(1 − FAR)),
never below the highest negative. That is a model, and the result says so (`method`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

MIN_OBSERVED = 10  # false accepts the pair file must hold for an empirical threshold


def far_threshold(sims: np.ndarray, issame: np.ndarray, far: float) -> float:
    """Lowest t such that the fraction of negatives with cosine > t is at most `far`."""
    neg = np.sort(np.asarray(sims, np.float64)[~np.asarray(issame, bool)])[::-1]
    if len(neg) == 0:
        raise ValueError("the pair file has no negative pairs: a false-accept rate cannot be measured")
    m = int(np.floor(far * len(neg) + 1e-9))  # negatives allowed above the threshold
    return float(neg[min(m, len(neg) - 1)])


def tail_threshold(neg: np.ndarray, far: float) -> float:
    """tanh(mean + sd · Φ⁻¹(1 − far)) of z = atanh(negative cosines): a normal tail in Fisher's z."""
    z = np.arctanh(np.clip(np.asarray(neg, np.float64), -1 + 1e-7, 1 - 1e-7))
    if len(z) < 2:
        raise ValueError("fitting the negatives' tail needs at least two negative pairs")
    return float(np.tanh(z.mean() + z.std(ddof=1) * norm.isf(far)))


def calibrate(sims: np.ndarray, issame: np.ndarray, rule: str, far: float) -> dict:
    """The threshold of one network under `rule` ("far" or "accuracy"), with what it achieves on the pairs."""
    from pltd.stages.identities.calibrate import best_threshold

    sims, issame = np.asarray(sims, np.float64), np.asarray(issame, bool)
    neg = sims[~issame]
    if rule == "accuracy":
        t, _ = best_threshold(sims, issame)
        method = "accuracy-maximising (the paper's rule)"
    elif rule == "far":
        if far * len(neg) >= MIN_OBSERVED:
            t, method = far_threshold(sims, issame, far), f"empirical on {len(neg)} negatives"
        else:
            t = max(tail_threshold(neg, far), float(neg.max()))
            method = (
                f"extrapolated: FAR {far:g} is below what {len(neg)} negatives observe (≥ {MIN_OBSERVED}/N); "
                "normal fit of atanh(negative cosines)"
            )
    else:
        raise ValueError(f"threshold rule {rule!r}: expected 'far' or 'accuracy'")
    observed = float((neg > t).mean()) if len(neg) else float("nan")
    return {
        "threshold": float(t),
        "rule": rule,
        "far_target": far if rule == "far" else None,
        "method": method,
        "far_observed": observed,  # on the pair file; 0 means "below 1/N", not zero
        "far_resolution": 1.0 / max(len(neg), 1),
        "tar": float((sims[issame] > t).mean()) if issame.any() else float("nan"),
        "accuracy": float(((sims > t) == issame).mean()),
        "n_pairs": len(sims),
        "n_negative": len(neg),
    }


def expected_false_merges(calibs: list[dict], pairs_compared: int, one_network: bool) -> dict:
    """FAR × pairs compared. Two networks must both accept a false pair; their errors are not
    independent, so the smaller of the two FARs is used (an upper bound), not their product."""
    fars = [c["far_target"] if c["far_target"] is not None else max(c["far_observed"], c["far_resolution"])
            for c in calibs]  # fmt: skip
    far = fars[0] if one_network else min(fars)
    return {"far": far, "pairs_compared": int(pairs_compared), "expected_false_merges": far * pairs_compared}
