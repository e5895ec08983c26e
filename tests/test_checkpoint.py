"""Checkpoint format: round trip, hash check, mismatches, foreign state dicts, refusing unsafe pickles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from robustkd.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, load_foreign_weights, save_checkpoint
from robustkd.errors import RobustKDError
from robustkd.models import build_model
from robustkd.utils.atomic import write_with_atomic

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _model(seed: int = 0, name: str = "resnet8", classes: int = 10):
    torch.manual_seed(seed)
    return build_model(name, classes, MEAN, STD).eval()


def _save(tmp_path: Path, model=None) -> Path:
    model = model or _model()
    return save_checkpoint(tmp_path / "model", model, {"architecture": "resnet8", "num_classes": 10, "dataset": "synthetic", "seed": 0})


def test_round_trip_reproduces_outputs_and_records_provenance(tmp_path: Path) -> None:
    model = _model()
    sidecar = _save(tmp_path, model)
    loaded = load_checkpoint(tmp_path)  # the run directory works as a path
    inputs = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(loaded.model(inputs), model(inputs), rtol=0, atol=0)
    meta = json.loads(sidecar.read_text())
    assert meta["format"] == CHECKPOINT_FORMAT and meta["weights_file"] == "model.safetensors"
    assert meta["normalization"] == {"mean": list(MEAN), "std": list(STD)}
    assert meta["torch_version"] == torch.__version__ and len(meta["weights_sha256"]) == 64
    assert load_checkpoint(tmp_path / "model.safetensors").sha256 == meta["weights_sha256"]


def test_modified_weights_fail_the_hash_check(tmp_path: Path) -> None:
    _save(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RobustKDError, match="does not match its sidecar"):
        load_checkpoint(tmp_path)


def test_architecture_and_class_mismatches_are_refused(tmp_path: Path) -> None:
    _save(tmp_path)
    with pytest.raises(RobustKDError, match="holds a resnet8, expected resnet20"):
        load_checkpoint(tmp_path, expect_architecture="resnet20")
    with pytest.raises(RobustKDError, match="has 10 classes, expected 100"):
        load_checkpoint(tmp_path, expect_num_classes=100)


def test_sidecar_claiming_the_wrong_architecture_is_refused(tmp_path: Path) -> None:
    sidecar = _save(tmp_path)
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "architecture": "resnet14"}))
    with pytest.raises(RobustKDError, match="does not fit a resnet14 with 10 classes"):
        load_checkpoint(tmp_path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(RobustKDError, match="no sidecar"):
        load_checkpoint(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RobustKDError, match="not valid JSON"):
        load_checkpoint(tmp_path / "bad.json")


@pytest.mark.parametrize("wrap", ["plain", "model_key", "dataparallel"])
def test_foreign_state_dicts_load_with_weights_only(tmp_path: Path, wrap: str) -> None:
    source = _model(seed=1)
    state = source.net.state_dict()
    if wrap == "model_key":  # RepDistiller saves {'epoch', 'model', 'accuracy', 'optimizer'}
        obj = {"epoch": 240, "model": state, "accuracy": torch.tensor(79.4)}
    elif wrap == "dataparallel":
        obj = {f"module.{key}": value for key, value in state.items()}
    else:
        obj = state
    torch.save(obj, tmp_path / "teacher.pth")
    loaded = load_foreign_weights(tmp_path / "teacher.pth", "resnet8", 10, MEAN, STD)
    inputs = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(inputs), source(inputs))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_foreign_pickle_with_code_is_refused(tmp_path: Path) -> None:
    torch.save({"model": _Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(RobustKDError, match="refusing .*evil.pth: it cannot be read with weights_only=True"):
        load_foreign_weights(tmp_path / "evil.pth", "resnet8", 10, MEAN, STD)


def test_foreign_state_dict_of_another_architecture_is_refused(tmp_path: Path) -> None:
    torch.save(_model(name="resnet14").net.state_dict(), tmp_path / "other.pt")
    with pytest.raises(RobustKDError, match="does not fit a resnet8 with 10 classes"):
        load_foreign_weights(tmp_path / "other.pt", "resnet8", 10, MEAN, STD)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")

    def failing_writer(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_with_atomic(target, failing_writer)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
