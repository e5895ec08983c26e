"""`robustkd evaluate --skip-finished`, and a finished result that was never recorded (the database write
failed after the suite finished): a rerun records it instead of refusing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from robustkd.cli import main


def _rows(db: Path, suite: str) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM results WHERE suite = ?", (suite,)).fetchone()[0]


def _folder(checkpoint: Path, out: Path, suite: str) -> Path:
    meta = json.loads((checkpoint / "model.json").read_text())
    return out / f"resnet8-{meta['weights_sha256'][:12]}" / suite


def test_skip_finished_keeps_results_and_runs_the_rest(checkpoint: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = ["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--suite", "clean"]
    assert main(args) == 0
    summary = _folder(checkpoint, tmp_path, "clean") / "summary.json"
    before = summary.read_bytes(), summary.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args + ["--suite", "relations", "--teacher", str(checkpoint), "--skip-finished"]) == 0
    out = capsys.readouterr().out
    assert f"{summary.parent}: finished already" in out and "relations" in out
    assert (summary.read_bytes(), summary.stat().st_mtime_ns) == before  # not run again
    assert _rows(tmp_path / "robustkd.db", "clean") == 2 and _rows(tmp_path / "robustkd.db", "relations") > 0
    # without the flag a recorded result is refused, with the flag's name in the message
    assert main(args) == 2
    assert "pass --overwrite to replace it or --skip-finished to keep it" in capsys.readouterr().err
    assert main(args + ["--skip-finished", "--overwrite"]) == 2
    assert "--overwrite and --skip-finished contradict" in capsys.readouterr().err


def test_an_unrecorded_result_is_recorded_on_rerun(checkpoint: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = ["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--suite", "clean"]
    assert main(args + ["--no-db"]) == 0  # as if the database write had failed after the suite finished
    db = tmp_path / "robustkd.db"
    assert not db.exists()
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "finished already" in out and f"{db}: added 2 rows" in out
    assert _rows(db, "clean") == 2
    assert main(args) == 2  # recorded now: a plain rerun refuses again


def test_skip_finished_refuses_a_result_of_other_parameters(checkpoint: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The same result folder name, but another suite file: keeping it would report the old parameters."""
    suite = tmp_path / "calibration.toml"
    suite.write_text('suite = "calibration"\nholdout = 50\n')
    args = ["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), "--suite"]
    assert main(args + [str(suite)]) == 0
    capsys.readouterr()
    assert main(args + ["calibration", "--skip-finished"]) == 2
    err = capsys.readouterr().err
    assert "holds a result of another calibration suite file or parameters" in err and "--overwrite" in err
    assert main(args + [str(suite), "--skip-finished"]) == 0  # the same file: kept


def test_a_kept_result_whose_protocol_annotates_its_parameters_is_still_the_same_suite(
        checkpoint: Path, tmp_path: Path) -> None:
    """The corruption suite records source = "generated" for source = "auto": still the same parameters."""
    suite = tmp_path / "corruption.toml"
    suite.write_text('suite = "corruption"\nbatch_size = 50\ncorruptions = ["fog"]\nseverities = [1]\n')
    args = ["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), "--suite", str(suite),
            "--n-examples", "50"]
    assert main(args + ["--no-db"]) == 0
    (summary,) = (tmp_path / "out").glob("*/corruption-first50/summary.json")
    recorded = json.loads(summary.read_text())
    assert recorded["protocol"]["source"] == "generated" and recorded["suite_params"]["source"] == "auto"
    assert main(args) == 0  # unrecorded: kept and recorded, not refused
    assert _rows(tmp_path / "out" / "robustkd.db", "corruption") > 0
