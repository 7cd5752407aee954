"""What a network is fed: its input contract, written once for every network pltd runs or trains.

A contract says how an N×S×S×3 uint8 RGB batch becomes the network's float32 input: the side S,
the colour order, the normalisation `(x − mean) / std` per channel (0–255 scale, in that colour
order) and the layout (NCHW or NHWC). The defaults are pltd's own: the trainer feeds its batches
through `InputContract(input_size=…)` (`TrainConfig.input_contract`) and saves that contract in every
checkpoint it writes (`pltd/checkpoints.py`); every
consumer of a network (the teacher, the blink network, the recognition backends, `pltd eval`, the
ONNX adapter, which is a contract plus a file and a decoding) normalises through the contract it
was given, so a change of training normalisation reaches them through the checkpoint.

The arithmetic is `x / std − mean / std` in float32, the same in NumPy and in torch: for pltd's
contract (mean = std = 127.5) that is x / 127.5 − 1 bit for bit, the values the trainer has always fed.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from pltd.validation import Strict


class InputContract(Strict):
    """The input a network expects (see the module docstring); the defaults are what `pltd train`
    feeds (RGB, x / 127.5 − 1, NCHW). Frozen, so it can key caches."""

    input_size: int = Field(112, ge=8, le=2048)
    colour: Literal["rgb", "bgr"] = "rgb"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)  # in the colour order above, 0–255 scale
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    layout: Literal["nchw", "nhwc"] = "nchw"

    def _scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """Per channel, in the network's colour order: x / std − mean / std (mean / std in float64 first)."""
        std = np.asarray(self.std, np.float64)
        return std.astype(np.float32), (np.asarray(self.mean, np.float64) / std).astype(np.float32)

    def _check(self, shape: tuple[int, ...]) -> None:
        s = self.input_size
        if tuple(shape[1:]) != (s, s, 3):
            raise ValueError(f"network input: expected N×{s}×{s}×3 images, got {tuple(shape)}")

    def numpy_input(self, images: np.ndarray) -> np.ndarray:
        """N×S×S×3 uint8 RGB → the network's float32 input, contiguous (onnxruntime's feed)."""
        x = np.asarray(images)
        self._check(x.shape)
        if self.colour == "bgr":
            x = x[..., ::-1]
        std, shift = self._scale_shift()
        x = x.astype(np.float32) / std - shift
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.layout == "nchw" else x)

    def torch_input(self, images):
        """N×S×S×3 uint8 RGB tensor → the network's float32 input on the same device; NCHW comes as a
        permuted NHWC tensor (channels_last strides: call `.contiguous()` for the NCHW memory layout)."""
        self._check(images.shape)
        x = (images.flip(-1) if self.colour == "bgr" else images).float()
        std, shift = (x.new_tensor(v) for v in self._scale_shift())  # float32, on x's device
        x = x.div(std).sub_(shift)  # not in place: a float batch given stays as it was
        return x.permute(0, 3, 1, 2) if self.layout == "nchw" else x

    def torch_batches(self, images: np.ndarray, device, batch_size: int):
        """`torch_input` of N×S×S×3 uint8 RGB images, `batch_size` at a time, on `device` (the uint8
        batch is what crosses to the device)."""
        import torch

        for i in range(0, len(images), batch_size):
            yield self.torch_input(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(device))

    def record(self) -> dict[str, Any]:
        """The contract as plain values, for a checkpoint (loadable with torch's weights_only)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump().items()}


def unrecorded(input_size: int) -> InputContract:
    """The contract of a checkpoint written before checkpoints recorded one: the trainer then always fed
    RGB, x / 127.5 − 1, NCHW at its `input_size`. Spelled out, not the defaults, so that a later change
    of the training contract does not change how old files are read."""
    return InputContract(input_size=input_size, colour="rgb", mean=(127.5,) * 3, std=(127.5,) * 3, layout="nchw")
