"""Load pickles of numpy arrays without running code.

Model files of the field (3DDFA_V2's `bfm_noneck_v3.pkl` and `param_mean_std_62d_120x120.pkl`,
insightface's `.bin` verification sets) are pickles. `pickle.load` would run whatever callable the
file names; this unpickler resolves only numpy's array reconstruction and Python's plain
containers, and refuses anything else with an error naming the callable.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # protocol 5: arrays rebuilt from an in-band buffer by np.frombuffer(buf, dtype).reshape(shape),
    # which refuses object dtypes ("cannot create an OBJECT array from memory buffer"): no code runs
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles (insightface's .bin files): str → bytes only
}


class UnsafePickle(pickle.UnpicklingError):
    """The pickle names a callable outside `ALLOWED`."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise UnsafePickle(
                f"refusing to load {module}.{name}: only numpy arrays and bytes are allowed in this file"
            )
        # numpy 1.x pickles name numpy._core in numpy 2 files and the other way round
        for mod in (
            module,
            module.replace("numpy._core.", "numpy.core."),
            module.replace("numpy.core.", "numpy._core."),
        ):
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise UnsafePickle(f"{module}.{name} is not available in this numpy")


def loads(data: bytes, **kwargs):
    return _Restricted(io.BytesIO(data), **kwargs).load()


def load(path: str | Path, **kwargs):
    with open(path, "rb") as f:
        return _Restricted(f, **kwargs).load()
