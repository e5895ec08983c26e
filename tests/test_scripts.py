"""The README's main job: argument errors are clear; the offline run (slow) falls back to the embedded set."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_main_job_rejects_unknown_arguments() -> None:
    result = subprocess.run(["bash", str(REPO / "scripts" / "train_and_eval.sh"), "--profile", "huge"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "train_and_eval.sh: --profile must be quick or paper, got 'huge'"


@pytest.mark.slow
def test_main_job_runs_offline_on_the_embedded_subset_and_resumes(tmp_path: Path) -> None:
    """Interrupted during the students, started again: it finishes; a third run redoes nothing."""
    env = {**os.environ, "ROBUSTKD_NO_DOWNLOAD": "1", "ROBUSTKD_PROGRESS": "0"}
    results = tmp_path / "results"
    command = ["bash", str(REPO / "scripts" / "train_and_eval.sh"), "--profile", "quick",
               "--data-dir", str(tmp_path / "no-data"), "--runs-dir", str(tmp_path / "runs"),
               "--results-dir", str(results)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                             start_new_session=True)
    marker = tmp_path / "runs" / "quick" / "students" / "resnet8-kd-s0" / "state"  # the cohort's first epoch saved
    deadline = time.time() + 1200
    while not marker.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGTERM)
    output = first.communicate(timeout=120)[0]
    assert "using the embedded CIFAR-100 subset instead" in output and "[cohorts]" in output
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=2400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "[cohort students] resnet8 x (ce,kd,dist,cmkd) x seeds 0: to resume: " in second.stdout
    assert "resuming after epoch" in second.stdout
    board = pd.read_csv(results / "leaderboard.csv")
    assert sorted(board["method"]) == ["ce", "cmkd", "dist", "kd", "trained"]
    assert board["clean_acc"].notna().all() and board["corruption_acc"].notna().all()
    assert board["relation_pearson"].notna().sum() == 4 and all("corruption:first" in s for s in board["subsets"])
    assert (results / "report.html").is_file() and (results / "corruption_grid.csv").is_file()
    third = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert third.returncode == 0
    # the teacher and the cohort in the plan and their stages, then 5 models x 4 suites + 4 relations results
    assert third.stdout.count("finished already") == 2 + 2 + 5 * 4 + 4
    assert "added" not in third.stdout  # no evaluation ran again
