"""A secured cluster: TLS with mutual authentication from the profile's certificate files; local
clusters listen on loopback only.

Consistency tests (pltd vs pltd) against a real `dask scheduler` and `dask worker` started here with
temporary certificates (made with `cryptography`), on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pltd.pipeline.cluster import ClusterError, LocalProfile, connect, kubernetes_spec, load_profile, make_local_cluster
from pltd.pipeline.config import ManifestError


def make_ca_and_cert(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA, and a certificate and key it signed for 127.0.0.1/localhost (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject, issuer, key, signer, ca: bool):
        b = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        b = b.serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        b = b.not_valid_after(now + dt.timedelta(days=1))
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        if not ca:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} node")])
    ca_cert = cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    leaf = cert(leaf_name, ca_name, key, ca_key, ca=False)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "tls.crt", folder / "tls.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def profile_file(tmp_path: Path, address: str, ca: Path, crt: Path, key: Path) -> Path:
    f = tmp_path / "cluster.yaml"
    f.write_text(
        "profiles:\n  scheduler:\n    kind: scheduler\n"
        f"    address: {address}\n    tls_ca_file: {ca}\n    tls_cert: {crt}\n    tls_key: {key}\n"
    )
    return f


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    ca, crt, key = make_ca_and_cert(tmp / "good", "pltd")
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    tls = ["--tls-ca-file", str(ca), "--tls-cert", str(crt), "--tls-key", str(key)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    cmd = [dask, "scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    cmd += ["--dashboard-address", "127.0.0.1:0"]  # its HTTP routes (/health) listen even without a dashboard
    procs = [subprocess.Popen([*cmd, *tls], **quiet)]
    worker = [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"]
    procs.append(subprocess.Popen([*worker, *tls, "--local-directory", str(tmp / "w")], **quiet))
    try:
        yield tmp, address, (ca, crt, key)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


@pytest.mark.slow
def test_profile_certificates_run_a_task_and_clients_without_them_are_refused(tls_cluster):
    from distributed import Client, Security

    tmp, address, files = tls_cluster
    profile = load_profile("scheduler", profile_file(tmp, address, *files), env={})
    with connect(profile) as client:
        assert client.submit(sum, [1, 2, 3], pure=False).result(timeout=60) == 6
        [worker] = client.scheduler_info()["workers"]
        assert worker.startswith("tls://127.0.0.1:")
    plain = f"tcp://{address.removeprefix('tls://')}"
    with pytest.raises((OSError, TimeoutError)):
        Client(plain, timeout="5s")  # no TLS at all
    other = make_ca_and_cert(tmp / "other", "intruder")  # a certificate the cluster's CA did not sign
    security = Security(
        tls_ca_file=str(other[0]), tls_client_cert=str(other[1]), tls_client_key=str(other[2]), require_encryption=True
    )
    with pytest.raises((OSError, TimeoutError)):
        Client(address, timeout="5s", security=security)


def test_tls_fields_all_or_none_and_a_tls_address_needs_them(tmp_path):
    ca, crt, key = make_ca_and_cert(tmp_path, "pltd")
    f = tmp_path / "c.yaml"
    f.write_text(f"profiles:\n  s: {{kind: scheduler, address: 'tls://127.0.0.1:1', tls_ca_file: {ca}}}\n")
    with pytest.raises(ManifestError, match="missing: tls_cert, tls_key"):
        load_profile("s", f)
    f.write_text("profiles:\n  s: {kind: scheduler, address: 'tls://127.0.0.1:1'}\n")
    with pytest.raises(ManifestError, match="a tls:// scheduler needs tls_ca_file, tls_cert and tls_key"):
        load_profile("s", f)
    f.write_text(f"profiles:\n  s: {{kind: scheduler, address: 'tcp://h:1', tls_ca_file: {ca}, tls_cert: {crt}, "
                 f"tls_key: {key}}}\n")  # fmt: skip
    with (
        pytest.raises(ClusterError, match="with TLS certificates the address is tls://"),
        connect(load_profile("s", f)),
    ):
        pass


def test_slurm_and_kubernetes_profiles_carry_the_certificates(tmp_path):
    from pltd.pipeline.cluster import make_slurm_cluster

    ca, crt, key = make_ca_and_cert(tmp_path, "pltd")
    env = {"PLTD_SLURM_JOBS": "0", "PLTD_TLS_CA_FILE": str(ca), "PLTD_TLS_CERT": str(crt), "PLTD_TLS_KEY": str(key)}
    slurm = load_profile("slurm", env=env)
    with make_slurm_cluster(slurm) as cluster:  # a local TLS scheduler; no job is submitted
        script = cluster.job_script()
        assert cluster.scheduler_address.startswith("tls://")
    assert f"--tls-ca-file {ca}" in script and f"--tls-cert {crt}" in script and "tls://" in script
    k8s = load_profile("kubernetes", env={**env, "PLTD_TLS_SECRET": "pltd-tls"})
    spec = kubernetes_spec(k8s)
    for role in ("scheduler", "worker"):
        pod = spec["spec"][role]["spec"]
        c = pod["containers"][0]
        assert {"name": "pltd-tls", "secret": {"secretName": "pltd-tls"}} in pod["volumes"]
        env_of = {e["name"]: e["value"] for e in c["env"]}
        assert env_of["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
        assert env_of["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] == "/etc/pltd-tls/ca.pem"
    assert spec["spec"]["scheduler"]["spec"]["containers"][0]["args"][-2:] == ["--protocol", "tls"]
    assert spec["spec"]["worker"]["spec"]["containers"][0]["args"][-1].startswith("tls://pltd-scheduler.")


def test_local_profile_refuses_a_public_dashboard():
    with pytest.raises(ValueError, match="loopback only"):
        LocalProfile(kind="local", dashboard_address="0.0.0.0:8787")


def test_every_listener_of_a_local_cluster_is_on_loopback():
    """Scheduler, nannies, workers and dashboard: every listening socket of this process and its children."""
    profile = LocalProfile(kind="local", n_workers=2)
    before = {c.pid for c in psutil.Process().children(recursive=True)}  # other tests' processes
    with make_local_cluster(profile) as cluster:
        deadline = time.monotonic() + 60
        while len(cluster.scheduler_info["workers"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        procs = [psutil.Process(), *(c for c in psutil.Process().children(recursive=True) if c.pid not in before)]
        listening = [
            (p.pid, c.laddr.ip, c.laddr.port)
            for p in procs
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert len({pid for pid, _, _ in listening}) >= 3  # the driver (scheduler, dashboard) and 2 worker processes
        assert {ip for _, ip, _ in listening} <= {"127.0.0.1", "::1"}, listening
        addresses = [cluster.scheduler_address, *cluster.scheduler_info["workers"]]
        assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
