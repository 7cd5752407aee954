"""Training speed: IResNet50-Multi forward + backward at 112x112 with the paper's losses.

    python benchmarks/train.py [--batch 128] [--steps 3] [--amp none|bf16|fp16] [--compile]

Reports images/s (baseline: the paper's ~770 images/s on one RTX A6000 in FP16; target on one
H100: ≥ 3,000) and whether the reader (benchmarks/loader.py: images/s per core) can feed it.

    python benchmarks/train.py --heads [--batch 8 --steps 2 --classes 1000]

measures the issue-15 options one by one (uncertainty weighting, `pose_head` heatmap / 6d /
heatmap_6d, the visibility head) on the same batch and prints each one's images/s and its ratio
to the default configuration.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pltd.trainer.config import load_config
from pltd.trainer.loop import autocast
from pltd.trainer.model import TaskModel

PAPER_A6000 = 770.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--amp", default="none")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--classes", type=int, default=93_094)  # the paper's PLTD identities
    ap.add_argument("--out", default="benchmarks/out/train.json")
    ap.add_argument("--heads", action="store_true", help="the issue-15 options vs the default")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.backends.mkldnn.enabled = False  # as the trainer does on CPUs (see trainer/loop.py)
    if args.heads:
        return heads_table(args, device)
    ips = measure(args, device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    res = {"device": name, "batch": args.batch, "amp": args.amp if device.type == "cuda" else "none (CPU: fp32)",
           "compile": args.compile, "images_per_s": ips, "vs_paper_a6000": ips / PAPER_A6000}  # fmt: skip
    print(
        f"IResNet50-Multi fwd+bwd, 112x112, batch {args.batch}, {name}, amp {res['amp']}, compile {args.compile}: "
        f"{ips:.1f} images/s ({ips / PAPER_A6000:.3f}x the paper's 770/s on an A6000)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


HEADS = {
    "default (paper)": [],
    "loss_weighting=uncertainty": ["loss_weighting=uncertainty"],
    "pose_head=heatmap": ["pose_head=heatmap"],
    "pose_head=6d": ["pose_head=6d"],
    "pose_head=heatmap_6d": ["pose_head=heatmap_6d"],
    "visibility_head": ["visibility_head=true"],
}


def heads_table(args, device: torch.device) -> None:
    """images/s of each issue-15 option, same batch and seed, and the ratio to the default."""
    rows = {}
    for name, over in HEADS.items():
        torch.manual_seed(0)
        rows[name] = measure(args, device, over)
        print(f"{name:28s} {rows[name]:8.2f} images/s  {rows[name] / rows['default (paper)']:.3f}x", flush=True)
    torch.manual_seed(0)
    rows["default (paper), again"] = again = measure(args, device)  # drift of a shared machine
    print(f"{'default (paper), again':28s} {again:8.2f} images/s  {again / rows['default (paper)']:.3f}x", flush=True)
    dev = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    res = {"device": dev, "batch": args.batch, "classes": args.classes, "images_per_s": rows}
    out = Path(args.out).with_name("train_heads.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


def measure(args, device: torch.device, overrides: list[str] = ()) -> float:
    """images/s of IResNet50-Multi forward + backward + SGD step with the paper's losses (+ overrides)."""
    cfg = load_config("mtl", [f"amp={args.amp}", f"batch_size={args.batch}", *overrides])
    model = TaskModel(cfg, args.classes).to(device)
    cl = device.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if args.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    b = args.batch
    batch = {
        "image": torch.randn(b, 3, 112, 112, device=device),
        "landmarks": torch.rand(b, 68, 2, device=device),
        "pose": torch.rand(b, 3, device=device) * 60 - 30,
        "face_id": torch.randint(0, args.classes, (b,), device=device),
    }
    if cl:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)

    def step():
        with autocast(cfg, device):
            loss = step_model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * b / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
