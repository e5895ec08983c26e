"""The checkpoints committed in checkpoints/ load, match checkpoints/registry.json, and (when the real
CIFAR-100 test set is present) reproduce their recorded accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustkd.checkpoint import load_checkpoint
from robustkd.data import make_loader
from robustkd.data.cifar import CIFAR_SPECS
from robustkd.evaluate.predictions import collect_logits

from conftest import real_data_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REGISTRY = json.loads((REPO / "checkpoints" / "registry.json").read_text())
COMMITTED = [entry for entry in REGISTRY["checkpoints"] if entry.get("path")]


def _cifar_present(name: str) -> bool:
    return (real_data_dir() / CIFAR_SPECS[name].folder).is_dir()


def test_every_committed_entry_names_its_recipe_and_data() -> None:
    for entry in COMMITTED:
        for key in ("architecture", "dataset", "top1", "top5", "weights_sha256", "command", "data_sha256", "recipe"):
            assert entry.get(key) not in (None, ""), (entry["name"], key)


@pytest.mark.parametrize("entry", COMMITTED, ids=[entry["name"] for entry in COMMITTED])
def test_committed_checkpoint_loads_with_its_recorded_hash(entry: dict) -> None:
    checkpoint = load_checkpoint(REPO / entry["path"])
    assert checkpoint.sha256 == entry["weights_sha256"]
    assert checkpoint.meta["architecture"] == entry["architecture"] and checkpoint.meta["dataset"] == entry["dataset"]


@pytest.mark.parametrize("entry", COMMITTED, ids=[entry["name"] for entry in COMMITTED])
def test_committed_checkpoint_reproduces_its_recorded_accuracy(entry: dict) -> None:
    if not _cifar_present(entry["dataset"]):
        pytest.skip(f"the real {entry['dataset']} test set is not under {real_data_dir()} (set ROBUSTKD_DATA)")
    checkpoint = load_checkpoint(REPO / entry["path"])
    loader = make_loader(entry["dataset"], "test", real_data_dir(), 500, torch.device("cpu"), train=False)
    logits, labels = collect_logits(checkpoint.model, loader, checkpoint.meta["num_classes"])
    top5 = logits.topk(5, dim=1).indices.eq(labels[:, None])
    assert len(labels) == 10_000
    assert 100.0 * float(top5[:, 0].double().mean()) == pytest.approx(entry["top1"], abs=0.005)
    assert 100.0 * float(top5.any(dim=1).double().mean()) == pytest.approx(entry["top5"], abs=0.005)
