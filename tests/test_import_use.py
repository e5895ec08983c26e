"""Imported checkpoints in every command that takes a checkpoint: ImageNet evaluation with the model's own
preprocessing (a timm model whose crop fraction is 0.95, not robustkd's 0.875, on a small ImageNet-layout
stand-in), every suite on an imported ONNX model, an imported timm teacher distilled into zoo students, and the
leaderboard, paired comparison and report over their results (which name the source model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from robustkd import api
from robustkd.checkpoint import load_checkpoint
from robustkd.cli import main
from robustkd.data import make_loader
from robustkd.data.imagenet import EVAL_TRANSFORM, EvalPreprocessing

WNIDS = ("n01440764", "n01443537", "n01484850")
PHOTOS = (("astronaut", "coffee"), ("chelsea", "rocket"), ("immunohistochemistry", "hubble_deep_field"))


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTKD_PROGRESS", "0")


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<dir>/imagenet/val/<wnid>/*.JPEG``: three classes of two photographs (as tests/test_imagenet_standin.py)."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("imagenet-standin")
    for wnid, names in zip(WNIDS, PHOTOS):
        folder = root / "imagenet" / "val" / wnid
        folder.mkdir(parents=True)
        for name in names:
            Image.fromarray(getattr(data, name)()).save(folder / f"ILSVRC2012_val_{name}.JPEG", quality=90)
    return root


def _timm_resnet10t(classes: int, seed: int = 4) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("resnet10t", num_classes=classes).eval()


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_imagenet_evaluation_uses_the_models_own_preprocessing(imagenet_dir: Path, tmp_path: Path) -> None:
    from timm.data import create_transform, resolve_data_config
    from torchvision import datasets

    model = _timm_resnet10t(1000)
    config = resolve_data_config({}, model=model, use_test_size=True)
    assert config["crop_pct"] == 0.95 != 0.875
    save_file(model.state_dict(), str(tmp_path / "resnet10t.safetensors"))
    api.import_model("timm:resnet10t", tmp_path / "ckpt", weights=tmp_path / "resnet10t.safetensors",
                     announce=lambda line: None)
    (tmp_path / "clean.toml").write_text('suite = "clean"\nbatch_size = 3\n')
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--suite", str(tmp_path / "clean.toml"),
                 "--data-dir", str(imagenet_dir), "--out", str(tmp_path / "results")]) == 0
    (folder,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    assert folder.name.startswith("timm_resnet10t-")
    summary = _summary(folder / "clean")
    protocol = summary["protocol"]
    assert protocol["preprocessing"] == {
        "input_size": 224, "resize": 235, "crop_pct": 0.95, "interpolation": "bicubic", "crop_mode": "center",
        "mean": list(config["mean"]), "std": list(config["std"]),
        "origin": "timm pretrained_cfg of resnet10t.c3_in1k (test size)"}
    assert protocol["model_source"]["kind"] == "timm" and protocol["model_source"]["name"] == "resnet10t"
    assert summary["architecture"] == "timm:resnet10t" and summary["n_examples"] == 6

    # The evaluated images are timm's own evaluation transform (less its Normalize, which the model applies) ...
    timm_folder = datasets.ImageFolder(str(imagenet_dir / "imagenet" / "val"), transform=create_transform(**config))
    timm_inputs = torch.stack([timm_folder[i][0] for i in range(len(timm_folder))])
    meta = load_checkpoint(tmp_path / "ckpt").meta
    loader = make_loader("imagenet", "test", imagenet_dir, 6, torch.device("cpu"), train=False,
                         preprocessing=EvalPreprocessing.from_record(meta["preprocessing"]))
    (ours, labels), = list(loader.epoch(0))
    mean, std = torch.tensor(config["mean"]).view(1, 3, 1, 1), torch.tensor(config["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close((ours - mean) / std, timm_inputs, rtol=0, atol=1e-6)
    # ... not robustkd's default 256/224 one, and the recorded accuracy is the timm pipeline's.
    default = datasets.ImageFolder(str(imagenet_dir / "imagenet" / "val"), transform=EVAL_TRANSFORM)
    assert not torch.allclose(torch.stack([default[i][0] for i in range(6)]), ours)
    with torch.no_grad():
        top1 = 100.0 * float(model(timm_inputs).argmax(1).eq(labels).double().mean())
    assert summary["metrics"]["top1"] == pytest.approx(top1, abs=1e-9)

    # api.evaluate of a plain module records the preprocessing it is given the same way.
    module = load_checkpoint(tmp_path / "ckpt").model
    (result,) = api.evaluate(module, [str(tmp_path / "clean.toml")], dataset="imagenet", out=tmp_path / "api",
                             data_dir=imagenet_dir, model_info={"preprocessing": meta["preprocessing"]},
                             announce=lambda line: None)
    assert _summary(result.folder)["protocol"]["preprocessing"]["crop_pct"] == 0.95
    assert _summary(result.folder)["metrics"]["top1"] == summary["metrics"]["top1"]


def test_robustkd_checkpoints_record_the_default_preprocessing(imagenet_dir: Path, tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(5)
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict(), tmp_path / "mnv3.pth")
    api.import_model("torchvision:mobilenet_v3_small", tmp_path / "ckpt", weights=tmp_path / "mnv3.pth",
                     announce=lambda line: None)
    (tmp_path / "clean.toml").write_text('suite = "clean"\nbatch_size = 6\n')
    (result,) = api.evaluate(tmp_path / "ckpt", [str(tmp_path / "clean.toml")], out=tmp_path / "results",
                             data_dir=imagenet_dir, announce=lambda line: None)
    prep = _summary(result.folder)["protocol"]["preprocessing"]
    assert (prep["input_size"], prep["resize"], prep["crop_pct"], prep["interpolation"]) == (224, 256, 0.875, "bilinear")
    assert prep["origin"].startswith("robustkd default")


@pytest.fixture(scope="module")
def timm_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A timm resnet10t with 10 classes for the synthetic set, trained a little with robustkd's own loop would
    need a timm student; instead its seeded random weights are imported (a teacher need not be good here)."""
    folder = tmp_path_factory.mktemp("timm-teacher")
    model = _timm_resnet10t(10, seed=8)
    torch.save({"model": model.state_dict(), "epoch": 1}, folder / "teacher.pth")
    assert main(["import", "timm:resnet10t", "--weights", str(folder / "teacher.pth"), "--dataset", "synthetic",
                 "--out", str(folder / "ckpt")]) == 0
    return folder / "ckpt"


def test_timm_teacher_distils_zoo_students_and_results_name_it(timm_teacher: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cohort = tmp_path / "cohort"
    assert main(["distill", "--teacher", str(timm_teacher), "--student", "resnet8", "--method", "ce,kd",
                 "--seeds", "0", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "50", "--lr", "0.05",
                 "--milestones", "1", "--train-limit", "200", "--run-dir", str(cohort)]) == 0
    students = sorted(p for p in cohort.iterdir() if (p / "model.json").is_file())
    assert [p.name for p in students] == ["resnet8-ce-s0", "resnet8-kd-s0"]
    teacher_meta = load_checkpoint(timm_teacher).meta
    for student in students:
        meta = load_checkpoint(student).meta
        assert meta["teacher"]["architecture"] == "timm:resnet10t"
        assert meta["teacher"]["sha256"] == teacher_meta["weights_sha256"]
    results, db = tmp_path / "results", tmp_path / "results" / "robustkd.db"
    assert main(["evaluate", *[a for s in students for a in ("--checkpoint", str(s))], "--checkpoint",
                 str(timm_teacher), "--suite", "clean", "--out", str(results)]) == 0
    teacher_folder = results / f"timm_resnet10t-{teacher_meta['weights_sha256'][:12]}" / "clean"
    summary = _summary(teacher_folder)
    assert summary["protocol"]["model_source"]["library"] == "timm" and summary["kind"] == "import"
    capsys.readouterr()
    assert main(["leaderboard", "--db", str(db)]) == 0
    board = capsys.readouterr().out
    assert "timm:resnet10t" in board and "resnet8/kd" in board
    assert main(["compare", "--db", str(db), "--pair", "kd:ce", "--metric", "clean_acc"]) == 0
    assert "kd" in capsys.readouterr().out
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "timm:resnet10t" in page and "model_source" in page


def test_every_suite_on_an_imported_onnx_model(timm_teacher: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx2torch")
    import warnings

    from robustkd.data import dataset_info
    from robustkd.models import build_model

    info = dataset_info("synthetic")
    torch.manual_seed(9)
    model = build_model("resnet8", 10, info.mean, info.std).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.net, (torch.rand(2, 3, 32, 32),), str(tmp_path / "resnet8.onnx"), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert main(["import", str(tmp_path / "resnet8.onnx"), "--dataset", "synthetic", "--out", str(tmp_path / "ckpt")]) == 0
    (tmp_path / "certified.toml").write_text('suite = "certified"\nsigma = 0.25\nn0 = 10\nn = 100\nbatch_size = 100\n'
                                             'max = 2\nskip = 10\npredict_n = 10\n')
    suites = ["clean", "calibration", "shift_calibration", "relations", "smoke/corruption", "smoke/adversarial",
              str(tmp_path / "certified.toml")]
    assert main(["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--teacher", str(timm_teacher),
                 *[a for s in suites for a in ("--suite", s)], "--n-examples", "20",
                 "--out", str(tmp_path / "results")]) == 0
    folders = sorted(p for p in next((tmp_path / "results").glob("onnx_resnet8-*")).iterdir())
    assert len(folders) == len(suites)
    for folder in folders:
        summary = _summary(folder)
        assert summary["architecture"] == "onnx:resnet8"
        assert summary["protocol"]["model_source"]["kind"] == "onnx"


@pytest.mark.parametrize("name", ["Res256Crop224", "BicubicRes256Crop224", "Crop288", "Res224"])
def test_robustbench_preprocessings_are_reproduced_exactly(imagenet_dir: Path, name: str) -> None:
    """Each of RobustBench's ImageNet preprocessings, read into an EvalPreprocessing the way an import reads an
    entry's, gives RobustBench's own tensors."""
    from unittest import mock

    from torchvision import datasets

    from robustkd.imports import robustbench_source
    from robustkd.models.foreign import quiet_import

    quiet_import("robustbench")
    from robustbench.data import PREPROCESSINGS

    with mock.patch("robustbench.data.get_preprocessing", return_value=PREPROCESSINGS[name]):
        ours = robustbench_source.robustbench_preprocessing("imagenet", "Linf", "any")
    theirs = datasets.ImageFolder(str(imagenet_dir / "imagenet" / "val"), transform=PREPROCESSINGS[name])
    mine = datasets.ImageFolder(str(imagenet_dir / "imagenet" / "val"), transform=ours.transform())
    for index in range(len(theirs)):
        assert torch.equal(mine[index][0], theirs[index][0])
    if name == "Crop288":  # an entry that uses it, looked up in RobustBench's own table
        assert robustbench_source.robustbench_preprocessing("imagenet", "Linf", "Wong2020Fast") == ours


def test_torchvision_enum_preprocessing_is_reproduced_exactly(imagenet_dir: Path) -> None:
    from PIL import Image
    from torchvision.models import EfficientNet_B0_Weights

    from robustkd.imports.torchvision_source import enum_preprocessing

    weights = EfficientNet_B0_Weights.IMAGENET1K_V1  # resize 256, crop 224, bicubic
    ours, mean, std = enum_preprocessing(weights)
    assert (ours.input_size, ours.resize, ours.interpolation) == (224, 256, "bicubic")
    reference = weights.transforms()
    for path in sorted((imagenet_dir / "imagenet" / "val").rglob("*.JPEG"))[:2]:
        image = Image.open(path).convert("RGB")
        mine = (ours.transform()(image) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        torch.testing.assert_close(mine, reference(image), rtol=0, atol=1e-6)
