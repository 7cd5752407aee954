"""The identities stage on the cluster: a tree reduction of per-partition sums, then Algorithm 2
on one worker. Global, not per partition: its marker is `RUN/identities/_done.json`."""

from __future__ import annotations

from rich.console import Console

from pltd.pipeline import storage
from pltd.pipeline.config import IdentitiesConfig
from pltd.pipeline.partition import PartitionTask
from pltd.stages.identities.centroids import combine, partial_sums
from pltd.stages.identities.dedup import DedupSettings
from pltd.stages.identities.search import SearchSettings

SEMI_FORMATS = ("300w_lp",)  # every base photo is an identity of its own (SemiIdentify)


def _sums_of(url: str):
    return partial_sums(storage.read_table(url))


def _assign_and_write(sums, run: str, semi: set[str], s: DedupSettings, names: tuple[str, str]) -> dict:
    from pltd.stages.identities.merge import assign_identities, histogram_png

    ident = assign_identities(sums, semi, s)
    base = storage.join(run, "identities")
    storage.write_parquet(storage.join(base, "id_map.parquet"), ident.id_map)
    storage.write_parquet(storage.join(base, "duplicates.parquet"), ident.duplicates)
    for k, c in enumerate(ident.centroids):
        storage.write_parquet(storage.join(base, f"centroids_{k}.parquet"), c)
    if len(ident.nearest[0]):
        fs, path = storage.fs_path(storage.join(base, "similarity_hist.png"))
        fs.pipe_file(path, histogram_png(ident.nearest, s.thresholds, names, s.one_network))
    storage.write_json(storage.join(base, "report.json"), ident.report)
    return ident.report


def run_identities(client, run: str, cfg: IdentitiesConfig, sources, plans: dict, console: Console) -> dict:
    done = storage.join(run, "identities", "_done.json")
    if storage.exists(done):
        report = storage.read_json(done)
        console.print(f"identities: already complete ({report['identities_out']} identities)")
        return report
    urls = [
        PartitionTask(run, "embeddings", s.name, p).output for s in sources for p in range(plans[s.name]["partitions"])
    ]
    futures = [client.submit(_sums_of, u, pure=False) for u in urls]
    while len(futures) > 1:  # pairwise tree: no machine ever holds more than two partial tables
        futures = [
            client.submit(combine, futures[k], futures[k + 1]) if k + 1 < len(futures) else futures[k]
            for k in range(0, len(futures), 2)
        ]
    from pltd.pipeline.identities_calibration import calibrate_thresholds, one_network

    if cfg.thresholds is not None:
        calib = {"thresholds": list(cfg.thresholds), "source": "manifest", "one_network": one_network(cfg)}
    else:
        calib = calibrate_thresholds(client, cfg, console)
        for c in calib["networks"][: 1 if calib["one_network"] else 2]:
            console.print(
                f"calibrated {c['network']} on {calib['n_pairs']} pairs of {cfg.calibration_pairs} ({c['cache']}): "
                f"threshold {c['threshold']:.4f} by {c['rule']} rule, {c['method']}; on the pairs FAR "
                f"{c['far_observed']:.4f} (resolution {c['far_resolution']:.4f}), TAR {c['tar']:.3f}"
            )
    if calib["one_network"]:
        console.print(
            f"identities: ONE network — both configured networks are {cfg.networks[0]} with the same weights "
            "(no second face-recognition model ships offline), so the two-network agreement rule is a one-network rule"
        )
    storage.write_json(storage.join(run, "identities", "thresholds.json"), calib)
    search = SearchSettings(cfg.k, cfg.exact_index_max, cfg.nlist, cfg.nprobe, cfg.gpu)
    settings = DedupSettings(tuple(calib["thresholds"]), cfg.within_dataset, search, calib["one_network"])
    semi = {s.name for s in sources if s.format in SEMI_FORMATS}
    report = client.submit(_assign_and_write, futures[0], run, semi, settings, tuple(cfg.networks), pure=False).result()
    report["calibration"] = calib
    if "networks" in calib:
        from pltd.stages.identities.thresholds import expected_false_merges

        compared = sum(p["pairs_compared"] for p in report["search"].values())
        report["false_merges"] = expected_false_merges(calib["networks"], compared, calib["one_network"])
    storage.write_json(done, report)
    console.print(
        f"identities: {report['identities_in']} in → {report['identities_out']} after merging "
        f"({report['duplicate_pairs_pass1']} duplicate pairs between datasets, "
        f"{report['duplicate_pairs_pass2_300w_lp']} with 300W-LP base photos; {report['rule']})"
    )
    if "false_merges" in report:
        fm = report["false_merges"]
        console.print(
            f"identities: {fm['pairs_compared']:,} identity pairs compared at FAR {fm['far']:.3g}: "
            f"≈ {fm['expected_false_merges']:.3g} false merges expected"
        )
    return report
