"""--skip-finished (train, distill, cohort) and train --init-from: one idempotent command, run again and again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustkd.cli import main

# 100 training images in batches of 50: 2 steps an epoch; 50 test images; 2 epochs.
TINY = ["--dataset", "synthetic", "--batch-size", "50", "--lr", "0.05", "--milestones", "2", "--train-limit", "100",
        "--test-limit", "50", "--epochs", "2", "--deterministic"]


def _train(run: Path, *extra: str) -> list[str]:
    return ["train", "--model", "resnet8", *TINY, "--run-dir", str(run), *extra]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (nanoseconds)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first), f"{a} and {b} differ"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    error = capsys.readouterr().err
    assert error.startswith("robustkd: error: ") and error.count("\n") == 1, error
    return error


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("teacher") / "run"
    assert main(_train(run)) == 0
    return run


def test_train_starts_skips_and_refuses_another_config(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(_train(run, "--plan")) == 0  # --plan says what --skip-finished would do, and does nothing
    assert capsys.readouterr().out == f"train: to start: {run}\n" and not run.exists()
    assert main(_train(run, "--skip-finished")) == 0  # absent: started
    assert json.loads((run / "model.json").read_text())["epoch"] == 2
    _assert_same_weights(run, teacher)  # the same flags as the fixture's plain run: the same model
    before = _snapshot(run)
    capsys.readouterr()
    assert main(_train(run, "--skip-finished")) == 0
    assert capsys.readouterr().out == f"train: finished already: {run}\n"
    assert main(_train(run, "--plan")) == 0
    assert capsys.readouterr().out == f"train: finished already: {run}\n"
    assert _snapshot(run) == before  # nothing touched
    assert main(_train(run, "--skip-finished", "--epochs", "3")) == 2
    assert "epochs 2 (flags: 3)" in _one_line_error(capsys)
    assert main(_train(run, "--skip-finished", "--lr", "0.01")) == 2
    assert "lr 0.05 (flags: 0.01)" in _one_line_error(capsys)
    assert main(_train(run, "--skip-finished", "--device", "cpu")) == 0  # where it runs is not the run
    assert _snapshot(run) == before


def test_an_interrupted_run_is_resumed_bit_identically(teacher: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(_train(run, "--stop-after", "1")) == 0
    capsys.readouterr()
    before = _snapshot(run)
    assert main(_train(run, "--plan")) == 0
    assert capsys.readouterr().out == f"train: to resume: {run}\n" and _snapshot(run) == before
    assert main(_train(run, "--skip-finished")) == 0
    assert f"resuming {run} after epoch 1" in capsys.readouterr().out
    _assert_same_weights(run, teacher)
    # A config-only folder (killed before its first epoch) starts from its saved config.
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(run / "config.json", config_only / "config.json")
    assert main(_train(config_only, "--skip-finished")) == 0
    _assert_same_weights(config_only, teacher)
    # An interrupted run with other flags is refused, not restarted.
    other = tmp_path / "other"
    assert main(_train(other, "--stop-after", "1")) == 0
    capsys.readouterr()
    assert main(_train(other, "--skip-finished", "--milestones", "1")) == 2
    assert "milestones [2] (flags: [1])" in _one_line_error(capsys)
    assert json.loads((other / "model.json").read_text())["epoch"] == 1


@pytest.mark.parametrize("flags,expected", [
    (["--skip-finished", "--resume"], "--skip-finished and --resume: give one"),
    (["--plan", "--resume"], "--plan and --resume: give one"),
])
def test_skip_finished_misuse_gets_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            flags: list[str], expected: str) -> None:
    assert main(_train(tmp_path / "run", *flags)) == 2
    assert expected in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_skip_finished_needs_a_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", "resnet8", *TINY, "--skip-finished"]) == 2
    assert "--skip-finished needs --run-dir" in _one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


def test_distill_and_cohort_skip_resume_and_refuse(teacher: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    solo = tmp_path / "solo"
    base = ["distill", "--teacher", str(teacher), "--student", "resnet8", *TINY]
    assert main([*base, "--method", "KD", "--run-dir", str(solo), "--skip-finished"]) == 0
    capsys.readouterr()
    assert main([*base, "--method", "KD", "--run-dir", str(solo), "--skip-finished"]) == 0  # canonical name kd
    assert capsys.readouterr().out == f"distill: finished already: {solo}\n"
    assert main([*base, "--method", "dist", "--run-dir", str(solo), "--skip-finished"]) == 2
    assert "method 'kd' (flags: 'dist')" in _one_line_error(capsys)

    cohort = tmp_path / "cohort"
    command = [*base, "--method", "ce,kd,cmkd[cmkd_spearman=0.5]", "--seeds", "0", "--run-dir", str(cohort)]
    assert main([*command, "--stop-after", "1"]) == 0
    capsys.readouterr()
    assert main([*command, "--plan"]) == 0
    assert capsys.readouterr().out == f"distill: to resume: {cohort}\n"
    assert main([*command, "--skip-finished"]) == 0  # interrupted: every member resumed
    out = capsys.readouterr().out
    assert out.count("resuming after epoch 1") == 3, out
    for member in ("resnet8-ce-s0", "resnet8-kd-s0", "resnet8-cmkd-cmkd_spearman=0.5-s0"):
        assert json.loads((cohort / member / "model.json").read_text())["epoch"] == 2
    _assert_same_weights(cohort / "resnet8-kd-s0", solo)  # a member equals the solo run, resumed or not
    before = _snapshot(cohort)
    assert main([*command, "--skip-finished"]) == 0
    assert capsys.readouterr().out == f"distill: finished already: {cohort}\n"
    assert main([*base, "--method", "ce,kd", "--seeds", "0", "--run-dir", str(cohort), "--skip-finished"]) == 2
    assert "only in the folder: resnet8-cmkd-cmkd_spearman=0.5-s0; only in the flags: none" in _one_line_error(capsys)
    assert main([*command, "--epochs", "3", "--skip-finished"]) == 2
    assert "epochs 2 (flags: 3)" in _one_line_error(capsys)
    assert main([*command, "--cmkd-weighting", "equal", "--skip-finished"]) == 2
    assert "method_options" in _one_line_error(capsys)
    assert _snapshot(cohort) == before
    # A new cohort folder is started by the same command.
    fresh = tmp_path / "fresh"
    assert main([*base, "--method", "ce,kd", "--seeds", "1", "--epochs", "1", "--run-dir", str(fresh),
                 "--skip-finished"]) == 0
    assert json.loads((fresh / "resnet8-kd-s1" / "model.json").read_text())["epoch"] == 1


def test_a_changed_teacher_is_not_skipped_silently(teacher: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "teacher"
    shutil.copytree(teacher, copy)
    student = tmp_path / "student"
    command = ["distill", "--teacher", str(copy), "--student", "resnet8", "--method", "kd", *TINY, "--epochs", "1",
               "--run-dir", str(student), "--skip-finished"]
    assert main(command) == 0
    assert main(_train(tmp_path / "other-teacher", "--epochs", "1", "--milestones", "1")) == 0
    for name in ("model.safetensors", "model.json"):
        shutil.copy(tmp_path / "other-teacher" / name, copy / name)
    capsys.readouterr()
    assert main(command) == 2
    assert "changed since" in _one_line_error(capsys)


# ---- --init-from ----

def test_init_from_starts_from_the_parent_and_records_it(teacher: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from robustkd.train import command

    captured = {}

    def capture(config, task, run, placement, **_):
        captured["net"] = {k: v.clone() for k, v in task.student.net.state_dict().items()}
        captured["mean"] = task.student.mean.clone()
        return {}

    monkeypatch.setattr(command, "execute", capture)
    assert main(["train", "--model", "resnet8", *TINY, "--seed", "5", "--init-from", str(teacher),
                 "--run-dir", str(tmp_path / "child")]) == 0
    parent = _weights(teacher)
    assert all(torch.equal(value, parent[f"net.{key}"]) for key, value in captured["net"].items())
    assert torch.equal(captured["mean"], parent["mean"])
    assert main(["train", "--model", "resnet8", *TINY, "--seed", "5", "--run-dir", str(tmp_path / "scratch")]) == 0
    assert not torch.equal(captured["net"]["conv1.weight"], parent["net.conv1.weight"])  # without it: random init


def test_init_from_sidecar_resume_and_skip(teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "parent"
    shutil.copytree(teacher, parent)
    child = tmp_path / "child"
    command = _train(child, "--init-from", str(parent), "--noise-sd", "0.25", "--lr", "0.01", "--skip-finished")
    assert main([*command, "--stop-after", "1"]) == 0
    sha = json.loads((parent / "model.json").read_text())["weights_sha256"]
    meta = json.loads((child / "model.json").read_text())
    assert meta["init_from"] == {"path": str(parent), "sha256": sha}
    assert json.loads((child / "config.json").read_text())["init_sha256"] == sha
    assert main(command) == 0  # interrupted after epoch 1: resumed from its state, not re-initialised
    assert json.loads((child / "model.json").read_text())["epoch"] == 2
    uninterrupted = tmp_path / "uninterrupted"
    assert main(_train(uninterrupted, "--init-from", str(parent), "--noise-sd", "0.25", "--lr", "0.01")) == 0
    _assert_same_weights(child, uninterrupted)
    capsys.readouterr()
    assert main(command) == 0
    assert capsys.readouterr().out == f"train: finished already: {child}\n"
    # A config-only folder resumed with --resume starts from the parent too.
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(child / "config.json", config_only / "config.json")
    assert main(["train", "--run-dir", str(config_only), "--resume"]) == 0
    _assert_same_weights(config_only, uninterrupted)
    # Plain runs keep their config unchanged: no init fields.
    assert "init_from" not in json.loads((teacher / "config.json").read_text())
    # The parent replaced: a finished child is not skipped silently, a config-only folder is not started.
    assert main(_train(tmp_path / "other", "--epochs", "1", "--milestones", "1")) == 0
    for name in ("model.safetensors", "model.json"):
        shutil.copy(tmp_path / "other" / name, parent / name)
    capsys.readouterr()
    assert main(command) == 2
    assert "changed since" in _one_line_error(capsys)
    shutil.rmtree(config_only / "state")
    for name in ("model.json", "model.safetensors", "metrics.jsonl", "metrics.csv"):
        (config_only / name).unlink()
    assert main(["train", "--run-dir", str(config_only), "--resume"]) == 2
    assert "--init-from: " in (error := _one_line_error(capsys)) and "changed since this run started" in error


def test_init_from_another_architecture_or_class_count_is_refused_before_anything_is_written(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--model", "resnet14", *TINY, "--init-from", str(teacher), "--run-dir", str(run)]) == 2
    error = _one_line_error(capsys)
    assert error.startswith("robustkd: error: --init-from: checkpoint:") and "holds a resnet8, expected resnet14" in error
    hundred = tmp_path / "hundred"
    shutil.copytree(teacher, hundred)
    meta = json.loads((hundred / "model.json").read_text())
    (hundred / "model.json").write_text(json.dumps({**meta, "num_classes": 100}))
    assert main(["train", "--model", "resnet8", *TINY, "--init-from", str(hundred), "--run-dir", str(run)]) == 2
    assert "has 100 classes, expected 10" in _one_line_error(capsys)
    assert main(["train", "--model", "resnet8", *TINY, "--init-from", str(tmp_path / "none"), "--run-dir", str(run)]) == 2
    assert "--init-from: checkpoint: no sidecar" in _one_line_error(capsys)
    assert not run.exists()
