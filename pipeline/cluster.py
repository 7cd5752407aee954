"""Cluster profiles (`dask_cluster.yaml`) → a connected `distributed.Client`.

`local` and `scheduler` run anywhere; `slurm` and `kubernetes` build their cluster objects from the
same file through dask-jobqueue / dask-kubernetes, imported only when used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import dask
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pltd.pipeline.config import PROJECT_ROOT, ManifestError, interpolate
from pltd.validation import error_lines


class ClusterError(RuntimeError):
    """A cluster that cannot be used (no workers, unreachable scheduler)."""


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalProfile(_Profile):
    kind: Literal["local"]
    n_workers: int = Field(0, ge=0)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "3GiB"
    dashboard_address: str = "127.0.0.1:0"


class SchedulerProfile(_Profile):
    kind: Literal["scheduler"]
    address: str = Field(pattern=r"^(tcp|tls|ucx|inproc)://")


class SlurmProfile(_Profile):
    kind: Literal["slurm"]
    jobs: int = Field(1, ge=0)
    queue: str | None = None
    account: str | None = None
    cores: int = Field(ge=1)
    processes: int = Field(1, ge=1)
    memory: str
    walltime: str = "01:00:00"
    local_directory: str | None = None
    job_extra_directives: list[str] = []
    job_script_prologue: list[str] = []
    worker_resources: dict[str, float] = {}  # e.g. {GPU: 1} with job_extra_directives ["--gres=gpu:1"]


class KubernetesProfile(_Profile):
    kind: Literal["kubernetes"]
    name: str = "pltd"
    namespace: str = "default"
    image: str
    n_workers: int = Field(1, ge=0)
    worker_threads: int = Field(1, ge=1)
    resources: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}


Profile = Annotated[LocalProfile | SchedulerProfile | SlurmProfile | KubernetesProfile, Field(discriminator="kind")]


class ClusterFile(_Profile):
    default: str = "local"
    profiles: dict[str, Profile]


# The worker's statistical profiler samples every thread's stack every 10 ms while holding the GIL;
# on single-thread workers running Python-heavy stages that alone costs ~10 % of throughput.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


def default_cluster_file() -> Path:
    here = Path.cwd() / "dask_cluster.yaml"
    return here if here.exists() else PROJECT_ROOT / "dask_cluster.yaml"


def load_profile(name: str | None, path: str | Path | None = None, env: dict[str, str] | None = None):
    """The profile `name` (or the file's default); a `tcp://…` name is an existing scheduler."""
    if name and "://" in name:
        return SchedulerProfile(kind="scheduler", address=name)
    path = Path(path) if path else default_cluster_file()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: cluster profile file not found") from None
    env = dict(os.environ) if env is None else env
    try:
        cf = ClusterFile.model_validate(_blank_to_none(interpolate(raw, "", env)))
    except ValidationError as exc:
        raise ManifestError("\n".join(error_lines(exc, f"{path}: "))) from None
    name = name or cf.default
    if name not in cf.profiles:
        raise ManifestError(f"{path}: no cluster profile {name!r}; profiles: {', '.join(cf.profiles)}")
    return cf.profiles[name]


def _blank_to_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _blank_to_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_blank_to_none(x) for x in v]
    return None if v == "" else v


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch or a broken driver: no GPU resource
        return 0


def make_local_cluster(p: LocalProfile):
    from distributed import LocalCluster

    n = p.n_workers or os.cpu_count() or 1
    gpus = gpu_count()
    # GPU stages ask for resources={"GPU": 1}; give that to as many workers as there are GPUs.
    kwargs: dict[str, Any] = {}
    if gpus:
        kwargs["resources"] = {"GPU": 1}
    with dask.config.set(WORKER_CONFIG):  # the nannies hand this config to their workers
        return LocalCluster(
            n_workers=n,
            threads_per_worker=p.threads_per_worker,
            processes=True,
            memory_limit=p.memory_limit,
            dashboard_address=p.dashboard_address,
            **kwargs,
        )


def make_slurm_cluster(p: SlurmProfile):
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        queue=p.queue,
        account=p.account,
        cores=p.cores,
        processes=p.processes,
        memory=p.memory,
        walltime=p.walltime,
        local_directory=p.local_directory,
        job_extra_directives=list(p.job_extra_directives),
        job_script_prologue=list(p.job_script_prologue),
        worker_extra_args=["--nthreads", "1", *_resource_args(p.worker_resources)],
    )
    if p.jobs:
        cluster.scale(jobs=p.jobs)
    return cluster


def _resource_args(resources: dict[str, float]) -> list[str]:
    if not resources:
        return []
    return ["--resources", " ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))]


def kubernetes_spec(p: KubernetesProfile) -> dict:
    """The DaskCluster custom resource for the Dask operator, built without talking to Kubernetes."""
    from dask_kubernetes.operator import make_cluster_spec

    spec = make_cluster_spec(
        name=p.name,
        image=p.image,
        n_workers=p.n_workers,
        resources=p.resources or None,
        env=p.env or None,
        worker_command="dask-worker",
    )
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    worker["args"] = [*worker.get("args", []), "--nthreads", str(p.worker_threads)]
    spec["metadata"]["namespace"] = p.namespace
    return spec


def make_kubernetes_cluster(p: KubernetesProfile):
    from dask_kubernetes.operator import KubeCluster

    return KubeCluster(custom_cluster_spec=kubernetes_spec(p), namespace=p.namespace)


@contextlib.contextmanager
def connect(profile) -> Iterator[Any]:
    """A Client for `profile`; clusters this process started are closed on exit."""
    from distributed import Client

    makers = {"local": make_local_cluster, "slurm": make_slurm_cluster, "kubernetes": make_kubernetes_cluster}
    if profile.kind == "scheduler":
        with Client(profile.address, timeout="30s") as client:
            try:
                client.wait_for_workers(1, timeout=120)
            except TimeoutError:
                raise ClusterError(
                    f"scheduler {profile.address} has had no worker for 120 s; start `dask worker`"
                ) from None
            yield client
        return
    with makers[profile.kind](profile) as cluster, Client(cluster) as client:
        yield client
