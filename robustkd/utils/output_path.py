"""Outputs never destroy: the check of every file a user names for robustkd to write (``--out``, ``--plot``...).

``check_output_file`` runs before any work. After resolving symlinks, a path is accepted when it is new or an
existing regular file that is not a database; refused (RobustKDError, one line naming the path and what was
expected):

- anything that exists and is not a regular file: a folder, a character or block device (``/dev/null``,
  ``/dev/full``), a FIFO, a socket. robustkd never writes into one in place either (its writers replace the
  file by a rename, which would turn a device node into a regular file): the rule is to refuse, always;
- an SQLite database (a file starting with ``SQLite format 3\\0``): robustkd writes no output as SQLite, so an
  SQLite file is never one of its outputs, and it is refused;
- the results database in use (``database``, the command's ``--db``) and its ``-wal``, ``-shm`` and ``-journal``
  companions, whether or not they exist yet;
- a path whose folder is not a folder (a parent that is a file).

``check_output_files`` checks several outputs of one command and refuses two options naming one file (the
second would silently replace the first). ``check_output_folder`` is the rule for an output folder: absent or a
folder. The atomic writers of ``robustkd/utils/atomic.py`` refuse to rename over anything but a regular file
whatever the caller checked (``refuse_non_regular``), the last line of the same rule.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from robustkd.errors import RobustKDError

SQLITE_HEADER = b"SQLite format 3\x00"
DATABASE_COMPANIONS = ("-wal", "-shm", "-journal")
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def describe_kind(mode: int) -> str:
    """``a folder``, ``a character device``, ... for a non-regular ``st_mode``; ``a regular file`` otherwise."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def resolved(path: str | os.PathLike[str]) -> Path:
    """``path`` with every symlink resolved (also when the final target does not exist yet)."""
    return Path(os.path.realpath(os.fspath(path)))


def _shown(path: Path, real: Path) -> str:
    return str(path) if real == Path(os.path.abspath(path)) else f"{path} (-> {real})"


def refuse_non_regular(target: str | os.PathLike[str], what: str = "output file") -> None:
    """Raise RobustKDError when ``target`` (symlinks followed) exists and is not a regular file."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise RobustKDError(f"{target}: a part of its folder is a file; expected a folder to hold the {what}") from None
    if not stat.S_ISREG(mode):
        raise RobustKDError(f"{target} is {describe_kind(mode)}; expected a regular file or a new path for the "
                            f"{what} (robustkd never replaces a folder, device, pipe or socket)")


def check_output_file(path: str | os.PathLike[str], *, option: str = "--out", what: str = "output file",
                      database: str | os.PathLike[str] | None = None) -> Path:
    """Refuse ``path`` as an output (see the module docstring); returns it with its symlinks resolved."""
    named = Path(path)
    real = resolved(named)
    shown = _shown(named, real)
    for parent in real.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RobustKDError(f"{option} {shown}: cannot write ({parent} is not a folder); expected a folder "
                                    f"to hold the {what}")
            break
    if database is not None:
        db = resolved(database)
        if real == db or any(real == db.with_name(db.name + suffix) for suffix in DATABASE_COMPANIONS):
            raise RobustKDError(f"{option} {shown} is the results database in use (--db {database}); expected "
                                f"another path for the {what}")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return real
    if not stat.S_ISREG(mode):
        raise RobustKDError(f"{option} {shown} is {describe_kind(mode)}; expected a regular file or a new path "
                            f"for the {what} (robustkd never replaces a folder, device, pipe or socket)")
    try:
        with open(real, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise RobustKDError(f"{option} {shown}: cannot read it to check that it is no database "
                            f"({exc.strerror or exc}); expected a readable regular file or a new path for the "
                            f"{what}") from None
    if header == SQLITE_HEADER:
        raise RobustKDError(f"{option} {shown} is an SQLite database; expected a new path or a file robustkd "
                            f"wrote as the {what} (it never writes SQLite outputs)")
    return real


def check_output_files(outputs: Iterable[tuple[str, str | os.PathLike[str] | None, str]], *,
                       database: str | os.PathLike[str] | None = None) -> None:
    """``check_output_file`` on each ``(option, path, what)`` given (path None: not asked for), and refuse two
    options naming one file."""
    seen: dict[Path, str] = {}
    for option, path, what in outputs:
        if path is None:
            continue
        real = check_output_file(path, option=option, what=what, database=database)
        if real in seen:
            raise RobustKDError(f"{option} {path} is the file {seen[real]} names too; expected a separate file for "
                                f"the {what}")
        seen[real] = option


def check_output_folder(path: str | os.PathLike[str], *, option: str = "--out", what: str = "output") -> Path:
    """Refuse an output folder that exists as anything but a folder (symlinks resolved); returns it resolved."""
    named = Path(path)
    real = resolved(named)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        for parent in real.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RobustKDError(f"{option} {_shown(named, real)}: {parent} is not a folder; expected a "
                                        f"folder for the {what}")
                break
        return real
    if not stat.S_ISDIR(mode):
        raise RobustKDError(f"{option} {_shown(named, real)} is {describe_kind(mode)}; expected a folder (or a new "
                            f"path) for the {what}")
    return real
