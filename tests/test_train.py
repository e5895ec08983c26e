"""Training loop: real learning, bit-identical resume, run-directory safety, the NaN guard, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustkd.cli import main
from robustkd.errors import RobustKDError
from robustkd.train.config import TrainConfig, read_config_file, resolve_config
from robustkd.train.loop import learning_rate

TINY = ["--model", "resnet8", "--dataset", "synthetic", "--batch-size", "50", "--lr", "0.05", "--milestones", "2"]


def _train(tmp_path: Path, name: str, *extra: str) -> int:
    return main(["train", *TINY, "--run-dir", str(tmp_path / name), *extra])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def test_training_learns_the_synthetic_task(tmp_path: Path) -> None:
    assert _train(tmp_path, "run", "--epochs", "3") == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[-1]["test_top1"] > 80.0  # chance is 10 %
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["epoch"] == 3 and meta["architecture"] == "resnet8" and meta["dataset"] == "synthetic"
    assert meta["metrics"]["test_top1"] == rows[-1]["test_top1"] and meta["recipe"] == "quick"
    assert meta["hyperparameters"]["milestones"] == [2] and meta["method"] == "ce"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.05


def test_stop_and_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    assert _train(tmp_path, "straight", "--epochs", "2", "--deterministic") == 0
    assert _train(tmp_path, "split", "--epochs", "2", "--deterministic", "--stop-after", "1") == 0
    assert json.loads((tmp_path / "split" / "model.json").read_text())["epoch"] == 1
    assert main(["train", "--run-dir", str(tmp_path / "split"), "--resume"]) == 0
    straight, split = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert straight.keys() == split.keys()
    assert all(torch.equal(straight[key], split[key]) for key in straight)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_extending_a_finished_run_matches_training_longer(tmp_path: Path) -> None:
    assert _train(tmp_path, "long", "--epochs", "2", "--deterministic") == 0
    assert _train(tmp_path, "short", "--epochs", "1", "--deterministic") == 0
    assert main(["train", "--run-dir", str(tmp_path / "short"), "--resume", "--epochs", "2"]) == 0
    long, extended = _weights(tmp_path / "long"), _weights(tmp_path / "short")
    assert all(torch.equal(long[key], extended[key]) for key in long)


def test_a_run_killed_before_its_first_state_restarts_and_resumes_cleanly(tmp_path: Path) -> None:
    import shutil

    assert _train(tmp_path, "straight", "--epochs", "2", "--deterministic") == 0
    # Killed during epoch 1: only config.json exists. A plain restart treats the folder as empty.
    (tmp_path / "config-only").mkdir()
    shutil.copy(tmp_path / "straight" / "config.json", tmp_path / "config-only" / "config.json")
    assert _train(tmp_path, "config-only", "--epochs", "2", "--deterministic") == 0
    # Killed after the first model was written and before its training state: --resume starts afresh
    # from the saved config and ends with the same weights.
    assert _train(tmp_path, "torn", "--epochs", "2", "--deterministic", "--stop-after", "1") == 0
    shutil.rmtree(tmp_path / "torn" / "state")
    assert main(["train", "--run-dir", str(tmp_path / "torn"), "--resume"]) == 0
    for name in ("config-only", "torn"):
        straight, other = _weights(tmp_path / "straight"), _weights(tmp_path / name)
        assert all(torch.equal(straight[key], other[key]) for key in straight), name


def test_a_run_never_overwrites_another(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(tmp_path, "run", "--epochs", "1") == 0
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    assert _train(tmp_path, "run", "--epochs", "1") == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_resume_refuses_changed_hyperparameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(tmp_path, "run", "--epochs", "1") == 0
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--resume", "--lr", "0.5"]) == 2
    assert "drop --lr" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(tmp_path, "run", "--epochs", "1") == 0
    good = (tmp_path / "run" / "model.safetensors").read_bytes()
    # Resume with an absurd learning rate is refused, so diverge a fresh copy of the state instead:
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "lr": 1e12, "epochs": 2}))
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged: loss became nan at epoch 2, step" in err[0].lower().replace("inf", "nan")
    assert "the last good checkpoint (epoch 1) is kept" in err[0]
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == good
    assert not (tmp_path / "run" / "state" / "epoch_0002").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "resnet9"], "unknown model 'resnet9'; expected one of: resnet8, "),
        (["--recipe", "fast"], "unknown recipe 'fast'; expected one of: paper, quick"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'; expected one of: cifar100"),
        (["--dataset", "cifar100", "--data-dir", "/nonexistent/robustkd"], "cifar100 not found: no folder /nonexistent/robustkd/cifar-100-python"),
        (["--epochs", "0"], "config: epochs=0; expected a positive integer"),
        (["--milestones", "5,2"], "config: milestones=[5, 2]; expected increasing positive epoch numbers"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device: "),
    ],
)
def test_bad_input_gets_a_one_line_error_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    args = ["train", "--dataset", "synthetic", "--epochs", "1", "--run-dir", str(tmp_path / "run"), *argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustkd: error: ") and message in err[0]
    assert not (tmp_path / "run").exists()  # a failed new run leaves no directory behind


def test_config_file_toml_and_yaml_with_cli_overrides(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('model = "resnet14"\nepochs = 7\nmilestones = [3, 6]\n')
    (tmp_path / "b.yaml").write_text("model: resnet14\nepochs: 7\nlr: 0.02\n")
    toml = resolve_config(TrainConfig, read_config_file(tmp_path / "a.toml"), {"epochs": 9})
    assert (toml.model, toml.epochs, toml.milestones, toml.lr) == ("resnet14", 9, [3, 6], 0.1)
    yaml = resolve_config(TrainConfig, read_config_file(tmp_path / "b.yaml"), {})
    assert (yaml.epochs, yaml.lr) == (7, 0.02)
    (tmp_path / "c.toml").write_text("learning_rate = 0.1\n")
    with pytest.raises(RobustKDError, match="unknown key\\(s\\) learning_rate"):
        resolve_config(TrainConfig, read_config_file(tmp_path / "c.toml"), {})


def test_paper_recipe_is_the_standard_protocol() -> None:
    paper = resolve_config(TrainConfig, {}, {"recipe": "paper", "model": "resnet56"})
    assert (paper.epochs, paper.batch_size, paper.lr, paper.milestones) == (240, 64, 0.05, [150, 180, 210])
    assert (paper.momentum, paper.weight_decay, paper.lr_decay) == (0.9, 5e-4, 0.1)
    assert resolve_config(TrainConfig, {}, {"recipe": "paper", "model": "ShuffleV1"}).lr == pytest.approx(0.01)
    assert resolve_config(TrainConfig, {}, {"recipe": "paper", "model": "MobileNetV2"}).lr == pytest.approx(0.01)
    assert [learning_rate(paper, e) for e in (1, 150, 151, 181, 211, 240)] == pytest.approx(
        [0.05, 0.05, 0.005, 0.0005, 0.00005, 0.00005]
    )


def test_data_parallel_training_with_two_gloo_processes(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "robustkd.cli",
               "train", *TINY, "--epochs", "2", "--device", "cpu", "--run-dir", str(tmp_path / "ddp")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("test top-1") == 1  # only rank 0 reports and writes
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["test_n"] == 200  # the two evaluation shards add up to the whole test split
    assert rows[-1]["global_step"] == 2 * 1000 // (2 * 50)  # each rank takes half of every epoch
    assert rows[-1]["test_top1"] > 60.0


@pytest.mark.parametrize("line, message", [
    ('lr = "abc"', "config: lr='abc'; expected a finite number"),
    ("lr = inf", "config: lr=inf; expected a finite number"),
    ("weight_decay = nan", "config: weight_decay=nan; expected a finite number"),
    ("noise_sd = nan", "config: noise_sd=nan; expected a finite number"),
    ("lr_decay = -1.0", "config: lr_decay=-1.0; expected a positive number"),
    ("lr_decay = 0", "config: lr_decay=0; expected a positive number"),
    ("milestones = 5", "config: milestones=5; expected a list of integers"),
    ('milestones = [2, "x"]', "config: milestones=[2, 'x']; expected a list of integers"),
    ("epochs = 2.5", "config: epochs=2.5; expected an integer"),
    ("seed = -1", "config: seed=-1; expected a non-negative integer"),
    ('seed = "abc"', "config: seed='abc'; expected an integer"),
    ('deterministic = "yes"', "config: deterministic='yes'; expected true or false"),
    ("train_limit = 1.5", "config: train_limit=1.5; expected an integer or null"),
    ('device = 3', "config: device=3; expected a string"),
])
def test_config_values_of_the_wrong_type_or_range_get_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'model = "resnet8"\ndataset = "synthetic"\n{line}\n')
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"robustkd: error: {message}"), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags", [["--lr-decay", "-1"], ["--noise-sd", "nan"], ["--seed", "-1"], ["--lr", "inf"]])
def test_out_of_range_flags_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    assert _train(tmp_path, "run", "--epochs", "1", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustkd: error: config: ") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
