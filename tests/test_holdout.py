"""`--holdout N`: the last N training images are never trained on, the checkpoint says so, and calibration's
``temperature_fit = "train_holdout"`` fits on them only for such a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustkd.cli import main
from robustkd.data.sources import load_image_dataset, make_loader
from robustkd.errors import RobustKDError
from robustkd.train.config import TrainConfig

SYNTHETIC_TRAIN_IMAGES = 1000


@pytest.fixture(scope="module")
def held_out_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("holdout") / "run"
    assert main(["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "50",
                 "--lr", "0.05", "--milestones", "1", "--holdout", "200", "--threads", "1", "--run-dir", str(run)]) == 0
    return run


def test_the_loader_drops_exactly_the_last_images() -> None:
    full = load_image_dataset("synthetic", "train", Path("unused"))
    loader = make_loader("synthetic", "train", Path("unused"), 50, torch.device("cpu"), train=True, holdout=200)
    assert len(loader.dataset) == SYNTHETIC_TRAIN_IMAGES - 200
    assert torch.equal(loader.dataset.images, full.images[:800]) and torch.equal(loader.dataset.labels, full.labels[:800])
    limited = make_loader("synthetic", "train", Path("unused"), 50, torch.device("cpu"), train=True, holdout=200, limit=300)
    assert torch.equal(limited.dataset.labels, full.labels[:300])
    seen = torch.cat([labels for _, labels in loader.epoch(0)])
    assert len(seen) == 800  # 16 batches of 50, all from the first 800


def test_the_sidecar_records_the_holdout(held_out_model: Path) -> None:
    meta = json.loads((held_out_model / "model.json").read_text())
    assert meta["holdout"] == 200 and meta["train_images"] == 800 and meta["n_train"] == 800
    assert meta["train_split_images"] == SYNTHETIC_TRAIN_IMAGES


def _calibration_suite(tmp_path: Path, holdout: int) -> Path:
    suite = tmp_path / f"held{holdout}.toml"
    suite.write_text(f'suite = "calibration"\ntemperature_fit = "train_holdout"\nholdout = {holdout}\nbatch_size = 50\n')
    return suite


def test_train_holdout_fits_on_the_held_out_images(held_out_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["evaluate", "--checkpoint", str(held_out_model), "--suite", str(_calibration_suite(tmp_path, 200)),
                 "--out", str(out)]) == 0
    summary = json.loads(next(out.glob("*/calibration/summary.json")).read_text())
    assert summary["protocol"]["temperature_fit"] == "last 200 training images, not trained on"
    assert summary["metrics"]["temperature"] > 0


@pytest.mark.parametrize("holdout", [201, 1000])
def test_a_holdout_reaching_into_the_training_images_is_refused(
        held_out_model: Path, tmp_path: Path, holdout: int, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    assert main(["evaluate", "--checkpoint", str(held_out_model), "--suite", str(_calibration_suite(tmp_path, holdout)),
                 "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("robustkd: error: calibration:")
    assert "the model trained on the first 800 of 1000 images" in error[0]
    assert not out.exists() or not [path for path in out.rglob("*") if path.is_file()]  # refused before any work


def test_a_model_trained_on_every_image_is_refused(checkpoint: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(_calibration_suite(tmp_path, 200)),
                 "--out", str(tmp_path / "results")]) == 2
    assert "--holdout 200" in capsys.readouterr().err


@pytest.mark.parametrize("changes, message", [
    ({"holdout": -1}, "holdout=-1"),
    ({"holdout": 10, "dataset": "imagenet"}, "ordered by class"),
])
def test_bad_holdouts_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(RobustKDError, match=message):
        TrainConfig(model="resnet8", **{"dataset": "synthetic", **changes}).validate()


def test_a_cohort_shares_its_holdout(held_out_model: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    assert main(["distill", "--teacher", str(held_out_model), "--student", "resnet8", "--method", "ce,kd",
                 "--dataset", "synthetic", "--epochs", "1", "--batch-size", "50", "--milestones", "1",
                 "--seeds", "0,1", "--holdout", "300", "--threads", "1", "--run-dir", str(cohort)]) == 0
    for member in ("resnet8-ce-s0", "resnet8-kd-s0", "resnet8-ce-s1", "resnet8-kd-s1"):
        meta = json.loads((cohort / member / "model.json").read_text())
        assert meta["holdout"] == 300 and meta["train_images"] == 700
        assert meta["train_split_images"] == SYNTHETIC_TRAIN_IMAGES  # the second seed's loader too


def test_a_holdout_of_the_whole_split_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--holdout", "1000",
                 "--run-dir", str(tmp_path / "run")]) == 2
    assert "holdout 1000 leaves no synthetic train images (the split has 1000)" in capsys.readouterr().err


def _write_folder(root: Path, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> Path:
    from PIL import Image

    for index, (image, label) in enumerate(zip(images, labels)):
        target = root / classes[int(label)] / f"{index:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(target)  # PNG: the same pixels come back
    return root


def test_a_user_named_folder_fits_the_temperature(checkpoint: Path, tmp_path: Path) -> None:
    """temperature_fit = "folder": the temperature equals one fitted independently on the folder's images."""
    from robustkd.checkpoint import load_checkpoint
    from robustkd.evaluate.calibration import fit_temperature

    held = load_image_dataset("synthetic", "train", Path("unused")).rows(900, 1000, "last 100")
    # ImageFolder numbers the class folders in sorted order: names that sort as the classes do.
    folder = _write_folder(tmp_path / "held", held.images, held.labels, list(held.classes))
    suite = tmp_path / "folder.toml"
    suite.write_text(f'suite = "calibration"\ntemperature_fit = "folder"\nfit_folder = "{folder}"\n')
    out = tmp_path / "results"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--out", str(out)]) == 0
    summary = json.loads(next(out.glob("*/calibration/summary.json")).read_text())
    assert summary["protocol"]["temperature_fit"].startswith(f"the images of fit_folder {folder}")
    order = sorted(range(100), key=lambda i: (held.classes[int(held.labels[i])], f"{i:04d}"))  # ImageFolder's order
    model = load_checkpoint(checkpoint).model.eval()
    with torch.no_grad():
        logits = model(held.images[order].float() / 255.0)
    assert summary["metrics"]["temperature"] == pytest.approx(fit_temperature(logits, held.labels[order]), rel=1e-5)


def test_a_folder_of_other_classes_is_refused_before_work(checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    held = load_image_dataset("synthetic", "train", Path("unused")).rows(0, 30, "first 30")
    folder = _write_folder(tmp_path / "three", held.images, held.labels % 3, ["a", "b", "c"])
    suite = tmp_path / "folder.toml"
    suite.write_text(f'suite = "calibration"\ntemperature_fit = "folder"\nfit_folder = "{folder}"\n')
    out = tmp_path / "results"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "has 3 class folders; the model has 10 classes" in error[0]
    assert not out.exists() or not [path for path in out.rglob("*") if path.is_file()]


def test_a_training_record_reads_the_same_with_or_without_a_later_field_at_its_default() -> None:
    """Results recorded before ``holdout`` existed and after (holdout=0) group and pair together."""
    from robustkd.evaluate.runner import training_record
    from robustkd.results.store import _canonical_training

    before = {"hyperparameters": {"epochs": 30, "lr": 0.1, "seed": 0}, "epoch": 30}
    after = {"hyperparameters": {"epochs": 30, "lr": 0.1, "seed": 0, "holdout": 0}, "epoch": 30}
    held = {"hyperparameters": {"epochs": 30, "lr": 0.1, "seed": 0, "holdout": 5000}, "epoch": 30}
    assert training_record(before) == training_record(after) and "holdout" in training_record(held)
    stored_after = json.dumps({"epochs": 30, "holdout": 0}, sort_keys=True)
    assert _canonical_training(stored_after) == json.dumps({"epochs": 30}, sort_keys=True)
    assert _canonical_training(json.dumps({"epochs": 30, "holdout": 7})) == json.dumps({"epochs": 30, "holdout": 7})
    assert _canonical_training(None) is None
