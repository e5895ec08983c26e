"""scripts/study.sh: argument errors are one line with exit 2; a missing teacher is named; the smoke run (slow)
goes end to end and a second run redoes nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "study.sh"
ENV = {**os.environ, "ROBUSTKD_NO_DOWNLOAD": "1", "ROBUSTKD_PROGRESS": "0"}


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.mark.parametrize("args,expected", [
    (["--bogus"], "study.sh: unknown argument '--bogus'; expected --data-dir, --device, --runs-dir, --results-dir, "
                  "--teacher, --seeds, --stage, --only, --cohort, --threads or --smoke"),
    (["--only", "evaluate", "--cohort", "students"], "study.sh: --cohort 'students' is not a cohort; expected one "
                                                     "of: main ablation noise"),
    (["--stage", "students"], "study.sh: --stage 'students' is not a stage; expected one of: teacher main ablation "
                              "noise evaluate report"),
    (["--only", "main", "--stage", "noise"], "study.sh: --stage and --only: give one"),
    (["--seeds", "0,x"], "study.sh: --seeds must be comma-separated non-negative integers such as 0,1,2, got '0,x'"),
    (["--threads", "0"], "study.sh: --threads must be a positive integer, got '0'"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = _run(*args, "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_a_missing_teacher_is_named_before_anything_runs(tmp_path: Path) -> None:
    result = _run("--only", "teacher", "--teacher", str(tmp_path / "no-teacher"), "--runs-dir", str(tmp_path / "runs"),
                  "--results-dir", str(tmp_path / "results"), timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"  [teacher]  {tmp_path / 'no-teacher'}: MISSING" in result.stdout
    assert f"[main]     resnet8 x (ce,kd,dist,cmkd) x seeds 0,1,2: to start: {tmp_path / 'runs' / 'students'}" \
        in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith(f"study.sh: the study's teacher {tmp_path / 'no-teacher'} "
                                                              "is missing")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_smoke_study_runs_end_to_end_and_a_second_run_redoes_nothing(tmp_path: Path) -> None:
    command = ["--smoke", "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
               "--data-dir", str(tmp_path / "data")]
    first = _run(*command, timeout=3600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert {"ce", "kd", "dist", "cmkd"} <= set(board["method"])
    for name in ("corruption_grid.csv", "leaderboard.md", "compare.md", "ablation.md", "report.html",
                 "compare_headline.md", "paired_differences.png", "robustness_curves.png", "certified_curves.png"):
        assert (tmp_path / "results" / name).is_file()
    second = _run(*command, timeout=1800)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "to start" not in second.stdout and "to resume" not in second.stdout
    assert "added" not in second.stdout  # no evaluation ran again, nothing new was recorded
