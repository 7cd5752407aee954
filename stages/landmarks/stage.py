"""The landmarks stage (Algorithm 1) over one partition of ingest rows. No Dask here."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from pltd import worker_cache
from pltd.schemas import LANDMARKS, REJECTED
from pltd.stages.fetch import Fetcher
from pltd.stages.images import ImageProblem, decode_rgb
from pltd.stages.landmarks.blink import adjust_upper_eyes, eye_aspect_ratio, eye_crops, sigma_from_ear
from pltd.stages.landmarks.fitting import Validity, invalid_reason, selective_fit
from pltd.stages.landmarks.geometry import fit_pose
from pltd.stages.landmarks.settings import LandmarkSettings
from pltd.stages.landmarks.sources import Sample
from pltd.stages.landmarks.views import View, make_views, seed_of
from pltd.stages.problems import reason_of, rejected_row

STAGE = "landmarks"


class Models:
    """Everything a worker needs, built once per worker process (see `worker_cache`)."""

    def __init__(self, s: LandmarkSettings):
        from pltd.stages.landmarks.blink import ResNetBlink
        from pltd.stages.landmarks.detect import FaceDetector
        from pltd.stages.landmarks.mean_face import load_mean_face
        from pltd.stages.landmarks.mesh_map import load_index_map
        from pltd.stages.landmarks.sources import create_source

        mean_face = self.mean_face = load_mean_face(s.mean_face)
        self.teacher = create_source(s.teacher, mean_face=mean_face, checkpoint=s.teacher_checkpoint)
        self.second = (
            None
            if s.second == "none"
            else create_source(s.second, mean_face=mean_face, index_map=load_index_map(s.index_map))
        )
        self.blink = ResNetBlink(s.blink_checkpoint) if s.blink == "resnet18" else None
        self.detector = FaceDetector()


def models_for(s: LandmarkSettings) -> Models:
    key = (
        "landmarks",
        s.teacher,
        s.teacher_checkpoint,
        s.second,
        s.index_map,
        s.mean_face,
        s.blink,
        s.blink_checkpoint,
    )
    return worker_cache.cached(key, lambda: Models(s))


def blink_sigmas(
    views: list[View], teacher: list[Sample | None], second: list[Sample | None], s: LandmarkSettings, m: Models
):
    """σ per view and eye: from the view's FaceMesh (EAR) or from the blink network on the teacher's eyes."""
    sig: list[tuple[float, float] | None] = [None] * len(views)
    if s.blink == "mediapipe_ear":
        for i, smp in enumerate(second):
            if smp is not None and smp.mesh is not None:
                sig[i] = tuple(sigma_from_ear(e) for e in eye_aspect_ratio(smp.mesh))
    elif s.blink == "resnet18":
        crops, owners = [], []
        for i, (v, t) in enumerate(zip(views, teacher, strict=True)):
            if t is not None:
                crops += eye_crops(v.image, t.landmarks)
                owners.append(i)
        probs = m.blink(crops).reshape(-1, 2) if crops else np.zeros((0, 2))
        for i, p in zip(owners, probs, strict=True):
            sig[i] = (float(p[0]), float(p[1]))
    return sig


def pose_mode(s: LandmarkSettings, m: Models) -> str:
    """`pose_from` with "auto" resolved: the teacher's pose only when the teacher regresses one.

    Measured on the real 300W-LP render (yaw −44°) with dlib68 + MediaPipe: dlib's landmarks miss
    at that yaw (NME 0.24) and its fitted pose had the wrong sign (+9° label); the fit of the
    selectively fitted mean landmarks gives −38.5° (and +37.7° on the mirror image).
    """
    if s.pose_from != "auto":
        return s.pose_from
    return "fit" if getattr(m.teacher, "pose_is_fitted", True) else "teacher"


def label_image(image: np.ndarray, box: np.ndarray, image_id: str, s: LandmarkSettings, m: Models, teacher_out=None):
    """Algorithm 1 for one image: (Fit, per-view details) — coordinates in source pixels."""
    views = make_views(image, box, s.views, s.view_size, seed_of(image_id))
    teacher = teacher_out if teacher_out is not None else m.teacher(views)
    second = m.second(views) if m.second is not None else [None] * len(views)
    sig = blink_sigmas(views, teacher, second, s, m)
    validity = Validity(s.min_face_fraction, s.min_x_spread)
    pose_from = pose_mode(s, m)
    pts, poses, kinds = [], [], []
    for v, t, sec, sg in zip(views, teacher, second, sig, strict=True):
        if t is not None and invalid_reason(t.landmarks, s.view_size, validity) is None:
            lm = adjust_upper_eyes(t.landmarks, sg) if sg is not None else t.landmarks  # teacher samples only
            pts.append(v.to_source(lm))
            poses.append(t.pose)
            kinds.append("teacher")
        if sec is not None and invalid_reason(sec.landmarks, s.view_size, validity) is None:
            pts.append(v.to_source(sec.landmarks))
            own = sec.pose
            poses.append(t.pose if pose_from == "teacher" and t is not None and t.pose is not None else own)
            kinds.append("second")
    if pose_from == "fit":
        poses = [None] * len(pts)  # no per-sample fits: the accepted landmarks are fitted once below
    fit = selective_fit(pts, poses, s.t_d, s.keep, s.min_samples)
    if pose_from == "fit" and fit.landmarks is not None:
        fit.pose = fit_pose(fit.landmarks, m.mean_face)[0]
    sigmas = [x for x in sig if x is not None]
    details = {
        "kinds": kinds,
        "n_valid": len(pts),
        "eye_closed": np.mean(sigmas, axis=0).tolist() if sigmas else None,
        # one pass of each source on view 0, for the audit of ground-truth rows (resolved only there)
        "single": (views[0], teacher[0], second[0]),
    }
    return fit, details


def _resolve(pose):
    return pose() if callable(pose) else pose


def _flat(a) -> list[float] | None:
    return None if a is None else np.asarray(a, float).reshape(-1).tolist()


def _chunks(rows: list[dict], n: int) -> Iterator[list[dict]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def label_partition(ingest: pa.Table, s: LandmarkSettings) -> tuple[pa.Table, pa.Table]:
    """Label every ingest row: accepted rows (LANDMARKS) and rejected rows (REJECTED)."""
    m = models_for(s)
    out: list[dict] = []
    rej: list[dict] = []
    batched = s.teacher != "dlib68"  # torch teachers: one batch over the views of many images
    with Fetcher() as fetch:
        for chunk in _chunks(ingest.to_pylist(), s.batch_images if batched else 1):
            work = []
            for row in chunk:
                try:
                    image = decode_rgb(fetch.bytes_of(row))
                except (ImageProblem, OSError) as exc:
                    rej.append(rejected_row(row, STAGE, *reason_of(exc)))
                    continue
                box = np.asarray(row["bbox"], float) if row.get("bbox") else m.detector(image)
                if box is None:
                    rej.append(rejected_row(row, STAGE, "no_face", "no face box from the dataset and none detected"))
                    continue
                work.append((row, image, box))
            teacher_outs = _batched_teacher(work, s, m) if batched else [None] * len(work)
            for (row, image, box), t_out in zip(work, teacher_outs, strict=True):
                fit, d = label_image(image, box, row["image_id"], s, m, t_out)
                gt = row.get("landmarks_gt") is not None
                if fit.reason is not None and not gt:
                    detail = f"{d['n_valid']} valid samples" + (
                        f", max distance {fit.max_distance:.3f} > t_d {s.t_d}"
                        if fit.reason == "fit_spread_above_td"
                        else ""
                    )
                    rej.append(rejected_row(row, STAGE, fit.reason, detail))
                    continue
                kept = [d["kinds"][i] for i in fit.kept] if fit.reason is None else []
                rec = {
                    "image_id": row["image_id"],
                    "source": row["source"],
                    "label_kind": "ground_truth" if gt else "pseudo",
                    "landmarks": row["landmarks_gt"] if gt else _flat(fit.landmarks),
                    "pose": row["pose_gt"] if gt else list(fit.pose) if fit.pose else None,
                    "n_samples": len(kept),
                    "n_teacher": kept.count("teacher"),
                    "n_second": kept.count("second"),
                    "n_valid": d["n_valid"],
                    "fit_error": None if np.isnan(fit.fit_error) else fit.fit_error,
                    "eye_closed": d["eye_closed"],
                    "face_box": _flat(box),
                }
                if gt:
                    view0, t0, s0 = d["single"]
                    st = (view0.to_source(t0.landmarks), _resolve(t0.pose)) if t0 else None
                    ss = (view0.to_source(s0.landmarks), _resolve(s0.pose)) if s0 else None
                    rec |= {
                        "pseudo_status": fit.reason or "accepted",
                        "pseudo_landmarks": _flat(fit.landmarks),
                        "pseudo_pose": list(fit.pose) if fit.pose else None,
                        "single_teacher_landmarks": _flat(st[0]) if st else None,
                        "single_teacher_pose": list(st[1]) if st and st[1] else None,
                        "single_second_landmarks": _flat(ss[0]) if ss else None,
                        "single_second_pose": list(ss[1]) if ss and ss[1] else None,
                    }
                out.append(rec)
    return pa.Table.from_pylist(out, schema=LANDMARKS), pa.Table.from_pylist(rej, schema=REJECTED)


def _batched_teacher(work, s: LandmarkSettings, m: Models) -> list[list[Sample | None]]:
    """Run a torch teacher once over every view of every image in `work`."""
    all_views = [make_views(img, box, s.views, s.view_size, seed_of(row["image_id"])) for row, img, box in work]
    flat = [v for vs in all_views for v in vs]
    samples = m.teacher(flat) if flat else []
    return [samples[i * s.views : (i + 1) * s.views] for i in range(len(work))]
