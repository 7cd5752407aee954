"""Duplicate search on synthetic clustered identities (Algorithm 2, steps 3–5).

    python benchmarks/dedup.py stage --identities 100000     # (a) stage: pairs + histogram, new vs old
    python benchmarks/dedup.py ivf --identities 1000000      # (b) IVF k-NN recall and time vs exact
    python benchmarks/dedup.py sample --run RUN --pairs BIN  # (c) the sample's planted duplicates, both rules

Identities: unit 512-d centroids around `identities/1000` cluster centres (each at cosine ≈ 0.55
to its centre, ≈ 0.3 to a cluster-mate), split like the paper's datasets (9 % in a VGGFace2-like
set, 91 % in an MS1MV3-like one); `--planted` of the small set's identities get a duplicate in the
large set at cosine 0.55–0.95 in both networks, and as many again only in network 0 (which must
not merge).

(a) times, in one run on the same data, the stage's search as it is (k-NN above the threshold,
the histogram's best-other cosine from the same search) and as it was (FAISS range search for the
pairs, then `nearest_other`: an exact all-pairs search in both directions for both networks, for
the histogram; copied below as the baseline).
(b) times the exact flat index and IVF-Flat on the same queries and measures IVF's recall of the
exact result (pairs above the threshold). Both searches cost the same per query at any number of
queries, so with `--sample-queries` they run on a random sample of the small set's queries and
the full-query time is extrapolated linearly (printed as such).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from pltd.stages.identities.dedup import DedupSettings, agreed_pairs
from pltd.stages.identities.search import SearchSettings, knn_above

D = 512


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n: int, chunk: int = 200_000) -> np.ndarray:
    centres = unit(rng.standard_normal((max(1, n // 1000), D), dtype=np.float32))
    out = np.empty((n, D), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        noise = unit(rng.standard_normal((m, D), dtype=np.float32))
        out[s : s + m] = unit(centres[rng.integers(0, len(centres), m)] + 1.5 * noise)
    return out


def plant(rng, x: np.ndarray, src: np.ndarray, dst: np.ndarray, cos: np.ndarray) -> None:
    """Overwrite rows dst with unit vectors at cosine `cos` from rows src."""
    v = x[src]
    r = rng.standard_normal(v.shape, dtype=np.float32)
    r -= np.sum(r * v, axis=1, keepdims=True) * v
    r = unit(r)
    x[dst] = cos[:, None] * v + np.sqrt(1 - cos[:, None] ** 2) * r


def data(n: int, planted: int, two: bool = True):
    rng = np.random.default_rng(0)
    n_small = int(0.09 * n)
    dataset = np.r_[np.zeros(n_small, np.int64), np.ones(n - n_small, np.int64)]
    x0 = clustered(rng, n)
    x1 = clustered(rng, n) if two else None
    src = rng.choice(n_small, 2 * planted, replace=False)
    dst = n_small + rng.choice(n - n_small, 2 * planted, replace=False)
    plant(rng, x0, src, dst, rng.uniform(0.55, 0.95, 2 * planted))
    if two:
        plant(rng, x1, src[:planted], dst[:planted], rng.uniform(0.55, 0.95, planted))
    return x0, x1, dataset, n_small, src, dst


# --- the baseline: the stage's search before k-NN (commit e188a05, stages/identities/dedup.py) ---
def old_pairs(x0, x1, dataset, t):
    import faiss

    q, b = np.flatnonzero(dataset == 0), np.flatnonzero(dataset == 1)
    index = faiss.IndexFlatIP(D)
    index.add(np.ascontiguousarray(x0[b]))
    qi, bi = [], []
    for s in range(0, len(q), 16_384):
        lims, _, ids = index.range_search(np.ascontiguousarray(x0[q[s : s + 16_384]]), t)
        qi.append(np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims).astype(np.int64)))
        bi.append(ids)
    i, j = q[np.concatenate(qi)], b[np.concatenate(bi)]
    keep = np.einsum("nd,nd->n", x1[i], x1[j]) > t
    return i[keep], j[keep]


def old_nearest_other(x, dataset):
    import faiss

    best = np.full(len(x), -1.0, np.float32)
    for a in (0, 1):
        inside, outside = np.flatnonzero(dataset == a), np.flatnonzero(dataset != a)
        index = faiss.IndexFlatIP(D)
        index.add(np.ascontiguousarray(x[outside]))
        best[inside] = index.search(np.ascontiguousarray(x[inside]), 1)[0][:, 0]
    return best


def stage(args) -> dict:
    x0, x1, dataset, _, src, dst = data(args.identities, args.planted)
    t = args.threshold
    t0 = time.perf_counter()
    oi, oj = old_pairs(x0, x1, dataset, t)
    old_p = time.perf_counter() - t0
    t0 = time.perf_counter()
    old_hist = [old_nearest_other(x, dataset) for x in (x0, x1)]
    old_h = time.perf_counter() - t0
    t0 = time.perf_counter()
    a = agreed_pairs(x0, x1, dataset, DedupSettings((t, t), search=SearchSettings(k=args.k)))
    new = time.perf_counter() - t0
    same = set(zip(oi.tolist(), oj.tolist(), strict=True)) == set(zip(a.i.tolist(), a.j.tolist(), strict=True))
    q = np.flatnonzero(dataset == 0)
    truth = {(int(s), int(d)) for s, d in zip(src[: args.planted], dst[: args.planted], strict=True)}
    found = set(zip(a.i.tolist(), a.j.tolist(), strict=True))
    return {
        "identities": args.identities,
        "old_pair_search_s": old_p,
        "old_histogram_s": old_h,
        "old_total_over_pairs": (old_p + old_h) / old_p,
        "new_pairs_and_histogram_s": new,
        "new_total_over_old_pair_search": new / old_p,
        "speedup_stage_search": (old_p + old_h) / new,
        "same_pairs_as_range_search": same,
        "histogram_equal_on_queries": bool(np.allclose(a.best0[q], old_hist[0][q], atol=1e-5)),
        "widened_queries": a.widened,
        "planted_recall": len(found & truth) / len(truth),
        "spurious_pairs": len(found - truth),
    }


def ivf(args) -> dict:
    x0, _, _, n_small, _, _ = data(args.identities, args.planted, two=False)
    rng = np.random.default_rng(1)
    q = np.sort(rng.choice(n_small, min(args.sample_queries, n_small), replace=False))
    xq, xb = x0[q], x0[n_small:]
    t = args.threshold
    res = {"identities": args.identities, "base": len(xb), "queries_timed": len(q), "all_queries": n_small, "runs": []}
    t0 = time.perf_counter()
    exact = knn_above(xq, xb, t, SearchSettings(k=args.k, exact_index_max=10**9, gpu=False))
    res["exact_s_timed"] = time.perf_counter() - t0
    res["exact_s_all_queries_extrapolated"] = res["exact_s_timed"] * n_small / len(q)
    want = set(zip(exact.qi.tolist(), exact.bi.tolist(), strict=True))
    res["exact_pairs"] = len(want)
    import faiss

    for nlist in args.nlist:
        t0 = time.perf_counter()
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(D), D, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(xb[np.sort(rng.choice(len(xb), min(len(xb), nlist * 40), replace=False))])
        index.add(xb)
        build = time.perf_counter() - t0
        for nprobe in args.nprobe:
            index.nprobe = nprobe
            t0 = time.perf_counter()
            got = _ivf_knn_above(index, xq, t, args.k, len(xb))
            secs = time.perf_counter() - t0
            recall = len(got & want) / max(len(want), 1)
            all_s = secs * n_small / len(q)
            run = {"nlist": nlist, "nprobe": nprobe, "build_s": build, "search_s_timed": secs,
                   "search_s_all_extrapolated": all_s, "recall_pairs": recall,
                   "speedup_vs_exact_search": res["exact_s_timed"] / secs,
                   "speedup_incl_build": res["exact_s_all_queries_extrapolated"] / (build + all_s)}  # fmt: skip
            res["runs"].append(run)
            print(json.dumps(run), flush=True)
    return res


def _ivf_knn_above(index, xq, t, k, nb) -> set:
    """The stage's widening loop over a prebuilt IVF index (knn_above builds its own)."""
    rows, found = np.arange(len(xq)), set()
    while len(rows):
        dist, ids = index.search(xq[rows], k)
        full = (dist[:, -1] > t) & (k < nb)
        qi, kk = np.nonzero((dist > t) & (ids >= 0) & ~full[:, None])
        found |= set(zip(rows[qi].tolist(), ids[qi, kk].tolist(), strict=True))
        rows, k = rows[full], 4 * k
    return found


# the sample's shared people (pipeline/sample.py): VGGFace2 n000001 = astronaut = MS1MV3 label 0,
# n0000(i+3) = LFW face i = MS1MV3 label i-9 (i = 10..13); 300W-LP's first base photo = n000002
SAMPLE_TRUTH = {(1, "ms1mv3/0", "vggface2/n000001"), (2, "vggface2/n000002", "300w_lp/HELEN_sample001_1")} | {
    (1, f"ms1mv3/{i - 9}", f"vggface2/n{i + 3:06d}") for i in range(10, 14)
}


def sample(args) -> dict:
    """(c) precision and recall of the sample's planted duplicates under both threshold rules, on
    the embeddings of a built sample run (`pltd build --out RUN`) and its pair file."""
    import io

    import pyarrow.parquet as pq
    from distributed import Client
    from rich.console import Console

    from pltd.pipeline.config import IdentitiesConfig
    from pltd.pipeline.identities_calibration import pair_cosines
    from pltd.stages.identities.centroids import combine, partial_sums
    from pltd.stages.identities.merge import assign_identities
    from pltd.stages.identities.thresholds import calibrate

    sums = None
    for f in sorted(Path(args.run, "embeddings").glob("*/part-*.parquet")):
        part = partial_sums(pq.read_table(f))
        sums = part if sums is None else combine(sums, part)
    cfg = IdentitiesConfig(calibration_pairs=args.pairs)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        (sims, _), same, status = pair_cosines(client, cfg, Console(file=io.StringIO()))
    res = {"run": args.run, "calibration": status[0], "truth": len(SAMPLE_TRUTH), "rules": {}}
    for rule in ("accuracy", "far"):
        c = calibrate(sims, same, rule, cfg.far)
        s = DedupSettings((c["threshold"],) * 2, one_network=True)
        dups = assign_identities(sums, {"300w_lp"}, s).duplicates.to_pylist()
        found = {(d["pass"], f"{d['source_a']}/{d['label_a']}", f"{d['source_b']}/{d['label_b']}") for d in dups}
        hit = len(found & SAMPLE_TRUTH)
        res["rules"][rule] = {"threshold": c["threshold"], "method": c["method"], "found": len(found),
                              "precision": hit / max(len(found), 1), "recall": hit / len(SAMPLE_TRUTH),
                              "lowest_true_cosine": min((d["sim_0"] for d in dups), default=None)}  # fmt: skip
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["stage", "ivf", "sample"])
    ap.add_argument("--run", help="sample: a built sample run folder")
    ap.add_argument("--pairs", help="sample: its calibration pair file")
    ap.add_argument("--identities", type=int, default=100_000)
    ap.add_argument("--planted", type=int, default=2000)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--nlist", type=int, nargs="+", default=[1024])
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--sample-queries", type=int, default=5000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    res = {"stage": stage, "ivf": ivf, "sample": sample}[args.mode](args)
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(res, indent=2))
    if args.mode == "stage":
        print(
            f"{args.identities:,} identities: pairs + histogram {res['new_pairs_and_histogram_s']:.1f} s vs the old "
            f"pair search {res['old_pair_search_s']:.1f} s → {res['new_total_over_old_pair_search']:.2f}× "
            "(target ≤ 1.2×); "
            f"old pairs + histogram {res['old_total_over_pairs']:.2f}× the old pair search"
        )
    out = Path(args.out or f"benchmarks/out/dedup_{args.mode}_{args.identities}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
