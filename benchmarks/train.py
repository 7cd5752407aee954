"""Training speed: IResNet50-Multi forward + backward at 112x112 with the paper's losses.

    python benchmarks/train.py [--batch 128] [--steps 3] [--amp none|bf16|fp16] [--compile]

Reports images/s (baseline: the paper's ~770 images/s on one RTX A6000 in FP16; target on one
H100: ≥ 3,000) and whether the reader (benchmarks/loader.py: images/s per core) can feed it; the
FLOPs of one image's forward + backward (counted with torch's FlopCounterMode), the model-FLOP
utilisation (MFU) the H100 target means, and the MFU measured when run on a GPU. The batch is uint8
NHWC normalised on the device, as the trainer does.

    python benchmarks/train.py --heads [--batch 8 --steps 2 --classes 1000]

measures the optional heads and weightings one by one (uncertainty weighting, `pose_head` heatmap / 6d /
heatmap_6d, the visibility head) on the same batch and prints each one's images/s and its ratio
to the default configuration.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pltd.input_contract import InputContract
from pltd.trainer.config import load_config
from pltd.trainer.loop import autocast, configure_backends
from pltd.trainer.model import TaskModel

PAPER_A6000 = 770.0
TARGET_H100 = 3000.0
# dense tensor-core peaks (TFLOP/s) from NVIDIA's data sheets: (bf16/fp16, TF32 for fp32 runs)
PEAK = {"H100 PCIe": (756.0, 378.0), "H100": (989.4, 494.7), "H200": (989.4, 494.7), "A100": (312.0, 156.0),
        "A6000": (154.8, 77.4)}  # fmt: skip


def peak_tflops(name: str, amp: str) -> float | None:
    for key, (half, tf32) in PEAK.items():  # the more specific names come first
        if key in name:
            return half if amp in ("bf16", "fp16") else tf32
    return None


def flops_per_image(args, device: torch.device) -> float:
    """Forward + backward FLOPs of one image of the paper's model and losses (torch's counter: 2 per
    multiply-add of matmuls and convolutions), counted on a batch of 2."""
    cfg = load_config("mtl", [f"amp={args.amp}"])
    model = TaskModel(cfg, args.classes).to(device)
    batch = synthetic_batch(2, args.classes, device, channels_last=False)
    with FlopCounterMode(display=False) as counter, autocast(cfg, device):
        model(batch)["loss"].backward()
    return counter.get_total_flops() / 2


def synthetic_batch(b: int, classes: int, device: torch.device, channels_last: bool) -> dict:
    """Random labels and a uint8 NHWC image batch normalised on the device, as the trainer does."""
    images = torch.randint(0, 256, (b, 112, 112, 3), dtype=torch.uint8, device=device)
    x = InputContract(input_size=112).torch_input(images)
    return {
        "image": x if channels_last else x.contiguous(),
        "landmarks": torch.rand(b, 68, 2, device=device),
        "pose": torch.rand(b, 3, device=device) * 60 - 30,
        "face_id": torch.randint(0, classes, (b,), device=device),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--amp", default="none")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--classes", type=int, default=93_094)  # the paper's PLTD identities
    ap.add_argument("--out", default="benchmarks/out/train.json")
    ap.add_argument("--heads", action="store_true", help="the optional heads and weightings vs the default")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    configure_backends(load_config("mtl"), device)  # as the trainer: native CPU convolutions, TF32 on CUDA
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
    flops = flops_per_image(args, device)
    achieved, budget = ips * flops / 1e12, TARGET_H100 * flops / 1e12
    peak = peak_tflops(name, args.amp) if device.type == "cuda" else None
    res |= {"gflop_per_image_fwd_bwd": flops / 1e9, "achieved_tflops": achieved,
            "mfu": achieved / peak if peak else None, "target_h100_tflops": budget,
            "target_h100_mfu_bf16": budget / PEAK["H100"][0]}  # fmt: skip
    here = f"MFU {achieved / peak:.1%} of {peak:.0f} TFLOP/s" if peak else "no GPU peak to compare with"
    print(
        f"FLOPs: {flops / 1e9:.1f} GFLOP per image fwd+bwd (counted); here {achieved:.3f} TFLOP/s ({here}). "
        f"Budget: {TARGET_H100:,.0f} images/s on an H100 = {budget:.1f} TFLOP/s = "
        f"{res['target_h100_mfu_bf16']:.1%} MFU of its {PEAK['H100'][0]:.0f} bf16 TFLOP/s"
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
    """images/s of each optional head or weighting, same batch and seed, and the ratio to the default."""
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
    batch = synthetic_batch(b, args.classes, device, cl)

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
