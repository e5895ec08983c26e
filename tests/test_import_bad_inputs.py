"""``robustkd import`` refuses bad inputs: one line ``robustkd: error: ...``, exit 2, nothing under --out (and no
temporary folder beside it), and no code from a file ever runs."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch

from robustkd.cli import main
from robustkd.models import build_network


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTKD_PROGRESS", "0")


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], fragment: str, out: Path) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("robustkd: error: "), err
    assert fragment in err[0], err[0]
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "a temporary folder was left"
    return err[0]


def _state(name: str = "resnet8", classes: int = 10) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_network(name, classes).state_dict()


def _import_state(path: Path, out: Path, *extra: str) -> list[str]:
    return ["import", str(path), "--architecture", "resnet8", "--dataset", "synthetic", "--out", str(out), *extra]


class _CreatesMarker:
    """Unpickling this calls ``open(marker, 'w')``: the file appears if the pickle's code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["state_dict", "timm"])
def test_code_executing_pickle_is_refused_without_running(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          kind: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": _CreatesMarker(marker), "epoch": 1}, evil)
    assert not marker.exists()
    out = tmp_path / "out"
    argv = _import_state(evil, out) if kind == "state_dict" else \
        ["import", "timm:resnet10t", "--weights", str(evil), "--out", str(out)]
    _refused(argv, capsys, "cannot be read with weights_only=True", out)
    assert not marker.exists(), "the pickle's code ran"


def test_missing_keys_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _state()
    for key in ("conv1.weight", "bn1.weight", "bn1.bias", "fc.bias"):
        del state[key]
    torch.save(state, tmp_path / "partial.pth")
    line = _refused(_import_state(tmp_path / "partial.pth", tmp_path / "out"), capsys, "4 missing keys (conv1.weight, "
                    "bn1.weight, bn1.bias, … (4 in all))", tmp_path / "out")
    assert "fc.bias" not in line  # the first few only


def test_unexpected_keys_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = {**_state(), "projector.weight": torch.zeros(4, 4)}
    torch.save({"model": state}, tmp_path / "extra.pth")
    _refused(_import_state(tmp_path / "extra.pth", tmp_path / "out"), capsys, "1 unexpected key (projector.weight)",
             tmp_path / "out")


def test_shape_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _state()
    state["conv1.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, tmp_path / "shapes.pth")
    _refused(_import_state(tmp_path / "shapes.pth", tmp_path / "out"), capsys,
             "shape mismatch: conv1.weight is [8, 3, 3, 3] in the file, [16, 3, 3, 3] in the network", tmp_path / "out")


def test_wrong_class_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(_state(classes=100), tmp_path / "c100.pth")
    _refused(_import_state(tmp_path / "c100.pth", tmp_path / "out"), capsys, "it has 100 classes (fc.weight is "
             "[100, 64]), not 10", tmp_path / "out")
    _refused(_import_state(tmp_path / "c100.pth", tmp_path / "out", "--num-classes", "100"), capsys,
             "--num-classes 100 does not match synthetic, which has 10 classes", tmp_path / "out")


@pytest.mark.parametrize(("source", "fragment"), [
    ("timm:resnet10tt", "unknown timm model 'resnet10tt'; did you mean"),
    ("torchvision:mobilenet_v9_small", "unknown torchvision model 'mobilenet_v9_small'"),
    ("robustbench:cifar10/Linf/NoSuchModel2099", "unknown model 'NoSuchModel2099' in RobustBench's cifar10/Linf zoo"),
    ("robustbench:cifar10/Linf", "expected robustbench:DATASET/THREAT/NAME"),
    ("robustbench:cifar7/Linf/Standard", "unknown dataset 'cifar7'"),
    ("somewhere/model.h5", "cannot tell what 'somewhere/model.h5' is"),
])
def test_unknown_names(tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, fragment: str) -> None:
    out = tmp_path / "out"
    _refused(["import", source, "--weights", str(tmp_path / "w.pth"), "--out", str(out)]
             if source.startswith(("timm:", "torchvision:")) else ["import", source, "--out", str(out)],
             capsys, fragment, out)


def test_absent_robustbench_file_names_the_expected_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = tmp_path / "rb" / "cifar10" / "corruptions" / "Hendrycks2020AugMix_WRN.pt"
    _refused(["import", "robustbench:cifar10/corruptions/Hendrycks2020AugMix_WRN", "--model-dir", str(tmp_path / "rb"),
              "--out", str(tmp_path / "out")], capsys, f"no file {expected}", tmp_path / "out")


def test_timm_without_weights_and_empty_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    _refused(["import", "timm:resnet10t", "--out", str(tmp_path / "out")], capsys,
             "timm's pretrained weights are not in the local cache", tmp_path / "out")


def test_file_that_is_not_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    (tmp_path / "model.onnx").write_text("this is a text file, not a graph\n" * 20)
    _refused(["import", str(tmp_path / "model.onnx"), "--dataset", "cifar10", "--out", str(tmp_path / "out")], capsys,
             "model.onnx is not an ONNX model", tmp_path / "out")


def test_onnx_graph_with_an_unsupported_operator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx2torch")
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Hardmax", ["flat"], ["y"])]
    graph = helper.make_graph(nodes, "hardmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "odd.onnx"))
    _refused(["import", str(tmp_path / "odd.onnx"), "--dataset", "cifar10", "--out", str(tmp_path / "out")], capsys,
             "uses operators onnx2torch cannot convert: Hardmax (opset 17)", tmp_path / "out")


def test_options_that_do_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(_state(), tmp_path / "ok.pth")
    out = tmp_path / "out"
    _refused(["import", str(tmp_path / "ok.pth"), "--dataset", "synthetic", "--out", str(out)], capsys,
             "a state dict needs --architecture NAME", out)
    _refused(["import", str(tmp_path / "ok.pth"), "--architecture", "resnet8", "--out", str(out)], capsys,
             "--dataset is required for a state dict", out)
    _refused(_import_state(tmp_path / "ok.pth", out, "--mean", "0.5", "0.5", "0.5"), capsys,
             "--mean and --std go together", out)
    _refused(_import_state(tmp_path / "ok.pth", out, "--std", "1", "0", "1", "--mean", "0", "0", "0"), capsys,
             "--std must be positive", out)
    _refused(_import_state(tmp_path / "ok.pth", out, "--crop-pct", "0.9"), capsys,
             "--crop-pct apply to ImageNet models only", out)
    _refused(_import_state(tmp_path / "ok.pth", out, "--weights", str(tmp_path / "ok.pth")), capsys,
             "--weights does not apply to a state dict source", out)
    _refused(["import", str(tmp_path / "absent.pth"), "--architecture", "resnet8", "--dataset", "synthetic",
              "--out", str(out)], capsys, "no such state dict file", out)


def test_existing_output_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(_state(), tmp_path / "ok.pth")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    try:
        code = main(_import_state(tmp_path / "ok.pth", out))
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not empty" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main(_import_state(tmp_path / "ok.pth", tmp_path / "empty")) == 0  # an absent folder is created
    (tmp_path / "fresh").mkdir()
    assert main(_import_state(tmp_path / "ok.pth", tmp_path / "fresh")) == 0  # an empty one is filled
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["model.json", "model.safetensors"]


def test_onnx_graph_with_a_fixed_batch_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx2torch")
    pytest.importorskip("onnxscript")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build_network("resnet8", 10).eval(), (torch.rand(1, 3, 32, 32),), str(tmp_path / "one.onnx"),
                          dynamo=True, verbose=False)  # no dynamic_shapes: the graph reshapes to [1, 64]
    _refused(["import", str(tmp_path / "one.onnx"), "--dataset", "cifar10", "--out", str(tmp_path / "out")], capsys,
             "the graph declares a fixed batch size of 1: export it with a dynamic batch axis", tmp_path / "out")
