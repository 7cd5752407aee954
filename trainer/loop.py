"""The training loop: SGD with the paper's schedule, AMP, checkpoints that resume exactly, DDP.

lr = base · warm-up ramp · lr_decay^epoch (paper: 0.01 × 0.9 per epoch). A checkpoint holds the
model, optimizer, scheduler, scaler, data position (epoch, batches done in it) and every RNG
state; `resume` continues as if never stopped (the reader's order is a function of seed and epoch,
so skipping the batches already done reproduces the stream). Launch several processes with
`torchrun --nproc_per_node N -m pipeline.cli train …` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pltd.trainer.config import TrainConfig
from pltd.trainer.data import Augment, BlinkDataset, PLTDDataset
from pltd.trainer.model import TaskModel


def setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    cuda = torch.cuda.is_available()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    return rank, world, device


def dataset_for(cfg: TrainConfig, shards: list[str], rank: int, world: int) -> PLTDDataset:
    cls = BlinkDataset if cfg.tasks == ["blink"] else PLTDDataset
    return cls(shards, Augment(input_size=cfg.input_size), buffer_size=cfg.shuffle_buffer, seed=cfg.seed,
               rank=rank, world_size=world)  # fmt: skip


def n_identities(data: Path) -> int:
    meta = data / "dataset.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["identities"])
    import pyarrow.parquet as pq

    ids = set()
    for p in sorted(data.glob("part-*.parquet")):
        ids.update(pq.read_table(p, columns=["face_id"]).column("face_id").to_pylist())
    return max(ids) + 1 if ids else 0


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return warm * cfg.lr_decay ** (step // max(steps_per_epoch, 1))


def autocast(cfg: TrainConfig, device: torch.device):
    # GPUs only: bf16 autocast backward on this project's CPU torch (2.13) aborted with heap
    # corruption in IResNet training, so CPU training stays in fp32
    if cfg.amp == "none" or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def rng_state() -> dict:
    """Every RNG's state as tensors and lists, so that the checkpoint loads with weights_only=True."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def train_step(model, batch: dict, optimizer, scheduler, scaler, cfg: TrainConfig, device) -> dict[str, float]:
    """One optimisation step; returns the losses as floats."""
    with autocast(cfg, device):
        losses = model(batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["loss"]).backward()
    if cfg.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def train(cfg: TrainConfig, data: str, out: str, max_steps: int | None = None, resume: bool = False) -> dict:
    rank, world, device = setup_distributed()
    if device.type == "cpu":
        # oneDNN's convolution weight-gradient kernel in torch 2.13 corrupted the heap here
        # ("double free or corruption" inside mkldnn_convolution_backward_weights, seen with gdb);
        # PyTorch's native CPU convolution trains correctly, at some cost in speed
        torch.backends.mkldnn.enabled = False
    out_dir, data_dir = Path(out), Path(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = [str(p) for p in sorted(data_dir.glob("part-*.parquet"))]
    if not shards:
        raise FileNotFoundError(f"{data_dir}: no PLTD shards (part-*.parquet)")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    ds = dataset_for(cfg, shards, rank, world)
    model = TaskModel(cfg, n_identities(data_dir) if "fr" in cfg.tasks else 0).to(device)
    # channels_last on GPUs only: torch 2.13's CPU backward corrupts memory with it here (seen in
    # IResNet training), and on the CPU it buys little for training
    cl = cfg.channels_last and device.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    if cfg.compile:
        wrapped = torch.compile(wrapped)
    steps_per_epoch = max(1, len(ds) // (cfg.batch_size * world))
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16" and device.type == "cuda")
    step, epoch, done_in_epoch = 0, 0, 0
    ckpt_path = out_dir / "checkpoint.pt"
    if resume:
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        step, epoch, done_in_epoch = ck["step"], ck["epoch"], ck["batches_done_in_epoch"]
        set_rng_state(ck["rng"])
    log_path = out_dir / f"log_rank{rank}.csv"
    writer = _tensorboard(out_dir) if rank == 0 else None
    last: dict[str, float] = {}
    t0, seen = time.perf_counter(), 0
    total = max_steps if max_steps is not None else cfg.epochs * steps_per_epoch
    while step < total and epoch < cfg.epochs:
        ds.set_epoch(epoch)
        epoch_steps = ds.steps_every_rank_can_take(cfg.batch_size, cfg.num_workers) if world > 1 else None
        loader = DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers, drop_last=True,
                            persistent_workers=False)  # fmt: skip
        for b, batch in enumerate(loader):
            if epoch_steps is not None and b >= epoch_steps:
                break  # the other ranks have no more batches this epoch
            if b < done_in_epoch:
                continue  # resuming: these batches were trained on before the checkpoint
            wrapped.train()
            last = train_step(wrapped, to_device(batch, device, cl), optimizer, scheduler, scaler, cfg, device)
            step, done_in_epoch, seen = step + 1, b + 1, seen + len(batch["image"])
            if rank == 0 and (step % cfg.log_every == 0 or step == total):
                _log(log_path, writer, step, epoch, scheduler.get_last_lr()[0], last, seen / (time.perf_counter() - t0))
            if rank == 0 and cfg.verification and step % cfg.verify_every == 0:
                _verify(model, cfg, device, out_dir, step)
            if rank == 0 and (step % cfg.checkpoint_every == 0 or step == total):
                save_training_checkpoint(
                    ckpt_path, model, optimizer, scheduler, scaler, step, epoch, done_in_epoch, cfg
                )
            if step >= total:
                break
        if step >= total:
            break
        epoch, done_in_epoch = epoch + 1, 0
    if rank == 0:
        save_training_checkpoint(ckpt_path, model, optimizer, scheduler, scaler, step, epoch, done_in_epoch, cfg)
        export_inference(model, cfg, out_dir / "model.pt")
    if writer is not None:
        writer.close()
    return {"step": step, "epoch": epoch, "last": last}


def save_training_checkpoint(path, model, optimizer, scheduler, scaler, step, epoch, done, cfg) -> None:
    tmp = Path(str(path) + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "step": step, "epoch": epoch, "batches_done_in_epoch": done,
                "rng": rng_state(), "config": cfg.model_dump()}, tmp)  # fmt: skip
    tmp.replace(path)


def export_inference(model: TaskModel, cfg: TrainConfig, path: Path) -> None:
    """The network alone as a pltd checkpoint (what the pipeline's backends load) + TorchScript."""
    from pltd.checkpoints import save_checkpoint

    task = {"fr": "face_recognition", "blink": "blink"}.get(cfg.tasks[0], "landmarks_pose")
    if set(cfg.tasks) >= {"fr", "fld"}:
        task = "multitask"
    net = model.net
    save_checkpoint(path, net, cfg.arch, task, cfg.input_size, arch_kwargs=cfg.arch_kwargs, preset=cfg.preset)
    was = net.training
    net.eval()
    with torch.no_grad():
        traced = torch.jit.trace(net.float().to("cpu"), torch.zeros(1, 3, cfg.input_size, cfg.input_size), strict=False)
    traced.save(str(path.with_suffix(".torchscript.pt")))
    net.train(was)


def _verify(model: TaskModel, cfg: TrainConfig, device, out_dir: Path, step: int) -> None:
    """10-fold accuracy on the configured .bin pair files, as the paper monitors LFW/CFP-FP/AgeDB."""
    from pltd.trainer.evaluation.model import EvalModel
    from pltd.trainer.evaluation.protocols import verification

    was = model.net.training
    model.net.eval()
    res = verification(EvalModel.live(model.net, cfg.input_size, str(device)), cfg.verification)
    model.net.train(was)
    path = out_dir / "verification.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "set", "accuracy", "std", "threshold"])
        for name, r in res.items():
            w.writerow([step, name, r["accuracy"], r["std"], r["threshold"]])


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the CSV log still has everything
        return None
    return SummaryWriter(str(out_dir / "tb"))


def _log(path: Path, writer, step: int, epoch: int, lr: float, losses: dict, images_per_s: float) -> None:
    row = {"step": step, "epoch": epoch, "lr": lr, "images_per_s": round(images_per_s, 1), **losses}
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
    if writer is not None:
        for k, v in row.items():
            if k != "step" and isinstance(v, float | int) and math.isfinite(v):
                writer.add_scalar(k, v, step)
