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

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_module, "_reconstruct")] = np.ndarray.__reduce__(np.zeros(0))[0]
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
