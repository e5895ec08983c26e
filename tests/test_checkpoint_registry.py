"""register_run: a finished run's weights copied into the repository and named in the registry, never twice,
never over other weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustkd.checkpoint import load_checkpoint
from robustkd.checkpoint.registry import read_registry, register_run
from robustkd.cli import main
from robustkd.errors import RobustKDError

DATA = {"synthetic/train": "0" * 64}


def _register(run: Path, repo: Path, name: str = "study/run") -> dict:
    return register_run(run, repo / "checkpoints" / name, repo / "checkpoints" / "registry.json", name=name,
                        command="robustkd train ...", trained_on="test", data_sha256=DATA, repo_root=repo)


def test_a_finished_run_is_copied_and_named(checkpoint: Path, tmp_path: Path) -> None:
    entry = _register(checkpoint, tmp_path)
    meta = json.loads((checkpoint / "model.json").read_text())
    assert entry["path"] == "checkpoints/study/run" and entry["weights_sha256"] == meta["weights_sha256"]
    assert entry["top1"] == meta["metrics"]["test_top1"] and entry["epoch"] == 2 and entry["recipe"]["epochs"] == 2
    assert entry["data_sha256"] == DATA and entry["seed"] == 0 and entry["method"] == "ce"
    assert load_checkpoint(tmp_path / "checkpoints" / "study" / "run").sha256 == meta["weights_sha256"]
    assert not (tmp_path / "checkpoints" / "study" / "run" / "state").exists()  # the final weights only
    registry = tmp_path / "checkpoints" / "registry.json"
    before = registry.read_text()
    assert _register(checkpoint, tmp_path) == entry and registry.read_text() == before  # once, not twice
    assert [known["name"] for known in read_registry(registry)["checkpoints"]] == ["study/run"]


def test_other_weights_under_a_known_name_or_folder_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    _register(checkpoint, tmp_path)
    other = tmp_path / "other"
    assert main(["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "50",
                 "--milestones", "1", "--seed", "1", "--threads", "1", "--run-dir", str(other)]) == 0
    registry = tmp_path / "checkpoints" / "registry.json"
    before = registry.read_text()
    with pytest.raises(RobustKDError, match="already names other weights"):
        _register(other, tmp_path)
    with pytest.raises(RobustKDError, match="exists with other content"):
        register_run(other, tmp_path / "checkpoints" / "study" / "run", registry, name="study/other", command="c",
                     trained_on="t", data_sha256=DATA, repo_root=tmp_path)
    assert registry.read_text() == before


def test_an_unfinished_run_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "half"
    assert main(["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "50",
                 "--milestones", "1", "--stop-after", "1", "--threads", "1", "--run-dir", str(run)]) == 0
    with pytest.raises(RobustKDError, match="not finished"):
        _register(run, tmp_path)
    assert not (tmp_path / "checkpoints" / "registry.json").exists()
