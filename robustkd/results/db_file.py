"""The results database as a file: created whole, classified before use, read where it cannot be written.

Rules (robustkd/results/store.py calls these):

- **Creation is atomic.** A new database is built in a temporary file beside the target
  (``.<name>.<host>-<pid>-<random>.creating``: schema and version in one transaction), fsynced, and then
  hard-linked to the target name (``os.link`` never replaces an existing file; a process that loses the race
  uses the winner's file, which is complete too). A kill at any point leaves either no database or a complete
  one; the temporary files of killed processes of this host are removed by the next creation.
- **An empty database is new.** A 0-byte file, or a valid SQLite database with no tables at all (what a kill
  left behind while an older robustkd created it), gets the schema in place, in one ``BEGIN IMMEDIATE``
  transaction: never replaced (another process may hold it open), never half-built.
- **Nothing foreign is adopted.** A SQLite file holding other tables than robustkd's is refused with one line and
  left byte-for-byte as it was (its journal mode is not touched either: classification runs before any write).
- **Damage is one line.** A missing or non-numeric ``schema_version``, a missing column, a non-numeric ``value``
  (or ``n_examples``/``seed``), unreadable JSON provenance, a page-level corruption: ``RobustKDError`` naming
  the file and what is wrong, never a traceback.
- **Read-only is readable.** A database whose file or folder cannot be written is opened with ``mode=ro``
  (``immutable=1`` when SQLite cannot open it read-only otherwise, a WAL database in a read-only folder), and
  never migrated; writers are told it is read-only, not that it is "not a robustkd results database".
- **Locks have a name.** A writer that waits longer than the busy timeout is told the database is locked.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
from glob import escape as glob_escape
from pathlib import Path
from typing import Callable

from robustkd.errors import RobustKDError
from robustkd.utils.fault_injection import boundary

OWN_TABLES = ("results", "meta")
OWN_OBJECTS = frozenset({"results", "meta", "results_by_model", "sqlite_autoindex_results_1",
                         "sqlite_autoindex_meta_1"})
NUMERIC_COLUMNS = {"value": ("real", "integer", "null"), "n_examples": ("integer", "null"),
                   "seed": ("integer", "null")}
KEY_COLUMNS = ("checkpoint_sha256", "suite", "suite_sha256", "metric", "subset")
JSON_COLUMNS = ("method_options", "package_versions", "protocol", "training", "cohort")
TEMPORARY_SUFFIX = ".creating"


def short(value: object, limit: int = 60) -> str:
    """``repr(value)`` bounded in work and length (a damaged file's content may be anything)."""
    from robustkd.utils.short_repr import short_repr

    return short_repr(value, limit)


# ----- paths and permissions -----

def real_path(db: Path) -> Path:
    """``db`` with symlinks resolved (a link to a database is the database; a dangling link its target)."""
    return Path(os.path.realpath(os.fspath(db)))


def nearest_existing(folder: Path) -> Path | None:
    return next((entry for entry in [folder, *folder.parents] if entry.exists()), None)


def read_only_reason(db: Path) -> str | None:
    """Why ``db`` cannot be written (None when it can): its file or its folder is read-only. For a database
    that does not exist yet, the nearest existing folder above it must be writable."""
    target = real_path(db)
    if target.exists():
        if not os.access(target, os.W_OK):
            return "the file is read-only"
        if not os.access(target.parent, os.W_OK | os.X_OK):
            return f"its folder {target.parent} is read-only, and SQLite writes its journal there"
        return None
    folder = nearest_existing(target.parent)
    if folder is not None and folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is read-only"
    return None


def read_only_message(db: Path, reason: str) -> str:
    return (f"results: {db} is read-only ({reason}); robustkd records results there: make it writable, or pass "
            "another --db (or --no-db)")


def locked_message(db: Path, waited: float) -> str:
    return (f"results: {db} is locked by another writer (waited {waited:g} s); run again when that writer "
            "finishes, or pass another --db")


def error_message(db: Path, exc: BaseException, waited: float) -> str:
    """One line for a SQLite failure on ``db``."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return locked_message(db, waited)
    reason = read_only_reason(db)
    if "readonly" in lowered or "read-only" in lowered or ("unable to open" in lowered and reason is not None):
        return read_only_message(db, reason or "SQLite refused to write it")
    if "not a database" in lowered or "encrypted" in lowered:
        return f"results: {db} is not a robustkd results database ({text})"
    if "malformed" in lowered or "corrupt" in lowered:
        return f"results: {db} is damaged ({text}); restore it from a copy, or pass another --db"
    if "full" in lowered:
        return f"results: {db}: {text} (free some space and run again)"
    if "unable to open" in lowered:
        return f"results: {db} cannot be opened ({text})"
    return f"results: {db}: {text}"


# ----- creation -----

def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        _fsync(folder)
    except OSError:  # pragma: no cover - platforms without directory fds
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True


def remove_stale_temporaries(target: Path) -> None:
    """Temporary databases of killed creators on this host (``.<name>.<host>-<pid>-<random>.creating``)."""
    host = socket.gethostname()
    prefix = f".{target.name}."
    for leftover in target.parent.glob(f"{glob_escape(prefix)}*{TEMPORARY_SUFFIX}*"):
        owner = leftover.name[len(prefix):].rsplit(TEMPORARY_SUFFIX, 1)[0].rsplit("-", 2)
        if len(owner) != 3 or not owner[1].isdigit():
            continue
        if owner[0] == host and int(owner[1]) != os.getpid() and not _alive(int(owner[1])):
            try:
                leftover.unlink()
            except OSError:
                pass


def create_database(db: Path, build: Callable[[sqlite3.Connection], None]) -> None:
    """Create ``db`` whole: ``build(connection)`` fills a temporary file beside it, which is fsynced and linked
    into place only if ``db`` is still absent. ``db`` is either absent or complete at every instant."""
    target = real_path(db)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
                           f"{TEMPORARY_SUFFIX}")
    try:
        connection = sqlite3.connect(tmp, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=DELETE")
            build(connection)
        finally:
            connection.close()
        _fsync(tmp)
        boundary(f"link database {target.name}")
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass  # another process created it first: its file is complete as well
        except OSError:  # a file system without hard links: claim the name first (O_EXCL), then fill it
            # An empty database file is built in place, in one transaction, by whoever opens it next (this process
            # included), so no process can ever hold a file that a rename then replaces.
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                pass  # another process created it first
        _fsync_folder(target.parent)
        boundary(f"linked database {target.name}")
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass


# ----- classification and checks -----

def objects(connection: sqlite3.Connection) -> dict[str, str]:
    """Every schema object of the database: name -> type."""
    return {name: kind for kind, name in connection.execute("SELECT type, name FROM sqlite_master")}


def is_blank(connection: sqlite3.Connection, columns: tuple[str, ...]) -> bool:
    """Whether the database holds nothing: no schema object at all, or only robustkd's tables of an
    interrupted creation (no version recorded, no rows)."""
    found = objects(connection)
    if not found:
        return True
    if not set(found) <= OWN_OBJECTS or "results" not in found and "meta" not in found:
        return False
    if "meta" in found and connection.execute("SELECT COUNT(*) FROM meta").fetchone()[0]:
        return False
    if "results" in found:
        present = {row[1] for row in connection.execute("PRAGMA table_info(results)")}
        if not present <= set(columns) or connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]:
            return False
    return True


def classify(connection: sqlite3.Connection, db: Path, columns: tuple[str, ...]) -> str:
    """``blank`` (build the schema) or ``robustkd``; a foreign SQLite database is a RobustKDError (read only:
    nothing is written)."""
    if is_blank(connection, columns):
        return "blank"
    found = objects(connection)
    tables = sorted(name for name, kind in found.items() if kind == "table" and not name.startswith("sqlite_"))
    if not set(OWN_TABLES) & set(tables):
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        raise RobustKDError(f"results: {db} is a SQLite database of something else (tables: {shown or 'none'}), "
                            "not a robustkd results database; robustkd leaves it as it is: pass another --db")
    missing = [name for name in OWN_TABLES if name not in tables]
    if missing:
        raise RobustKDError(f"results: {db} is not a robustkd results database (it lacks the table "
                            f"{', '.join(missing)}); pass another --db")
    return "robustkd"


def stored_version(connection: sqlite3.Connection, db: Path) -> int:
    """The ``schema_version`` recorded in ``meta``; a missing or non-integer one is damage."""
    row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise RobustKDError(f"results: {db} is damaged: its meta table has no schema_version; restore it from a "
                            "copy, or pass another --db")
    text = row[0]
    try:
        version = int(text) if isinstance(text, (int, str)) and str(text).strip().isdigit() else None
    except ValueError:  # pragma: no cover - isdigit guards it
        version = None
    if version is None:
        raise RobustKDError(f"results: {db} is damaged: schema_version = {short(text)} is not a version number; "
                            "restore it from a copy, or pass another --db")
    return version


def newer_message(db: Path, version: int, supported: int) -> str:
    return (f"results: {db} was written by a newer robustkd (schema version {version}; this robustkd reads up to "
            f"{supported}): upgrade robustkd, or pass another --db")


def check_content(connection: sqlite3.Connection, db: Path, columns: tuple[str, ...], optional: frozenset[str],
                  version: int, supported: int) -> None:
    """The version is one this robustkd reads; every column is there (``optional``: those a migration adds);
    numbers are numbers, keys are text and provenance is JSON in every row."""
    if version > supported:
        raise RobustKDError(newer_message(db, version, supported))
    present = {row[1] for row in connection.execute("PRAGMA table_info(results)")}
    missing = [column for column in columns if column not in present and column not in optional]
    if missing:
        raise RobustKDError(f"results: {db} is damaged: the results table lacks the column(s) {', '.join(missing)}; "
                            "restore it from a copy, or pass another --db")
    checks = [(column, f"typeof({column}) NOT IN ({', '.join(repr(t) for t in kinds)})", "a number")
              for column, kinds in NUMERIC_COLUMNS.items()]
    checks += [(column, f"typeof({column}) != 'text'", "text") for column in KEY_COLUMNS]
    if _has_json(connection):
        # Python's json reads NaN and Infinity, which SQLite's strict json_valid does not: those rows pass.
        checks += [(column, f"{column} IS NOT NULL AND (typeof({column}) != 'text' OR (NOT json_valid({column}) "
                            f"AND {column} NOT LIKE '%NaN%' AND {column} NOT LIKE '%Infinity%'))", "JSON text")
                   for column in JSON_COLUMNS if column in present]
    if connection.execute(f"SELECT 1 FROM results WHERE {' OR '.join(f'({c})' for _, c, _ in checks)} LIMIT 1"
                          ).fetchone() is None:
        return  # one pass over the rows when nothing is wrong; otherwise find what is
    for column, condition, expected in checks:
        row = connection.execute(f"SELECT metric, {column} FROM results WHERE {condition} LIMIT 1").fetchone()
        if row is not None:
            raise RobustKDError(f"results: {db} is damaged: a row of metric {short(row[0], 40)} holds {column} = "
                                f"{short(row[1])} where {expected} belongs; restore it from a copy, or delete "
                                "that row")


def _has_json(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute("SELECT json_valid('{}')").fetchone()
    except sqlite3.OperationalError:  # pragma: no cover - SQLite built without JSON
        return False
    return True


def open_read_only(db: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection: ``mode=ro``, else (SQLite cannot create the WAL index of a database in a read-only
    folder) ``immutable=1``, which reads the file as it stands."""
    uri = real_path(db).as_uri()
    wal = real_path(db).with_name(real_path(db).name + "-wal")
    # immutable=1 ignores a write-ahead log: only safe when there is none (else its commits would be missed).
    suffixes = ("?mode=ro",) if wal.is_file() and wal.stat().st_size > 0 else ("?mode=ro", "?mode=ro&immutable=1")
    last: sqlite3.Error | None = None
    for suffix in suffixes:
        connection = sqlite3.connect(uri + suffix, uri=True, timeout=timeout, isolation_level=None)
        try:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.OperationalError as exc:
            connection.close()
            last = exc
    assert last is not None
    if len(suffixes) == 1:
        raise sqlite3.OperationalError(f"{db} cannot be read as it is: its write-ahead log {wal.name} holds commits "
                                       "not yet in the file and the folder is read-only (copy both files to a "
                                       "writable folder and read the copy)")
    raise last


def open_existing(db: Path, timeout: float) -> sqlite3.Connection:
    """A read-write connection to an existing ``db`` (``mode=rw``: never creates a file)."""
    return sqlite3.connect(real_path(db).as_uri() + "?mode=rw", uri=True, timeout=timeout, isolation_level=None)
