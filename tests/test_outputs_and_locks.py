"""Nothing lost, nothing wrong: outputs never destroy what is at their path, and run folders lock.

Outputs: every option naming a file for robustkd to write (leaderboard export --out/--grid-out, report --out,
compare --out/--plot) refuses a FIFO, a character device, a folder and the results database itself, with one
line and exit 2, before any work, leaving the target exactly as it was; ``corrupt --out`` (a folder) refuses
anything but a folder. Devices are made with ``os.mknod`` in a temporary folder only (skipped without the right).

Locks: a second ``train``, ``distill`` (solo or cohort) or ``evaluate`` into a folder another process is
writing is refused with one line naming the first's pid, and the first finishes with its own result; a lock
left by a SIGKILLed process is taken over. The first process is held at its first save boundary by a gate
(the fault-injection hook of robustkd/utils/fault_injection.py, replaced in a small wrapper script) so that the
test knows it holds its folder.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustkd.cli import main
from robustkd.errors import RobustKDError
from robustkd.utils.folder_lock import LOCK_NAME, lock_folder

TINY = ["--dataset", "synthetic", "--batch-size", "50", "--lr", "0.05", "--milestones", "2", "--train-limit", "100",
        "--test-limit", "50", "--epochs", "2", "--deterministic"]
TEACHER = "7" * 64


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    error = capsys.readouterr().err
    assert error.startswith("robustkd: error: ") and error.count("\n") == 1, error
    return error


# ---------------------------------------------------------------------------------------------- outputs

def _result(root: Path, method: str, seed: int, suite: str, metrics: dict) -> None:
    checkpoint = f"{method}{seed}".encode().hex().ljust(64, "0")
    folder = root / f"{method}-s{seed}-{suite}"
    folder.mkdir(parents=True)
    summary = {
        "name": f"resnet8-{checkpoint[:12]}", "architecture": "resnet8", "dataset": "cifar100", "clean_acc": 40.0,
        "suite": suite, "metrics": metrics, "units": {}, "protocol": {}, "n_examples": 10000, "subset": False,
        "seed": seed, "device": "cpu", "package_versions": {}, "checkpoint_sha256": checkpoint,
        "suite_file": f"{suite}.toml", "suite_sha256": suite[0] * 64, "created": "2026-11-28T00:00:00+00:00",
        "method": method, "teacher_sha256": TEACHER, "method_options": {}, "kind": "distill",
        "training": {"recipe": "quick", "epochs": 10},
        "cohort": {"path": "runs/c", "member": f"resnet8-{method}-s{seed}", "members": []},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results database with kd and cmkd students over two seeds (clean accuracy, corruption grid)."""
    root = tmp_path_factory.mktemp("results")
    for method, accuracy in (("kd", 40.0), ("cmkd", 42.0)):
        for seed in (0, 1):
            _result(root / "r", method, seed, "clean", {"top1": accuracy + seed, "top5": 70.0})
    database = root / "robustkd.db"
    assert main(["results", "import", str(root / "r"), "--db", str(database)]) == 0
    return database


def _make(kind: str, path: Path, database: Path) -> Path:
    """A target of ``kind`` at ``path`` (or the database itself); skipped when this user cannot make it."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a /dev/null twin, in a temporary folder
        except (PermissionError, OSError) as exc:
            pytest.skip(f"cannot create a character device here ({exc})")
    elif kind == "dir":
        path.mkdir()
        (path / "keep.txt").write_text("mine")
    elif kind == "database":
        return database
    else:
        raise AssertionError(kind)
    return path


def _fingerprint(path: Path) -> tuple:
    """What must not change: the inode, its type and device number, and a file's bytes or a folder's listing."""
    info = os.lstat(path)
    content: object = None
    if stat.S_ISREG(info.st_mode):
        content = path.read_bytes()
    elif stat.S_ISDIR(info.st_mode):
        content = sorted((p.name, p.read_bytes()) for p in path.iterdir())
    return info.st_ino, stat.S_IFMT(info.st_mode), info.st_rdev, content


KINDS = ["fifo", "chardev", "dir", "database"]
OPTIONS = {
    "leaderboard --out": lambda t, db, ok: ["leaderboard", "export", "--format", "csv", "--out", str(t), "--db", str(db)],
    "leaderboard --grid-out": lambda t, db, ok: ["leaderboard", "export", "--format", "csv", "--out", str(ok),
                                                 "--grid-out", str(t), "--db", str(db)],
    "report --out": lambda t, db, ok: ["report", "--out", str(t), "--db", str(db)],
    "compare --out": lambda t, db, ok: ["compare", "--pair", "cmkd:kd", "--out", str(t), "--db", str(db)],
    "compare --plot": lambda t, db, ok: ["compare", "--pair", "cmkd:kd", "--out", str(ok), "--plot", str(t),
                                         "--db", str(db)],
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("option", list(OPTIONS))
def test_an_output_never_replaces_a_device_fifo_folder_or_the_database(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, kind: str) -> None:
    target = _make(kind, tmp_path / "target", db)
    before, db_before = _fingerprint(target), _fingerprint(db)
    ok = tmp_path / "ok.out"
    assert main(OPTIONS[option](target, db, ok)) == 2
    error = _one_line_error(capsys)
    assert str(target) in error and "expected" in error, error
    assert _fingerprint(target) == before and _fingerprint(db) == db_before
    assert not ok.exists(), "the other output was written although the command was refused"
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "database" else ["target"])  # no temporaries


def test_outputs_through_symlinks_twice_named_or_in_a_file_are_refused(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(fifo)
    assert main(["report", "--out", str(tmp_path / "link"), "--db", str(db)]) == 2
    assert "FIFO" in _one_line_error(capsys) and stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path / "dblink").symlink_to(db)
    before = db.read_bytes()
    assert main(["report", "--out", str(tmp_path / "dblink"), "--db", str(db)]) == 2
    assert "results database in use" in _one_line_error(capsys) and db.read_bytes() == before
    other = tmp_path / "other.db"  # any SQLite file, not only the one in use
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    assert main(["compare", "--pair", "cmkd:kd", "--out", str(other), "--db", str(db)]) == 2
    assert "is an SQLite database" in _one_line_error(capsys)
    same = tmp_path / "same.csv"
    assert main(["leaderboard", "export", "--out", str(same), "--grid-out", str(same), "--db", str(db)]) == 2
    assert "is the file --out names too" in _one_line_error(capsys) and not same.exists()
    (tmp_path / "plain").write_text("x")
    assert main(["report", "--out", str(tmp_path / "plain" / "r.html"), "--db", str(db)]) == 2
    assert "is not a folder" in _one_line_error(capsys)


def test_regular_files_are_still_replaced(db: Path, tmp_path: Path) -> None:
    out, plot, report = tmp_path / "board.csv", tmp_path / "forest.png", tmp_path / "report.html"
    out.write_text("old")
    assert main(["leaderboard", "export", "--format", "csv", "--out", str(out), "--db", str(db)]) == 0
    assert out.read_text() != "old" and len(out.read_text().splitlines()) == 3  # a header and two models
    assert main(["compare", "--pair", "cmkd:kd", "--out", str(tmp_path / "c.md"), "--format", "md",
                 "--plot", str(plot), "--db", str(db)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    link = tmp_path / "report-link.html"
    link.symlink_to(report)
    assert main(["report", "--out", str(link), "--db", str(db)]) == 0
    assert link.is_symlink() and report.read_text().startswith("<!DOCTYPE html>")  # the link stays, its file written


@pytest.mark.parametrize("kind", ["fifo", "chardev", "database"])
def test_corrupt_out_refuses_anything_but_a_folder(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   kind: str) -> None:
    target = _make(kind, tmp_path / "target", db)
    before = _fingerprint(target)
    assert main(["corrupt", "--dataset", "synthetic", "--out", str(target), "--corruptions", "fog",
                 "--n-examples", "10"]) == 2
    error = _one_line_error(capsys)
    assert str(target) in error and "expected a folder" in error
    assert _fingerprint(target) == before


def test_library_writers_refuse_non_regular_targets(tmp_path: Path) -> None:
    import pandas as pd

    from robustkd.results.export import export_leaderboard
    from robustkd.utils.atomic import write_text_atomic, write_with_atomic

    fifo, folder = tmp_path / "fifo", tmp_path / "folder"
    os.mkfifo(fifo)
    folder.mkdir()
    for target in (fifo, folder):
        with pytest.raises(RobustKDError, match="expected a regular file"):
            write_text_atomic(target, "x")
        with pytest.raises(RobustKDError, match="expected a regular file"):
            write_with_atomic(target, lambda tmp: tmp.write_text("x"))
        with pytest.raises(RobustKDError, match="expected a regular file"):
            export_leaderboard(pd.DataFrame({"a": [1]}), "csv", target)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and folder.is_dir() and not any(folder.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder"]  # no temporary file left


# ---------------------------------------------------------------------------------------------- locks

GATE = '''
import os, sys, time
from pathlib import Path
import robustkd.utils.fault_injection as hook

gate = Path(os.environ["ROBUSTKD_TEST_GATE"])
at = os.environ.get("ROBUSTKD_TEST_GATE_AT", "")

def boundary(name):  # hold at the first save boundary (naming ``at``) until the test says go
    held = gate / "held"
    if at in name and not held.exists():
        held.write_text(name)
        while not (gate / "go").exists():
            time.sleep(0.05)

hook.boundary = boundary
from robustkd.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _held_process(args: list[str], tmp_path: Path, name: str, at: str = "") -> tuple[subprocess.Popen, Path]:
    """Start ``robustkd args`` held at its first save boundary whose name contains ``at``; returns it once it
    is held, and its gate."""
    gate = tmp_path / f"gate-{name}"
    gate.mkdir()
    script = tmp_path / "gated_robustkd.py"
    script.write_text(GATE)
    env = {**os.environ, "ROBUSTKD_TEST_GATE": str(gate), "ROBUSTKD_TEST_GATE_AT": at, "ROBUSTKD_PROGRESS": "0",
           "OMP_NUM_THREADS": "1"}
    env.pop("ROBUSTKD_KILL_AT", None)
    process = subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (gate / "held").exists():
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(f"the first process never held its folder: {out[-2000:]}{err[-2000:]}")
        time.sleep(0.1)
    return process, gate


def _finish(process: subprocess.Popen, gate: Path) -> None:
    (gate / "go").write_text("")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out[-2000:] + err[-2000:]


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


def _no_lock_left(folder: Path) -> None:
    assert not list(folder.rglob(LOCK_NAME)), sorted(folder.rglob(LOCK_NAME))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("teacher") / "run"
    assert main(["train", "--model", "resnet8", *TINY, "--run-dir", str(run)]) == 0
    return run


def _seed(run: Path) -> int:
    return json.loads((run / "model.json").read_text())["hyperparameters"]["seed"]


def _command(kind: str, teacher: Path, folder: Path, seed: int) -> list[str]:
    if kind == "train":
        return ["train", "--model", "resnet8", *TINY, "--seed", str(seed), "--run-dir", str(folder)]
    if kind == "distill":
        return ["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "kd", *TINY,
                "--seed", str(seed), "--run-dir", str(folder)]
    return ["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "kd,ce", *TINY,
            "--seeds", str(seed), "--run-dir", str(folder)]


@pytest.mark.parametrize("kind", ["train", "distill", "cohort"])
def test_a_second_run_into_a_held_folder_is_refused_and_the_first_keeps_its_run(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    folder = tmp_path / "run"
    # a cohort is held after its first epoch's save: its members have their configs (and can be resumed)
    first, gate = _held_process(_command(kind, teacher, folder, 0), tmp_path, "first",
                                at="renamed state" if kind == "cohort" else "")
    try:
        holder = json.loads((folder / LOCK_NAME).read_text())
        assert holder["pid"] == first.pid and holder["host"] and holder["started"]
        assert main(_command(kind, teacher, folder, 1)) == 2
        error = _one_line_error(capsys)
        assert f"pid {first.pid}" in error and "in use by another robustkd process" in error, error
        assert main([*_command(kind, teacher, folder, 1), "--skip-finished"]) == 2
        assert f"pid {first.pid}" in _one_line_error(capsys)
        if kind == "cohort":  # a member resumed on its own while its cohort trains
            assert main(["distill", "--run-dir", str(folder / "resnet8-kd-s0"), "--resume"]) == 2
            assert f"pid {first.pid}" in _one_line_error(capsys)
    finally:
        _finish(first, gate)
    runs = [folder] if kind != "cohort" else [folder / "resnet8-kd-s0", folder / "resnet8-ce-s0"]
    assert all(_seed(run) == 0 for run in runs)  # its checkpoint holds its own run
    _no_lock_left(folder)


@pytest.mark.parametrize("kind", ["train", "distill", "cohort"])
def test_a_lock_left_by_a_killed_process_is_taken_over(
        teacher: Path, tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "run"
    first, _ = _held_process(_command(kind, teacher, folder, 0), tmp_path, "first")
    _kill(first)
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == first.pid  # stale: its process is gone
    assert main(_command(kind, teacher, folder, 1)) == 0
    runs = [folder] if kind != "cohort" else [folder / "resnet8-kd-s1", folder / "resnet8-ce-s1"]
    assert all(_seed(run) == 1 for run in runs)
    _no_lock_left(folder)


def test_evaluate_into_a_held_result_folder_is_refused_and_a_killed_holder_taken_over(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    command = ["evaluate", "--checkpoint", str(teacher), "--suite", "clean", "--out", str(out),
               "--n-examples", "20"]
    first, gate = _held_process(command, tmp_path, "first")
    try:
        (lock,) = out.glob(f"*/{LOCK_NAME}")
        assert json.loads(lock.read_text())["pid"] == first.pid
        assert main([*command, "--skip-finished"]) == 2
        error = _one_line_error(capsys)
        assert f"pid {first.pid}" in error and str(lock.parent) in error
    finally:
        _finish(first, gate)
    (summary,) = out.glob("*/clean-first20/summary.json")
    _no_lock_left(out)
    second, _ = _held_process([*command, "--overwrite"], tmp_path, "second")
    _kill(second)
    assert main([*command, "--overwrite"]) == 0
    assert summary.is_file() and not list(summary.parent.parent.glob(".clean-first20.*"))
    _no_lock_left(out)


# ---------------------------------------------------------------------------------------------- lock rules

def test_the_lock_file_is_bookkeeping_not_a_run(tmp_path: Path) -> None:
    from robustkd.distill.cohort_command import _holds_no_finished_epoch
    from robustkd.train.run_dir import RunDirectory
    from robustkd.train.skip_finished import run_state

    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text('{"pid": 1}')  # left by a killed process
    (run / "config.json").write_text("{}")
    (run / ".config.json.0123456789ab.tmp").write_text("")
    lonely = tmp_path / "lonely"  # a folder holding only a killed process's lock holds no run
    lonely.mkdir()
    (lonely / LOCK_NAME).write_text('{"pid": 1}')
    assert run_state(lonely) == "absent"
    cohort = tmp_path / "cohort"  # a cohort killed before its first epoch, with its lock file: replaceable
    (cohort / "resnet8-kd-s0").mkdir(parents=True)
    (cohort / "cohort.json").write_text("{}")
    (cohort / LOCK_NAME).write_text('{"pid": 1}')
    (cohort / "resnet8-kd-s0" / "config.json").write_text("{}")
    assert _holds_no_finished_epoch(cohort)
    with lock_folder(run) as lock:
        assert lock.fd is not None and RunDirectory.create(run, resume=False).path == run
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # leftovers gone, the held lock kept
        (run / "metrics.csv").write_text("x")
        RunDirectory(run).discard()
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
        with lock_folder(run) as again:  # the same process holds it again without a second flock
            assert again is lock
        assert (run / LOCK_NAME).is_file()
    assert not run.exists()  # discarded: nothing left, the lock file included
    mine = tmp_path / "mine"  # a folder that was there before the lock stays; one the lock made goes
    mine.mkdir()
    with lock_folder(mine), lock_folder(tmp_path / "new" / "deeper"):
        assert (mine / LOCK_NAME).is_file() and (tmp_path / "new" / "deeper" / LOCK_NAME).is_file()
    assert mine.is_dir() and not any(mine.iterdir()) and not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RobustKDError, match="is a file; expected a folder"):
        lock_folder(tmp_path / "file")
