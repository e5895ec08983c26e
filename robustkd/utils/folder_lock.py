"""Exclusive folders: one robustkd process at a time writes a run folder, a cohort folder or a model's result folder.

``lock_folder(folder)`` creates ``<folder>/.robustkd.lock`` (and the folder) and holds it with
``fcntl.flock(LOCK_EX | LOCK_NB)`` for the life of the command; the file records who holds it (pid, host, start
time, command). A second process is refused at once (RobustKDError, one line naming the holder). The kernel
drops the lock when its process dies however it dies, so a lock file left by a killed process is stale and
simply taken over; nothing is ever waited for or guessed from a pid.

``release()`` deletes the lock file while still holding the lock, then removes the folder when it is empty and
either the lock created it or ``clear_folder(..., remove=True)`` discarded what was in it (a run that wrote
nothing leaves nothing; a folder that was there before stays), and any empty parent folders the lock created. A
process that opened the file just before it was deleted notices that the path no longer names the file it
locked and tries again, so two processes never both hold a folder.

The lock file is robustkd's own bookkeeping, never a result: ``is_lock_file`` tells the folder rules (a new
run's folder may hold only a config and leftovers; a cohort folder with no finished epoch may be replaced)
to ignore it, ``clear_folder`` empties a folder but for it, and it lives in the folder that is written, never
inside a result folder that is renamed into place.

Within one process a folder already held is held again without a second flock (``flock`` would refuse the
process its own lock); it is released when the outermost holder releases it. Under torchrun only rank 0
takes the lock (the other ranks do not write the folder): callers pass ``enabled=placement.is_main``.

Windows has no ``fcntl``: there ``lock_folder`` is a no-op (folders are not locked; the folder rules still
refuse a folder holding another run), and a folder is writable without a lock wherever the lock file cannot
be created because the folder is not writable by this user (nothing can be written there anyway).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".robustkd.lock"
_held: dict[Path, FolderLock] = {}


def is_lock_file(path: Path) -> bool:
    """True for a folder lock file (held or left by a killed process): bookkeeping, never part of a run."""
    return Path(path).name == LOCK_NAME


def clear_folder(folder: Path, *, remove: bool = False) -> None:
    """Remove everything in ``folder`` except its lock file (which its holder removes on release); with
    ``remove`` the folder itself too: now when this process holds no lock on it, else when it releases the lock
    (if the folder is still empty then). A lock file this process does not hold is never touched."""
    folder = Path(folder)
    for entry in folder.iterdir():
        if is_lock_file(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if remove:
        held = _held.get(Path(os.path.realpath(folder)))
        if held is not None and held.fd is not None:
            held.remove_folder = True
        else:
            try:
                folder.rmdir()
            except OSError:  # another process's (or a killed one's) lock file is still there
                pass


class FolderLock:
    """A held folder lock (or a no-op one: ``fd`` None); ``release()`` is idempotent."""

    def __init__(self, folder: Path, fd: int | None = None, created: tuple[Path, ...] = ()) -> None:
        self.folder = folder
        self.fd = fd
        self.created = created  # folders the lock created, innermost first (the folder itself included)
        self.remove_folder = False  # set by clear_folder(..., remove=True)
        self.depth = 1

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def release(self) -> None:
        if self.fd is None:
            return
        self.depth -= 1
        if self.depth > 0:
            return
        _held.pop(self.folder, None)
        try:
            self.path.unlink(missing_ok=True)  # still held: nobody can be relying on this file
            removable = [folder for folder in self.created if folder != self.folder]
            if self.remove_folder or self.folder in self.created:
                removable.insert(0, self.folder)
            for folder in removable:
                try:
                    folder.rmdir()  # only when empty: a run that wrote nothing leaves nothing
                except OSError:
                    break
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> dict[str, Any]:
    """What the lock file says about its holder (it writes it right after locking: wait a moment for it)."""
    for _ in range(20):
        try:
            raw = os.pread(fd, 4096, 0)
        except OSError:
            return {}
        if raw:
            try:
                content = json.loads(raw.decode("utf-8", "replace"))
            except json.JSONDecodeError:
                content = None
            if isinstance(content, dict):
                return content
        time.sleep(0.05)
    return {}


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h, started 2026-...Z: robustkd distill ...`` (one line)."""
    if not info:
        return "a process that has not said who it is yet"
    command = " ".join(str(info.get("command", "")).split())
    text = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
    return f"{text}: {command}" if command else text


def _command_line() -> str:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("__main__.py", "-m", "-c"):
        program = "robustkd"
    return " ".join([program, *sys.argv[1:]])[:500]


def _in_use(folder: Path, option: str, info: dict[str, Any]) -> RobustKDError:
    return RobustKDError(f"{option} {folder} is in use by another robustkd process ({describe_holder(info)}); "
                         f"wait for it to finish or choose another {option}")


# Never follow a link named like the lock file, never block on a FIFO: a lock file is a plain file or refused.
SAFE_OPEN = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def _plain_file_or_refuse(fd: int, lock_path: Path) -> int:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RobustKDError(f"{lock_path} is not a regular file; robustkd's lock file is: remove it")
    return fd


def refuse_if_held(folder: str | os.PathLike[str] | None, *, option: str = "--run-dir") -> None:
    """Raise the "in use" RobustKDError when another process holds ``folder`` or the folder holding it (a
    cohort holding a member's folder); creates and changes nothing. For refusals decided before the lock is
    taken (a plan that reads the folder while another process writes it): the holder is the better reason."""
    if folder is None or fcntl is None:
        return
    for candidate in (Path(folder), Path(folder).parent):
        key = Path(os.path.realpath(candidate))
        if key in _held:
            continue
        try:
            fd = os.open(key / LOCK_NAME, os.O_RDONLY | SAFE_OPEN)
        except OSError:
            continue
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise _in_use(candidate, option, _holder(fd)) from None
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def lock_folder(folder: str | os.PathLike[str], *, option: str = "--run-dir", what: str = "run folder",
                enabled: bool = True) -> FolderLock:
    """Create ``folder`` if needed and hold it for this process (see the module docstring).

    Refused (RobustKDError, one line): ``folder`` held by another process (naming its pid, host, start time and
    command), or existing as anything but a folder.
    """
    folder = Path(folder)
    if not enabled or fcntl is None:
        return FolderLock(folder)
    if folder.exists() and not folder.is_dir():
        raise RobustKDError(f"{option} {folder} is a file; expected a folder for the {what}")
    key = Path(os.path.realpath(folder))
    held = _held.get(key)
    if held is not None and held.fd is not None:
        held.depth += 1
        return held
    created = tuple(parent for parent in (key, *key.parents) if not parent.exists())
    lock_path = key / LOCK_NAME
    for _ in range(100):
        try:
            key.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RobustKDError(f"{option} {folder}: a part of its path is a file; expected a folder for the "
                                f"{what}") from None
        try:
            fd = _plain_file_or_refuse(os.open(lock_path, os.O_RDWR | os.O_CREAT | SAFE_OPEN, 0o666), lock_path)
        except FileNotFoundError:  # a holder removed the folder as it released it: try again
            continue
        except PermissionError:
            try:  # another user's lock file in a shared folder: a read-only descriptor locks as well
                fd = _plain_file_or_refuse(os.open(lock_path, os.O_RDONLY | SAFE_OPEN), lock_path)
            except FileNotFoundError:  # this user cannot create a file here: it cannot write the folder either
                return FolderLock(folder)
            except PermissionError:
                return FolderLock(folder)
        except OSError as exc:
            if exc.errno == errno.EROFS:  # a read-only file system: nothing can be written there
                return FolderLock(folder)
            if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO):  # a link or a FIFO named like the lock
                raise RobustKDError(f"{lock_path} is not a regular file; robustkd's lock file is: remove it") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            info = _holder(fd)
            os.close(fd)
            raise _in_use(folder, option, info) from None
        try:
            same = os.stat(lock_path)
        except FileNotFoundError:
            same = None
        mine = os.fstat(fd)
        if same is None or (same.st_dev, same.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)  # locked a file its holder had just deleted: lock the one the path names now
            continue
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command_line(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:  # a read-only descriptor (another user's stale file): the lock holds all the same
            pass
        lock = FolderLock(key, fd, created)
        _held[key] = lock
        return lock
    raise RobustKDError(f"{option} {folder}: could not take its lock file {lock_path} (it kept disappearing); "
                        "another process keeps removing the folder")
