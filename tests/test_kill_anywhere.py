"""Kill anywhere, lose nothing: SIGKILL a command at its save boundaries (the ROBUSTKD_KILL_AT hook of
robustkd/utils/fault_injection.py) and at random times, run the same command again, and compare with an
uninterrupted run: bit-identical final weights for training and distillation (--deterministic), identical
result tables for the resumable suites, and identical rows in the results database (which a kill while it is
being created leaves absent or complete, never empty).

The default run kills at a few boundaries of each kind; ``--run-all`` (the slow tests) kills at every
boundary and at random times, and prints ``k/N identical``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest

TRAIN = ["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "25", "--lr", "0.05",
         "--milestones", "1", "--train-limit", "100", "--test-limit", "50", "--deterministic", "--skip-finished"]
DISTILL = ["distill", "--student", "resnet8", "--method", "kd,cmkd", "--seeds", "0", "--dataset", "synthetic",
           "--epochs", "2", "--batch-size", "25", "--lr", "0.05", "--milestones", "1", "--train-limit", "100",
           "--test-limit", "50", "--deterministic", "--skip-finished"]
CORRUPTION = 'suite = "corruption"\nbatch_size = 10\ncorruptions = ["fog", "contrast"]\nseverities = [1, 2]\n'
ADVERSARIAL = ('suite = "adversarial"\nbatch_size = 5\nattacks = ["fgsm", "pgd_linf"]\npgd_steps = 2\n'
               'eps_curve_255 = []\nmasking_examples = 0\n')
CERTIFIED = 'suite = "certified"\nn0 = 10\nn = 50\nbatch_size = 25\nmax = 3\npredict_n = 0\nnoise_chunk = 10\n'
LITTER = (".*.partial", ".*.tmp", ".robustkd.lock", ".*.creating*", "*-journal", "*-wal", "*-shm")


def _run(args: list[str], cwd: Path, kill_at: int | None = None, log: Path | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROBUSTKD_PROGRESS": "0"}
    if kill_at is not None:
        env["ROBUSTKD_KILL_AT"] = str(kill_at)
    if log is not None:
        env["ROBUSTKD_KILL_LOG"] = str(log)
    return subprocess.run([sys.executable, "-m", "robustkd.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _boundaries(args: list[str], cwd: Path) -> list[str]:
    log = cwd / "boundaries.log"
    done = _run(args, cwd, kill_at=0, log=log)
    assert done.returncode == 0, done.stderr
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()]


def _weights(run: Path) -> dict[str, str]:
    """sha256 of every final model's weights under ``run`` (a run folder or a cohort folder)."""
    return {str(p.parent.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("model.safetensors")) if "state" not in p.parts}


def _tables(out: Path) -> dict[str, object]:
    """The finished results under ``out``: metrics and the per-item tables (minus timings)."""
    found = {}
    for summary in sorted(out.glob("*/*/summary.json")):
        folder = summary.parent
        found[folder.name] = json.loads(summary.read_text())["metrics"]
        for name, sep in (("cells.csv", ","), ("examples.csv", ","), ("certify.tsv", "\t")):
            if (folder / name).is_file():
                table = pd.read_csv(folder / name, sep=sep).drop(columns=["seconds"], errors="ignore")
                found[f"{folder.name}/{name}"] = table.sort_values(list(table.columns[:2])).to_csv(index=False)
    return found


def _rows(cwd: Path) -> dict[str, object]:
    """The results database's rows under ``cwd/out`` (minus the recording time; result folders relative to
    ``cwd``) and any temporary database a killed creator left there."""
    out = cwd / "out"
    litter = sorted(path.name for path in out.glob(".*.creating*"))
    db = out / "robustkd.db"
    if not db.is_file():
        return {"rows": None, "litter": litter}
    with closing(sqlite3.connect(db)) as connection:  # closed: no -wal/-shm of this reader left behind
        frame = pd.read_sql_query("SELECT * FROM results", connection)
    frame = frame.drop(columns=["created"])
    frame["result_dir"] = [str(Path(path).relative_to(cwd.resolve())) for path in frame["result_dir"]]
    return {"rows": frame.sort_values(["suite", "metric", "subset"]).to_csv(index=False), "litter": litter}


def _litter(out: Path) -> list[str]:
    """Work folders, lock files, temporary files (of a write cut before its rename) and the database's temporary
    or journal files left under ``out``."""
    return sorted(str(path.relative_to(out)) for pattern in LITTER for path in out.rglob(pattern))


def _results(cwd: Path) -> dict[str, object]:
    """Result tables and database rows: both must come out identical after any kill; and nothing temporary left
    (none in the uninterrupted run)."""
    return {**_tables(cwd / "out"), **_rows(cwd), "left": _litter(cwd / "out")}


def _kill_and_resume(args: list[str], cwd: Path, kill_at: int) -> subprocess.CompletedProcess:
    killed = _run(args, cwd, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-2000:])
    return _run(args, cwd)


def _check(name: str, args: list[str], tmp_path: Path, outcome, points: list[int] | None,
           named: str | None = None) -> None:
    """Kill ``args`` at each boundary in ``points`` (None: every boundary; with ``named``: every boundary whose
    name holds it), resume, compare ``outcome``."""
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    boundaries = _boundaries(args, reference_dir)
    expected = outcome(reference_dir)
    chosen = range(1, len(boundaries) + 1) if points is None else [p for p in points if p <= len(boundaries)]
    if named is not None:
        chosen = [point for point, boundary in enumerate(boundaries, 1) if named in boundary]
        assert chosen, boundaries
    identical, failures = 0, []
    for point in chosen:
        work = tmp_path / f"kill{point}"
        work.mkdir()
        resumed = _kill_and_resume(args, work, point)
        if resumed.returncode == 0 and outcome(work) == expected:
            identical += 1
        else:
            failures.append(f"{point} ({boundaries[point - 1]}): rc {resumed.returncode} {resumed.stderr[-300:]}")
    print(f"{name}: {identical}/{len(chosen)} identical after a SIGKILL at a save boundary")
    assert not failures, failures


def _evaluate_args(checkpoint: Path, suite: Path) -> list[str]:
    return ["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", "20", "--out", "out"]


def _suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


# A few boundaries of each kind by default (before the config is in place, the first epoch's weights, the final
# model); all of them with --run-all.
TRAIN_POINTS = [1, 8, 19]


def test_train_killed_at_save_boundaries_resumes_to_identical_weights(tmp_path: Path) -> None:
    _check("train", TRAIN + ["--run-dir", "run"], tmp_path, lambda cwd: _weights(cwd / "run"), TRAIN_POINTS)


def test_corruption_suite_killed_at_save_boundaries_gives_identical_tables(checkpoint: Path, tmp_path: Path) -> None:
    args = _evaluate_args(checkpoint, _suite(tmp_path, CORRUPTION))
    _check("corruption", args, tmp_path, _results, [5, 10, 21])  # 21: before summary.json's rename


def test_evaluate_killed_while_creating_the_database_records_every_row(checkpoint: Path, tmp_path: Path) -> None:
    """A SIGKILL just before and just after the new database is linked into place: the next run finds no
    database or a complete one (never a table-less file it refuses) and records the same rows."""
    args = _evaluate_args(checkpoint, _suite(tmp_path, 'suite = "clean"\nbatch_size = 10\n'))
    _check("database creation", args, tmp_path, _results, None, named="database")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train", "distill", "corruption", "adversarial", "certified"])
def test_every_save_boundary(checkpoint: Path, tmp_path: Path, name: str) -> None:
    if name == "train":
        _check(name, TRAIN + ["--run-dir", "run"], tmp_path, lambda cwd: _weights(cwd / "run"), None)
    elif name == "distill":
        _check(name, DISTILL + ["--teacher", str(checkpoint), "--run-dir", "run"], tmp_path,
               lambda cwd: _weights(cwd / "run"), None)
    else:
        text = {"corruption": CORRUPTION, "adversarial": ADVERSARIAL, "certified": CERTIFIED}[name]
        _check(name, _evaluate_args(checkpoint, _suite(tmp_path, text)), tmp_path, _results, None)


@pytest.mark.slow
def test_train_killed_at_random_times(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    started = time.perf_counter()
    assert _run(TRAIN + ["--run-dir", "run"], reference).returncode == 0
    duration = time.perf_counter() - started
    expected, rng, identical, trials = _weights(reference / "run"), random.Random(0), 0, 5
    for trial in range(trials):
        work = tmp_path / f"t{trial}"
        work.mkdir()
        process = subprocess.Popen([sys.executable, "-m", "robustkd.cli", *TRAIN, "--run-dir", "run"], cwd=work,
                                   env={**os.environ, "ROBUSTKD_PROGRESS": "0"}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        identical += _run(TRAIN + ["--run-dir", "run"], work).returncode == 0 and _weights(work / "run") == expected
    print(f"train at random times: {identical}/{trials} identical")
    assert identical == trials


LONG_SUITES = {"corruption": CORRUPTION, "adversarial": ADVERSARIAL, "certified": CERTIFIED}


def _long_suites_args(checkpoint: Path, tmp_path: Path) -> list[str]:
    """The three resumable suites in one command, recorded in ``out/robustkd.db``; ``--skip-finished`` so
    that the same command can follow a kill that came after some results were recorded (or all of them)."""
    args = ["evaluate", "--checkpoint", str(checkpoint)]
    for name, text in LONG_SUITES.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        args += ["--suite", str(path)]
    return args + ["--n-examples", "20", "--out", "out", "--db", "out/robustkd.db", "--skip-finished"]


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robustkd.cli", *args], cwd=cwd,
                            env={**os.environ, "ROBUSTKD_PROGRESS": "0"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _listing(out: Path, pattern: str) -> list[Path]:
    """``out.glob(pattern)`` while a running command renames and removes folders under it."""
    while True:
        try:
            return list(out.glob(pattern))
        except FileNotFoundError:  # a folder went away while it was being listed: list again
            continue


def _files(out: Path) -> set[str]:
    return {str(path.relative_to(out)) for path in _listing(out, "**/*")}


def _finished(out: Path) -> int:
    """The result folders in place (not the work folders, which hold a summary.json just before their rename)."""
    return sum(not path.parent.name.startswith(".") for path in _listing(out, "*/*/summary.json"))


def _timeline(args: list[str], cwd: Path) -> dict[str, float]:
    """Run ``args`` uninterrupted in ``cwd``, watching ``cwd/out``; seconds from the start until it locked its
    model folder (``locked``: its first file), until every result folder is in place (``results``), until its
    files last changed (``last``: the database recorded and closed) and until it exited (``exit``)."""
    out, seen, times = cwd / "out", set(), {}
    started = time.perf_counter()
    process = _start(args, cwd)
    while process.poll() is None:
        now, files = time.perf_counter() - started, _files(out)
        if "locked" not in times and _listing(out, "*/.robustkd.lock"):
            times["locked"] = now
        if "results" not in times and _finished(out) == len(LONG_SUITES):
            times["results"] = now
        if files != seen:
            times["last"], seen = now, files
        time.sleep(0.002)
    times["exit"] = time.perf_counter() - started
    assert process.returncode == 0 and {"locked", "results", "last"} <= set(times), (process.returncode, times)
    return times


def _wait_for_lock(process: subprocess.Popen, out: Path) -> None:
    """Until ``process`` holds its model folder's lock under ``out`` (taken over from a killed run's stale lock
    file, which then names the new pid): its suites begin. Startup (imports, loading the model) writes nothing."""
    mark = f'"pid": {process.pid},'
    while process.poll() is None:
        for lock in _listing(out, "*/.robustkd.lock"):
            try:
                if mark in lock.read_text():
                    return
            except FileNotFoundError:
                pass
        time.sleep(0.001)


def _recorded(out: Path) -> int:
    """How many results ``out/robustkd.db`` holds, read from a copy (with its journal, if a kill left one): the
    killed run's files stay as the next run finds them."""
    with tempfile.TemporaryDirectory() as copy:
        for path in out.glob("robustkd.db*"):
            shutil.copy2(path, copy)
        with closing(sqlite3.connect(Path(copy) / "robustkd.db")) as connection:
            return connection.execute("SELECT COUNT(DISTINCT suite) FROM results").fetchone()[0]


def _state(process: subprocess.Popen, out: Path) -> str:
    """Where a kill stopped the command: the results in place, the suites left in progress and the database's
    state (absent, being created, present: being recorded or recorded), or that it had exited first."""
    if process.returncode == 0:
        return "exited before the kill"
    running = sorted(path.name.split("-")[0].lstrip(".") for path in out.glob("*/.*.partial"))
    database = ("being created" if any(out.glob(".*.creating*")) else
                f"holding {_recorded(out)} results" if (out / "robustkd.db").is_file() else "absent")
    return (f"{_finished(out)}/{len(LONG_SUITES)} results, {'+'.join(running) or 'no suite'} in progress, "
            f"database {database}")


def _kill_evaluate_at_random_times(checkpoint: Path, tmp_path: Path, trials: int, max_kills: int,
                                   recording: bool) -> None:
    """``trials`` times: run the long suites and SIGKILL them at a random time (seeded) after they lock their
    folder, within the span in which the uninterrupted run writes (its suites, then recording; a time in its
    startup would kill a process that has written nothing), 1 to ``max_kills`` kills in a row, each run
    resuming the last (a resumed run may finish before its kill); then run the same command to the end,
    compare tables and database rows with the uninterrupted run and check that nothing temporary is left.
    With ``recording``, every other trial kills its only run at a random time after its last result folder
    is in place: while the new database is created and the results are recorded."""
    args = _long_suites_args(checkpoint, tmp_path)
    reference = tmp_path / "reference"
    reference.mkdir()
    times = _timeline(args, reference)
    expected = _results(reference)
    assert not _litter(reference / "out"), _litter(reference / "out")
    rng, identical, failures, states = random.Random(0), 0, [], []
    for trial in range(trials):
        work = tmp_path / f"t{trial}"
        work.mkdir()
        at_recording = recording and trial % 2 == 1
        for _ in range(1 if at_recording else 1 + trial // (1 + recording) % max_kills):
            process = _start(args, work)
            if at_recording:  # the database is new: nothing has recorded into this folder yet
                while process.poll() is None and _finished(work / "out") < len(LONG_SUITES):
                    time.sleep(0.001)
                time.sleep(rng.uniform(0, max(times["last"] - times["results"], 0.01)))
            else:
                _wait_for_lock(process, work / "out")
                time.sleep(rng.uniform(0, times["last"] - times["locked"]))
            process.kill()
            process.wait()
            states.append(_state(process, work / "out"))
        finished = _run(args, work)
        left = _litter(work / "out")
        if finished.returncode == 0 and _results(work) == expected and not left:
            identical += 1
        else:
            failures.append(f"trial {trial} ({states[-1]}): rc {finished.returncode}, left {left}, "
                            f"{finished.stderr[-300:]}")
    left_by_kills = "; ".join(f"{states.count(state)}x {state}" for state in sorted(set(states)))
    summary = (f"evaluate at random times: {identical}/{trials} identical (tables and database rows) after "
               f"{len(states)} SIGKILLs; kills left {left_by_kills}; uninterrupted run (s): "
               + ", ".join(f"{event} {seconds:.3f}" for event, seconds in times.items()))
    print(summary)
    assert identical == trials, f"{summary}; failures: {failures}"


def test_evaluate_killed_at_random_times_gives_identical_tables_and_rows(checkpoint: Path, tmp_path: Path) -> None:
    _kill_evaluate_at_random_times(checkpoint, tmp_path, trials=3, max_kills=2, recording=False)


@pytest.mark.slow
def test_evaluate_killed_at_random_times_and_while_recording(checkpoint: Path, tmp_path: Path) -> None:
    _kill_evaluate_at_random_times(checkpoint, tmp_path, trials=20, max_kills=3, recording=True)


def test_a_torn_work_table_line_is_cut_on_reopening(tmp_path: Path) -> None:
    from robustkd.evaluate.durable_table import DurableTable

    table = DurableTable(tmp_path / "cells.csv", ["corruption", "severity"])
    table.append([["fog", 1]])
    with open(tmp_path / "cells.csv", "a") as handle:
        handle.write("fog,")  # a write cut short by a kill
    reopened = DurableTable(tmp_path / "cells.csv", ["corruption", "severity"])
    assert reopened.keys("corruption", "severity") == {("fog", 1)}
    reopened.append([["fog", 2]])
    assert (tmp_path / "cells.csv").read_text() == "corruption,severity\nfog,1\nfog,2\n"
