"""PLTD reader for PyTorch: an IterableDataset over Parquet shards (local paths or fsspec URLs).

Splitting: the unit of work is one row group of one shard. Every epoch the list of units is
shuffled with the same seed on every process (seed + epoch), then unit k goes to reader
k mod (world_size × num_workers), reader = rank × num_workers + DataLoader worker id: together
the readers see every row exactly once per epoch, and no row twice. A shuffle buffer mixes rows
across the units a reader holds.

Per sample (the paper's augmentation): a random square crop of the face region whose side lies
between `min_face_scale` and `max_face_scale` times the face box side (so each task sees the
region it needs), resized to `input_size` (112, or 128 for the teacher); landmarks and box move
with the image; a horizontal flip mirrors the landmarks through the iBUG permutation and negates
yaw and roll.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pltd.stages.landmarks.ibug import MIRROR68

COLUMNS = ["image_id", "face_id", "image", "width", "height", "bbox", "landmarks", "pose", "label_kind", "eye_closed"]


@dataclass(frozen=True)
class Augment:
    input_size: int = 112
    min_face_scale: float = 1.1  # crop side / face box side: tight (face recognition) …
    max_face_scale: float = 1.8  # … to loose (landmarks want chin and brow)
    max_shift: float = 0.08  # crop centre jitter, fraction of the face side
    flip: float = 0.5


def _open(url: str):
    fs, path = fsspec.core.url_to_fs(url)
    return fs.open(path, "rb")


def row_group_units(shards: list[str]) -> list[tuple[int, int, int]]:
    """(shard index, row group, rows) for every row group of every shard, from the footers."""
    units = []
    for i, url in enumerate(shards):
        with _open(url) as f:
            meta = pq.ParquetFile(f).metadata
        units += [(i, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    return units


def dist_info(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def crop_sample(jpeg: bytes, landmarks: np.ndarray, bbox: np.ndarray, rng: random.Random, a: Augment):
    """Decode, random face-region crop, resize: (SxSx3 uint8 RGB, 68x2 landmarks, 4 bbox) in output pixels.

    OpenCV (the build that MediaPipe brings) decodes and warps: one affine warp does crop, black
    padding and bilinear resize at once (no antialiasing, as insightface's loaders), 4x faster here
    than Pillow's crop + resize.
    """
    import cv2

    x0, y0, x1, y1 = bbox
    side = max(x1 - x0, y1 - y0) * rng.uniform(a.min_face_scale, a.max_face_scale)
    cx = (x0 + x1) / 2 + rng.uniform(-a.max_shift, a.max_shift) * (x1 - x0)
    cy = (y0 + y1) / 2 + rng.uniform(-a.max_shift, a.max_shift) * (y1 - y0)
    buf = np.frombuffer(jpeg, np.uint8)
    reduce = a.input_size / side <= 0.5  # decode at half size when the crop shrinks twice anyway
    img = cv2.imdecode(buf, cv2.IMREAD_REDUCED_COLOR_2 if reduce else cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("image bytes could not be decoded")
    r = 0.5 if reduce else 1.0
    k = a.input_size / side
    ox, oy = cx - side / 2, cy - side / 2  # crop corner, stored pixels
    # output pixel u covers stored x = ox + u / k; with pixel centres at +0.5 on both sides
    m = np.array([[k / r, 0, (0.5 - ox * r) * k / r - 0.5], [0, k / r, (0.5 - oy * r) * k / r - 0.5]])
    out = cv2.warpAffine(img, m, (a.input_size, a.input_size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    pts = (np.asarray(landmarks, np.float32).reshape(68, 2) - [ox, oy]) * k
    b = (np.asarray(bbox, np.float32).reshape(2, 2) - [ox, oy]) * k
    return out[..., ::-1], pts.astype(np.float32), b.reshape(4).astype(np.float32)


def flip_sample(image: np.ndarray, pts: np.ndarray, bbox: np.ndarray, pose: np.ndarray):
    """Horizontal flip: mirrored landmarks (iBUG permutation), box, and yaw and roll negated."""
    s = image.shape[1]
    pts = pts.copy()
    pts[:, 0] = s - pts[:, 0]
    bbox = np.array([s - bbox[2], bbox[1], s - bbox[0], bbox[3]], np.float32)
    return image[:, ::-1], pts[MIRROR68], bbox, np.array([-pose[0], pose[1], -pose[2]], np.float32)


class PLTDDataset(IterableDataset):
    """Stream training samples from PLTD shards; call `set_epoch` before each epoch."""

    def __init__(
        self,
        shards: list[str],
        augment: Augment = Augment(),
        shuffle: bool = True,
        buffer_size: int = 2048,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.shards = list(shards)
        self.units = row_group_units(self.shards)
        self.augment, self.shuffle, self.buffer_size, self.seed = augment, shuffle, buffer_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(u[2] for u in self.units)

    def units_of(self, rank: int, world: int, workers: int, wid: int) -> list[tuple[int, int, int]]:
        """The units reader (rank, DataLoader worker) gets this epoch."""
        units = list(self.units)
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(units)
        return units[rank * workers + wid :: world * workers]

    def my_units(self) -> list[tuple[int, int, int]]:
        rank, world = dist_info(self.rank, self.world_size)
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        return self.units_of(rank, world, workers, wid)

    def steps_every_rank_can_take(self, batch_size: int, num_workers: int) -> int:
        """Full batches per epoch that every rank has (each DataLoader worker batches its own rows),
        so that DDP ranks stop together instead of one waiting forever for the others."""
        _, world = dist_info(self.rank, self.world_size)
        workers = max(num_workers, 1)
        per_rank = [
            sum(sum(u[2] for u in self.units_of(r, world, workers, w)) // batch_size for w in range(workers))
            for r in range(world)
        ]
        return min(per_rank)

    def rows(self) -> Iterator[dict]:
        """Rows of this reader's units; vectors come out of Arrow as numpy arrays, not Python lists."""
        open_files: dict[int, pq.ParquetFile] = {}
        for shard, group, _ in self.my_units():
            if shard not in open_files:
                open_files[shard] = pq.ParquetFile(_open(self.shards[shard]))
            t = open_files[shard].read_row_group(group, columns=COLUMNS)
            vec = {c: t.column(c).combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
                   for c in ("bbox", "landmarks", "pose", "eye_closed")}  # fmt: skip
            ids, faces = t.column("image_id").to_pylist(), t.column("face_id").to_numpy()
            images = t.column("image").to_pylist()
            pseudo = [k == "pseudo" for k in t.column("label_kind").cast("string").to_pylist()]
            for i in range(t.num_rows):
                yield {"image_id": ids[i], "face_id": int(faces[i]), "image": images[i], "bbox": vec["bbox"][i],
                       "landmarks": vec["landmarks"][i], "pose": vec["pose"][i], "is_pseudo": pseudo[i],
                       "eye_closed": vec["eye_closed"][i]}  # fmt: skip

    def __iter__(self) -> Iterator[dict]:
        rank, _ = dist_info(self.rank, self.world_size)
        info = get_worker_info()
        rng = random.Random(hash((self.seed, self.epoch, rank, info.id if info else 0)))
        buffer: list[dict] = []
        for row in self.rows():
            if not self.shuffle:
                yield self.sample(row, rng)
                continue
            if len(buffer) < self.buffer_size:
                buffer.append(row)
                continue
            k = rng.randrange(len(buffer))
            buffer[k], row = row, buffer[k]
            yield self.sample(row, rng)
        rng.shuffle(buffer)
        for row in buffer:
            yield self.sample(row, rng)

    def sample(self, row: dict, rng: random.Random) -> dict:
        a = self.augment
        image, pts, bbox = crop_sample(row["image"], row["landmarks"], row["bbox"], rng, a)
        pose = np.asarray(row["pose"], np.float32)
        if rng.random() < a.flip:
            image, pts, bbox, pose = flip_sample(image, pts, bbox, pose)
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous().float().div_(127.5).sub_(1.0)
        return {
            "image": x,
            "landmarks": torch.from_numpy((pts / a.input_size).astype(np.float32)),  # fractions of the input side
            "bbox": torch.from_numpy((bbox / a.input_size).astype(np.float32)),
            "pose": torch.tensor(pose, dtype=torch.float32),
            "face_id": torch.tensor(row["face_id"], dtype=torch.int64),
            "is_pseudo": torch.tensor(row["is_pseudo"]),
            "image_id": row["image_id"],
        }


class BlinkDataset(PLTDDataset):
    """Eye crops for the blink network: one eye per row (chosen at random), `eye_closed` σ as the
    target; rows without a measured σ are skipped."""

    def rows(self) -> Iterator[dict]:
        for row in super().rows():
            if np.all(np.isfinite(row["eye_closed"])):
                yield row

    def sample(self, row: dict, rng: random.Random) -> dict:
        import cv2

        from pltd.stages.landmarks.blink import eye_crops

        image = cv2.imdecode(np.frombuffer(row["image"], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        eye = rng.randrange(2)
        crop = eye_crops(np.ascontiguousarray(image), row["landmarks"], self.augment.input_size)[eye]
        if rng.random() < self.augment.flip:
            crop = crop[:, ::-1]
        x = torch.from_numpy(np.array(crop)).permute(2, 0, 1).contiguous().float().div_(127.5).sub_(1.0)
        return {"image": x, "eye_closed": torch.tensor(float(row["eye_closed"][eye])), "image_id": row["image_id"]}
