"""``robustkd import model.onnx``: ONNX exports of a zoo model become checkpoints within 1e-5 of the original.

Skipped without the optional ``onnx`` extra (onnx, onnx2torch). The exports are torch 2.14's own, in the forms
that onnx2torch 1.5.15 cannot convert as they are (docs/models.md): the legacy exporter with constant folding
(biases shared through Identity nodes) and the default exporter (``dynamo=True``: ReduceMean-18, Reshape with
allowzero). The converted module must agree with the original torch module to 1e-5 (float32 kernels differ
in summation order; measured differences are about 1e-7), and the reloaded checkpoint with the imported
module exactly.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx2torch")

from robustkd.checkpoint import load_checkpoint  # noqa: E402
from robustkd.cli import main  # noqa: E402
from robustkd.data import dataset_info  # noqa: E402
from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.models import build_model  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTKD_PROGRESS", "0")


def _zoo_model() -> torch.nn.Module:
    info = dataset_info("cifar10")
    torch.manual_seed(7)
    model = build_model("resnet8", 10, info.mean, info.std).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


def _export(module: torch.nn.Module, path: Path, exporter: str) -> Path:
    example = (torch.rand(2, 3, 32, 32),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":  # constant folding on: torch's default for the legacy exporter
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=17, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        else:
            pytest.importorskip("onnxscript")
            torch.onnx.export(module, example, str(path), dynamo=True,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    return path


def _inputs() -> torch.Tensor:
    return torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_exported_bare_network_imports_within_tolerance(tmp_path: Path, exporter: str) -> None:
    model = _zoo_model()
    onnx_path = _export(model.net, tmp_path / "resnet8.onnx", exporter)
    out = tmp_path / "ckpt"
    assert main(["import", str(onnx_path), "--dataset", "cifar10", "--out", str(out)]) == 0
    loaded = load_checkpoint(out)
    with torch.no_grad():
        difference = float((loaded.model(_inputs()) - model(_inputs())).abs().max())
    assert difference <= TOLERANCE
    meta = loaded.meta
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert meta["architecture"] == "onnx:resnet8" and meta["num_classes"] == 10
    assert meta["source"]["kind"] == "onnx" and meta["source"]["sha256"] == digest
    kept = out / "model.onnx"
    assert meta["architecture_options"] == {"onnx_file": "model.onnx",
                                            "onnx_sha256": hashlib.sha256(kept.read_bytes()).hexdigest()}
    data_file = onnx_path.with_name(onnx_path.name + ".data")
    if data_file.exists():  # torch's default exporter keeps the weights apart: read into one self-contained graph
        assert meta["source"]["external_data"] == {data_file.name: hashlib.sha256(data_file.read_bytes()).hexdigest()}
        assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.onnx", "model.safetensors"]
    else:
        assert kept.read_bytes() == onnx_path.read_bytes()  # the graph is kept unchanged
    assert meta["source"]["library"] == "onnx2torch" and meta["source"]["library_version"]
    assert meta["verification"]["reference_max_abs_diff"] <= TOLERANCE  # onnx's own reference evaluator agrees


def test_graph_with_its_normalisation_inside(tmp_path: Path) -> None:
    model = _zoo_model()
    onnx_path = _export(model, tmp_path / "whole.onnx", "legacy")
    assert main(["import", str(onnx_path), "--dataset", "cifar10", "--mean", "0", "0", "0", "--std", "1", "1", "1",
                 "--out", str(tmp_path / "ckpt")]) == 0
    loaded = load_checkpoint(tmp_path / "ckpt")
    with torch.no_grad():
        assert float((loaded.model(_inputs()) - model(_inputs())).abs().max()) <= TOLERANCE


def test_changed_graph_file_is_refused_at_load(tmp_path: Path) -> None:
    onnx_path = _export(_zoo_model().net, tmp_path / "resnet8.onnx", "legacy")
    assert main(["import", str(onnx_path), "--dataset", "cifar10", "--out", str(tmp_path / "ckpt")]) == 0
    graph = tmp_path / "ckpt" / "model.onnx"
    graph.chmod(0o644)
    graph.write_bytes(graph.read_bytes() + b"\x00")
    with pytest.raises(RobustKDError, match="model.onnx sha256 .* does not match its sidecar"):
        load_checkpoint(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    assert meta["source"]["name"] == "resnet8.onnx"
