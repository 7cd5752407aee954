"""Vector helpers both the stages and the trainer use: the one L2 normalisation."""

from __future__ import annotations

import numpy as np


def l2_normalize(x, axis: int = -1, eps: float = 1e-12, dtype=np.float32) -> np.ndarray:
    """`x / max(‖x‖₂, eps)` along `axis` (a zero vector stays zero instead of NaN); `dtype=None` keeps x's."""
    x = np.asarray(x, dtype)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)
