"""Distillation runs end to end on the synthetic dataset: each method learns; teacher stays frozen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustkd.cli import main

COMMON = ["--dataset", "synthetic", "--batch-size", "50", "--lr", "0.05", "--milestones", "3"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("teacher") / "run"
    assert main(["train", "--model", "resnet14", *COMMON, "--epochs", "3", "--run-dir", str(run)]) == 0
    return run


def _distill(teacher: Path, run: Path, method: str, *extra: str) -> int:
    return main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", method, *COMMON,
                 "--run-dir", str(run), *extra])


@pytest.mark.parametrize("method", ["ce", "kd", "dist", "cmkd", "kd+spearman", "dkd", "kd+ls"])
def test_each_method_learns(teacher: Path, tmp_path: Path, method: str) -> None:
    assert _distill(teacher, tmp_path / "student", method, "--epochs", "4") == 0
    meta = json.loads((tmp_path / "student" / "model.json").read_text())
    assert meta["metrics"]["test_top1"] > 35.0, meta["metrics"]  # chance is 10 %
    assert meta["method"] == method and meta["kind"] == "distill"
    teacher_meta = json.loads((teacher / "model.json").read_text())
    assert meta["teacher"]["sha256"] == teacher_meta["weights_sha256"]
    assert meta["architecture"] == "resnet8" and meta["teacher"]["architecture"] == "resnet14"


def test_teacher_is_frozen_and_options_are_recorded(teacher: Path, tmp_path: Path) -> None:
    before = load_file(str(teacher / "model.safetensors"))
    assert _distill(teacher, tmp_path / "s", "cmkd", "--epochs", "1", "--cmkd-weighting", "value_hard",
                    "--cmkd-rank-strength", "0.2") == 0
    after = load_file(str(teacher / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    meta = json.loads((tmp_path / "s" / "model.json").read_text())
    options = meta["method_options"]
    assert options["cmkd_weighting"] == "value_hard" and options["cmkd_rank_strength"] == 0.2
    assert "kd_temperature" not in options and options["ce_weight"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss_ce", "train_loss_pearson", "train_loss_spearman", "train_loss_intra"} <= set(rows[0])


def test_distillation_resume_is_bit_identical(teacher: Path, tmp_path: Path) -> None:
    assert _distill(teacher, tmp_path / "a", "cmkd", "--epochs", "2", "--deterministic") == 0
    assert _distill(teacher, tmp_path / "b", "cmkd", "--epochs", "2", "--deterministic", "--stop-after", "1") == 0
    assert main(["distill", "--run-dir", str(tmp_path / "b"), "--resume"]) == 0
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_teacher_of_another_dataset_is_refused(teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--dataset", "cifar100",
                 "--run-dir", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "was trained on synthetic (10 classes); the student trains on cifar100 (100 classes)" in err
    assert not (tmp_path / "x").exists()


def test_missing_teacher_and_unknown_method(tmp_path: Path, capsys: pytest.CaptureFixture[str], teacher: Path) -> None:
    assert main(["distill", "--teacher", str(tmp_path / "none"), *COMMON, "--run-dir", str(tmp_path / "r")]) == 2
    assert "no sidecar" in capsys.readouterr().err
    assert _distill(teacher, tmp_path / "r2", "fitnet") == 2
    assert "unknown distillation method 'fitnet'" in capsys.readouterr().err


def test_config_file_with_method_options_and_flag_override(teacher: Path, tmp_path: Path) -> None:
    config = tmp_path / "distill.toml"
    config.write_text('method = "cmkd"\nmodel = "resnet8"\ndataset = "synthetic"\nepochs = 1\nbatch_size = 50\n'
                      '[method_options]\ncmkd_weighting = "equal"\ncmkd_tau = 2.0\n')
    assert main(["distill", "--config", str(config), "--teacher", str(teacher), "--cmkd-tau", "3",
                 "--run-dir", str(tmp_path / "run")]) == 0
    options = json.loads((tmp_path / "run" / "model.json").read_text())["method_options"]
    assert options["cmkd_weighting"] == "equal" and options["cmkd_tau"] == 3.0  # the flag wins over the file


@pytest.mark.parametrize("extra, config_text, message", [
    (["--method", "ce", "--ce-weight", "0"], None, "with ce_weight 0 has no loss term left"),
    (["--method", "cmkd", "--cmkd-rank-backend", "torchsort"], None, "the optional torchsort package is not installed"),
    (["--method", "kd"], '[method_options]\nkd_temperature = "hot"\n', "distill option: kd_temperature='hot'; expected a finite number"),
    (["--method", "kd"], 'method_options = "kd_temperature=8"\n', "[method_options] must be a table of option = value"),
    (["--method", "kd"], "[method_options]\nkd_temperature = nan\n", "kd_temperature=nan; expected a finite number"),
])
def test_bad_method_options_get_one_line(teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         extra: list[str], config_text: str | None, message: str) -> None:
    import importlib.util

    if "torchsort" in extra and importlib.util.find_spec("torchsort") is not None:
        pytest.skip("torchsort is installed here")
    config = []
    if config_text is not None:
        (tmp_path / "c.toml").write_text(config_text)
        config = ["--config", str(tmp_path / "c.toml")]
    code = main(["distill", "--teacher", str(teacher), "--student", "resnet8", *extra, *COMMON, *config,
                 "--epochs", "1", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("robustkd: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "run").exists()
