"""``robustkd import``: each kind of source becomes a checkpoint whose logits equal the original module's.

Every model is made here with seeded random weights (no download, no network): robustkd zoo state dicts in
the layouts other code bases save, timm ``resnet10t`` (from a file and from a stand-in of timm's local cache),
torchvision ``mobilenet_v3_small`` (with its weights enum's preprocessing, and from torch's hub cache), and a
RobustBench CIFAR-10 entry built from robustbench's own zoo definition, laid out as RobustBench's model folder.
Equality is exact (``torch.equal``) for all of these: the checkpoint holds the same tensors and rebuilds the
same network. (ONNX, compared within 1e-5, is in test_import_onnx.py.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from robustkd import api
from robustkd.checkpoint import load_checkpoint
from robustkd.cli import main
from robustkd.data import dataset_info
from robustkd.models import Normalized, build_network


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTKD_PROGRESS", "0")


def _inputs(size: int = 32, n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_logits(checkpoint: Path, reference: torch.nn.Module, size: int = 32) -> dict:
    loaded = load_checkpoint(checkpoint)
    inputs = _inputs(size)
    with torch.no_grad():
        assert torch.equal(loaded.model(inputs), reference.eval()(inputs))
    return loaded.meta


# ----- state dicts of zoo architectures -----

def _zoo_network(classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(3)
    network = build_network("resnet8", classes).eval()
    for module in network.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return network


def _write_layout(network: torch.nn.Module, layout: str, folder: Path) -> Path:
    state = network.state_dict()
    if layout == "robustkd":  # a robustkd checkpoint's own weights: the wrapper's keys, its normalisation inside
        info = dataset_info("cifar10")
        path = folder / "model.safetensors"
        save_file({k: v.contiguous() for k, v in Normalized(network, info.mean, info.std).state_dict().items()},
                  str(path))
        return path
    if layout == "safetensors":
        path = folder / "teacher.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return path
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    network(torch.rand(2, 3, 32, 32)).sum().backward()
    optimizer.step()  # momentum buffers in the optimizer's state, as RepDistiller saves it
    network.load_state_dict(state)
    objects = {
        "repdistiller": {"epoch": 240, "model": state, "best_acc": torch.tensor(79.4), "optimizer": optimizer.state_dict()},
        "mdistiller": {"model": state},  # mdistiller's student_best
        "state_dict": {"state_dict": state, "epoch": 10},
        "dataparallel": {f"module.{key}": value for key, value in state.items()},
        "bare": state,
    }
    path = folder / "teacher.pth"
    torch.save(objects[layout], path)
    return path


@pytest.mark.parametrize("layout", ["repdistiller", "mdistiller", "state_dict", "dataparallel", "bare", "safetensors",
                                    "robustkd"])
def test_state_dict_layouts_import_exactly(tmp_path: Path, layout: str, capsys: pytest.CaptureFixture[str]) -> None:
    network = _zoo_network()
    path = _write_layout(network, layout, tmp_path)
    out = tmp_path / "ckpt"
    assert main(["import", str(path), "--architecture", "resnet8", "--dataset", "cifar10", "--out", str(out)]) == 0
    assert "reloaded logits equal" in capsys.readouterr().out
    info = dataset_info("cifar10")
    meta = _same_logits(out, Normalized(network, info.mean, info.std))
    assert meta["architecture"] == "resnet8" and meta["dataset"] == "cifar10" and meta["num_classes"] == 10
    assert meta["kind"] == "import"
    source = meta["source"]
    assert source["kind"] == "state_dict" and source["name"] == path.name and source["sha256"] == _sha(path)
    assert source["library"] == ("torch" if path.suffix == ".pth" else "safetensors") and source["library_version"]
    assert meta["preprocessing"]["mean"] == pytest.approx(list(info.mean))
    assert meta["preprocessing"]["normalization_origin"] == (
        "the mean and std buffers of model.safetensors" if layout == "robustkd" else "the cifar10 statistics")
    assert meta["normalization"]["std"] == pytest.approx(list(info.std))
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]


def test_given_mean_and_std_are_recorded(tmp_path: Path) -> None:
    network = _zoo_network()
    path = _write_layout(network, "bare", tmp_path)
    api.import_model(str(path), tmp_path / "ckpt", architecture="resnet8", dataset="synthetic",
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), announce=lambda line: None)
    meta = _same_logits(tmp_path / "ckpt", Normalized(network, (0.5,) * 3, (0.25,) * 3))
    assert meta["preprocessing"]["normalization_origin"] == "given (--mean, --std)"
    assert meta["normalization"] == {"mean": [0.5] * 3, "std": [0.25] * 3}


# ----- timm -----

def _timm_model(classes: int) -> torch.nn.Module:
    import timm

    torch.manual_seed(4)
    return timm.create_model("resnet10t", num_classes=classes).eval()


def test_timm_model_with_a_weights_file(tmp_path: Path) -> None:
    from timm.data import resolve_data_config

    model = _timm_model(1000)
    weights = tmp_path / "resnet10t.safetensors"
    save_file(model.state_dict(), str(weights))
    outcome = api.import_model("timm:resnet10t", tmp_path / "ckpt", weights=weights, announce=lambda line: None)
    config = resolve_data_config({}, model=model, use_test_size=True)  # what timm's validate.py evaluates with
    meta = _same_logits(tmp_path / "ckpt", Normalized(model, config["mean"], config["std"]), size=64)
    assert meta["architecture"] == "timm:resnet10t" and meta["dataset"] == "imagenet" and meta["num_classes"] == 1000
    assert meta["architecture_options"] == {"kwargs": {}}
    assert meta["source"]["library"] == "timm" and meta["source"]["sha256"] == _sha(weights)
    prep = meta["preprocessing"]
    assert prep["input_size"] == config["input_size"][1] == 224
    assert prep["crop_pct"] == config["crop_pct"] == 0.95  # resnet10t's test_crop_pct: not robustkd's 0.875
    assert prep["resize"] == 235 and prep["interpolation"] == "bicubic" == config["interpolation"]
    assert prep["mean"] == list(config["mean"]) and "timm pretrained_cfg" in prep["origin"]
    assert outcome.sidecar == tmp_path / "ckpt" / "model.json"


def test_timm_weights_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --weights, the file timm would download is used if the Hugging Face cache holds it already."""
    model = _timm_model(1000)
    repo = tmp_path / "hub" / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    cached = repo / "snapshots" / "0123abcd" / "model.safetensors"
    save_file(model.state_dict(), str(cached))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["import", "timm:resnet10t", "--out", str(tmp_path / "ckpt")]) == 0
    meta = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    assert meta["source"]["weights_from"] == "timm cache" and meta["source"]["sha256"] == _sha(cached)
    assert meta["source"]["pretrained_cfg"]["hf_hub_id"] == "timm/resnet10t.c3_in1k"


def test_timm_model_on_a_small_dataset_uses_its_statistics(tmp_path: Path) -> None:
    model = _timm_model(10)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "r10t.pth")
    assert main(["import", "timm:resnet10t", "--weights", str(tmp_path / "r10t.pth"), "--dataset", "synthetic",
                 "--out", str(tmp_path / "ckpt")]) == 0
    info = dataset_info("synthetic")
    meta = _same_logits(tmp_path / "ckpt", Normalized(model, info.mean, info.std))
    assert "input_size" not in meta["preprocessing"]  # 32-pixel images are used as they are


# ----- torchvision -----

def _mobilenet() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(5)
    return torchvision.models.mobilenet_v3_small(num_classes=1000).eval()


def test_torchvision_model_with_its_weights_enum(tmp_path: Path) -> None:
    from torchvision.models import MobileNet_V3_Small_Weights

    model = _mobilenet()
    torch.save(model.state_dict(), tmp_path / "mnv3.pth")
    assert main(["import", "torchvision:mobilenet_v3_small", "--weights", str(tmp_path / "mnv3.pth"),
                 "--torchvision-weights", "IMAGENET1K_V1", "--out", str(tmp_path / "ckpt")]) == 0
    transform = MobileNet_V3_Small_Weights.IMAGENET1K_V1.transforms()
    meta = _same_logits(tmp_path / "ckpt", Normalized(model, transform.mean, transform.std), size=64)
    prep = meta["preprocessing"]
    assert (prep["input_size"], prep["resize"], prep["interpolation"]) == \
        (transform.crop_size[0], transform.resize_size[0], transform.interpolation.value)
    assert meta["source"]["weights_enum"] == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert meta["source"]["library"] == "torchvision"


def test_torchvision_weights_from_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import MobileNet_V3_Small_Weights

    model = _mobilenet()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(MobileNet_V3_Small_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.save(model.state_dict(), cached)
    api.import_model("torchvision:mobilenet_v3_small", tmp_path / "ckpt", torchvision_weights="DEFAULT",
                     announce=lambda line: None)
    meta = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    assert meta["source"]["weights_from"] == "torch hub cache" and meta["source"]["sha256"] == _sha(cached)


# ----- RobustBench -----

RB_ENTRY = "cifar10/corruptions/Hendrycks2020AugMix_WRN"  # WRN-40-2 from robustbench's own model zoo


def _robustbench_model() -> torch.nn.Module:
    from robustkd.models.foreign import robustbench_network

    torch.manual_seed(6)
    model = robustbench_network(RB_ENTRY).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
    return model


def test_robustbench_entry_from_its_model_folder(tmp_path: Path) -> None:
    model = _robustbench_model()
    assert type(model).__module__.startswith("robustbench.")
    # RobustBench's published file for this entry: {'state_dict': ...} with DataParallel prefixes and without the
    # definition's normalisation buffers (robustbench loads it anyway; so does robustkd, keeping the definition's)
    state = {f"module.{k}": v for k, v in model.state_dict().items() if k not in ("mu", "sigma")}
    folder = tmp_path / "rb_models" / "cifar10" / "corruptions"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 100}, folder / "Hendrycks2020AugMix_WRN.pt")
    assert main(["import", f"robustbench:{RB_ENTRY}", "--model-dir", str(tmp_path / "rb_models"),
                 "--out", str(tmp_path / "ckpt")]) == 0
    meta = _same_logits(tmp_path / "ckpt", model)  # [0, 1] inputs straight into RobustBench's model
    assert meta["architecture"] == f"robustbench:{RB_ENTRY}" and meta["dataset"] == "cifar10"
    assert meta["normalization"] == {"mean": [0.0] * 3, "std": [1.0] * 3}
    source = meta["source"]
    assert source["library"] == "robustbench" and source["library_version"] == "1.1.1"
    assert source["kept_from_definition"] == ["mu", "sigma"]
    assert source["sha256"] == _sha(folder / "Hendrycks2020AugMix_WRN.pt")


def test_imagenet_preprocessing_overrides_and_sidecar_checks(tmp_path: Path) -> None:
    from robustkd.errors import RobustKDError

    torch.save(_mobilenet().state_dict(), tmp_path / "mnv3.pth")
    assert main(["import", "torchvision:mobilenet_v3_small", "--weights", str(tmp_path / "mnv3.pth"),
                 "--crop-pct", "0.9", "--interpolation", "bicubic", "--out", str(tmp_path / "ckpt")]) == 0
    sidecar = tmp_path / "ckpt" / "model.json"
    prep = json.loads(sidecar.read_text())["preprocessing"]
    assert (prep["input_size"], prep["resize"], prep["crop_pct"], prep["interpolation"]) == (224, 248, 0.9, "bicubic")
    assert prep["origin"].endswith("then --crop-pct 0.9, --interpolation bicubic")
    meta = json.loads(sidecar.read_text())
    meta["preprocessing"]["crop_pct"] = 2
    sidecar.chmod(0o644)
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(RobustKDError, match=r"preprocessing: crop_pct = 2; expected a number in \(0, 1\]"):
        load_checkpoint(tmp_path / "ckpt")
