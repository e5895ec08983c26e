"""benchmarks/run_gpu_study.sh: argument errors are one line with exit 2; on the CPU (slow) the smoke study
runs as three concurrent jobs and comes back packed without the resume states of finished runs; a deadline
stops the jobs and what was saved resumes."""

from __future__ import annotations

import io
import os
import sys
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "run_gpu_study.sh"
PYTHON = os.environ.get("PYTHON", sys.executable)


def _run(tmp_path: Path, *args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": PYTHON}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def _members(out: Path) -> list[str]:
    packed = b"".join(part.read_bytes() for part in sorted(out.glob("study.tar.xz.*")))
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:xz") as archive:
        return archive.getnames()


@pytest.mark.parametrize("args,expected", [
    (["--deadline", "60"], "run_gpu_study.sh: --deadline must be an integer >= 120 (seconds), got '60'"),
    (["--deadline", "soon"], "run_gpu_study.sh: --deadline must be an integer >= 120 (seconds), got 'soon'"),
    (["--bogus"], "run_gpu_study.sh: unknown argument '--bogus'; expected --deadline, --device, --threads, --smoke "
                  "or --work"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = _run(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    assert not (tmp_path / "out").exists()


def _smoke(tmp_path: Path, work: Path, deadline: int, timeout: int) -> subprocess.CompletedProcess[str]:
    """The driver's smoke study on the CPU with one thread per job, stopped at ``deadline`` seconds."""
    return _run(tmp_path, "--smoke", "--device", "cpu", "--threads", "1", "--deadline", str(deadline), "--work",
                str(work), timeout=timeout)


@pytest.mark.slow
def test_the_smoke_study_runs_as_three_jobs_and_comes_back_packed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    result = _smoke(tmp_path, work, deadline=3000, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    for job in ("main", "ablation", "noise"):
        assert f"job {job}: exit 0" in summary, summary
    names = _members(tmp_path / "out")
    assert any(name.endswith("results/robustkd.db") for name in names)
    assert any(name.endswith("runs/students/resnet8-cmkd-s1/model.safetensors") for name in names)
    assert any("certified" in name for name in names) and any("corruption" in name for name in names)
    assert not [name for name in names if "/state/epoch_" in name]  # every run finished: no resume state travels


@pytest.mark.slow
def test_a_deadline_stops_the_jobs_and_the_saved_work_resumes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    stopped = _smoke(tmp_path, work, deadline=120, timeout=600)
    assert stopped.returncode == 0, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    assert "stopped at the deadline" in (tmp_path / "out" / "summary.txt").read_text()
    assert not subprocess.run(["pgrep", "-f", str(work)], capture_output=True).stdout  # nothing left running
    resumed = _smoke(tmp_path, work, deadline=3000, timeout=3600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    for job in ("main", "ablation", "noise"):
        assert f"job {job}: exit 0" in summary, summary
