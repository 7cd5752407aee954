"""The embedded sample: real faces from installed packages, laid out as the paper's three datasets.

Faces: scikit-image's LFW subset (`skimage.data.lfw_subset()`: 100 LFW faces, 25x25 grey) and
astronaut (Eileen Collins), and matplotlib's `grace_hopper.jpg`. The LFW subset carries no names,
so each of its faces is one identity; an identity's images are seeded re-crops, shifts, flips,
small rotations and photometric changes of that face. Layout:

- `vggface2/train/n0000NN/*.jpg` + `vggface2/bb_landmark/loose_bb_train.csv` (16 identities);
- `ms1mv3/train.rec` + `train.idx`, insightface layout with header and identity records, 112x112
  (21 identities; 5 of them — astronaut and LFW faces 10–13 — also in the VGGFace2 part, so that
  duplicate merging has real duplicates to find);
- `300w_lp/{HELEN,HELEN_Flip}/*.jpg` + `.mat` (pt2d: the mean of dlib's 68-point predictor and
  MediaPipe's mesh on the full-resolution base photo, moved with each render; Pose_Para with
  yaw = pitch = 0 assumed and roll from the eye line: a reference, not ground truth) and
  `300w_lp/landmarks/HELEN/*_pts.mat` (pts_3d: the same points with 3DDFA_V2's 3D-style jaw);
- `calibration/lfw_subset_pairs.bin`: verification pairs (insightface format) from LFW faces
  50–99, which no dataset part uses, to calibrate the face-recognition thresholds;
- a few deliberately bad files (empty, truncated, text named .jpg, truncated record, .mat without
  Pose_Para) so that a sample build shows rejected rows.

Deterministic: the same package versions give the same bytes.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from pltd.stages.landmarks.ibug import MIRROR68 as _MIRROR68
from pltd.stages.landmarks.ibug import mirror_landmarks
from pltd.stages.recordio import RecordWriter, pack

SAMPLE_VERSION = "6"  # 6: 300W-LP landmarks/*_pts.mat (pts_3d); 5: 300W-LP roll in 300W-LP's own sign
N_PER_ID = 4
VGG_LFW = range(0, 14)  # + astronaut + hopper
MS_LFW = range(10, 30)  # + astronaut; 10..13 shared with VGGFace2
LP_LFW = range(40, 48)  # + hopper
CALIB_LFW = list(range(50, 100))  # verification pairs for threshold calibration only


def default_sample_dir() -> Path:
    return Path.home() / ".cache" / "pltd" / f"sample-v{SAMPLE_VERSION}"


def _dlib_paths() -> tuple[str, str]:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed (pip install face-recognition-models)")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return str(models / "shape_predictor_68_face_landmarks.dat"), str(models / "mmod_human_face_detector.dat")


class Faces:
    """Base face photos with a face box, and dlib 68 points when asked."""

    def __init__(self) -> None:
        import dlib
        import matplotlib
        import skimage.data

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(_dlib_paths()[0])
        self.dlib = dlib
        self.lfw = skimage.data.lfw_subset()[:100]
        self.astronaut = skimage.data.astronaut()
        self.hopper = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))

    def base(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(RGB or grey uint8 image, face box x0,y0,x1,y1) for 'astronaut', 'hopper' or 'lfwNN'."""
        if key.startswith("lfw"):
            grey = Image.fromarray((self.lfw[int(key[3:])] * 255).round().astype(np.uint8))
            img = np.asarray(grey.resize((150, 150), Image.BICUBIC))
        else:
            img = self.astronaut if key == "astronaut" else self.hopper
        dets = self.detector(img, 1)
        if dets:
            d = max(dets, key=lambda r: r.area())
            box = np.array([d.left(), d.top(), d.right(), d.bottom()], float)
        else:  # the LFW subset crops are face-centred already
            h, w = img.shape[:2]
            box = np.array([0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h])
        return img, box

    def landmarks(self, img: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Reference 68 points of a base photo: the mean of dlib's predictor and MediaPipe's mesh
        (through the shipped index map) on the full-resolution photo, so that the sample's 300W-LP
        labels favour neither of the two sources Algorithm 1 combines."""
        from pltd.stages.landmarks.mesh_map import load_index_map
        from pltd.stages.landmarks.sources import create_source
        from pltd.stages.landmarks.views import make_views

        rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
        view = make_views(rgb, box, 1, 256, seed=0)[0]
        dlib_pts = create_source("dlib68", mean_face=None)([view])[0].landmarks
        mesh = create_source("mediapipe_graph", mean_face=None, index_map=load_index_map())([view])[0]
        pts = dlib_pts if mesh is None else (dlib_pts + mesh.landmarks) / 2
        return view.to_source(pts)

    def jaw_3d(self, img: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 3D-style jaw (points 0–16) of a base photo: one 3DDFA_V2 pass, the style's only source
        that ships offline (the sample's `landmarks/*_pts.mat`, as 300W-LP ships pts_3d)."""
        from pltd.stages.landmarks.sources import create_source
        from pltd.stages.landmarks.views import make_views

        rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
        view = make_views(rgb, box, 1, 256, seed=0)[0]
        return view.to_source(create_source("3ddfa_v2", mean_face=None)([view])[0].landmarks)[:17]


def _affine(img: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp with the 2x3 forward matrix `m` (source → output pixels)."""
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2].reshape(-1)
    pil = Image.fromarray(img)
    return np.asarray(pil.transform(size, Image.AFFINE, tuple(inv), resample=Image.BICUBIC, fillcolor=0))


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _box_of(pts: np.ndarray) -> np.ndarray:
    return np.array([*pts.min(axis=0), *pts.max(axis=0)])


def augment(img: np.ndarray, box: np.ndarray, rng: np.random.Generator, out: tuple[int, int], margin: float):
    """A loose face crop of size `out` with random shift, scale, rotation, flip and colour."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1])
    scale = min(out) / (side * (1 + 2 * margin)) * rng.uniform(0.9, 1.1)
    angle = np.radians(rng.uniform(-8, 8))
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    tx = out[0] / 2 + rng.uniform(-0.05, 0.05) * out[0]
    ty = out[1] / 2 + rng.uniform(-0.05, 0.05) * out[1]
    m = np.array([[c, -s, tx - c * cx + s * cy], [s, c, ty - s * cx - c * cy]])
    if rng.random() < 0.5:  # mirror about the output's vertical centre line
        m = np.array([[-1, 0, out[0]], [0, 1, 0]]) @ np.vstack([m, [0, 0, 1]])
    warped = Image.fromarray(_affine(img, m, out))
    warped = ImageEnhance.Brightness(warped).enhance(rng.uniform(0.75, 1.25))
    warped = ImageEnhance.Contrast(warped).enhance(rng.uniform(0.8, 1.2))
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
    new_box = _box_of(_apply(m, corners))
    new_box = np.clip(new_box, 0, [out[0], out[1], out[0], out[1]])
    return np.asarray(warped), new_box


def _jpeg(img: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write_vggface2(faces: Faces, root: Path, rng: np.random.Generator) -> None:
    train, bb = root / "train", root / "bb_landmark"
    bb.mkdir(parents=True, exist_ok=True)
    keys = ["astronaut", "hopper", *(f"lfw{i:02d}" for i in VGG_LFW)]
    rows = []
    for n, key in enumerate(keys, 1):
        img, box = faces.base(key)
        cls = train / f"n{n:06d}"
        cls.mkdir(parents=True, exist_ok=True)
        for k in range(N_PER_ID):
            size = (int(rng.integers(180, 260)), int(rng.integers(200, 300)))
            out, b = augment(img, box, rng, size, margin=0.3)
            name = f"{k + 1:04d}_01"
            (cls / f"{name}.jpg").write_bytes(_jpeg(out))
            x0, y0, x1, y1 = b
            rows.append((f"n{n:06d}/{name}", round(x0), round(y0), round(x1 - x0), round(y1 - y0)))
    with open(bb / "loose_bb_train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["NAME_ID", "X", "Y", "W", "H"])
        w.writerows(rows)
    # deliberately bad files: each must end as a rejected row, not stop the build
    good = _jpeg(faces.base("lfw00")[0])
    (train / "n000003" / "bad_empty.jpg").write_bytes(b"")
    (train / "n000004" / "bad_truncated.jpg").write_bytes(good[: len(good) // 2])
    (train / "n000005" / "bad_text.jpg").write_text("this is a text file with a .jpg name\n")


def _write_ms1mv3(faces: Faces, root: Path, rng: np.random.Generator) -> None:
    root.mkdir(parents=True, exist_ok=True)
    keys = ["astronaut", *(f"lfw{i:02d}" for i in MS_LFW)]
    images: list[tuple[int, bytes]] = []
    for label, key in enumerate(keys):
        img, box = faces.base(key)
        rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
        for _ in range(N_PER_ID):
            out, _ = augment(rgb, box, rng, (112, 112), margin=0.08)
            images.append((label, _jpeg(out)))
    bad = images[5][1]
    images.append((keys.index("lfw20"), bad[: len(bad) // 3]))  # whole record, truncated JPEG inside
    n = len(images) + 1  # images are records 1..n-1
    with open(root / "train.rec", "wb") as rec, open(root / "train.idx", "wb") as idx:
        w = RecordWriter(rec, idx)
        w.write(0, pack([n, n + len(keys)], b""))
        for key, (label, data) in enumerate(images, 1):
            w.write(key, pack(float(label), data))
        start = 1
        for label in range(len(keys)):
            count = sum(1 for lab, _ in images if lab == label)
            w.write(n + label, pack([start, start + count], b""))
            start += count


def _write_calibration(faces: Faces, root: Path, rng: np.random.Generator) -> None:
    """Verification pairs from LFW-subset faces the sample's datasets do not use (50–99), in
    insightface's .bin format: 50 same-face pairs (two re-crops) and 50 pairs of neighbouring
    faces. The thresholds of the sample's build are calibrated on these, not on its identities."""
    from pltd.stages.identities.calibrate import save_bin

    root.mkdir(parents=True, exist_ok=True)
    crops = {}
    for i in CALIB_LFW:
        img, box = faces.base(f"lfw{i:02d}")
        rgb = np.repeat(img[..., None], 3, axis=2)
        crops[i] = [_jpeg(augment(rgb, box, rng, (112, 112), margin=0.08)[0]) for _ in range(2)]
    bins, same = [], []
    for i in CALIB_LFW:
        bins += crops[i]
        same.append(True)
        j = CALIB_LFW[(CALIB_LFW.index(i) + 1) % len(CALIB_LFW)]
        bins += [crops[i][0], crops[j][1]]
        same.append(False)
    save_bin(root / "lfw_subset_pairs.bin", bins, same)


def _write_300w_lp(faces: Faces, root: Path) -> None:
    import scipy.io  # ~0.5 s to import: only when the sample is written, not for every `pltd build`

    keys = ["hopper", *(f"lfw{i:02d}" for i in LP_LFW)]
    for b, key in enumerate(keys, 1):
        img, box = faces.base(key)
        pts = faces.landmarks(img, box)
        pts3d = np.vstack([faces.jaw_3d(img, box), pts[17:]])  # inner points: the same in both styles
        base = f"HELEN_sample{b:03d}_1"
        for k, flip in enumerate((False, False, False, True, True, True)):
            folder = root / ("HELEN_Flip" if flip else "HELEN")
            folder.mkdir(parents=True, exist_ok=True)
            m = _render_transform(box, (220, 220), roll=(k % 3 - 1) * 15.0, flip=flip)
            out = _affine(img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2), m, (220, 220))
            lm, lm3d = _apply(m, pts), _apply(m, pts3d)
            if flip:
                lm, lm3d = lm[_MIRROR68], lm3d[_MIRROR68]
            # 300W-LP's landmarks/<subset>/<stem>_pts.mat (pts_3d) is for the unflipped render: the
            # reader mirrors it for a _Flip one, so a flipped render's file holds the unflipped points
            marks = root / "landmarks" / "HELEN"
            marks.mkdir(parents=True, exist_ok=True)
            unflipped = mirror_landmarks(lm3d, out.shape[1]) if flip else lm3d
            scipy.io.savemat(marks / f"{base}_{k}_pts.mat", {"pts_3d": unflipped, "pts_2d": lm})
            eye_l, eye_r = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
            # 300W-LP's roll > 0 turns the face clockwise on screen (pltd.pose): with y pointing
            # down, that is the eye line's angle in image coordinates
            roll = np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])
            stem = f"{base}_{k}"
            (folder / f"{stem}.jpg").write_bytes(_jpeg(out))
            pose_para = np.array([[0.0, 0.0, roll, 110.0, 110.0, 0.0, 1.0]])
            scipy.io.savemat(folder / f"{stem}.mat", {"pt2d": lm.T, "Pose_Para": pose_para, "roi": _box_of(lm)[None]})
    # deliberately bad: an annotation without Pose_Para
    bad = root / "HELEN" / "HELEN_sample001_1_0.mat"
    mat = scipy.io.loadmat(bad)
    scipy.io.savemat(bad, {"pt2d": mat["pt2d"]})


def _render_transform(box: np.ndarray, out: tuple[int, int], roll: float, flip: bool) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    scale = min(out) / (max(box[2] - box[0], box[3] - box[1]) * 1.8)
    a = np.radians(roll)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    m = np.array([[c, -s, out[0] / 2 - c * cx + s * cy], [s, c, out[1] / 2 - s * cx - c * cy]])
    if flip:
        m = np.array([[-1, 0, out[0]], [0, 1, 0]]) @ np.vstack([m, [0, 0, 1]])
    return m


def make_sample(root: str | Path) -> Path:
    """Write the sample under `root` unless a complete one of this version is there."""
    root = Path(root).expanduser()
    marker = root / "SAMPLE_VERSION"
    if marker.exists() and marker.read_text().strip() == SAMPLE_VERSION:
        return root
    root.mkdir(parents=True, exist_ok=True)
    faces = Faces()
    rng = np.random.default_rng(20240521)
    _write_vggface2(faces, root / "vggface2", rng)
    _write_ms1mv3(faces, root / "ms1mv3", rng)
    _write_300w_lp(faces, root / "300w_lp")
    _write_calibration(faces, root / "calibration", rng)
    marker.write_text(SAMPLE_VERSION + "\n")  # last: a half-written sample is rebuilt
    return root
