"""benchmarks/run_gpu_speed.py (issue 25's GPU run): argument errors are one line with exit 2 and nothing is
written; a stage out of time is killed with its children and recorded, the next one runs; the dry run on the
CPU (slow: it compiles) runs every stage and brings back the measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "run_gpu_speed.py"
STAGES = ["env", "tests", "loss", "cohort", "teacher", "stacked", "estimate"]


def _run(args: list[str], out: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize("args,expected", [
    (["--device"], "run_gpu_speed.py: --device needs a value"),
    (["--device", "tpu"], "run_gpu_speed.py: --device must be cpu, cuda or cuda:N, got 'tpu'"),
    (["--stages", ","], "run_gpu_speed.py: --stages names no stage; expected some of "
                         "env,tests,loss,cohort,teacher,stacked,estimate"),
    (["--fast"], "run_gpu_speed.py: unknown argument '--fast'; expected --device, --stages or --dry"),
    (["--stages", "env,speed"], "run_gpu_speed.py: --stages: unknown stage 'speed'; expected some of "
                                "env,tests,loss,cohort,teacher,stacked,estimate"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = _run(args, tmp_path / "out", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    assert not (tmp_path / "out").exists()


def test_a_stage_out_of_time_is_killed_with_its_children_and_the_next_stage_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_stages import Stage, run_stages

    marker = tmp_path / "child-survived"
    slow = f"import subprocess, sys; subprocess.Popen(['sh', '-c', 'sleep 3 && touch {marker}']); print('started'); " \
           f"import time; time.sleep(60)"
    stages = [Stage("slow", 1, [sys.executable, "-c", slow]),
              Stage("fails", 30, [sys.executable, "-c", "raise SystemExit(3)"]),
              Stage("works", 30, [sys.executable, "-c", "print('done')"], env={"ROBUSTKD_PROGRESS": "0"})]
    out = tmp_path / "out"
    assert run_stages(stages, out, "test") == 1
    rows = [line.split("\t")[:2] for line in (out / "status.tsv").read_text().splitlines()[1:]]
    assert rows == [["slow", "124"], ["fails", "3"], ["works", "0"]]
    assert sorted(path.name for path in out.iterdir()) == ["logs.tar.gz", "status.tsv", "summary.txt"]
    with tarfile.open(out / "logs.tar.gz") as archive:
        assert sorted(archive.getnames()) == ["fails.log", "slow.log", "works.log"]
        assert archive.extractfile("works.log").read() == b"done\n"
    import time
    time.sleep(4)
    assert not marker.exists()  # the stage's child was killed with it


@pytest.mark.slow
def test_the_dry_run_runs_every_stage_and_brings_back_both_variants(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(["--device", "cpu", "--dry"], out, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:]
    rows = [line.split("\t") for line in (out / "status.tsv").read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == STAGES and all(row[1] == "0" for row in rows)
    with tarfile.open(out / "logs.tar.gz") as archive:
        archive.extractall(tmp_path / "logs", filter="data")
    cohort = json.loads((tmp_path / "logs" / "cohort.json").read_text())
    assert set(cohort["ratios"]) == {"plain", "compiled"} and all(ratio > 0 for ratio in cohort["ratios"].values())
    assert {"cohort:plain_minutes", "cohort:compiled_minutes"} <= set(cohort["extrapolation"])
    losses = json.loads((tmp_path / "logs" / "loss_overhead.json").read_text())
    assert {row["variant"] for row in losses} == {"plain", "compiled (default)"}
    teacher = json.loads((tmp_path / "logs" / "teacher.json").read_text())
    assert set(teacher[0]["extrapolated_minutes"]) >= {"robustkd(cl)", "robustkd(cl+compile)"}
    stacked = json.loads((tmp_path / "logs" / "stacked.json").read_text())["results"]
    assert set(stacked) == {"eager", "compiled"}
    assert all(row["max_weight_difference"] < 1e-4 for row in stacked.values())  # stacking computes the same steps
