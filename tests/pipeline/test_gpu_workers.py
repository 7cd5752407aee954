"""The local profile's GPU resource: as many GPU workers as GPUs, each on its own device.

Consistency tests (pltd vs pltd) on a real LocalCluster (real nanny processes); the GPU count is
injected by replacing `cluster.gpu_count`, so they run on a machine without a GPU. No CUDA context is
opened: the workers report their resources and `CUDA_VISIBLE_DEVICES`.
"""

from __future__ import annotations

import os

import pytest

from pltd.pipeline import cluster
from pltd.pipeline.cluster import LocalProfile, gpu_devices, make_local_cluster


def visible_devices() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def workers_of(profile: LocalProfile) -> dict[str, tuple[dict, str | None]]:
    """Worker name → (resources, CUDA_VISIBLE_DEVICES) on a started local cluster."""
    from distributed import Client

    with make_local_cluster(profile) as c, Client(c) as client:
        info = client.scheduler_info(n_workers=-1)["workers"]
        env = client.run(visible_devices)
        return {str(w["name"]): (w.get("resources") or {}, env[addr]) for addr, w in info.items()}


PROFILE = LocalProfile(kind="local", n_workers=3, memory_limit="1GiB", dashboard_address="127.0.0.1:0")


@pytest.mark.slow
def test_one_gpu_goes_to_one_worker_and_the_others_see_none(monkeypatch):
    monkeypatch.setattr(cluster, "gpu_count", lambda: 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    workers = workers_of(PROFILE)
    assert sorted(workers) == ["1", "2", "gpu-0"]
    assert workers["gpu-0"] == ({"GPU": 1}, "0")
    assert workers["1"] == workers["2"] == ({}, "")  # CPU workers: no resource, no device


def test_without_gpus_every_worker_is_alike(monkeypatch):
    monkeypatch.setattr(cluster, "gpu_count", lambda: 0)
    workers = workers_of(PROFILE.model_copy(update={"n_workers": 2}))
    assert sorted(workers) == ["0", "1"]
    assert all(res == {} for res, _ in workers.values())


def test_devices_follow_an_inherited_visible_list():
    assert gpu_devices(2, {"CUDA_VISIBLE_DEVICES": "3, 5,7"}) == ["3", "5"]
    assert gpu_devices(2, {}) == ["0", "1"]
    assert gpu_devices(0, {"CUDA_VISIBLE_DEVICES": "1"}) == []
