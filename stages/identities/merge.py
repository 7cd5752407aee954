"""Identity assignment: pass 1 among face-recognition identities, SemiIdentify, pass 2 against 300W-LP.

Input is the reduced per-identity sums table; output the id map, the duplicate pairs, centroids
and a report. Pure function: the runner calls it on a worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pltd.stages.identities.centroids import normalise, sorted_sums, vectors
from pltd.stages.identities.dedup import DedupSettings, agreed_pairs, components, contiguous_ids

DUPLICATES = pa.schema(
    [
        ("pass", pa.int8()),
        ("source_a", pa.string()),
        ("label_a", pa.string()),
        ("source_b", pa.string()),
        ("label_b", pa.string()),
        ("sim_0", pa.float32()),
        ("sim_1", pa.float32()),
    ]
)


ONE_NETWORK_RULE = (
    "one network: both configured networks are the same model, so a pair is a duplicate when its cosine "
    "is above network 0's threshold; there is no second opinion"
)
TWO_NETWORK_RULE = "two networks: a pair is a duplicate when both networks' cosines are above their thresholds"


@dataclass
class Identities:
    id_map: pa.Table  # source, source_label, count, face_id
    duplicates: pa.Table
    centroids: list[pa.Table]  # per network: source, source_label, count, centroid
    report: dict
    nearest: list[np.ndarray]  # per query identity: network 0's best cross-dataset cosine, network 1's to it


def assign_identities(sums: pa.Table, semi_sources: set[str], s: DedupSettings) -> Identities:
    keys, raw0, raw1 = sorted_sums(sums)
    c0, c1 = normalise(raw0), normalise(raw1)
    source = np.asarray(keys.column("source").to_pylist(), dtype=object)
    label = keys.column("source_label").to_pylist()
    names = sorted(set(source.tolist()))
    dataset = np.array([names.index(x) for x in source], np.int64)
    semi = np.isin(source, list(semi_sources))
    n = len(source)

    # pass 1: face-recognition identities (cross-dataset, and within if asked)
    fr = np.flatnonzero(~semi)
    p1 = agreed_pairs(c0[fr], c1[fr], dataset[fr], s)
    i1, j1, s01, s11 = fr[p1.i], fr[p1.j], p1.sim0, p1.sim1
    search = {"pass1": {"pairs_compared": p1.pairs_compared, "widened": p1.widened, "index": p1.index}}
    groups = components(n, i1, j1)

    # pass 2: each merged face-recognition identity (summed) against every 300W-LP base photo
    edges_i, edges_j = [i1], [j1]
    dup = [(1, i1, j1, s01, s11)]
    sp = np.flatnonzero(semi)
    if len(sp) and len(fr):
        g_ids, rep = np.unique(groups[fr], return_index=True)
        rep = fr[rep]  # a representative row of each group
        g0 = np.zeros((len(g_ids), raw0.shape[1]), np.float64)
        g1 = np.zeros((len(g_ids), raw1.shape[1]), np.float64)
        pos = np.searchsorted(g_ids, groups[fr])
        np.add.at(g0, pos, raw0[fr])
        np.add.at(g1, pos, raw1[fr])
        x0 = np.vstack([normalise(g0), c0[sp]])
        x1 = np.vstack([normalise(g1), c1[sp]])
        which = np.r_[np.zeros(len(g_ids), np.int64), np.ones(len(sp), np.int64)]
        p2 = agreed_pairs(x0, x1, which, DedupSettings(s.thresholds, False, s.search, s.one_network))
        a, b = rep[p2.i], sp[p2.j - len(g_ids)]  # i < j: groups come first
        edges_i.append(a)
        edges_j.append(b)
        dup.append((2, a, b, p2.sim0, p2.sim1))
        search["pass2"] = {"pairs_compared": p2.pairs_compared, "widened": p2.widened, "index": p2.index}
    final = components(n, np.concatenate(edges_i), np.concatenate(edges_j))
    face_id = contiguous_ids(final)

    id_map = keys.append_column("face_id", pa.array(face_id, pa.int64()))
    duplicates = pa.Table.from_pylist(
        [
            {"pass": p, "source_a": source[x], "label_a": label[x], "source_b": source[y], "label_b": label[y],
             "sim_0": float(u), "sim_1": float(v)}
            for p, xs, ys, s0_, s1_ in dup
            for x, y, u, v in zip(xs, ys, s0_, s1_, strict=True)
        ],
        schema=DUPLICATES,
    )  # fmt: skip
    cents = [keys.append_column("centroid", vectors(c)) for c in (c0, c1)]
    queried = np.isfinite(p1.best0)  # the histogram comes from pass 1's own search
    nearest = [p1.best0[queried], p1.best1[queried]]
    report = _report(keys, source, label, face_id, duplicates, s)
    report["search"] = search
    return Identities(id_map, duplicates, cents, report, nearest)


def _report(keys: pa.Table, source, label, face_id: np.ndarray, duplicates: pa.Table, s: DedupSettings) -> dict:
    sizes = np.bincount(face_id)
    largest = np.argsort(-sizes, kind="stable")[:10]
    members = {int(g): [] for g in largest if sizes[g] > 1}
    for k, g in enumerate(face_id):
        if int(g) in members and len(members[int(g)]) < 20:
            members[int(g)].append(f"{source[k]}/{label[k]}")
    per_source = {str(x): int((source == x).sum()) for x in sorted(set(source.tolist()))}
    passes = duplicates.column("pass").to_pylist()
    return {
        "identities_in": len(source),
        "identities_in_by_source": per_source,
        "identities_out": int(sizes.size),
        "merged_groups": int((sizes > 1).sum()),
        "duplicate_pairs_pass1": passes.count(1),
        "duplicate_pairs_pass2_300w_lp": passes.count(2),
        "thresholds": list(s.thresholds),
        "within_dataset": s.within_dataset,
        "rule": ONE_NETWORK_RULE if s.one_network else TWO_NETWORK_RULE,
        "largest_groups": [{"face_id": g, "size": int(sizes[g]), "members": m} for g, m in members.items()],
    }


def histogram_png(
    nearest: list[np.ndarray], thresholds: tuple[float, float], names: tuple[str, str], one_network: bool = False
) -> bytes:
    """PNG: each query identity's best cross-dataset cosine (network 0), and network 1's cosine to
    that same neighbour, with the thresholds; one panel when both networks are the same model."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 if one_network else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5), squeeze=False)
    titles = [f"network 0 ({names[0]}): best cross-dataset cosine", f"network 1 ({names[1]}) on that pair"]
    if one_network:
        titles[0] += " (one network: both are the same model)"
    for ax, sims, t, title in zip(axes[0], nearest, thresholds, titles, strict=False):
        ax.hist(sims, bins=50, color="#4477aa")
        ax.axvline(t, color="#cc3311", label=f"threshold {t:.3f}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("cosine")
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
