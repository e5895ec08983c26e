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
from typing import Iterator

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.evaluate.suite import suite_class
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
    """Refuse, before any work is done, a ``db`` that cannot become robustkd's results database: a folder,
    a path under a file, or an existing file that is not one (opened read-only; nothing is created)."""
    if db.exists() and not db.is_file():
        raise RobustKDError(f"results: --db {db} is a folder; expected a SQLite file")
    if not db.exists():
        parent = next((folder for folder in [db.parent, *db.parent.parents] if folder.exists()), None)
        if parent is not None and not parent.is_dir():
            raise RobustKDError(f"results: --db {db}: {parent} is a file, not a folder")
        return
    try:
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise RobustKDError(f"results: {db} is not a robustkd results database ({exc})") from None


def connect(db: Path) -> sqlite3.Connection:
    """A connection to the results database ``db`` (created with its schema if absent); a file that is not
    a SQLite database, or a database without robustkd's tables, is a RobustKDError naming it."""
    if db.exists() and not db.is_file():
        raise RobustKDError(f"results: --db {db} is a folder; expected a SQLite file")
    db.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(SCHEMA)
        connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        _migrate(connection, db)
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise RobustKDError(f"results: {db} is not a robustkd results database ({exc})") from None
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection, db: Path) -> None:
    """Bring an older database to ``SCHEMA_VERSION`` (add the missing columns); refuse a newer one."""
    stored = int(connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    if stored > SCHEMA_VERSION:
        raise RobustKDError(f"results: {db} has schema version {stored}; this robustkd reads up to "
                            f"{SCHEMA_VERSION} (upgrade robustkd)")
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
    return subset_label(summary.suite, summary.n_examples if summary.subset else None, summary.protocol)


def subset_label(suite: str, prefix: int | None, protocol: dict) -> str:
    """'' for the full test set; ``first<N>`` for a prefix of N images, then the suite's own selection of
    those images (``skip99``: every 99th), joined by '-' (``first2000-skip99``)."""
    try:
        chosen = suite_class(suite)().selection(protocol)
    except (RobustKDError, TypeError, ValueError):
        chosen = ""  # a suite this robustkd does not know, or a protocol without readable selection values
    return "-".join(part for part in (f"first{prefix}" if prefix is not None else "", chosen) if part)


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
    finally:
        connection.close()
    return found is not None


def record_result(db: Path, result_dir: Path) -> RecordOutcome:
    """Record (or re-record) one result directory in a single transaction."""
    rows = result_rows(result_dir)
    key = rows[0][:3] + (rows[0][4],) if rows else None
    connection = connect(db)
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
    if not db.is_file():
        raise RobustKDError(f"results: no database at {db}; run robustkd evaluate (or robustkd results import)")
    connection = connect(db)
    try:
        return pd.read_sql_query("SELECT * FROM results", connection)
    finally:
        connection.close()
