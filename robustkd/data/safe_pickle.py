"""Read CIFAR's python-pickle files without unpickling arbitrary objects.

The CIFAR "python version" files are pickles of dicts holding lists, bytes and NumPy uint8 arrays. A pickle
can name any importable callable, so ``pickle.load`` on a downloaded file is code execution. No library we
depend on reads these files safely (torchvision calls plain ``pickle.load``), hence this small restricted
unpickler: it resolves only the NumPy array-reconstruction globals and refuses everything else.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

MAX_ARRAY_BYTES = 1 << 32  # 4 GiB: CIFAR's largest array is 150 MB; a pickle may not ask for more


class OversizedArrayError(pickle.UnpicklingError):
    """The pickle asks for an array larger than ``MAX_ARRAY_BYTES`` (before anything is allocated)."""


def _checked_shape(shape: Any, dtype: Any) -> None:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        raise OversizedArrayError(f"refusing an array of shape {shape!r}")
    size = np.dtype(dtype).itemsize
    for d in dims:
        size *= d
    if size > MAX_ARRAY_BYTES:
        raise OversizedArrayError(f"refusing an array of shape {dims} ({size / 2**30:.1f} GiB > "
                                  f"{MAX_ARRAY_BYTES / 2**30:.0f} GiB)")


def _ndarray(shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
    _checked_shape(shape, dtype)
    return np.ndarray(shape, dtype, *args, **kwargs)


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array reconstruction (an empty array that ``__setstate__`` then fills from the pickle's own
    bytes, whose length numpy checks against the shape), with the shape checked first."""
    _checked_shape(shape, np.uint8)
    return _RECONSTRUCT(np.ndarray if subtype is _ndarray else subtype, shape, dtype)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_module, "_reconstruct")] = _reconstruct
_ALLOWED_GLOBALS[("_codecs", "encode")] = __import__("codecs").encode


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load global {module}.{name}") from None


def load_restricted_pickle(path: str | Path) -> Any:
    """Load ``path`` allowing only plain containers, strings, numbers and NumPy arrays.

    Bytes keys of Python-2 pickles are kept as bytes (``encoding='bytes'``), as CIFAR's readers expect.
    """
    data = Path(path).read_bytes()
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
