"""Cluster profiles: local and scheduler run here; SLURM and Kubernetes build their objects."""

from __future__ import annotations

import pytest

from pltd.pipeline.cluster import SHIPPED_CLUSTER_FILE, kubernetes_spec, load_profile
from pltd.pipeline.config import ManifestError

CLUSTER_FILE = SHIPPED_CLUSTER_FILE


def test_default_profile_is_local_with_env_overrides():
    p = load_profile(None, CLUSTER_FILE, env={"PLTD_WORKERS": "3", "PLTD_WORKER_MEMORY": "2GiB"})
    assert (p.kind, p.n_workers, p.threads_per_worker, p.memory_limit) == ("local", 3, 1, "2GiB")


def test_address_is_an_existing_scheduler():
    p = load_profile("tcp://10.1.2.3:8786", CLUSTER_FILE)
    assert (p.kind, p.address) == ("scheduler", "tcp://10.1.2.3:8786")


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ManifestError, match="no cluster profile 'gpu'.*local, scheduler, slurm, kubernetes"):
        load_profile("gpu", CLUSTER_FILE)


def test_bad_profile_field_is_named(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("profiles:\n  local: {kind: local, n_wrkers: 2}\n")
    with pytest.raises(ManifestError, match=r"c.yaml: profiles.local.local.n_wrkers"):
        load_profile("local", f)


def test_slurm_profile_builds_a_job_script():
    from pltd.pipeline.cluster import make_slurm_cluster

    env = {"PLTD_SLURM_JOBS": "0", "PLTD_SLURM_PARTITION": "gpu-short", "PLTD_SLURM_ACCOUNT": "faces"}
    p = load_profile("slurm", CLUSTER_FILE, env=env)
    p = p.model_copy(update={"worker_resources": {"GPU": 1}, "job_extra_directives": ["--gres=gpu:1"]})
    with make_slurm_cluster(p) as cluster:  # starts a local scheduler only; no job is submitted
        script = cluster.job_script()
    assert "#SBATCH -p gpu-short" in script and "#SBATCH -A faces" in script
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH -t 08:00:00" in script
    assert "--nthreads 1" in script and "--resources GPU=1" in script and "--nworkers 16" in script


def test_kubernetes_profile_builds_the_dask_operator_spec():
    p = load_profile("kubernetes", CLUSTER_FILE, env={"PLTD_IMAGE": "reg/pltd:1", "PLTD_K8S_NAMESPACE": "ml"})
    spec = kubernetes_spec(p)
    assert spec["kind"] == "DaskCluster" and spec["metadata"]["namespace"] == "ml"
    assert spec["spec"]["worker"]["replicas"] == 8
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    assert worker["image"] == "reg/pltd:1" and worker["args"][-2:] == ["--nthreads", "1"]
    assert worker["resources"]["limits"]["memory"] == "3Gi"
