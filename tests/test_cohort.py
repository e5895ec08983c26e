"""Cohort distillation: members equal solo runs bit for bit, one teacher forward per batch, resume, NaN, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustkd.cli import main

# 200 training images in batches of 50: 4 steps an epoch; 100 test images.
TINY = ["--dataset", "synthetic", "--batch-size", "50", "--lr", "0.05", "--milestones", "2", "--train-limit", "200",
        "--test-limit", "100", "--epochs", "2", "--deterministic"]
STEPS_PER_EPOCH = 4


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("teacher") / "run"
    assert main(["train", "--model", "resnet8", "--dataset", "synthetic", "--batch-size", "50", "--lr", "0.05",
                 "--epochs", "2", "--milestones", "2", "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def cohort(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 4-method x 2-seed cohort."""
    folder = tmp_path_factory.mktemp("cohort") / "cohort"
    assert main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "ce,kd,dist,cmkd",
                 "--seeds", "0,1", *TINY, "--run-dir", str(folder)]) == 0
    return folder


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert not different, f"{a} and {b} differ in {different[:5]}"


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "images_per_second")} for row in rows]


@pytest.mark.parametrize("method,seed", [("cmkd", 1), ("kd", 0)])
def test_a_member_is_bit_identical_to_the_same_student_trained_alone(
        teacher: Path, cohort: Path, tmp_path: Path, method: str, seed: int) -> None:
    solo = tmp_path / "solo"
    assert main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", method, "--seed", str(seed),
                 *TINY, "--run-dir", str(solo)]) == 0
    member = cohort / f"resnet8-{method}-s{seed}"
    _assert_same_weights(solo, member)
    assert _metrics(solo) == _metrics(member)
    assert json.loads((solo / "config.json").read_text()) == json.loads((member / "config.json").read_text())


def test_members_pair_by_seed_and_sidecars_record_the_cohort(cohort: Path) -> None:
    meta = json.loads((cohort / "resnet8-dist-s1" / "model.json").read_text())
    assert meta["method"] == "dist" and meta["seed"] == 1 and meta["kind"] == "distill"
    assert meta["cohort"]["member"] == "resnet8-dist-s1" and len(meta["cohort"]["members"]) == 8
    assert meta["teacher"]["architecture"] == "resnet8" and meta["epoch"] == 2
    # Seeds differ in data order, augmentation and init: the same method ends elsewhere under another seed.
    assert not torch.equal(_weights(cohort / "resnet8-ce-s0")["net.fc.weight"], _weights(cohort / "resnet8-ce-s1")["net.fc.weight"])
    record = json.loads((cohort / "cohort.json").read_text())
    assert [m["name"] for m in record["members"]][:4] == ["resnet8-ce-s0", "resnet8-kd-s0", "resnet8-dist-s0", "resnet8-cmkd-s0"]
    assert record["status"] == {}
    for member in record["members"]:
        assert (cohort / member["name"] / "metrics.csv").is_file()


def test_the_teacher_runs_once_per_batch_for_all_students(teacher: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from robustkd.distill.task import DistillationTask

    calls = []
    original = DistillationTask.teacher_logits

    def counting(self, inputs):
        calls.append(len(inputs))
        return original(self, inputs)

    monkeypatch.setattr(DistillationTask, "teacher_logits", counting)
    assert main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "ce,kd,dist,cmkd",
                 "--seeds", "0,1", *TINY, "--run-dir", str(tmp_path / "c")]) == 0
    assert len(calls) == 2 * 2 * STEPS_PER_EPOCH  # seeds x epochs x steps, whatever the number of methods
    calls.clear()
    assert main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "kd", *TINY,
                 "--run-dir", str(tmp_path / "solo")]) == 0
    assert len(calls) == 2 * STEPS_PER_EPOCH  # a solo student: once per batch as well


def test_a_cohort_killed_between_two_members_saves_resumes_bit_identically(
        teacher: Path, cohort: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cohort"
    assert main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "ce,kd,dist,cmkd",
                 "--seeds", "0,1", *TINY, "--run-dir", str(folder), "--stop-after", "1"]) == 0
    # As if killed after the seed-0 members saved epoch 1 and before the seed-1 members did: the seed-1
    # members hold no state (one of them did not even write its model).
    for name in ("ce", "kd", "dist", "cmkd"):
        shutil.rmtree(folder / f"resnet8-{name}-s1" / "state")
    for leftover in ("model.safetensors", "model.json", "metrics.jsonl", "metrics.csv"):
        (folder / "resnet8-cmkd-s1" / leftover).unlink()
    assert main(["distill", "--run-dir", str(folder), "--resume"]) == 0
    for member in json.loads((cohort / "cohort.json").read_text())["members"]:
        _assert_same_weights(cohort / member["name"], folder / member["name"])
        assert _metrics(cohort / member["name"]) == _metrics(folder / member["name"])


def test_a_diverging_member_stops_alone_and_mixed_architectures_train(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "cohort"
    # A KD temperature of 1e-40 turns the logits into infinities: that member's loss is NaN from step 1.
    code = main(["distill", "--teacher", str(teacher), "--student", "resnet8,wrn_16_1",
                 "--method", "kd,kd[kd_temperature=1e-40]", *TINY, "--epochs", "1", "--run-dir", str(folder)])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("robustkd: error: cohort") and error.count("\n") == 1
    assert "2 of 4 students diverged" in error and "resnet8-kd-kd_temperature=1e-40-s0" in error
    for student in ("resnet8", "wrn_16_1"):
        meta = json.loads((folder / f"{student}-kd-s0" / "model.json").read_text())
        assert meta["architecture"] == student and meta["epoch"] == 1
        assert not (folder / f"{student}-kd-kd_temperature=1e-40-s0" / "model.json").exists()
    status = json.loads((folder / "cohort.json").read_text())["status"]
    assert set(status) == {"resnet8-kd-kd_temperature=1e-40-s0", "wrn_16_1-kd-kd_temperature=1e-40-s0"}
    assert "training diverged" in status["resnet8-kd-kd_temperature=1e-40-s0"]
    # Resumed with more epochs, the stopped members stay stopped and the others go on.
    assert main(["distill", "--run-dir", str(folder), "--resume", "--epochs", "2"]) == 2
    assert json.loads((folder / "resnet8-kd-s0" / "model.json").read_text())["epoch"] == 2


def test_a_solo_student_that_diverges_ends_the_run_with_one_line_and_keeps_its_last_checkpoint(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A student alone is a cohort of one, but its divergence is the run's error (as it always was)."""
    run = tmp_path / "solo"
    assert main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "kd", *TINY,
                 "--epochs", "1", "--run-dir", str(run)]) == 0
    kept = _weights(run)
    capsys.readouterr()
    code = main(["distill", "--run-dir", str(run), "--resume", "--epochs", "2", "--kd-temperature", "1e-40"])
    assert code == 2 and "drop --method-options" in capsys.readouterr().err  # options are the saved run's
    # Diverging from the first step: nothing but the error, and no folder left behind.
    fresh = tmp_path / "nan"
    code = main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "kd", *TINY,
                 "--kd-temperature", "1e-40", "--run-dir", str(fresh)])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "training diverged: loss became nan at epoch 1, step 1" in error
    assert "no checkpoint was written" in error and not fresh.exists()
    assert not (run / "cohort.json").exists() and torch.equal(_weights(run)["net.fc.weight"], kept["net.fc.weight"])
    # The solo log line names no member.
    assert main(["distill", "--run-dir", str(run), "--resume", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run} after epoch 1" in out and "epoch 2/2: loss " in out


@pytest.mark.parametrize("args,expected", [
    (["--method", "kd,bogus"], "unknown distillation method 'bogus'"),
    (["--method", "kd,dist,kd"], "names 'kd' twice"),
    (["--method", "kd,,dist"], "an empty entry"),
    (["--method", ","], "an empty entry"),
    (["--method", "kd,cmkd[cmkd_spearman]"], "is not option=value"),
    (["--method", "kd,cmkd[cmkd_spearman=0.5"], "without its ']'"),
    (["--method", "kd,cmkd[no_such_option=1]"], "unknown distill option"),
    (["--method", "kd,cmkd[cmkd_spearman=-1]"], "cmkd_spearman=-1"),
    (["--method", "kd", "--seeds", "0,a"], "--seeds '0,a'"),
    (["--method", "kd", "--seeds", "0,-1"], "non-negative"),
    (["--method", "kd", "--seeds", "1,1"], "names a seed twice"),
    (["--method", "kd", "--seeds", ""], "--seeds ''"),
    (["--method", "kd,dist", "--seeds", "0", "--seed", "1"], "--seed and --seeds"),
    (["--method", "kd,dist", "--student", "resnet8,nonet"], "unknown"),
    (["--method", "kd,dist", "--student", "resnet8,resnet8"], "names an architecture twice"),
])
def test_bad_cohort_input_gets_one_line_and_writes_nothing(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str) -> None:
    command = ["distill", "--teacher", str(teacher), "--student", "resnet8", *TINY, "--run-dir", str(tmp_path / "c")]
    assert main(command + args) == 2
    error = capsys.readouterr().err
    assert error.startswith("robustkd: error: ") and error.count("\n") == 1, error
    assert expected in error, error
    assert not (tmp_path / "c").exists()


def test_resume_of_a_folder_without_a_cohort_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c").mkdir()
    assert main(["distill", "--run-dir", str(tmp_path / "c"), "--resume", "--seeds", "0,1"]) == 2
    assert capsys.readouterr().err.startswith("robustkd: error: ")


def test_a_cohort_trains_data_parallel_with_two_gloo_processes(teacher: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "robustkd.cli",
               "distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "ce,kd", "--seeds", "0,1",
               *TINY, "--device", "cpu", "--run-dir", str(tmp_path / "ddp")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("; checkpoint ") == 4  # rank 0 alone reports, once per member
    assert result.stdout.count("epoch 2/2 resnet8-") == 4
    for member in ("resnet8-ce-s0", "resnet8-kd-s0", "resnet8-ce-s1", "resnet8-kd-s1"):
        rows = [json.loads(line) for line in (tmp_path / "ddp" / member / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["test_n"] == 100  # the two evaluation shards add up to the whole test subset
        assert rows[-1]["global_step"] == 2 * 200 // (2 * 50)  # each rank takes half of every epoch
