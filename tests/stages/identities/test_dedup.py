"""Algorithm 2 on synthetic embeddings with planted duplicates; centroids; calibration; pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from pltd.stages.identities.calibrate import UnsafePickle, best_threshold, load_bin, load_pairs_txt, save_bin
from pltd.stages.identities.centroids import combine, partial_sums, sorted_sums, vectors
from pltd.stages.identities.dedup import DedupSettings
from pltd.stages.identities.merge import assign_identities
from pltd.stages.identities.search import SearchSettings

D = 64


def unit(rng, n, d=D):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(rng, v, cos):
    """A unit vector at cosine `cos` from unit vector v."""
    r = rng.normal(size=v.shape)
    r -= (r @ v) * v
    r /= np.linalg.norm(r)
    return cos * v + np.sqrt(1 - cos**2) * r


def sums_table(rows: list[tuple[str, str, np.ndarray, np.ndarray]]) -> pa.Table:
    src, lab, a, b = zip(*rows, strict=True)
    return pa.table(
        {"source": list(src), "source_label": list(lab), "count": np.ones(len(rows), np.int64),
         "sum_0": vectors(np.stack(a)), "sum_1": vectors(np.stack(b))}
    )  # fmt: skip


@pytest.fixture
def planted():
    """3 datasets of identities; planted duplicates across them, one pair only network 0 sees."""
    rng = np.random.default_rng(0)
    base0, base1 = unit(rng, 60), unit(rng, 60)
    rows = [("vgg", f"v{k}", base0[k], base1[k]) for k in range(30)]
    rows += [("ms", f"m{k}", base0[30 + k], base1[30 + k]) for k in range(30)]
    # duplicates: vgg v0..v4 are ms d0..d4 (both networks agree)
    for k in range(5):
        rows.append(("ms", f"d{k}", near(rng, base0[k], 0.8), near(rng, base1[k], 0.8)))
    # only network 0 sees this one: network 1 says different
    rows.append(("ms", "only0", near(rng, base0[10], 0.85), unit(rng, 1)[0]))
    # a chain: vgg v20 ~ ms c1 ~ lp photo p1 (second pass)
    rows.append(("ms", "c1", near(rng, base0[20], 0.8), near(rng, base1[20], 0.8)))
    rows.append(("300w_lp", "p1", near(rng, base0[20], 0.75), near(rng, base1[20], 0.75)))
    rows.append(("300w_lp", "p2", unit(rng, 1)[0], unit(rng, 1)[0]))
    return rows


def groups_of(ident) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for r in ident.id_map.to_pylist():
        out.setdefault(r["face_id"], set()).add(f"{r['source']}/{r['source_label']}")
    return {k: v for k, v in out.items() if len(v) > 1}


def test_planted_duplicates_found_nothing_spurious(planted):
    ident = assign_identities(sums_table(planted), {"300w_lp"}, DedupSettings((0.5, 0.5)))
    merged = sorted(sorted(g) for g in groups_of(ident).values())
    expected = sorted([sorted({f"vgg/v{k}", f"ms/d{k}"}) for k in range(5)] + [["300w_lp/p1", "ms/c1", "vgg/v20"]])
    assert merged == expected  # includes the chain through the second pass; excludes ms/only0
    assert ident.report["identities_out"] == len(planted) - 7
    assert ident.report["duplicate_pairs_pass1"] == 6 and ident.report["duplicate_pairs_pass2_300w_lp"] == 1
    ids = ident.id_map.column("face_id").to_numpy()
    assert sorted(set(ids)) == list(range(ident.report["identities_out"]))  # contiguous


def test_ids_do_not_depend_on_input_order(planted):
    a = assign_identities(sums_table(planted), {"300w_lp"}, DedupSettings((0.5, 0.5)))
    b = assign_identities(sums_table(planted[::-1]), {"300w_lp"}, DedupSettings((0.5, 0.5)))
    assert a.id_map.equals(b.id_map)


def test_within_dataset_is_an_option(planted):
    rng = np.random.default_rng(5)
    rows = planted + [("vgg", "twin", near(rng, planted[25][2], 0.9), near(rng, planted[25][3], 0.9))]
    off = groups_of(assign_identities(sums_table(rows), {"300w_lp"}, DedupSettings((0.5, 0.5))))
    on = groups_of(assign_identities(sums_table(rows), {"300w_lp"}, DedupSettings((0.5, 0.5), within_dataset=True)))
    assert not any("vgg/twin" in g for g in off.values())
    assert {"vgg/twin", "vgg/v25"} in on.values()


def test_ivf_index_finds_the_planted_pairs(planted):
    exact = groups_of(assign_identities(sums_table(planted), {"300w_lp"}, DedupSettings((0.5, 0.5))))
    ivf = groups_of(
        assign_identities(
            sums_table(planted),
            {"300w_lp"},
            DedupSettings((0.5, 0.5), search=SearchSettings(exact_index_max=10, nprobe=64)),
        )
    )
    assert sorted(map(sorted, exact.values())) == sorted(map(sorted, ivf.values()))


def test_partial_sums_reduce_like_a_single_pass():
    rng = np.random.default_rng(2)
    emb = pa.table(
        {"image_id": [f"i{k}" for k in range(40)], "source": ["a"] * 20 + ["b"] * 20,
         "source_label": [f"x{k % 3}" for k in range(40)], "emb_0": vectors(unit(rng, 40)), "emb_1": vectors(unit(rng, 40, 8))}
    )  # fmt: skip
    whole = partial_sums(emb)
    tree = combine(combine(partial_sums(emb.slice(0, 7)), partial_sums(emb.slice(7, 20))), partial_sums(emb.slice(27)))
    k1, a0, a1 = sorted_sums(whole)
    k2, b0, b1 = sorted_sums(tree)
    assert k1.equals(k2) and np.allclose(a0, b0, atol=1e-5) and np.allclose(a1, b1, atol=1e-5)
    assert k1.column("count").to_pylist() == [7, 7, 6, 7, 6, 7]


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(3)
    same = rng.random(300) < 0.5
    sims = np.where(same, rng.normal(0.6, 0.15, 300), rng.normal(0.2, 0.15, 300))
    t, acc = best_threshold(sims, same)
    brute = max(((sims > c) == same).mean() for c in np.r_[sims, sims.min() - 1])
    assert acc == pytest.approx(brute) and ((sims > t) == same).mean() == pytest.approx(acc)


def test_bin_round_trip_and_malicious_pickle_refused(tmp_path):
    save_bin(tmp_path / "p.bin", [b"a", b"b", b"c", b"d"], [True, False])
    bins, same = load_bin(tmp_path / "p.bin")
    assert bins == [b"a", b"b", b"c", b"d"] and same.tolist() == [True, False]
    with open(tmp_path / "p2.bin", "wb") as f:  # protocol 2, as Python-2-era files are written
        pickle.dump(([b"a", b"b"], np.array([True])), f, protocol=2)
    assert load_bin(tmp_path / "p2.bin")[1].tolist() == [True]

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(tmp_path / "evil.bin", "wb") as f:
        pickle.dump(([Evil()], [True]), f)
    with pytest.raises(UnsafePickle, match="posix.system|os.system"):
        load_bin(tmp_path / "evil.bin")
    assert not (tmp_path / "pwned").exists()


def test_lfw_pairs_txt(tmp_path):
    for name, n in (("Ann", 2), ("Bob", 1)):
        (tmp_path / name).mkdir()
        for i in range(1, n + 1):
            (tmp_path / name / f"{name}_{i:04d}.jpg").write_bytes(f"{name}{i}".encode())
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\n")
    bins, same = load_pairs_txt(tmp_path / "pairs.txt", tmp_path)
    assert bins == [b"Ann1", b"Ann2", b"Ann1", b"Bob1"] and same.tolist() == [True, False]
