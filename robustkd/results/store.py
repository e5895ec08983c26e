"""The results store: every evaluation's metrics in one SQLite file (default ``results/robustkd.db``).

One row per (checkpoint sha256, suite, suite-file sha256, metric, subset) with its value, unit and
provenance (model name, architecture, method and options, teacher sha256, dataset, n_examples, seed,
device, package versions, protocol, training provenance, cohort, result directory, time). A result is written in one transaction
that first deletes that result's previous rows, so re-recording replaces instead of duplicating, and a
crash leaves either the old rows or the new ones. Writers wait for each other (``BEGIN IMMEDIATE`` with a
busy timeout; WAL journal), so concurrent evaluations lose no rows.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.evaluate.suite import suite_class
from robustkd.results import db_file
from robustkd.evaluate.summary import ResultSummary

DEFAULT_DB = Path("results") / "robustkd.db"
BUSY_TIMEOUT_S = 120.0
SCHEMA_VERSION = 3  # 2: column ``cohort``; 3: subset labels name a suite's own selection (``skip99``)

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    checkpoint_sha256 TEXT NOT NULL,
    suite TEXT NOT NULL,
    suite_sha256 TEXT NOT NULL,
    metric TEXT NOT NULL,
    subset TEXT NOT NULL,            -- '' for the full test set, 'first<N>' for a prefix, then a suite's own selection ('skip99')
    value REAL,
    unit TEXT,
    model_name TEXT,
    architecture TEXT,
    kind TEXT,                       -- train (teacher / baseline) or distill
    method TEXT,
    method_options TEXT,             -- JSON
    teacher_sha256 TEXT,
    dataset TEXT,
    n_examples INTEGER,
    seed INTEGER,
    device TEXT,
    package_versions TEXT,           -- JSON
    protocol TEXT,                   -- JSON
    training TEXT,                   -- JSON: training config without seed (runner.training_record)
    result_dir TEXT,
    created TEXT,
    cohort TEXT,                     -- JSON: {path, member, members} for a cohort member, else null
    PRIMARY KEY (checkpoint_sha256, suite, suite_sha256, metric, subset)
);
CREATE INDEX IF NOT EXISTS results_by_model ON results (checkpoint_sha256);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

COLUMNS = ("checkpoint_sha256", "suite", "suite_sha256", "metric", "subset", "value", "unit", "model_name",
           "architecture", "kind", "method", "method_options", "teacher_sha256", "dataset", "n_examples", "seed",
           "device", "package_versions", "protocol", "training", "result_dir", "created", "cohort")
ADDED_COLUMNS = {"cohort": "TEXT"}  # columns added after schema version 1, with their types


@dataclass(frozen=True)
class RecordOutcome:
    rows: int
    replaced: int


def check_database(db: Path) -> None:
    """Refuse, before any work is done, a ``db`` that cannot record results (one line each, nothing created or
    changed; robustkd/results/db_file.py has the rules): a folder, a path under a file, a read-only file or
    folder, a SQLite file of something else, a database written by a newer robustkd, a damaged one, or one
    locked by another writer for longer than ``BUSY_TIMEOUT_S``. A missing, empty (0-byte) or table-less file
    is fine: the first recording creates the schema."""
    if db.exists() and not db.is_file():
        raise RobustKDError(f"results: --db {db} is {'a folder' if db.is_dir() else 'not a regular file'}; "
                            "expected a SQLite file")
    if not db.exists():
        parent = next((folder for folder in [db.parent, *db.parent.parents] if folder.exists()), None)
        if parent is not None and not parent.is_dir():
            raise RobustKDError(f"results: --db {db}: {parent} is a file, not a folder")
    reason = db_file.read_only_reason(db)
    if reason is not None:
        raise RobustKDError(db_file.read_only_message(db, reason))
    if not db.exists():
        return
    try:
        connection = db_file.open_existing(db, BUSY_TIMEOUT_S)
        try:
            if db_file.classify(connection, db, COLUMNS) == "robustkd":
                _check_content(connection, db)
                verdict = connection.execute("PRAGMA quick_check").fetchone()
                if verdict is None or verdict[0] != "ok":
                    raise RobustKDError(f"results: {db} is damaged (SQLite's check: "
                                        f"{db_file.short(verdict[0] if verdict else None)}); restore it from a copy, "
                                        "or pass another --db")
            connection.execute("BEGIN IMMEDIATE")  # waits for another writer, as recording will
            connection.execute("ROLLBACK")
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise RobustKDError(db_file.error_message(db, exc, BUSY_TIMEOUT_S)) from None


def _check_content(connection: sqlite3.Connection, db: Path) -> int:
    """The schema version (this robustkd reads it) after checking every column and row; returns it."""
    version = db_file.stored_version(connection, db)
    optional = frozenset(ADDED_COLUMNS) if version < SCHEMA_VERSION else frozenset()
    db_file.check_content(connection, db, COLUMNS, optional, version, SCHEMA_VERSION)
    return version


def _build_schema(connection: sqlite3.Connection, db: Path) -> None:
    """Give a blank database (no tables, or only the empty tables of an interrupted creation) robustkd's schema
    and version in one transaction; a database that is no longer blank under the lock is left as it is."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        if not db_file.is_blank(connection, COLUMNS):
            connection.execute("ROLLBACK")
            db_file.classify(connection, db, COLUMNS)  # a foreign database: refused; robustkd's: used
            return
        connection.execute("DROP TABLE IF EXISTS results")  # only robustkd's own empty tables (is_blank)
        connection.execute("DROP TABLE IF EXISTS meta")
        for statement in SCHEMA.split(";\n"):
            if statement.strip():
                connection.execute(statement)
        connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def connect(db: Path) -> sqlite3.Connection:
    """A read-write connection to the results database ``db``, created whole if absent (a blank file gets the
    schema in place; see robustkd/results/db_file.py); anything else that cannot record results is a
    RobustKDError naming it (a foreign or damaged database, a newer schema, read-only, locked)."""
    if db.exists() and not db.is_file():
        raise RobustKDError(f"results: --db {db} is {'a folder' if db.is_dir() else 'not a regular file'}; "
                            "expected a SQLite file")
    try:
        if not db.exists():
            db_file.create_database(db, lambda connection: _build_schema(connection, db))
        connection = db_file.open_existing(db, BUSY_TIMEOUT_S)
    except sqlite3.DatabaseError as exc:
        raise RobustKDError(db_file.error_message(db, exc, BUSY_TIMEOUT_S)) from None
    except PermissionError:
        reason = db_file.read_only_reason(db)
        if reason is None:
            raise
        raise RobustKDError(db_file.read_only_message(db, reason)) from None
    try:
        db_file.remove_stale_temporaries(db_file.real_path(db))  # what a creator killed after its link left
        if db_file.classify(connection, db, COLUMNS) == "blank":
            _build_schema(connection, db)
        _check_content(connection, db)  # before the journal mode: a damaged or newer database is left unchanged
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        _migrate(connection, db)
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise RobustKDError(db_file.error_message(db, exc, BUSY_TIMEOUT_S)) from None
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection, db: Path) -> None:
    """Bring an older database to ``SCHEMA_VERSION`` (add the missing columns); refuse a newer one."""
    stored = int(connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    if stored > SCHEMA_VERSION:
        raise RobustKDError(db_file.newer_message(db, stored, SCHEMA_VERSION))
    if stored == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")  # concurrent connections migrate one after the other
    try:
        # Another connection may have migrated between the read above and the lock: read again under it.
        stored = int(connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if stored >= SCHEMA_VERSION:
            connection.execute("COMMIT")
            return
        present = {row[1] for row in connection.execute("PRAGMA table_info(results)")}
        for column, kind in ADDED_COLUMNS.items():
            if column not in present:
                connection.execute(f"ALTER TABLE results ADD COLUMN {column} {kind}")
        if stored < 3:
            _relabel_selections(connection)
        connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _relabel_selections(connection: sqlite3.Connection) -> None:
    """Version 3: rows of a suite that chose its own images (the certified suite's skip/max) were labelled
    as the full test set (``''``) or a bare prefix (``first<N>``); give them the label a new recording gets.
    Only those two version-2 labels of a suite with a selection are touched, so other labels stay as they are."""
    groups = connection.execute("SELECT DISTINCT suite, subset, protocol FROM results").fetchall()
    for suite, subset, protocol in groups:
        match = re.fullmatch(r"first([1-9][0-9]*)", subset or "")
        if subset != "" and match is None:
            continue
        try:
            recorded = json.loads(protocol) if protocol else {}
            label = subset_label(suite, int(match.group(1)) if match else None,
                                 recorded if isinstance(recorded, dict) else {})
        except (ValueError, TypeError):
            continue  # an unreadable protocol: left as it was
        if label != subset:
            connection.execute("UPDATE results SET subset = ? WHERE suite = ? AND subset = ? AND protocol = ?",
                               (label, suite, subset, protocol))


def result_rows(result_dir: Path) -> list[tuple]:
    """The rows of one result directory: its summary's metrics, plus the details its suite records from its
    files (the corruption grid's cells)."""
    summary_path = result_dir / "summary.json"
    if not summary_path.is_file():
        raise RobustKDError(f"results: {result_dir} has no summary.json (not a result directory)")
    summary = ResultSummary.from_json(summary_path)
    if summary.checkpoint_sha256 is None:
        raise RobustKDError(f"results: {summary_path} lacks 'checkpoint_sha256'; only checkpoints' results can be recorded")
    values: dict[str, tuple[float, str]] = {key: (value, summary.units.get(key, ""))
                                            for key, value in summary.metrics.items()}
    try:
        values.update(suite_class(summary.suite)().recorded_details(result_dir))
    except RobustKDError:
        pass  # a suite this robustkd does not know: its summary's metrics only
    shared = {
        "checkpoint_sha256": summary.checkpoint_sha256, "suite": summary.suite,
        "suite_sha256": summary.suite_sha256, "subset": _subset_label(summary), "model_name": summary.name,
        "architecture": summary.architecture, "kind": summary.kind, "method": summary.method,
        "method_options": json.dumps(summary.method_options, sort_keys=True),
        "teacher_sha256": summary.teacher_sha256, "dataset": summary.dataset,
        "n_examples": summary.n_examples, "seed": summary.seed, "device": summary.device,
        "package_versions": json.dumps(summary.package_versions, sort_keys=True),
        "protocol": json.dumps(summary.protocol, sort_keys=True),
        "training": json.dumps(summary.training, sort_keys=True),
        "result_dir": str(result_dir.resolve()), "created": summary.created,
        "cohort": json.dumps(summary.cohort, sort_keys=True),
    }
    rows = []
    for metric, (value, unit) in sorted(values.items()):
        row = {**shared, "metric": metric, "value": float(value), "unit": unit}
        rows.append(tuple(row[column] for column in COLUMNS))
    return rows


def _subset_label(summary: ResultSummary) -> str:
    if summary.selection:  # robustkd 0.3: a named selection, with the prefix of it (if any) recorded apart
        prefix = summary.prefix
    else:
        prefix = summary.n_examples if summary.subset else None
    return subset_label(summary.suite, prefix, summary.protocol, summary.selection)


def subset_label(suite: str, prefix: int | None, protocol: dict, selection: str = "") -> str:
    """'' for the full test set; the named selection (``robustbench5000``), then ``first<N>`` for a prefix of N
    images, then the suite's own selection of those images (``skip99``: every 99th), joined by '-'
    (``first2000-skip99``, ``robustbench5000-first1000``)."""
    try:
        chosen = suite_class(suite)().selection(protocol)
    except (RobustKDError, TypeError, ValueError):
        chosen = ""  # a suite this robustkd does not know, or a protocol without readable selection values
    return "-".join(part for part in (selection, f"first{prefix}" if prefix is not None else "", chosen) if part)


def is_recorded(db: Path, result_dir: Path) -> bool:
    """Whether ``db`` holds rows of the result in ``result_dir`` (same checkpoint, suite, suite file, subset)."""
    if not db.is_file():
        return False
    summary = ResultSummary.from_json(result_dir / "summary.json")
    connection = connect(db)
    try:
        found = connection.execute(
            "SELECT 1 FROM results WHERE checkpoint_sha256 = ? AND suite = ? AND suite_sha256 = ? AND subset = ? LIMIT 1",
            (summary.checkpoint_sha256, summary.suite, summary.suite_sha256, _subset_label(summary))).fetchone()
    except sqlite3.DatabaseError as exc:
        raise RobustKDError(db_file.error_message(db, exc, BUSY_TIMEOUT_S)) from None
    finally:
        connection.close()
    return found is not None


def record_result(db: Path, result_dir: Path) -> RecordOutcome:
    """Record (or re-record) one result directory in a single transaction. A database that refuses the write
    (locked past the wait, read-only, full) is one line saying so and that the result folder is kept."""
    rows = result_rows(result_dir)
    key = rows[0][:3] + (rows[0][4],) if rows else None
    try:
        connection = connect(db)
    except RobustKDError as exc:
        raise RobustKDError(f"{exc} ({result_dir} is kept; the same command records it once the database "
                            "can be written)") from None
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            replaced = 0
            if key is not None:
                replaced = connection.execute(
                    "DELETE FROM results WHERE checkpoint_sha256 = ? AND suite = ? AND suite_sha256 = ? AND subset = ?",
                    key).rowcount
            connection.executemany(f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                                   rows)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        raise RobustKDError(f"{db_file.error_message(db, exc, BUSY_TIMEOUT_S)} ({result_dir} is kept; the same "
                            "command records it once the database can be written)") from None
    except OverflowError as exc:  # an integer beyond SQLite's 64 bits (a hand-edited seed or count)
        raise RobustKDError(f"results: {result_dir}/summary.json holds a number SQLite cannot store ({exc})") from None
    finally:
        connection.close()
    return RecordOutcome(rows=len(rows), replaced=replaced)


def find_result_dirs(roots: list[Path]) -> Iterator[Path]:
    """Every finished result directory (one holding summary.json) under ``roots``; work folders skipped."""
    for root in roots:
        if (root / "summary.json").is_file():
            yield root
            continue
        for summary in sorted(root.rglob("summary.json")):
            if not any(part.startswith(".") for part in summary.parent.relative_to(root).parts):
                yield summary.parent


def read_results(db: Path) -> pd.DataFrame:
    """Every row of ``db``. A database robustkd can write is brought to the current schema first; one it cannot
    write (a read-only file or folder) is read as it stands (``mode=ro``, else ``immutable=1``), with the columns
    a migration would add left empty. Damage is one line (robustkd/results/db_file.py)."""
    if not db.is_file():
        raise RobustKDError(f"results: no database at {db}; run robustkd evaluate (or robustkd results import)")
    try:
        if db_file.read_only_reason(db) is None:
            connection = connect(db)
        else:
            connection = db_file.open_read_only(db, BUSY_TIMEOUT_S)
            try:
                if db_file.classify(connection, db, COLUMNS) == "blank":
                    return pd.DataFrame(columns=list(COLUMNS))
                _check_content(connection, db)
            except BaseException:
                connection.close()
                raise
        try:
            frame = pd.read_sql_query("SELECT * FROM results", connection)
        finally:
            connection.close()
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise RobustKDError(db_file.error_message(db, exc, BUSY_TIMEOUT_S)) from None
    for column in COLUMNS:
        if column not in frame.columns:  # a read-only database of an older schema
            frame[column] = None
    frame["training"] = frame["training"].map(_canonical_training)
    return frame


def _canonical_training(text: Any) -> Any:
    """A stored training record without the later fields at their defaults (robustkd/train/config.py), so
    results recorded before and after such a field existed group together."""
    from robustkd.train.config import without_later_defaults

    if not isinstance(text, str) or not text:  # NULL (None or NaN) stays as it is
        return text
    record = json.loads(text)
    return json.dumps(without_later_defaults(record), sort_keys=True) if isinstance(record, dict) else text
