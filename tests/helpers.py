"""Helpers shared by tests (small data made inside the tests). Test files import from here, never
from `conftest` or from one another."""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The shared conformance data beside the checkout (../shared/conformance): real 300W-LP renders
# and their .mat files. A plain clone lacks it and its tests skip; CI sets this variable
# (`.ci/run`), so there a missing fixture fails instead of passing unseen.
CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance"
REQUIRE_CONFORMANCE = "PLTD_REQUIRE_CONFORMANCE"


def missing(what: str) -> None:
    """Skip for `what` (named in the reason), or fail where the run requires conformance tests to run."""
    if os.environ.get(REQUIRE_CONFORMANCE, "") not in ("", "0"):
        pytest.fail(f"{what}; {REQUIRE_CONFORMANCE} is set (as .ci/run sets it), so this test must run", pytrace=False)
    pytest.skip(f"{what} (set {REQUIRE_CONFORMANCE}=1 to make this a failure)", allow_module_level=True)


def conformance_files(*paths: Path) -> None:
    """Every path exists, or `missing` names the first that does not."""
    for path in paths:
        if not Path(path).is_file():
            missing(f"{path} not found (the shared conformance folder beside the checkout: {CONFORMANCE})")


def conformance_module(name: str, install: str):
    """The module, or `missing` naming it and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"package {name} is not installed (pip install {install})")


def jpeg_bytes(size=(64, 48), mode="RGB", seed=0, **save) -> bytes:
    """A random-pixel image of `size` (w, h) in `mode`, encoded as JPEG."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    arr = rng.integers(0, 255, shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode=None).convert(mode).save(buf, format="JPEG", **save)
    return buf.getvalue()


def train_batch(n=6, classes=3, size=112):
    """A random multitask training batch (images in [-1, 1], 68 landmarks, pose, identity, blink)."""
    import torch

    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
        "landmarks": torch.rand(n, 68, 2, generator=g),
        "pose": torch.rand(n, 3, generator=g) * 60 - 30,
        "face_id": torch.arange(n) % classes,
        "eye_closed": torch.rand(n, generator=g),
    }


def folder_manifest(tmp_path, n_images: int, rows_per_partition: int):
    """A manifest of one image_folder source: n good images in 5 identities plus 3 bad files."""
    root = tmp_path / "faces"
    for i in range(n_images):
        d = root / f"id{i % 5}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:04d}.jpg").write_bytes(jpeg_bytes((40, 40), seed=i))
    (root / "id0" / "zero.jpg").write_bytes(b"")
    (root / "id1" / "text.jpg").write_text("hello")
    (root / "id2" / "cut.jpg").write_bytes(jpeg_bytes((200, 200))[:500])
    m = tmp_path / "folder.yaml"
    m.write_text(
        f"name: folder\nsources: [{{name: faces, format: image_folder, root: {root}}}]\n"
        f"ingest: {{rows_per_partition: {rows_per_partition}}}\n"
    )
    return m


def random_graph(path, size: int, width: int, batch=1, layout="nchw", scale=0.01, seed=0) -> str:
    """Input batch×3×size×size (or NHWC) → mean over pixels → Gemm → batch×width, random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    shape = [batch, 3, size, size] if layout == "nchw" else [batch, size, size, 3]
    axes = [2, 3] if layout == "nchw" else [1, 2]
    w = numpy_helper.from_array((rng.normal(size=(width, 3)) * scale).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=width).astype(np.float32) * scale, "b")
    ax = numpy_helper.from_array(np.array(axes, np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=0),
        helper.make_node("Gemm", ["m", "w", "b"], ["output"], transB=1),
    ]
    g = helper.make_graph(
        nodes, "random", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, width])], [w, b, ax],
    )  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)
    return str(path)


def tiny_checkpoint(path, task="landmarks_pose", outputs=139, size=128):
    """A pltd checkpoint of the tiny ResNet (random weights) for `task`."""
    import torch

    from pltd.checkpoints import save_checkpoint
    from pltd.networks import create

    torch.manual_seed(0)
    model = create("resnet_tiny", num_outputs=outputs)
    save_checkpoint(path, model, "resnet_tiny", task, size, arch_kwargs={"num_outputs": outputs})
    return path
