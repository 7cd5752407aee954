"""docs/extending.md against the code: its table of backends is the registries' declarations, and its
two steps for a new landmark source work, followed once with a toy source.

Consistency tests (the manual vs pltd's registries); the toy source's label is checked against a
value known by construction (its points are the mean 3D face at yaw 20°, so the fitted pose is 20°).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from pltd.pipeline.build import StartupError, check, sources_of, stages_to_run
from pltd.pipeline.catalog import Landmarks
from pltd.pipeline.config import Manifest
from pltd.pipeline.layout import RunLayout
from pltd.pipeline.stage import BuildContext
from pltd.pose import project, rotation
from pltd.stages.identities.networks import NETWORKS
from pltd.stages.landmarks.base import SOURCES, FittedPose, Sample, register
from pltd.stages.landmarks.blink import BLINKS
from pltd.stages.landmarks.ibug import MIRROR68
from pltd.stages.landmarks.settings import LandmarkSettings
from pltd.stages.landmarks.stage import Models, label_image

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def test_the_backend_table_is_the_registries_declarations():
    table = DOC.read_text().split("<!-- backends -->\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    rows = {tuple(c.strip() for c in line.strip().strip("|").split("|")) for line in table}
    want = set()
    for reg in (SOURCES, BLINKS, NETWORKS):
        for name in reg.names():
            b = reg.get(name)
            fitted = {True: "yes", False: "no"}.get(getattr(b, "pose_is_fitted", None), "")
            want.add((reg.kind, f"`{name}`", ", ".join(getattr(b, "roles", ())), ", ".join(b.packages),
                      "yes" if b.wants_gpu else "no", fitted))  # fmt: skip
    assert rows == want


YAW = 20.0
FACE = (70.0, 70.0, 170.0, 170.0)  # source pixels


class ToySource(FittedPose):
    """Step 1 of docs/extending.md: the mean 3D face at yaw 20° in a fixed place of the source image
    (`FACE`), seen through each view (mirrored views flipped back to iBUG order), so every view agrees."""

    packages = ("numpy",)
    wants_gpu = False
    jaw_style = "3d"  # its jaw points are the model's vertices, as the PLTD's default jaw

    @classmethod
    def model_files(cls, checkpoint: str | None = None, **_):
        return {"checkpoint": (True, checkpoint)}

    def __init__(self, mean_face: np.ndarray, checkpoint: str, **_):
        self.mean_face = mean_face
        self.checkpoint = checkpoint
        face = mean_face - mean_face.mean(axis=0)
        x0, y0, x1, y1 = FACE
        self.points = project(
            face, rotation(YAW, 0.0, 0.0), (x1 - x0) / np.ptp(face[:, 0]), ((x0 + x1) / 2, (y0 + y1) / 2)
        )

    def __call__(self, views):
        out = []
        for v in views:
            pts = (self.points - [v.x0, v.y0]) * v.scale
            if getattr(v, "mirrored", False):
                pts = np.column_stack([v.image.shape[1] - pts[:, 0], pts[:, 1]])[MIRROR68]
            out.append(Sample(pts, None, self.name))
        return out


@pytest.fixture
def toy():
    """Step 2: the registration (a plugin imports its module before the manifest is read); undone after."""
    register("toy")(ToySource)
    yield ToySource
    SOURCES._items.pop("toy")


def test_a_toy_source_in_one_module_and_one_registration(toy, tmp_path):
    (tmp_path / "faces").mkdir()
    weights = tmp_path / "toy.bin"
    src = {"name": "faces", "format": "image_folder", "root": str(tmp_path / "faces"), "allow_empty": True}
    lm = {"teacher": "toy", "teacher_checkpoint": str(weights), "second": "none", "blink": "none"}
    m = Manifest.model_validate({"name": "t", "sources": [src], "landmarks": lm})
    assert m.landmarks.teacher == "toy"  # the settings' allowed names are the registry's
    ctx = BuildContext(m, RunLayout(str(tmp_path / "run")), Console(quiet=True), sources_of(m))
    assert "numpy" in Landmarks().packages(m) and not Landmarks().wants_gpu(m)
    with pytest.raises(
        StartupError, match=f"^landmarks.teacher_checkpoint: model file {re.escape(str(weights))} not found"
    ):
        check(ctx, stages_to_run(m, None))
    weights.write_bytes(b"toy")
    check(ctx, stages_to_run(m, None))

    s: LandmarkSettings = m.landmarks
    models = Models(s)  # what a worker builds, from the same declarations
    assert isinstance(models.teacher, ToySource) and models.teacher.checkpoint == str(weights)
    image = np.random.default_rng(0).integers(0, 256, (240, 240, 3), dtype=np.uint8)
    fit, _ = label_image(image, np.array([60.0, 60.0, 180.0, 180.0]), "toy-0", s, models)
    assert fit.reason is None and np.abs(fit.landmarks - models.teacher.points).max() < 0.5  # every view agreed
    assert fit.pose[0] == pytest.approx(YAW, abs=1.0) and abs(fit.pose[1]) < 1.0 and abs(fit.pose[2]) < 1.0
