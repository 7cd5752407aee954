"""Duplicate search speed and recall on synthetic identities (Algorithm 2, steps 3–5).

    python benchmarks/dedup.py --identities 100000            # exact index (target < 30 s, 2 cores)
    python benchmarks/dedup.py --identities 1000000 --ivf     # IVF: time, peak memory, recall ≥ 0.99

Identities: random unit 512-d centroids per network, split like the paper's datasets (9 % in a
VGGFace2-like set, 91 % in an MS1MV3-like one); `--planted` of the small set's identities get a
duplicate in the large set at cosine 0.55–0.85 in both networks, and as many again only in network
0 (which must not merge). Recall is measured against the planted truth and, on a sample of
queries, against an exact search of the same data.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from pltd.stages.identities.dedup import DedupSettings, agreed_pairs, range_pairs

D = 512


def unit_rows(rng: np.random.Generator, n: int, dtype=np.float32, chunk: int = 250_000) -> np.ndarray:
    out = np.empty((n, D), dtype)
    for s in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - s), D), dtype=np.float32)
        out[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def plant(rng, x: np.ndarray, src: np.ndarray, dst: np.ndarray, cos: np.ndarray) -> None:
    """Overwrite rows dst with unit vectors at cosine `cos` from rows src."""
    v = x[src].astype(np.float32)
    r = rng.standard_normal(v.shape, dtype=np.float32)
    r -= np.sum(r * v, axis=1, keepdims=True) * v
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    x[dst] = (cos[:, None] * v + np.sqrt(1 - cos[:, None] ** 2) * r).astype(x.dtype)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=100_000)
    ap.add_argument("--planted", type=int, default=2000)
    ap.add_argument("--ivf", action="store_true", help="force the IVF index (exact_index_max=0)")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--threshold", type=float, default=0.4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.identities
    n_small = int(0.09 * n)
    dataset = np.r_[np.zeros(n_small, np.int64), np.ones(n - n_small, np.int64)]
    t0 = time.perf_counter()
    x0 = unit_rows(rng, n)
    x1 = unit_rows(rng, n, np.float16 if n > 2_000_000 else np.float32)  # network 1 is only looked up
    k = args.planted
    src = rng.choice(n_small, 2 * k, replace=False)
    dst = n_small + rng.choice(n - n_small, 2 * k, replace=False)
    both, only0 = slice(0, k), slice(k, 2 * k)
    plant(rng, x0, src, dst, rng.uniform(0.55, 0.85, 2 * k))
    plant(rng, x1, src[both], dst[both], rng.uniform(0.55, 0.85, k))
    gen = time.perf_counter() - t0

    s = DedupSettings((args.threshold, args.threshold), exact_index_max=0 if args.ivf else 10**9, nprobe=args.nprobe)
    t0 = time.perf_counter()
    i, j, _, _ = agreed_pairs(x0, x1, dataset, s)
    seconds = time.perf_counter() - t0
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    truth = {(min(a, b), max(a, b)) for a, b in zip(src[both].tolist(), dst[both].tolist(), strict=True)}
    decoys = {(min(a, b), max(a, b)) for a, b in zip(src[only0].tolist(), dst[only0].tolist(), strict=True)}
    recall_planted = len(found & truth) / len(truth)
    res = {
        "identities": n,
        "dim": D,
        "networks": 2,
        "index": "IVFFlat" if args.ivf else "FlatIP (exact)",
        "nprobe": args.nprobe if args.ivf else None,
        "threshold": args.threshold,
        "seconds": seconds,
        "generate_seconds": gen,
        "recall_planted": recall_planted,
        "decoys_merged": len(found & decoys),
        "spurious_pairs": len(found - truth),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if args.ivf:  # recall against an exact search, on a sample of the small set's queries
        q = np.sort(rng.choice(n_small, min(2000, n_small), replace=False))
        exact = DedupSettings(s.thresholds, exact_index_max=10**9)
        qi, bi, _ = range_pairs(x0[q], x0[n_small:], args.threshold, exact)
        want = set(zip(q[qi].tolist(), (bi + n_small).tolist(), strict=True))
        qi, bi, _ = range_pairs(x0[q], x0[n_small:], args.threshold, s)
        got = set(zip(q[qi].tolist(), (bi + n_small).tolist(), strict=True))
        res["recall_vs_exact_network0"] = len(got & want) / max(len(want), 1)
        res["exact_pairs_in_sample"] = len(want)
    print(json.dumps(res, indent=2))
    target = "target < 30 s" if not args.ivf else "target recall ≥ 0.99"
    print(
        f"{n:,} identities x {D}-d x 2 networks, {res['index']}: {seconds:.1f} s ({target}); "
        f"planted recall {recall_planted:.4f}, decoys merged {res['decoys_merged']}, spurious {res['spurious_pairs']}, "
        f"peak RSS {res['peak_rss_gb']:.1f} GB"
    )
    out = Path(args.out or f"benchmarks/out/dedup_{n}{'_ivf' if args.ivf else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
