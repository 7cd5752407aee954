"""PLTD reader for PyTorch: an IterableDataset over Parquet shards (local paths or fsspec URLs).

Splitting: the unit of work is a row range of one row group of one shard. Every epoch the list of
units is shuffled with the same seed on every process (seed + epoch), then unit k goes to reader
k mod R, R = world_size × num_workers, reader = rank × num_workers + DataLoader worker id: together
the readers see every row exactly once per epoch, and no row twice. When there are fewer units than
readers (a small PLTD), the epoch's rows are cut into R near-equal row ranges instead, so that every
rank and worker gets a share. A shuffle buffer mixes rows across the units a reader holds.
Optional (trainer/sampling.py): a source / label-kind selection, and pose-balanced draws (a unit
then lists the rows it reads, repeats included).

Per sample (the paper's augmentation): a random square crop of the face region whose side lies
between `min_face_scale` and `max_face_scale` times the face box side (so each task sees the
region it needs), resized to `input_size` (112, or 128 for the teacher); landmarks and box move
with the image; a horizontal flip mirrors the landmarks through the iBUG permutation and negates
yaw and roll (and reorders the `visible` flags of schema-2 shards the same way: a float 1 / 0 / NaN
per point in the sample). Images leave the reader as uint8 H×W×3 (RGB): a quarter of float32's bytes through
worker IPC, collate and the host-to-device copy; the run's input contract (`TrainConfig.input_contract`,
pltd/input_contract.py) normalises a batch on the device.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pltd.pose import mirror
from pltd.stages.landmarks.ibug import MIRROR68
from pltd.trainer.sampling import Balance, Selection, epoch_draws

COLUMNS = ["image_id", "face_id", "image", "width", "height", "bbox", "landmarks", "pose", "label_kind", "eye_closed"]
Unit = tuple[int, int, Sequence[int]]  # shard, row group, the group's rows to read (a range or an index array)


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


def worker_init(_: int) -> None:
    """DataLoader workers: one OpenCV thread each (the workers are the parallelism), and Ctrl-C left
    to the main process, which checkpoints and then stops the workers."""
    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def split_rows(units: list[Unit], readers: int) -> list[list[Unit]]:
    """Cut the units' rows, in order, into `readers` near-equal row ranges (a range may span units)."""
    sizes = np.array([len(u[2]) for u in units], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    total = int(starts[-1])
    out: list[list[Unit]] = []
    for r in range(readers):
        a, b = r * total // readers, (r + 1) * total // readers
        mine = []
        for (shard, group, rows), s0, s1 in zip(units, starts[:-1], starts[1:], strict=True):
            lo, hi = max(a, s0), min(b, s1)
            if lo < hi:
                mine.append((shard, group, rows[lo - s0 : hi - s0]))
        out.append(mine)
    return out


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
    return image[:, ::-1], pts[MIRROR68], bbox, mirror(pose).astype(np.float32)


def visible_matrix(t: pa.Table) -> np.ndarray:
    """The `visible` column (schema 2) as (rows, 68) float32: 1 visible, 0 self-occluded, NaN unknown (null)."""
    col = t.column("visible").combine_chunks()
    out = np.full((t.num_rows, 68), np.nan, np.float32)
    valid = ~col.is_null().to_numpy(zero_copy_only=False)
    if valid.any():
        out[valid] = col.filter(pa.array(valid)).flatten().to_numpy(zero_copy_only=False).reshape(-1, 68)
    return out


class PLTDDataset(IterableDataset):
    """Stream training samples from PLTD shards; call `set_epoch` before each epoch (it reaches
    persistent DataLoader workers too: the epoch lives in shared memory)."""

    def __init__(
        self,
        shards: list[str],
        augment: Augment = Augment(),
        shuffle: bool = True,
        buffer_size: int = 2048,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        select: Selection = Selection(),
        balance: Balance | None = None,
    ):
        self.shards = list(shards)
        self.groups = row_group_units(self.shards)
        self.augment, self.shuffle, self.buffer_size, self.seed = augment, shuffle, buffer_size, seed
        self.rank, self.world_size = rank, world_size
        self.select, self.balance = select, balance
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._plan: tuple[tuple[int, int], list[list[Unit]]] | None = None
        self.kept, self.yaw = self._index()

    def _index(self) -> tuple[list[Sequence[int]], np.ndarray | None]:
        """The rows of every row group the selection keeps, and their yaw when balancing; without
        either option nothing but the footers is read."""
        columns = self.select.columns() + (["pose"] if self.balance else [])
        if not columns:
            return [range(n) for _, _, n in self.groups], None
        kept, yaws, files = [], [], {}
        for shard, group, _ in self.groups:
            f = files.setdefault(shard, pq.ParquetFile(_open(self.shards[shard])))
            t = f.read_row_group(group, columns=columns)
            rows = np.flatnonzero(self.select.mask(t)) if self.select.active else np.arange(t.num_rows)
            kept.append(rows)
            if self.balance:
                pose = t.column("pose").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
                yaws.append(pose[rows, 0])
        if not sum(len(r) for r in kept):
            raise ValueError(f"the training data selection {self.describe_selection()} keeps 0 of "
                             f"{sum(n for *_, n in self.groups)} rows")  # fmt: skip
        return kept, (np.concatenate(yaws) if self.balance else None)

    def describe_selection(self) -> str:
        parts = [f"{k}={list(v)}" for k, v in (("sources", self.select.sources),
                                                ("label_kinds", self.select.label_kinds)) if v]  # fmt: skip
        return ", ".join(parts) or "(all rows)"

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        """Rows per epoch (after the selection; pose balancing keeps the length)."""
        return sum(len(r) for r in self.kept)

    def plan(self, readers: int) -> list[list[Unit]]:
        """This epoch's units of each of `readers` readers (cached per epoch)."""
        key = (self.epoch, readers)
        if self._plan is not None and self._plan[0] == key:
            return self._plan[1]
        units: list[Unit] = [(s, g, rows) for (s, g, _), rows in zip(self.groups, self.kept, strict=True)]
        if self.balance is not None:
            counts = epoch_draws(self.yaw, self.balance, self.seed, self.epoch)
            ends = np.cumsum([len(rows) for rows in self.kept])
            units = [(s, g, np.repeat(np.asarray(rows), c)) for (s, g, rows), c in
                     zip(units, np.split(counts, ends[:-1]), strict=True)]  # fmt: skip
        units = [u for u in units if len(u[2])]
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(units)
        # fewer units than readers (a small PLTD): row ranges, so that every rank and worker has work
        few = len(units) < readers
        out = split_rows(units, readers) if few else [units[r::readers] for r in range(readers)]
        self._plan = (key, out)
        return out

    def units_of(self, rank: int, world: int, workers: int, wid: int) -> list[Unit]:
        """The units reader (rank, DataLoader worker) gets this epoch."""
        return self.plan(world * workers)[rank * workers + wid]

    def my_units(self) -> list[Unit]:
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
            sum(sum(len(u[2]) for u in self.units_of(r, world, workers, w)) // batch_size for w in range(workers))
            for r in range(world)
        ]
        return min(per_rank)

    def rows(self) -> Iterator[dict]:
        """Rows of this reader's units; vectors come out of Arrow as numpy arrays, not Python lists."""
        open_files: dict[int, pq.ParquetFile] = {}
        for shard, group, take in self.my_units():
            if shard not in open_files:
                open_files[shard] = pq.ParquetFile(_open(self.shards[shard]))
            f = open_files[shard]
            t = f.read_row_group(group, columns=COLUMNS + (["visible"] if "visible" in f.schema_arrow.names else []))
            if isinstance(take, range):
                t = t.slice(take.start, len(take)) if len(take) < t.num_rows else t
            else:
                t = t.take(pa.array(np.asarray(take, np.int64)))
            vec = {c: t.column(c).combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
                   for c in ("bbox", "landmarks", "pose", "eye_closed")}  # fmt: skip
            ids, faces = t.column("image_id").to_pylist(), t.column("face_id").to_numpy()
            images = t.column("image").to_pylist()
            pseudo = [k == "pseudo" for k in t.column("label_kind").cast("string").to_pylist()]
            visible = visible_matrix(t) if "visible" in t.column_names else None
            for i in range(t.num_rows):
                row = {"image_id": ids[i], "face_id": int(faces[i]), "image": images[i], "bbox": vec["bbox"][i],
                       "landmarks": vec["landmarks"][i], "pose": vec["pose"][i], "is_pseudo": pseudo[i],
                       "eye_closed": vec["eye_closed"][i]}  # fmt: skip
                if visible is not None:
                    row["visible"] = visible[i]
                yield row

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
        visible = row.get("visible")
        if rng.random() < a.flip:
            image, pts, bbox, pose = flip_sample(image, pts, bbox, pose)
            visible = None if visible is None else visible[MIRROR68]  # point k of the mirror is MIRROR68[k]
        extra = {} if visible is None else {"visible": torch.from_numpy(visible)}
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),  # S×S×3 uint8 RGB
            "landmarks": torch.from_numpy((pts / a.input_size).astype(np.float32)),  # fractions of the input side
            "bbox": torch.from_numpy((bbox / a.input_size).astype(np.float32)),
            "pose": torch.tensor(pose, dtype=torch.float32),
            "face_id": torch.tensor(row["face_id"], dtype=torch.int64),
            "is_pseudo": torch.tensor(row["is_pseudo"]),
            "image_id": row["image_id"],
            **extra,
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
        return {"image": torch.from_numpy(np.ascontiguousarray(crop)),  # S×S×3 uint8 RGB
                "eye_closed": torch.tensor(float(row["eye_closed"][eye])), "image_id": row["image_id"]}  # fmt: skip
