"""OpenMP settings of robustkd processes: passive waiting on a busy machine, a share of the cores per child.

No timings here (benchmarks/bench_concurrent_jobs.py measures them); torch is imported in this pytest
process, so what must happen before torch is loaded is checked in fresh subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robustkd.errors import RobustKDError
from robustkd.utils import threads

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, env_drop: tuple[str, ...] = ("OMP_WAIT_POLICY",)) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (without ``env_drop``); it prints one JSON line, returned here."""
    import os

    env = {name: value for name, value in os.environ.items() if name not in env_drop}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_torch_is_here_so_the_hook_refuses_to_pretend() -> None:
    assert "torch" in sys.modules
    environ: dict[str, str] = {}
    assert threads.avoid_spin_waiting(environ, load=7.6) is False and environ == {}


def test_passive_only_when_busy_and_unset_without_torch() -> None:
    result = _python(
        "import json, sys\n"
        "from robustkd.utils.threads import avoid_spin_waiting\n"
        "assert 'torch' not in sys.modules\n"
        "cases = {}\n"
        "for name, environ, load in [('busy', {}, 1.0), ('very busy', {}, 7.6), ('idle', {}, 0.2),\n"
        "                            ('explicit', {'OMP_WAIT_POLICY': 'ACTIVE'}, 7.6)]:\n"
        "    cases[name] = [avoid_spin_waiting(environ, load=load), environ]\n"
        "print(json.dumps({'cases': cases, 'torch': 'torch' in sys.modules}))\n")
    assert result["torch"] is False  # the module's new functions do not load torch
    assert result["cases"] == {
        "busy": [True, {"OMP_WAIT_POLICY": "PASSIVE"}],
        "very busy": [True, {"OMP_WAIT_POLICY": "PASSIVE"}],
        "idle": [False, {}],
        "explicit": [False, {"OMP_WAIT_POLICY": "ACTIVE"}],
    }


@pytest.mark.parametrize("load, expected", [((3.0, 2.0, 1.0), "PASSIVE"), ((0.1, 0.1, 0.1), None)])
def test_the_cli_sets_passive_waiting_before_torch_on_a_busy_machine(load: tuple[float, ...],
                                                                      expected: str | None) -> None:
    result = _python(
        "import json, os, sys\n"
        f"os.getloadavg = lambda: {load!r}\n"
        "import robustkd.cli\n"
        "torch_at_import = 'torch' in sys.modules\n"
        "code = robustkd.cli.main(['models'])\n"
        "print(json.dumps({'code': code, 'policy': os.environ.get('OMP_WAIT_POLICY'),\n"
        "                  'torch_at_import': torch_at_import}))\n")
    assert result == {"code": 0, "policy": expected, "torch_at_import": False}


def test_the_cli_leaves_an_explicit_wait_policy_alone() -> None:
    result = _python(
        "import json, os\n"
        "os.getloadavg = lambda: (3.0, 2.0, 1.0)\n"
        "os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'\n"
        "import robustkd.cli\n"
        "code = robustkd.cli.main(['models'])\n"
        "print(json.dumps({'code': code, 'policy': os.environ.get('OMP_WAIT_POLICY')}))\n")
    assert result == {"code": 0, "policy": "ACTIVE"}


@pytest.mark.parametrize("jobs, cores, count, passive", [
    (1, 2, "2", False), (2, 2, "1", True), (3, 2, "1", True),
    (1, 16, "16", False), (2, 16, "8", True), (3, 16, "5", True),
])
def test_share_environment_divides_the_cores(jobs: int, cores: int, count: str, passive: bool) -> None:
    base = {"PATH": "/bin"}
    environment = threads.share_environment(jobs, cores=cores, base=base)
    assert environment["OMP_NUM_THREADS"] == environment["MKL_NUM_THREADS"] == count
    assert environment.get("OMP_WAIT_POLICY") == ("PASSIVE" if passive else None)
    assert environment["PATH"] == "/bin" and base == {"PATH": "/bin"}  # a copy; the base is unchanged


def test_share_environment_keeps_what_the_caller_chose() -> None:
    base = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    environment = threads.share_environment(2, cores=16, base=base)
    assert environment == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    mkl = threads.share_environment(2, cores=16, base={"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "4"})
    assert mkl["OMP_NUM_THREADS"] == "3" and mkl["MKL_NUM_THREADS"] == "4"
    blank = threads.share_environment(2, cores=16, base={"OMP_NUM_THREADS": ""})  # not a choice: replaced
    assert blank["OMP_NUM_THREADS"] == "8"


def test_share_environment_defaults_to_this_machines_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # the load never matters
    assert threads.share_environment(2, base={})["OMP_NUM_THREADS"] == "2"
    monkeypatch.setattr(threads.os, "cpu_count", lambda: None)
    assert threads.share_environment(2, base={})["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("jobs", [0, -1, True, 1.5])
def test_share_environment_rejects_a_bad_job_count(jobs: object) -> None:
    with pytest.raises(RobustKDError, match="positive integer"):
        threads.share_environment(jobs, cores=2, base={})  # type: ignore[arg-type]
