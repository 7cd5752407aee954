"""The training loop: SGD with the paper's schedule, AMP, checkpoints that resume exactly, DDP.

lr = base · warm-up ramp · lr_decay^epoch (paper: 0.01 × 0.9 per epoch). A checkpoint holds the
model, optimizer, scheduler, scaler, data position (epoch, batches done in it) and every RNG
state; `resume` continues as if never stopped (the reader's order is a function of seed and epoch,
so skipping the batches already done reproduces the stream). Launch several processes with
`torchrun --nproc_per_node N -m pltd.pipeline.cli train …` (gloo on CPU, NCCL on GPU).

GPU readiness: losses stay on the device until a logging step (no host sync per step); uint8 NHWC
batches go to the device through pinned memory and are normalised there; persistent DataLoader
workers with prefetching; TF32 and torch.compile on CUDA; rank 0 writes checkpoints in the
background. CPU usability: a progress line from step 1, a start-up estimate, and SIGINT/SIGTERM
stop at a checkpoint that `--resume` continues.
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

from pltd.input_contract import InputContract
from pltd.trainer.config import TrainConfig
from pltd.trainer.data import Augment, BlinkDataset, PLTDDataset, worker_init
from pltd.trainer.guard import NEVER, Diverged, DivergenceGuard
from pltd.trainer.model import TaskModel
from pltd.trainer.runtime import CheckpointWriter, Progress, StopRequest, duration, say
from pltd.trainer.sampling import Balance, Selection


def setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    cuda = torch.cuda.is_available()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    return rank, world, device


def configure_backends(cfg: TrainConfig, device: torch.device) -> None:
    if device.type == "cpu":
        # oneDNN's convolution weight-gradient kernel in torch 2.13 corrupted the heap here
        # ("double free or corruption" inside mkldnn_convolution_backward_weights, seen with gdb);
        # PyTorch's native CPU convolution trains correctly, at some cost in speed
        torch.backends.mkldnn.enabled = False
    elif cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def default_workers() -> int:
    """DataLoader workers per rank: the CPUs this process may use, shared by the ranks of the node,
    less one for the training process itself (at least 1, at most 16)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_rank = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return max(1, min(16, per_rank - 1))


def dataset_for(cfg: TrainConfig, shards: list[str], rank: int, world: int) -> PLTDDataset:
    cls = BlinkDataset if cfg.tasks == ["blink"] else PLTDDataset
    lo, hi = cfg.balance_range
    balance = Balance(cfg.balance_bins, lo, hi, cfg.balance_cap) if cfg.balance == "yaw" else None
    return cls(shards, Augment(input_size=cfg.input_size), buffer_size=cfg.shuffle_buffer, seed=cfg.seed,
               rank=rank, world_size=world, select=Selection(tuple(cfg.sources), tuple(cfg.label_kinds)),
               balance=balance)  # fmt: skip


def loader_for(ds: PLTDDataset, cfg: TrainConfig, workers: int, device: torch.device) -> DataLoader:
    """One DataLoader for the whole run: its workers persist across epochs (the dataset's epoch is in
    shared memory) and keep `prefetch_factor` batches ready; pinned memory on CUDA."""
    extra = {}
    if workers:
        extra = {"persistent_workers": True, "prefetch_factor": cfg.prefetch_factor, "worker_init_fn": worker_init}
    return DataLoader(ds, batch_size=cfg.batch_size, num_workers=workers, drop_last=True,
                      pin_memory=device.type == "cuda", **extra)  # fmt: skip


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


POSITION = ("step", "epoch", "batches_done_in_epoch")  # where a run stands, as checkpoint.pt keys


def training_state(parts: dict, position: tuple[int, int, int], cfg: TrainConfig) -> dict:
    """checkpoint.pt: each part's state_dict under its name (model, optimizer, scheduler, scaler), the
    position (`POSITION`), every RNG state and the config; `restore` reads the same keys back."""
    return {**{name: part.state_dict() for name, part in parts.items()}, **dict(zip(POSITION, position, strict=True)),
            "rng": rng_state(), "config": cfg.model_dump()}  # fmt: skip


def restore(ck: dict, parts: dict) -> tuple[int, int, int]:
    """Load a `training_state` checkpoint into the parts and the RNGs; returns the position."""
    for name, part in parts.items():
        part.load_state_dict(ck[name])
    set_rng_state(ck["rng"])
    step, epoch, done_in_epoch = (int(ck[k]) for k in POSITION)
    return step, epoch, done_in_epoch


def to_device(batch: dict, device: torch.device, channels_last: bool, contract: InputContract) -> dict:
    """Tensors to the device; the uint8 N×H×W×3 image batch is normalised there, by the run's contract."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    x = contract.torch_input(out["image"])  # channels_last strides already
    out["image"] = x if channels_last else x.contiguous()
    return out


def train_step(model, batch: dict, optimizer, scheduler, scaler, cfg: TrainConfig, device) -> dict[str, torch.Tensor]:
    """One optimisation step; returns the losses as detached tensors (no host sync)."""
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
    return {k: v.detach() for k, v in losses.items()}


def as_floats(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss tensors as floats, with one device-to-host copy."""
    if not losses:
        return {}
    values = torch.stack([v.float().reshape(()) for v in losses.values()]).tolist()
    return dict(zip(losses, values, strict=True))


def cpu_estimate(model: TaskModel, cfg: TrainConfig, total: int) -> str:
    """A start-up estimate for a CPU run: a timed forward pass of one image after a warm-up one (eval
    mode, no gradient: no state changes), × 3 for forward + backward, × the batch."""
    was = model.net.training
    model.net.eval()
    x = torch.zeros(1, 3, cfg.input_size, cfg.input_size)
    with torch.no_grad():
        model.net(x)  # the first call pays one-off allocations
        t0 = time.perf_counter()
        model.net(x)
        per_image = time.perf_counter() - t0
    model.net.train(was)
    step = 3 * per_image * cfg.batch_size
    return (f"warning: no GPU: training {cfg.arch} on the CPU ({torch.get_num_threads()} threads, fp32). "
            f"Estimated ≈ {step:.1f} s per step of {cfg.batch_size} images (a timed forward pass × 3), "
            f"≈ {duration(step * total)} for {total} steps. For a trial run pass --max-steps N or a smaller "
            f"--set batch_size=…; train for real on a GPU.")  # fmt: skip


def train(cfg: TrainConfig, data: str, out: str, max_steps: int | None = None, resume: bool = False) -> dict:
    """Train; returns {"step", "epoch", "last", "interrupted"} (interrupted: the signal's name, or None)."""
    rank, world, device = setup_distributed()
    configure_backends(cfg, device)
    out_dir, data_dir = Path(out), Path(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = [str(p) for p in sorted(data_dir.glob("part-*.parquet"))]
    if not shards:
        raise FileNotFoundError(f"{data_dir}: no PLTD shards (part-*.parquet)")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    ds = dataset_for(cfg, shards, rank, world)
    workers = cfg.num_workers if cfg.num_workers is not None else default_workers()
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
    if cfg.compile and device.type == "cuda":
        wrapped = torch.compile(wrapped)
    steps_per_epoch = max(1, len(ds) // (cfg.batch_size * world))
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16" and device.type == "cuda")
    step, epoch, done_in_epoch = 0, 0, 0
    ckpt_path = out_dir / "checkpoint.pt"
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    if resume:
        step, epoch, done_in_epoch = restore(torch.load(ckpt_path, map_location=device, weights_only=True), parts)
    total = max_steps if max_steps is not None else cfg.epochs * steps_per_epoch
    main = rank == 0
    if main:
        say(f"pltd train: {cfg.preset} ({cfg.arch}, tasks {'+'.join(cfg.tasks)}) on {device}, world {world}; "
            f"{len(ds):,} rows {ds.describe_selection()} → {steps_per_epoch:,} steps/epoch; batch {cfg.batch_size}, "
            f"{workers} loader worker(s); steps {step:,} → {total:,}")  # fmt: skip
        if resume:
            say(f"resumed from {ckpt_path} at step {step} (epoch {epoch}, {done_in_epoch} batches into it)")
        if device.type == "cpu" and step < total:
            say(cpu_estimate(model, cfg, total - step))
    log_path = out_dir / f"log_rank{rank}.csv"
    writer = _tensorboard(out_dir) if main else None
    ckpt = CheckpointWriter()
    stop = StopRequest()
    stop.install()
    progress = Progress(total, step, cfg.progress_seconds)
    guard = DivergenceGuard(cfg.diverge_factor)
    good_step = step if resume else None  # the step of the last checkpoint known good
    last: dict[str, torch.Tensor] = {}
    t0, seen, since = time.perf_counter(), 0, 0
    loader = loader_for(ds, cfg, workers, device)
    contract = cfg.input_contract()

    def state() -> dict:
        return training_state(parts, (step, epoch, done_in_epoch), cfg)

    stopped = False  # a stop request every rank has agreed on
    try:
        while step < total and epoch < cfg.epochs and not stopped:
            ds.set_epoch(epoch)
            epoch_steps = ds.steps_every_rank_can_take(cfg.batch_size, workers) if world > 1 else None
            for b, batch in enumerate(loader):
                if epoch_steps is not None and b >= epoch_steps:
                    break  # the other ranks have no more batches this epoch
                if b < done_in_epoch:
                    continue  # resuming: these batches were trained on before the checkpoint
                wrapped.train()
                on_device = to_device(batch, device, cl, contract)
                last = train_step(wrapped, on_device, optimizer, scheduler, scaler, cfg, device)
                n = len(batch["image"])
                step, done_in_epoch, seen, since = step + 1, b + 1, seen + n, since + n
                guard.observe(step, last)
                log_now = step % cfg.log_every == 0 or step == total
                checkpoint_now = step % cfg.checkpoint_every == 0 and step < total
                # before anything logs or saves this step's state; every step on the CPU (a host sync
                # is free there), else where the loop syncs anyway (under DDP: where the ranks agree)
                if log_now or checkpoint_now or (world == 1 and (device.type == "cpu" or progress.due(step))):
                    _check_divergence(guard, world, device)
                if main and (log_now or progress.due(step)):
                    values = as_floats(last)  # the only host sync: logging steps
                    if log_now:
                        ips = seen / (time.perf_counter() - t0)
                        _log(log_path, writer, step, epoch, scheduler.get_last_lr()[0], values, ips)
                    if progress.due(step):
                        say(progress.line(step, epoch, since, values))
                        since = 0
                if main and cfg.verification and step % cfg.verify_every == 0:
                    _verify(model, cfg, device, out_dir, step)
                if main and checkpoint_now:
                    ckpt.save(ckpt_path, state(), step)
                    good_step = step
                stopped = _stopping(stop, world, device, log_now)
                if step >= total or stopped:
                    break
            if step >= total or stopped:
                break
            epoch, done_in_epoch = epoch + 1, 0
        _check_divergence(guard, world, device)  # the steps since the last check, before the final checkpoint
        if main:
            if ckpt.last_step != step:
                ckpt.save(ckpt_path, state(), step, wait=True)
            ckpt.wait()
            if stopped:
                say(f"stopped at step {step} by {stop.name}; checkpoint {ckpt_path}")
            else:
                export_inference(model, cfg, out_dir / "model.pt", jaw_style_of(shards))
                if cfg.export_onnx:
                    from pltd.trainer.export import export_onnx

                    say(f"ONNX: {', '.join(str(p) for p in export_onnx(model, cfg.tasks, cfg.input_size, out_dir))}")
    except Diverged as exc:
        kept = (f"kept the last good checkpoint {ckpt_path} (step {good_step})" if good_step is not None
                else f"no checkpoint before it (checkpoint_every {cfg.checkpoint_every})")  # fmt: skip
        raise Diverged(f"{exc}; {kept}. Lower lr (or diverge_factor: null to ignore explosions), "
                       f"or look at that step's data rows") from None  # fmt: skip
    finally:
        stop.restore()
        ckpt.wait()
        if writer is not None:
            writer.close()
    return {"step": step, "epoch": epoch, "last": as_floats(last), "interrupted": stop.name if stopped else None}


def _check_divergence(guard: DivergenceGuard, world: int, device: torch.device) -> None:
    """Raise `Diverged` if a loss went non-finite or exploded; under DDP every rank raises together
    (the first bad step, all-reduced), so none waits in a collective for a rank that stopped."""
    if world == 1:
        guard.check()
        return
    first = torch.tensor([guard.first_bad_step()], device=device)
    torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
    if int(first.item()) < NEVER:
        guard.check()  # this rank's own account, when it is the rank that diverged
        raise Diverged(f"step {int(first.item())}: another rank's loss diverged (see its message)")


def _stopping(stop: StopRequest, world: int, device: torch.device, sync_point: bool) -> bool:
    """Whether to stop now. Under DDP every rank must stop at the same step, so the ranks agree at
    logging steps only (one tiny all-reduce there, none in between)."""
    if world == 1:
        return stop.signum is not None
    if not sync_point:
        return False
    flag = torch.tensor([stop.signum or 0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    if flag.item() and not stop.signum:
        stop.signum = int(flag.item())
    return bool(flag.item())


def jaw_style_of(shards: list[str]) -> str | None:
    """The jaw style of the PLTD's landmarks (its shards' `pltd.jaw_style`), None for a PLTD written
    before styles were recorded: a teacher trained on it gives that style (`ResNetTeacher`)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(shards[0]).metadata or {}
    style = meta.get(b"pltd.jaw_style")
    return style.decode() if style else None


def export_inference(model: TaskModel, cfg: TrainConfig, path: Path, jaw_style: str | None = None) -> None:
    """The network alone as a pltd checkpoint (what the pipeline's backends load), with the jaw style
    of the landmarks it learned; TorchScript too when `export_torchscript` is set."""
    from pltd.checkpoints import save_checkpoint

    task = {"fr": "face_recognition", "blink": "blink"}.get(cfg.tasks[0], "landmarks_pose")
    if set(cfg.tasks) >= {"fr", "fld"}:
        task = "multitask"
    net = model.net
    meta = {"arch_kwargs": cfg.arch_kwargs, "preset": cfg.preset, "jaw_style": jaw_style}
    save_checkpoint(path, net, cfg.arch, task, cfg.input_contract(), **meta)
    if not cfg.export_torchscript:
        return
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
    res = verification(EvalModel.live(model.net, cfg.input_contract(), str(device)), cfg.verification)
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
