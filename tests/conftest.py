"""Test settings: no downloads, no progress bars, two threads; tests never need ../shared or a GPU.

``ROBUSTKD_DATA`` is removed so that no test reads a user's data by accident; the tests of real-data results
read it back as ``ROBUSTKD_TEST_REAL_DATA`` (``real_data_dir()``), else ``./data``.

``ROBUSTKD_TEST_DEVICE`` (default ``cpu``) is the device of the ``test_device`` fixture, for the tests that
take one (benchmarks/run_gpu_checks.sh sets ``cuda``); the CLI's ``--device auto`` picks CUDA by itself."""

from __future__ import annotations

import os

os.environ["ROBUSTKD_NO_DOWNLOAD"] = "1"
os.environ["ROBUSTKD_PROGRESS"] = "0"
# The tests of real-data results (the committed checkpoints' accuracy) still find a data folder the user named.
if os.environ.get("ROBUSTKD_DATA"):
    os.environ.setdefault("ROBUSTKD_TEST_REAL_DATA", os.environ["ROBUSTKD_DATA"])
os.environ.pop("ROBUSTKD_DATA", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-all", action="store_true", help="also run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--run-all"):
        config.option.markexpr = ""


@pytest.fixture(scope="session")
def test_device() -> torch.device:
    return torch.device(os.environ.get("ROBUSTKD_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet8 trained for 2 epochs on the synthetic 10-class set (a run directory), shared by the suites' tests."""
    from robustkd.cli import main

    run = tmp_path_factory.mktemp("model") / "run"
    assert main(["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "50",
                 "--lr", "0.05", "--milestones", "2", "--run-dir", str(run)]) == 0
    return run


def real_data_dir() -> Path:
    """The folder holding the real datasets: ``$ROBUSTKD_DATA`` as the user set it, else ``./data``."""
    from robustkd.data import resolve_data_dir

    named = os.environ.get("ROBUSTKD_TEST_REAL_DATA")
    return Path(named) if named else resolve_data_dir(None)

