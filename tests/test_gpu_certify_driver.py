"""benchmarks/run_gpu_certify.sh: argument errors are one line with exit 2 and nothing is written. Its
plumbing on real checkpoints (the study's noise cohort, not in a fresh clone) is run as docs/study.md says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "run_gpu_certify.sh"


@pytest.mark.parametrize("args,expected", [
    (["--deadline", "30"], "run_gpu_certify.sh: --deadline must be an integer >= 60 (seconds), got '30'"),
    (["--deadline", "later"], "run_gpu_certify.sh: --deadline must be an integer >= 60 (seconds), got 'later'"),
    (["--suite", "eval_suites/study/no-such.toml"], "run_gpu_certify.sh: --suite 'eval_suites/study/no-such.toml' "
                                                     "is not a file"),
    (["--deadline"], "run_gpu_certify.sh: --deadline needs a value"),
    (["--bogus"], "run_gpu_certify.sh: unknown argument '--bogus'; expected --deadline, --device, --suite or --results"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    assert not (tmp_path / "out").exists()


def test_the_larger_certified_selection_covers_every_class_equally() -> None:
    from robustkd.evaluate.suite_file import load_suite

    suite = load_suite(str(REPO / "eval_suites" / "study" / "certified_500.toml"))
    params = suite.params
    indices = list(range(0, 10000, params.skip))[: params.max]
    assert len(indices) == 500
    # The class-interleaved copy of CIFAR-100 (label = index % 100): 5 images of every class.
    counts = [sum(1 for i in indices if i % 100 == c) for c in range(100)]
    assert set(counts) == {5}
    assert (params.sigma, params.n, params.n0, params.alpha) == (0.25, 10000, 100, 0.001)
