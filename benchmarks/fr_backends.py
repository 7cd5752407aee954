"""Face-recognition backends: IResNet50 embedding time per image, torch (`insightface`
backend: a backbone.pth state_dict) vs onnxruntime (`onnx` backend: the same network exported with
insightface's signature), on the CPU, batch 32, one thread each. Baseline: torch.

    python benchmarks/fr_backends.py [--batch 32] [--repeats 3]

Random weights (speed does not depend on them); the inputs are ArcFace-aligned 112×112 crops, so
the alignment (the same for both backends) is not timed. CPU seconds per image (process time: the
machine is shared, wall time is not ours); the best of `repeats` batches after a warm-up.
Writes benchmarks/out/fr_backends.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from pltd.networks import create
from pltd.stages.identities.networks import create_network
from pltd.trainer.export import Head


def per_image(fn, n: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best / n


class _Outputs(torch.nn.Module):
    """`Head` expects a TaskModel's `outputs`; a bare IResNet returns the dict already."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def outputs(self, x):
        return self.net(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        model = create("iresnet50").eval()
        with torch.no_grad():  # fan-in scaled weights: the default init's activations overflow over 24 blocks
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                    m.weight.normal_(0, m.weight[0].numel() ** -0.5)
        torch.save(model.state_dict(), f"{d}/backbone.pth")
        torch.onnx.export(Head(_Outputs(model), "embedding"), (torch.zeros(1, 3, 112, 112),), f"{d}/r50.onnx",
                          dynamo=False, opset_version=17, input_names=["input.1"], output_names=["embedding"],
                          dynamic_axes={"input.1": {0: "batch"}, "embedding": {0: "batch"}})  # fmt: skip
        tnet = create_network("insightface", f"{d}/backbone.pth", architecture="iresnet50", device="cpu")
        onet = create_network("onnx", f"{d}/r50.onnx", threads=1)
        crops = np.random.default_rng(0).integers(0, 256, (args.batch, 112, 112, 3), dtype=np.uint8)
        diff = float(np.abs(tnet._run(crops) - (e := onet.net(crops)) / np.linalg.norm(e, axis=1, keepdims=True)).max())
        t_torch = per_image(lambda: tnet._run(crops), args.batch, args.repeats)
        t_onnx = per_image(lambda: onet.net(crops), args.batch, args.repeats)
    res = {"batch": args.batch, "threads": 1, "torch_ms_per_image": 1e3 * t_torch, "onnx_ms_per_image": 1e3 * t_onnx,
           "onnx_speedup_vs_torch": t_torch / t_onnx, "max_abs_diff": diff, "torch": torch.__version__,
           "load": os.getloadavg()[0]}  # fmt: skip
    print(f"IResNet50 on the CPU, batch {args.batch}, 1 thread (load average {res['load']:.1f}):")
    print(f"  torch (insightface backend)  {res['torch_ms_per_image']:7.1f} ms/image   (baseline)")
    print(
        f"  onnxruntime (onnx backend)   {res['onnx_ms_per_image']:7.1f} ms/image   {res['onnx_speedup_vs_torch']:.2f}×"
    )
    print(f"  largest embedding difference {diff:.1e}")
    (out := Path(__file__).parent / "out").mkdir(exist_ok=True)
    (out / "fr_backends.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
