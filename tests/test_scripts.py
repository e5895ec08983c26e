"""The README's main job: argument errors are clear; the offline run (slow) falls back to the embedded set."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_main_job_rejects_unknown_arguments() -> None:
    result = subprocess.run(["bash", str(REPO / "scripts" / "train_and_eval.sh"), "--profile", "huge"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "train_and_eval.sh: --profile must be quick or paper, got 'huge'"


@pytest.mark.slow
def test_main_job_runs_offline_on_the_embedded_subset_and_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "ROBUSTKD_NO_DOWNLOAD": "1", "ROBUSTKD_PROGRESS": "0"}
    command = ["bash", str(REPO / "scripts" / "train_and_eval.sh"), "--profile", "quick",
               "--data-dir", str(tmp_path / "no-data"), "--runs-dir", str(tmp_path / "runs")]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "using the embedded CIFAR-100 subset instead" in first.stdout + first.stderr
    assert "teacher resnet20: clean top-1" in first.stdout and "embedded:" in first.stdout
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "resuming" in again.stdout  # finished work is reused, not redone
