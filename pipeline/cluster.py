"""Cluster profiles → a connected `distributed.Client`.

The profiles ship inside the package (`pipeline/profiles/dask_cluster.yaml`, so a wheel install has
them); `--cluster-file FILE` or `$PLTD_CLUSTER_FILE` names another file. No file is looked up in the
working directory: which profiles a build uses never depends on where it was started.

`local` and `scheduler` run anywhere; `slurm` and `kubernetes` build their cluster objects from the
same file through dask-jobqueue / dask-kubernetes, imported only when used.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import dask
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pltd.pipeline.config import ManifestError, interpolate
from pltd.validation import error_lines


class ClusterError(RuntimeError):
    """A cluster that cannot be used (no workers, unreachable scheduler)."""


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalProfile(_Profile):
    kind: Literal["local"]
    n_workers: int = Field(0, ge=0)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "3GiB"
    dashboard_address: str = "127.0.0.1:0"
    # times the build starts again workers whose nanny closed (pipeline/watch.py) before it stops without workers
    worker_restarts: int = Field(3, ge=0)

    @field_validator("dashboard_address")
    @classmethod
    def _loopback(cls, v: str) -> str:
        host = v.rpartition(":")[0].strip("[]")
        if host not in LOOPBACK:
            raise ValueError(f"{v}: a local cluster listens on loopback only ({', '.join(sorted(LOOPBACK))})")
        return v


class _Secured(_Profile):
    """TLS with mutual authentication through distributed's `Security`: a CA and a certificate and key
    it signed, used by this client and (slurm, kubernetes) by the scheduler and workers it starts. A
    peer without a certificate from that CA is refused. All three files, or none."""

    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @model_validator(mode="after")
    def _all_or_none(self):
        named = [f for f in ("tls_ca_file", "tls_cert", "tls_key") if getattr(self, f)]
        if named and len(named) < 3:
            missing = sorted({"tls_ca_file", "tls_cert", "tls_key"} - set(named))
            raise ValueError(f"TLS needs tls_ca_file, tls_cert and tls_key; missing: {', '.join(missing)}")
        return self

    def security(self):
        """distributed.Security for these files (encryption required), or None without TLS."""
        if not self.tls_ca_file:
            return None
        from distributed import Security

        for name in ("tls_ca_file", "tls_cert", "tls_key"):
            if not Path(getattr(self, name)).is_file():
                raise ClusterError(f"cluster profile: {name}: {getattr(self, name)} not found")
        cert, key = self.tls_cert, self.tls_key
        return Security(
            tls_ca_file=self.tls_ca_file,
            tls_client_cert=cert,
            tls_client_key=key,
            tls_scheduler_cert=cert,
            tls_scheduler_key=key,
            tls_worker_cert=cert,
            tls_worker_key=key,
            require_encryption=True,
        )


class SchedulerProfile(_Secured):
    kind: Literal["scheduler"]
    address: str = Field(pattern=r"^(tcp|tls|ucx|inproc)://")

    @model_validator(mode="after")
    def _tls_address(self):
        if self.address.startswith("tls://") and not self.tls_ca_file:
            raise ValueError(f"address {self.address}: a tls:// scheduler needs tls_ca_file, tls_cert and tls_key")
        return self


class SlurmProfile(_Secured):
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


class KubernetesProfile(_Secured):
    kind: Literal["kubernetes"]
    name: str = "pltd"
    namespace: str = "default"
    image: str
    n_workers: int = Field(1, ge=0)
    worker_threads: int = Field(1, ge=1)
    resources: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    tls_secret: str | None = None  # a Secret with ca.pem, tls.crt, tls.key for the pods (with the tls_* fields)


Profile = Annotated[LocalProfile | SchedulerProfile | SlurmProfile | KubernetesProfile, Field(discriminator="kind")]


class ClusterFile(_Profile):
    default: str = "local"
    profiles: dict[str, Profile]


# The worker's statistical profiler samples every thread's stack every 10 ms while holding the GIL;
# on single-thread workers running Python-heavy stages that alone costs ~10 % of throughput.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


SHIPPED_CLUSTER_FILE = Path(__file__).resolve().parent / "profiles" / "dask_cluster.yaml"


def default_cluster_file(env: dict[str, str] | None = None) -> Path:
    """`$PLTD_CLUSTER_FILE` if set, else the profiles shipped with pltd."""
    named = (os.environ if env is None else env).get("PLTD_CLUSTER_FILE")
    return Path(named) if named else SHIPPED_CLUSTER_FILE


def load_profile(name: str | None, path: str | Path | None = None, env: dict[str, str] | None = None):
    """The profile `name` (or the file's default); a `tcp://…` name is an existing scheduler."""
    if name and "://" in name:
        return SchedulerProfile(kind="scheduler", address=name)
    env = dict(os.environ) if env is None else env
    path = Path(path) if path else default_cluster_file(env)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: cluster profile file not found") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
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
    """GPUs this machine's workers may use (tests replace this function to inject a count)."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch or a broken driver: no GPU resource
        return 0


def gpu_devices(gpus: int, env: dict[str, str] | None = None) -> list[str]:
    """The CUDA device each GPU worker sees: the i-th of an inherited `CUDA_VISIBLE_DEVICES`, else i."""
    visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    names = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(gpus)]
    return names[:gpus]


def make_local_cluster(p: LocalProfile):
    """A LocalCluster whose first min(GPUs, workers) workers hold the `GPU` resource, one device each.

    GPU stages ask for resources={"GPU": 1}, so they run on those workers only, each pinned to its own
    device by `CUDA_VISIBLE_DEVICES`; the other workers see no GPU (an empty `CUDA_VISIBLE_DEVICES`),
    so no stage opens a CUDA context there. Stages without the resource run on every worker."""
    from distributed import LocalCluster

    from pltd.pipeline.watch import no_workers_timeout

    n = p.n_workers or os.cpu_count() or 1
    devices = gpu_devices(min(gpu_count(), n))
    # the scheduler (in this process) fails tasks queued without any worker after the same time as the
    # build's watch stops the build
    with dask.config.set({"distributed.scheduler.no-workers-timeout": f"{no_workers_timeout()}s"}):
        cluster = LocalCluster(
            n_workers=0 if devices else n,  # with GPUs, every worker's spec is set below before it starts
            threads_per_worker=p.threads_per_worker,
            processes=True,
            memory_limit=p.memory_limit,
            host="127.0.0.1",  # scheduler, nannies and workers: loopback only
            dashboard_address=p.dashboard_address,
            config=WORKER_CONFIG,  # each nanny hands it to its worker, also to workers started again later
        )
        if devices:
            cls, options = cluster.new_spec["cls"], cluster.new_spec["options"]
            for i in range(n):
                gpu = i < len(devices)
                env = {**options.get("env", {}), "CUDA_VISIBLE_DEVICES": devices[i] if gpu else ""}
                extra = {"resources": {"GPU": 1}} if gpu else {}
                spec = {"cls": cls, "options": {**options, "env": env, **extra}}
                cluster.worker_spec[f"gpu-{i}" if gpu else i] = spec
            cluster.scale(n)  # starts the workers of those specs
            cluster.wait_for_workers(n)
    return cluster


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
        security=p.security(),  # with TLS: protocol tls://, the workers get --tls-* arguments
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
    if p.tls_secret:
        _kubernetes_tls(spec, p)
    return spec


TLS_MOUNT = "/etc/pltd-tls"


def _kubernetes_tls(spec: dict, p: KubernetesProfile) -> None:
    """Scheduler and workers on tls:// with the certificates of Secret `tls_secret`, encryption required."""
    env = {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": f"{TLS_MOUNT}/ca.pem",
        **{f"DASK_DISTRIBUTED__COMM__TLS__{role}__{k}": f"{TLS_MOUNT}/tls.{ext}"
           for role in ("SCHEDULER", "WORKER", "CLIENT") for k, ext in (("CERT", "crt"), ("KEY", "key"))},
    }  # fmt: skip
    address = f"tls://{p.name}-scheduler.{p.namespace}.svc.cluster.local:8786"
    for role in ("scheduler", "worker"):
        pod = spec["spec"][role]["spec"]
        pod.setdefault("volumes", []).append({"name": "pltd-tls", "secret": {"secretName": p.tls_secret}})
        c = pod["containers"][0]
        c["env"] = [*(c.get("env") or []), *({"name": k, "value": v} for k, v in env.items())]
        c.setdefault("volumeMounts", []).append({"name": "pltd-tls", "mountPath": TLS_MOUNT, "readOnly": True})
        c["args"] = [*c["args"], *(["--protocol", "tls"] if role == "scheduler" else [address])]


def make_kubernetes_cluster(p: KubernetesProfile):
    from dask_kubernetes.operator import KubeCluster

    return KubeCluster(custom_cluster_spec=kubernetes_spec(p), namespace=p.namespace)


def reachable(profile, timeout: float = 5.0) -> None:
    """A `scheduler` profile's address answers a TCP connection, or ClusterError (in seconds, not 30)."""
    if profile.kind != "scheduler" or not profile.address.startswith(("tcp://", "tls://")):
        return
    where = urlsplit(profile.address)
    try:
        port = where.port
    except ValueError:
        port = None
    if not where.hostname or port is None:
        raise ClusterError(f"--cluster {profile.address}: expected tcp://HOST:PORT")
    # a scheduler started a moment ago (a script that starts it, then builds) gets `timeout` seconds
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((where.hostname, port), timeout=timeout).close()
            return
        except ConnectionRefusedError as exc:
            if time.monotonic() < deadline:
                time.sleep(0.25)
                continue
            why = exc.strerror or type(exc).__name__
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"no Dask scheduler answers at {profile.address} ({why}); start one with `dask scheduler` "
            "and workers with `dask worker ADDRESS`, or leave out --cluster for a local cluster"
        ) from None


def _serves_bokeh(dask_scheduler) -> bool:
    """On the scheduler: does its HTTP server carry the bokeh dashboard application?"""
    apps = getattr(getattr(dask_scheduler, "http_application", None), "applications", None) or []
    return any("Bokeh" in type(a).__name__ for a in apps)


def dashboard_link(client) -> str | None:
    """The dashboard's URL if the scheduler really serves one, else None. distributed's HTTP server
    listens on the dashboard port even without a dashboard (`--no-dashboard`, or no bokeh where the
    scheduler runs), so the scheduler itself is asked whether its HTTP server carries the bokeh
    application (no HTTP request is made; tested against a LocalCluster and a
    `dask scheduler --no-dashboard`)."""
    if not (client.scheduler_info().get("services") or {}).get("dashboard"):
        return None
    try:
        return client.dashboard_link if client.run_on_scheduler(_serves_bokeh) else None
    except Exception:  # a scheduler that refuses run_on_scheduler: no link rather than a wrong one
        return None


@contextlib.contextmanager
def connect(profile, worker_logs: str | None = None) -> Iterator[Any]:
    """A Client for `profile`; clusters this process started are closed on exit, quietly.

    `worker_logs`: on a local cluster, a folder that receives each worker process's stderr
    (`worker_logs.py`; elsewhere the workers' stderr is not this terminal anyway), and distributed's
    shutdown warnings are silenced; None (`pltd -v`) shows everything."""
    from distributed import Client

    from pltd.pipeline.worker_logs import quiet_close, send_stderr_to

    makers = {"local": make_local_cluster, "slurm": make_slurm_cluster, "kubernetes": make_kubernetes_cluster}
    if profile.kind == "scheduler":
        if profile.tls_ca_file and not profile.address.startswith("tls://"):
            raise ClusterError(f"scheduler {profile.address}: with TLS certificates the address is tls://HOST:PORT")
        with Client(profile.address, timeout="30s", security=profile.security()) as client:
            try:
                client.wait_for_workers(1, timeout=120)
            except TimeoutError:
                raise ClusterError(
                    f"scheduler {profile.address} has had no worker for 120 s; start `dask worker`"
                ) from None
            yield client
        return
    security = profile.security() if profile.kind != "local" else None
    with quiet_close() as silence, makers[profile.kind](profile) as cluster, Client(cluster, security=security) as c:
        if worker_logs and profile.kind == "local":
            send_stderr_to(c, worker_logs)
        try:
            yield c
        finally:
            if worker_logs:  # quiet mode: the client, then the cluster, close without shutdown warnings
                silence()
