"""The identities stage on the cluster: a tree reduction of per-partition sums, then Algorithm 2
on one worker. Global, not per partition: its marker is `RUN/identities/_done.json`."""

from __future__ import annotations

from rich.console import Console

from pltd.pipeline import storage
from pltd.pipeline.config import IdentitiesConfig
from pltd.pipeline.runner import PartitionTask
from pltd.stages.identities.centroids import combine, partial_sums
from pltd.stages.identities.dedup import DedupSettings

SEMI_FORMATS = ("300w_lp",)  # every base photo is an identity of its own (SemiIdentify)


def _sums_of(url: str):
    return partial_sums(storage.read_table(url))


def _calibrate(cfg: IdentitiesConfig) -> dict:
    """Each network's cosine threshold maximising verification accuracy on the pair file."""
    from pltd.stages.identities.calibrate import (
        best_threshold,
        load_bin,
        load_pairs_txt,
        pair_similarities,
        whole_image_landmarker,
    )
    from pltd.stages.identities.embed import EmbedSettings, networks_for

    path = cfg.calibration_pairs
    if path.endswith(".bin"):
        bins, same = load_bin(path)
    else:
        bins, same = load_pairs_txt(path, cfg.calibration_images)
    nets = networks_for(EmbedSettings(tuple(cfg.networks), tuple(cfg.checkpoints)))
    landmarker = whole_image_landmarker()
    out = {"pairs": path, "n_pairs": len(same), "thresholds": [], "accuracy": []}
    for net in nets:
        t, acc = best_threshold(pair_similarities(bins, net, landmarker), same)
        out["thresholds"].append(t)
        out["accuracy"].append(acc)
    return out


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
        fs.pipe_file(path, histogram_png(ident.nearest, s.thresholds, names))
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
    if cfg.thresholds is not None:
        calib = {"thresholds": list(cfg.thresholds), "source": "manifest"}
    else:
        calib = client.submit(_calibrate, cfg, pure=False).result()
        console.print(
            f"calibrated on {calib['n_pairs']} pairs of {cfg.calibration_pairs}: thresholds "
            + ", ".join(
                f"{t:.3f} (accuracy {a:.3f})" for t, a in zip(calib["thresholds"], calib["accuracy"], strict=True)
            )
        )
    storage.write_json(storage.join(run, "identities", "thresholds.json"), calib)
    settings = DedupSettings(tuple(calib["thresholds"]), cfg.within_dataset, cfg.exact_index_max, cfg.nprobe)
    semi = {s.name for s in sources if s.format in SEMI_FORMATS}
    report = client.submit(_assign_and_write, futures[0], run, semi, settings, tuple(cfg.networks), pure=False).result()
    report["calibration"] = calib
    storage.write_json(done, report)
    console.print(
        f"identities: {report['identities_in']} in → {report['identities_out']} after merging "
        f"({report['duplicate_pairs_pass1']} duplicate pairs between datasets, "
        f"{report['duplicate_pairs_pass2_300w_lp']} with 300W-LP base photos)"
    )
    return report
