"""Atomic file writes: write a temporary file in the target's folder, fsync it, then rename.

A reader never sees a half-written file: it sees the old content or the new one. The file gets the
permissions of any other tool's output (0666 less the user's umask), not ``mkstemp``'s private 0600, so
others on a shared machine can read results the umask lets them read.

A symlink is followed (its target is replaced; the link stays), and a target that exists as anything but a
regular file - a folder, a device node such as ``/dev/null``, a FIFO, a socket - is refused (RobustKDError)
before the write and again just before the rename: a rename would replace it by a regular file.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from robustkd.utils.fault_injection import boundary
from robustkd.utils.output_path import refuse_non_regular, resolved


@contextmanager
def atomic_path(target: str | os.PathLike[str], *, follow_links: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    On an exception the temporary file is removed and ``target`` is untouched. A symbolic link at ``target`` is
    replaced by the file (its target untouched) unless ``follow_links``: an output the user named and
    ``robustkd.utils.output_path.check_output_file`` accepted is written through its links; robustkd's own
    files (configs, sidecars, weights) never are, so a link planted in a run folder cannot redirect a write.
    """
    target = resolved(target) if follow_links else Path(os.path.abspath(target))
    refuse_non_regular(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_private_name(target)
    mode = tmp.stat().st_mode & 0o777
    try:
        yield tmp
        if tmp.stat().st_mode & 0o777 != mode:  # a writer that made its own file (safetensors: 0600)
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        boundary(f"replace {target.name}")
        refuse_non_regular(target)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        boundary(f"replaced {target.name}")
    except OSError as exc:
        if exc.filename is None:  # a write or fsync that failed (a full disk): name the file it was for
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def is_leftover_temporary(path: Path) -> bool:
    """A temporary file (or folder) of a write that a kill interrupted: ``.<name>.<random>.tmp``."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _create_private_name(target: Path) -> Path:
    """Create an empty, new ``.<name>.<random>.tmp`` beside ``target`` (O_EXCL: never an existing file),
    with mode 0666 filtered by the umask, as ``open(..., "w")`` would create it."""
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return tmp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes, *, follow_links: bool = False) -> None:
    with atomic_path(target, follow_links=follow_links) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str, *, follow_links: bool = False) -> None:
    write_bytes_atomic(target, text.encode("utf-8"), follow_links=follow_links)


def write_json_atomic(target: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def write_with_atomic(target: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` to produce the file, then move it into place atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
