"""``save_safetensors``: safetensors' ``save_file`` whose I/O failures are ``OSError`` naming the file.

safetensors writes from Rust and reports a full disk (or any other I/O failure) as
``SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")``, which the
command line cannot tell from a bug. The errno is recovered from the message and raised as
``OSError(errno, strerror, path)``, which the command line prints as one line (``<path>: No space left on
device``, exit 2); the atomic writers remove their temporary file, so the last good file stays in place.
"""

from __future__ import annotations

import errno as errno_codes
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike[str],
                     metadata: dict[str, str] | None = None) -> None:
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as exc:
        code = os_error_code(str(exc))
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(Path(path))) from None


def os_error_code(message: str) -> int | None:
    """The errno of a Rust I/O error message (``... (os error 28)``); EIO for an I/O error without one."""
    match = re.search(r"\(os error (\d+)\)", message)
    if match:
        return int(match.group(1))
    return errno_codes.EIO if "I/O error" in message else None
