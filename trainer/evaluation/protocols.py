"""The evaluation protocols over their datasets' real formats; each returns a JSON-able report."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from pltd.trainer.evaluation.metrics import (
    ced,
    failure_rate_auc,
    nme,
    pose_mae,
    squared_distances,
    tar_at_far,
    ten_fold_accuracy,
    yaw_binned_nme,
    yaw_bins,
)
from pltd.trainer.evaluation.model import EvalModel
from pltd.vectors import l2_normalize


def _decode_resized(data: bytes, size: int) -> np.ndarray:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(im if im.size == (size, size) else im.resize((size, size), Image.BILINEAR))


def verification(model: EvalModel, bins: list[str]) -> dict:
    """10-fold accuracy on insightface .bin pair files (LFW, CFP-FP, AgeDB-30 …), insightface's
    protocol: flip-summed normalised embeddings, thresholds on the squared distance (metrics.py)."""
    from pltd.stages.identities.calibrate import load_bin

    out = {}
    for path in bins:
        images, issame = load_bin(path)
        x = np.stack([_decode_resized(b, model.size) for b in images])
        emb = model.embed_with_flip(x)
        acc, std, thr = ten_fold_accuracy(squared_distances(emb[0::2], emb[1::2]), issame)
        out[Path(path).stem] = {"accuracy": acc, "std": std, "pairs": int(len(issame)),
                                "threshold": thr, "threshold_units": "squared Euclidean distance (insightface)",
                                "threshold_cosine": 1.0 - thr / 2}  # fmt: skip
    return out


def template_features(feats: np.ndarray, templates: np.ndarray, medias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Media-averaged template features: mean per (template, media), summed per template, normalised."""
    keys, inv = np.unique(np.c_[templates, medias], axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    media = np.zeros((len(keys), feats.shape[1]))
    np.add.at(media, inv, feats)
    media /= np.bincount(inv)[:, None]
    tids, tinv = np.unique(keys[:, 0], return_inverse=True)
    tf = np.zeros((len(tids), feats.shape[1]))
    np.add.at(tf, tinv.reshape(-1), media)
    return tids, l2_normalize(tf, axis=1, dtype=None)


def pair_scores(tids: np.ndarray, tf: np.ndarray, t1: np.ndarray, t2: np.ndarray, batch: int = 1_000_000,
                probe: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:  # fmt: skip
    """Cosine of every template pair, in batches; `probe` (ids, features) replaces t2's features."""
    pos1 = np.searchsorted(tids, t1)
    ptids, pf = probe if probe is not None else (tids, tf)
    pos2 = np.searchsorted(ptids, t2)
    ok = (pos2 < len(ptids)) & (ptids[np.minimum(pos2, len(ptids) - 1)] == t2)
    out = np.full(len(t1), np.nan)
    for s in range(0, len(t1), batch):
        a, b, m = pos1[s : s + batch], pos2[s : s + batch], ok[s : s + batch]
        out[s : s + batch][m] = np.einsum("nd,nd->n", tf[a[m]], pf[b[m]])
    return out


def read_ijbc_meta(root: Path) -> dict:
    """insightface's IJB-C meta files; `faceness` is the last column of `ijbc_name_5pts_score.txt`."""
    meta = root / "meta"
    faces = np.loadtxt(meta / "ijbc_face_tid_mid.txt", dtype=str, ndmin=2)
    pairs = np.loadtxt(meta / "ijbc_template_pair_label.txt", dtype=np.int64, ndmin=2)
    lmk = np.loadtxt(meta / "ijbc_name_5pts_score.txt", dtype=str, ndmin=2)
    if lmk.shape[1] != 12:
        raise ValueError(f"{meta / 'ijbc_name_5pts_score.txt'}: {lmk.shape[1]} columns, expected 12 "
                         "(name, 5 points x y, faceness score)")  # fmt: skip
    if len(lmk) != len(faces) or (lmk[:, 0] != faces[:, 0]).any():
        raise ValueError(f"{meta}: ijbc_name_5pts_score.txt and ijbc_face_tid_mid.txt list different images "
                         "(insightface pairs their rows by position)")  # fmt: skip
    return {"names": faces[:, 0], "templates": faces[:, 1].astype(np.int64), "medias": faces[:, 2].astype(np.int64),
            "pairs": pairs, "five": lmk[:, 1:11].astype(float).reshape(-1, 5, 2),
            "faceness": lmk[:, 11].astype(np.float32)}  # fmt: skip


def image_features(flip_sum: np.ndarray, faceness: np.ndarray, normalise_images: bool = False,
                   use_faceness: bool = True) -> np.ndarray:  # fmt: skip
    """Per-image IJB-C features as insightface's `eval_ijbc.py` (use_norm_score, use_detector_score):
    by default the flip sum keeps its norm and is multiplied by the detector's faceness score."""
    f = np.asarray(flip_sum, float)
    if normalise_images:
        f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return f * np.asarray(faceness, float)[:, None] if use_faceness else f


def ijbc(model: EvalModel, root: str | Path, normalise_images: bool = False, use_faceness: bool = True) -> dict:
    """IJB-C 1:1: TAR@FAR over all template pairs, and per probe yaw bucket (soft/medium/hard)."""
    from pltd.stages.identities.align import ARCFACE_112, similarity, warp

    root = Path(root)
    meta = read_ijbc_meta(root)
    images = []
    for name, five in zip(meta["names"], meta["five"], strict=True):
        img = np.asarray(Image.open(root / "loose_crop" / name).convert("RGB"))
        images.append(warp(img, similarity(five, ARCFACE_112 * model.size / 112), model.size))
    x = np.stack(images)
    emb = image_features(model.flip_sum(x), meta["faceness"], normalise_images, use_faceness)
    out = model(x)
    yaw = out["pose"][:, 0] if "pose" in out else None
    tids, tf = template_features(emb, meta["templates"], meta["medias"])
    t1, t2, label = meta["pairs"][:, 0], meta["pairs"][:, 1], meta["pairs"][:, 2]
    scores = pair_scores(tids, tf, t1, t2)
    report = {"templates": int(len(tids)), "pairs": int(len(t1)), "tar_at_far": tar_at_far(scores, label),
              "features": {"flip": "sum", "per_image_normalised": normalise_images,
                           "faceness_weighted": use_faceness}}  # fmt: skip
    if yaw is not None:
        for name, sel in zip(("soft", "medium", "hard"), yaw_bins(yaw).values(), strict=True):
            if not sel.any():
                report[name] = {"pairs": 0}
                continue
            ptids, pf = template_features(emb[sel], meta["templates"][sel], meta["medias"][sel])
            s = pair_scores(tids, tf, t1, t2, probe=(ptids, pf))
            m = ~np.isnan(s)
            report[name] = {"pairs": int(m.sum()), "tar_at_far": tar_at_far(s[m], label[m]) if m.any() else None}
    return report


def face_crops(images: list[np.ndarray], boxes: np.ndarray, size: int, scale: float = 1.4):
    """Square crops around boxes (side = scale × the longer box side) resized to size, and their maps back."""
    crops, maps = [], []
    for img, (x0, y0, x1, y1) in zip(images, boxes, strict=True):
        side = scale * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        crops.append(np.asarray(Image.fromarray(img).transform((size, size), Image.EXTENT, box, Image.BILINEAR)))
        maps.append((box[0], box[1], side / size))
    return np.stack(crops), maps


def aflw2000(model: EvalModel, root: str | Path) -> dict:
    """Pose MAE (|angles| ≤ 99°) and 68-point NME by 3DDFA's yaw bins on AFLW2000-3D (image + .mat
    pairs), every face in the NME (none dropped for |yaw| > 90°); failure rate, AUC and CED.

    Faces are cropped around the ground-truth 68 points' box × 1.4 (the common protocol); landmarks
    are mapped back to image pixels before the NME."""
    import scipy.io

    from pltd.stages.readers.mat_datasets import landmarks_from, pose_from_para

    root = Path(root)
    images, gt_lm, gt_pose = [], [], []
    for jpg in sorted(root.glob("*.jpg")):
        mat = scipy.io.loadmat(jpg.with_suffix(".mat"))
        images.append(np.asarray(Image.open(jpg).convert("RGB")))
        gt_lm.append(np.asarray(landmarks_from(mat, "pt3d_68")).reshape(68, 2))
        gt_pose.append(pose_from_para(mat["Pose_Para"]))
    gt_lm, gt_pose = np.stack(gt_lm), np.array(gt_pose)
    boxes = np.c_[gt_lm.min(axis=1), gt_lm.max(axis=1)]
    x, maps = face_crops(images, boxes, model.size)
    out = model(x)
    report: dict = {"images": len(images)}
    if "pose" in out:
        report["pose"] = pose_mae(out["pose"], gt_pose, limit=99.0)
    if "landmarks" in out:
        pred = np.stack(
            [lm * model.size * s + [ox, oy] for lm, (ox, oy, s) in zip(out["landmarks"], maps, strict=True)]
        )
        report["nme"] = yaw_binned_nme(pred, gt_lm, gt_pose[:, 0])
        report |= nme_summary(nme(pred, gt_lm))
    return report


def nme_summary(errors: np.ndarray) -> dict:
    """Failure rate at NME 0.08 and 0.10, AUC up to 0.10 and the CED curve (PIPNet's definitions)."""
    fr8, _ = failure_rate_auc(errors, 0.08)
    fr10, auc10 = failure_rate_auc(errors, 0.10)
    xs, ys = ced(errors, 0.10, 1e-3)
    return {"failure_rate": {"0.08": fr8, "0.1": fr10}, "auc": {"0.1": auc10},
            "auc_definition": "area under the CED on [0, 0.10] (Simpson, step 1e-4) / 0.10; 1 = no error",
            "ced": {"x": xs.tolist(), "y": ys.tolist()}}  # fmt: skip


def biwi(model: EvalModel, npz: str | Path) -> dict:
    """Pose MAE on BIWI as FSA-Net's BIWI_noTrack.npz (`image`: face crops, `pose`: yaw, pitch, roll)."""
    data = np.load(npz, allow_pickle=False)
    imgs = np.stack(
        [np.asarray(Image.fromarray(im).resize((model.size, model.size), Image.BILINEAR)) for im in data["image"]]
    )
    return {"images": len(imgs), "pose": pose_mae(model(imgs)["pose"], data["pose"], limit=99.0)}
