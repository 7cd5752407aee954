"""The package as a user installs it: `python -m build` makes an sdist and, from it, a wheel that
carries every file pltd reads at run time; installed into a fresh virtual environment, `pltd
--version` and `pltd build --until ingest` on the embedded sample run from outside the checkout.

A consistency test (pltd's packaging against its own checkout). The fresh environment gets pltd from
the wheel only; its dependencies (several GB: torch, mediapipe, …) are reused from the project's
environment through a `.pth` line, which adds that folder to sys.path without running its `.pth`
files, so the checkout's editable install of pltd is not active there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME_FILES = [
    "pltd/pipeline/profiles/dask_cluster.yaml",
    "pltd/manifests/sample.yaml",
    "pltd/manifests/paper.yaml",
    "pltd/stages/data/mean_face_68.json",
    "pltd/stages/data/mediapipe_index_map.json",
    "pltd/trainer/presets/mtl.yaml",
    "pltd/trainer/presets/fr.yaml",
    "pltd/trainer/presets/teacher-300wlp.yaml",
    "pltd/trainer/presets/blink.yaml",
    "pltd/trainer/presets/stl-fr.yaml",
    "pltd/pipeline/sample.py",
]


def test_the_package_profiles_are_the_root_file():
    """One source of the cluster profiles: the root dask_cluster.yaml (the package's file links to it)."""
    from pltd.pipeline.cluster import SHIPPED_CLUSTER_FILE

    assert SHIPPED_CLUSTER_FILE.read_bytes() == (REPO / "dask_cluster.yaml").read_bytes()
    assert SHIPPED_CLUSTER_FILE.resolve() == (REPO / "dask_cluster.yaml").resolve()


@pytest.mark.slow
def test_wheel_installs_and_builds_the_sample(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("pltd-*.whl"))
    assert next(dist.glob("pltd-*.tar.gz"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [f for f in RUNTIME_FILES if f not in names] == []
    assert not [n for n in names if n.split("/")[0] in ("pipeline", "stages", "trainer")]  # all under pltd/

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PLTD_CLUSTER_FILE")}
    env |= {"PLTD_SAMPLE_DIR": str(tmp_path / "sample"), "PLTD_WORKERS": "2", "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=outside, env=env, capture_output=True, text=True, timeout=600)

    where = run(
        str(py), "-c", "import pltd, pltd.pipeline.cluster as c; print(pltd.__file__); print(c.SHIPPED_CLUSTER_FILE)"
    )
    package, profiles = where.stdout.split()
    assert Path(package).is_relative_to(site) and not Path(package).is_relative_to(REPO), where.stdout
    assert Path(profiles).read_bytes() == (REPO / "dask_cluster.yaml").read_bytes()
    assert not Path(profiles).is_symlink()

    version = run(str(venv / "bin" / "pltd"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == "pltd 0.2.0", version.stdout + version.stderr

    build = run(str(venv / "bin" / "pltd"), "build", "--until", "ingest", "--out", str(tmp_path / "run"))
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "206 in, 201 out" in build.stdout
    assert (tmp_path / "run" / "ingest").is_dir()
