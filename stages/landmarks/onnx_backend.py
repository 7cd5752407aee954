"""ONNX backends for Algorithm 1's learned roles (teacher, blink), run with onnxruntime.

An `OnnxAdapter` (the manifest's `landmarks.teacher_onnx` / `landmarks.blink_onnx`) says how a
network file is fed and read: input size, colour order, normalisation `(x − mean) / std` per
channel, layout NCHW/NHWC and the output decoding (`landmarks_pose_139`: pltd's own teacher,
`3ddfa_62`: 3DDFA_V2's 62 parameters, `blink_logit`: one eye-closed logit, `embedding`: a face-
recognition vector of any width, read by `stages/identities/networks.py`). onnxruntime's CUDA
provider is used when it is available, else the CPU one.

Graphs exported with a fixed batch of 1 (3DDFA_V2's `mb1_120x120.onnx`) are given a symbolic batch
dimension when loaded (`dynamic_batch`), so one `run` covers every view of a chunk
(benchmarks/tddfa.py measures batched vs per view).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pltd.backends import Backend
from pltd.input_contract import InputContract
from pltd.stages.landmarks.base import LandmarkSource, resized, samples_from_139
from pltd.stages.landmarks.blink import BLINKS, CropBlink

Decoding = Literal["landmarks_pose_139", "3ddfa_62", "blink_logit", "embedding"]


class OnnxAdapter(InputContract):
    """An input contract (size, colour, mean, std, layout) plus the file and how its output is read."""

    path: str | None = None  # the .onnx file; None: the preset's shipped file (3DDFA_V2)
    input_size: int = Field(120, ge=8, le=2048)
    decoding: Decoding = "landmarks_pose_139"
    batch_size: int = Field(64, ge=1)


# Presets: the input/output contracts of the families pltd knows.
PRESETS: dict[str, OnnxAdapter] = {
    # cleardusk/3DDFA_V2 TDDFA_ONNX.py (commit 4947e04dcf25281e8e0dc331fc1ab2d0448153e7): BGR,
    # (x − 127.5) / 128, NCHW 120×120, 62 normalised parameters
    "3ddfa_v2": OnnxAdapter(
        input_size=120, colour="bgr", mean=(127.5,) * 3, std=(128.0,) * 3, layout="nchw", decoding="3ddfa_62"
    ),
    # pltd's own networks (`pltd train`), exported to ONNX: the training contract (pltd/input_contract.py)
    "pltd_teacher": OnnxAdapter(input_size=128, decoding="landmarks_pose_139"),
    "pltd_blink": OnnxAdapter(input_size=64, decoding="blink_logit"),
    # insightface recognition models (python-package/insightface/model_zoo/arcface_onnx.py, commit
    # 2400a75dd0358ae625d07f300ab2739fa8af00bd): 112×112, BGR image with swapRB → RGB, (x − 127.5) / 127.5,
    # NCHW, one 512-d output; graphs converted from mxnet (Sub and Mul among the first 8 nodes) take
    # raw 0–255 pixels instead: `insightface_mxnet`
    "insightface": OnnxAdapter(input_size=112, decoding="embedding"),
    "insightface_mxnet": OnnxAdapter(input_size=112, mean=(0.0,) * 3, std=(1.0,) * 3, decoding="embedding"),
    "pltd_embedding": OnnxAdapter(input_size=112, decoding="embedding"),
}

OUTPUT_WIDTH = {"landmarks_pose_139": 139, "3ddfa_62": 62, "blink_logit": 1, "embedding": None}  # None: any


def providers() -> list[str]:
    """onnxruntime's CUDA provider when this build has it, then the CPU one."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def dynamic_batch(model_bytes: bytes) -> bytes:
    """The same graph with a symbolic batch dimension on every input and output (graphs exported
    with batch 1; their reshapes must read the batch from `Shape`, as 3DDFA_V2's do)."""
    import onnx

    m = onnx.load_from_string(model_bytes)
    for value in [*m.graph.input, *m.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    return m.SerializeToString()


@functools.cache
def session(path: str, batched: bool = True, threads: int = 0):
    """An onnxruntime session for `path` (cached per worker process); `batched` makes batch dynamic."""
    import onnxruntime as ort

    data = Path(path).read_bytes()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # 0: onnxruntime's default (the cores it sees)
    opts.log_severity_level = 3
    return ort.InferenceSession(dynamic_batch(data) if batched else data, opts, providers=providers())


def shape_problems(inputs: list, outputs: list, a: OnnxAdapter) -> list[str]:
    """How a graph's input and output dimensions (int, or None where symbolic) differ from what the
    adapter feeds and decodes: a file of another network."""
    size = a.input_size
    want = [None, 3, size, size] if a.layout == "nchw" else [None, size, size, 3]
    problems = []
    if len(inputs) == 4 and any(
        isinstance(g, int) and w is not None and g != w for g, w in zip(inputs, want, strict=True)
    ):
        shown = lambda dims: "×".join("N" if d is None else str(d) for d in dims)  # noqa: E731
        problems.append(f"input {shown(inputs)}, the adapter feeds {shown(want)} ({a.layout}, input_size {size})")
    width, got = OUTPUT_WIDTH[a.decoding], outputs[-1] if outputs else None
    if isinstance(got, int) and width is not None and got != width:
        problems.append(f"output width {got}, decoding {a.decoding!r} needs {width}")
    return problems


def check_onnx(path: str, a: OnnxAdapter, field: str) -> None:
    """Start-up: the graph's shapes against the adapter, read without running it; errors name `field`."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises several types for files that are not models
        raise ValueError(f"{field}: {path} is not a loadable ONNX model: {exc}") from None
    weights = {w.name for w in graph.initializer}
    dims = lambda v: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]  # noqa: E731
    inputs = [dims(v) for v in graph.input if v.name not in weights]
    problems = shape_problems(inputs[0] if inputs else [], dims(graph.output[0]) if graph.output else [], a)
    if problems:
        raise ValueError(f"{field}: {path} is not the network the adapter describes: {'; '.join(problems)}")


class OnnxNetwork:
    """A network file run batched: `net(images)` → N × output width float32."""

    def __init__(self, path: str, adapter: OnnxAdapter, threads: int = 0):
        if not Path(path).is_file():
            raise FileNotFoundError(f"ONNX model {path} not found")
        self.adapter = adapter
        self.session = session(str(path), True, threads)
        self.input_name = self.session.get_inputs()[0].name
        out = self.session.get_outputs()[0].shape
        problems = shape_problems([], [out[-1]] if out else [], adapter)
        if problems:
            raise ValueError(f"ONNX model {path}: {'; '.join(problems)}")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        a, outs = self.adapter, []
        for i in range(0, len(images), a.batch_size):
            x = a.numpy_input(images[i : i + a.batch_size])
            outs.append(np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32).reshape(len(x), -1))
        if outs:
            return np.concatenate(outs)
        width = OUTPUT_WIDTH[a.decoding] or self.session.get_outputs()[0].shape[-1]
        return np.zeros((0, width if isinstance(width, int) else 0), np.float32)


class OnnxFile(Backend):
    """A backend that runs the file its `adapter` option names (`adapter.path`), through onnxruntime."""

    packages = ("onnxruntime", "onnx")
    wants_gpu = True

    @staticmethod
    def adapter(adapter: OnnxAdapter | None) -> OnnxAdapter:
        """The adapter, or an error naming what it lacks for this role."""
        return adapter

    @classmethod
    def model_files(cls, adapter: OnnxAdapter | None = None, **_):
        return {"adapter.path": (True, adapter.path if adapter else None)}

    @classmethod
    def check(cls, where, adapter: OnnxAdapter | None = None, **_):
        check_onnx(cls.adapter(adapter).path, adapter, where("adapter.path"))


class OnnxTeacher(OnnxFile, LandmarkSource):
    """pltd's own teacher exported to ONNX (`landmarks_pose_139`); its pose is regressed. Built by the
    `onnx` source (`sources.OnnxSource`), under whose name its samples go."""

    name = "onnx"
    pose_is_fitted = False
    reference = True  # the paper's teacher: trained on 300W-LP (base.LandmarkSource.reference)

    @classmethod
    def gives_jaw(cls, **_) -> None:
        return None  # pltd's teacher exported: the style of the PLTD it was trained on

    def __init__(self, adapter: OnnxAdapter, threads: int = 0, **_):
        if adapter.path is None:
            raise ValueError("landmarks.teacher_onnx.path: an .onnx file is required for landmarks_pose_139")
        self.net = OnnxNetwork(adapter.path, adapter, threads)

    def __call__(self, views):
        if not views:
            return []
        return samples_from_139(self.net(resized(views, self.net.adapter.input_size)), views, self.name)


@BLINKS.register("onnx")
class OnnxBlink(OnnxFile, CropBlink):
    """The blink role from an ONNX file (`blink_logit`): σ = sigmoid(logit) per eye crop, batched."""

    @staticmethod
    def adapter(adapter: OnnxAdapter | None) -> OnnxAdapter:
        if adapter is None or adapter.path is None:
            raise ValueError("landmarks.blink_onnx.path: an .onnx file is required with blink: onnx")
        if adapter.decoding != "blink_logit":
            raise ValueError(f"landmarks.blink_onnx.decoding: {adapter.decoding!r}, expected 'blink_logit'")
        return adapter

    def __init__(self, adapter: OnnxAdapter | None, threads: int = 0, **_):
        adapter = self.adapter(adapter)
        self.net = OnnxNetwork(adapter.path, adapter, threads)
        self.size = adapter.input_size

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros(0)
        return 1 / (1 + np.exp(-self.net(np.stack(crops))[:, 0]))
