"""Threshold calibration for the identities stage: each distinct network embeds the pair file once,
in chunks on the workers with a progress bar, and its pair cosines are cached.

Cache: `$PLTD_CACHE` (default `~/.cache/pltd`)/calibration/<key>.npz, key = sha256 of (network
name, sha256 of its weights file, sha256 of the pair file's images and flags, `VERSION`). A rerun
of the same networks on the same pairs — any run folder, any threshold rule or FAR — reads the
cosines back and embeds nothing. Two configured networks that are the same model (same name and
the same weights file hash: the offline sample's dlib twice) are embedded once, and the stage
then applies the one-network rule.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pltd import worker_cache
from pltd.pipeline.config import IdentitiesConfig
from pltd.stages.identities.thresholds import calibrate

VERSION = 1  # bump when the pair embedding (landmarker, alignment) changes
CHUNK_PAIRS = 10  # pairs per task: progress granularity, and the work spreads over the workers


def cache_dir() -> Path:
    return Path(os.environ.get("PLTD_CACHE") or Path.home() / ".cache" / "pltd") / "calibration"


def _sha256_file(path: str | Path) -> str:
    st = Path(path).stat()
    return _sha256_of(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:  # hashed once per file version per process
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_file(name: str, checkpoint: str | None) -> str:
    if checkpoint:
        return checkpoint
    if name == "dlib":
        from pltd.stages.landmarks.sources import shipped_model

        return shipped_model("dlib_face_recognition_resnet_model_v1.dat")
    raise ValueError(f"network {name!r} needs a weights file (identities.checkpoints)")


def network_keys(cfg: IdentitiesConfig) -> list[str]:
    """One identity per configured network: its name and its weights file's hash."""
    keys = [f"{n}:{_sha256_file(weights_file(n, c))}" for n, c in zip(cfg.networks, cfg.checkpoints, strict=True)]
    return [key + (f":{cfg.network_options(k)!r}" if cfg.network_options(k) else "") for k, key in enumerate(keys)]


def one_network(cfg: IdentitiesConfig) -> bool:
    keys = network_keys(cfg)
    return keys[0] == keys[1]


def load_pairs(cfg: IdentitiesConfig) -> tuple[list[bytes], np.ndarray]:
    from pltd.stages.identities.calibrate import load_bin, load_pairs_txt

    path = cfg.calibration_pairs
    return load_bin(path) if path.endswith(".bin") else load_pairs_txt(path, cfg.calibration_images)


def _pairs_hash(bins: list[bytes], same: np.ndarray) -> str:
    h = hashlib.sha256(np.asarray(same, bool).tobytes())
    for b in bins:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _chunk_cosines(bins: list[bytes], name: str, checkpoint: str | None, options: dict) -> np.ndarray:
    """On a worker: the cosines of consecutive pairs (images 2k, 2k+1)."""
    from pltd.stages.identities.calibrate import pair_similarities, whole_image_landmarker
    from pltd.stages.identities.networks import cached_network

    net = cached_network(name, checkpoint, **options)
    landmarker = worker_cache.cached(("calibration_landmarker",), whole_image_landmarker)
    return pair_similarities(bins, net, landmarker)


def pair_cosines(client, cfg: IdentitiesConfig, console: Console) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Each configured network's cosines on the pair file, from the cache or embedded once per model."""
    bins, same = load_pairs(cfg)
    pairs = _pairs_hash(bins, same)
    keys = network_keys(cfg)
    cosines: dict[str, np.ndarray] = {}
    status: dict[str, str] = {}
    todo = []
    for k, (key, name, ckpt) in enumerate(zip(keys, cfg.networks, cfg.checkpoints, strict=True)):
        if key in cosines or key in status:
            continue
        file = cache_dir() / (hashlib.sha256(f"{key}|{pairs}|{VERSION}".encode()).hexdigest() + ".npz")
        if file.is_file():
            cosines[key], status[key] = np.load(file, allow_pickle=False)["cosines"], "cache hit"
        else:
            todo.append((key, name, ckpt, cfg.network_options(k), file))
            status[key] = "embedded"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    n_pairs = len(same)
    for key, name, ckpt, options, file in todo:
        from distributed import as_completed

        starts = list(range(0, n_pairs, CHUNK_PAIRS))
        chunk = 2 * CHUNK_PAIRS
        futs = {
            client.submit(_chunk_cosines, bins[2 * a : 2 * a + chunk], name, ckpt, options, pure=False): a
            for a in starts
        }
        out = np.zeros(n_pairs, np.float32)
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task(f"calibration: {name} embeds {n_pairs} pairs", total=n_pairs)
            for fut in as_completed(futs):
                a = futs[fut]
                part = fut.result()
                out[a : a + len(part)] = part
                progress.update(bar, advance=len(part))
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp.npz")
        np.savez(tmp, cosines=out)
        tmp.replace(file)
        cosines[key] = out
    return [cosines[k] for k in keys], same, [status[k] for k in keys]


def calibrate_thresholds(client, cfg: IdentitiesConfig, console: Console) -> dict:
    """Both networks' thresholds under the configured rule, with what each achieves on the pairs."""
    sims, same, status = pair_cosines(client, cfg, console)
    per_net = [calibrate(s, same, cfg.threshold_rule, cfg.far) for s in sims]
    for k, (c, st) in enumerate(zip(per_net, status, strict=True)):
        c["network"], c["cache"] = cfg.networks[k], st
    return {
        "pairs": cfg.calibration_pairs,
        "n_pairs": len(same),
        "rule": cfg.threshold_rule,
        "thresholds": [c["threshold"] for c in per_net],
        "accuracy": [c["accuracy"] for c in per_net],
        "networks": per_net,
        "one_network": network_keys(cfg)[0] == network_keys(cfg)[1],
    }
