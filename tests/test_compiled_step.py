"""The compiled training step (``--compile``, robustkd/train/compiled_step.py) on the CPU.

Stated tolerance: from the same weights and batch, one compiled step lands as close to a float64 step as the
plain float32 step does (its distance to float64 at most 4x the plain step's plus 1e-6 of the tensor's
scale). Over many steps the two float32 paths drift apart as rounding is amplified by training (as two
GPUs' runs would): a short well-conditioned run is compared by its metrics (relative 1e-3). The step tests run
on ``ROBUSTKD_TEST_DEVICE`` (benchmarks/run_gpu_speed.py sets cuda: there the step is CUDA-graphed).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from robustkd.cli import main
from robustkd.distill.command import DistillConfig
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.distill.task import DistillationTask
from robustkd.models import Normalized
from robustkd.train.compiled_step import compile_mode, draws_random_numbers
from robustkd.train.run_dir import RunDirectory
from robustkd.train.student_run import Placement, StudentRun

CLASSES = 10


def _tiny(dropout: float = 0.0) -> Normalized:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Dropout(dropout), nn.Linear(8, CLASSES))
    return Normalized(net, [0.5] * 3, [0.25] * 3)


class FunctionalDropout(nn.Module):  # dropout in a forward, as timm's heads apply it: no dropout module to find
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(x, self.p, self.training)


class SelfAttention(nn.Module):  # attention-weight dropout inside nn.MultiheadAttention
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(4, 2, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x)[0]


@pytest.mark.parametrize("model,draws", [
    (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0)), False), (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)), True),
    (FunctionalDropout(0.0), False), (FunctionalDropout(0.5), True),
    (SelfAttention(0.0), False), (SelfAttention(0.5), True),
    (nn.ReLU(), False), (nn.RReLU(), True),
])
def test_a_student_draws_random_numbers_when_its_training_forward_moves_the_rng(
        model: nn.Module, draws: bool, test_device: torch.device) -> None:
    model = model.to(test_device)
    inputs = torch.randn(2, 3, 4, device=test_device)
    state = torch.get_rng_state()
    assert draws_random_numbers(model, inputs) is draws
    assert torch.equal(torch.get_rng_state(), state)  # the probe leaves the RNG as it was


def test_the_probe_leaves_the_model_as_it_was(test_device: torch.device) -> None:
    model = _tiny(0.5).to(test_device).eval()
    before = copy.deepcopy(model.state_dict())
    assert draws_random_numbers(model, torch.rand(2, 3, 8, 8, device=test_device))
    assert not model.training
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_cuda_graphs_only_for_a_graph_safe_cuda_step() -> None:
    assert compile_mode(torch.device("cuda", 0), graph_safe=True) == "reduce-overhead"
    assert compile_mode(torch.device("cuda", 0), graph_safe=False) == "default"
    assert compile_mode(torch.device("cpu"), graph_safe=True) == "default"


def _run(method: str, student: Normalized, teacher: Normalized, tmp_path: Path, device: torch.device, *,
         compile: bool, lr: float = 0.05, seed: int = 0) -> StudentRun:
    config = DistillConfig(model="resnet8", teacher="unused", method=method, batch_size=16, epochs=2, eval_every=2,
                           lr=lr, milestones=[1], seed=seed, compile=compile).validate()
    task = DistillationTask(student, teacher, parse_method(method, DistillOptions()), {})
    folder = tmp_path / f"{method}-{compile}-{len(list(tmp_path.iterdir()))}"
    return StudentRun(config, task, RunDirectory(folder), Placement(device), {}, isolate_rng=True)


def _batch(seed: int, device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(16, 3, 8, 8, generator=generator, dtype=dtype)
    return inputs.to(device), torch.randint(0, CLASSES, (16,), generator=generator).to(device)


def _compiled_entries(compiled) -> int:
    """How many compiled versions dynamo holds for the function behind a ``torch.compile`` wrapper."""
    return len(_debug_get_cache_entry_list(compiled._torchdynamo_orig_callable.__code__))


@pytest.mark.parametrize("method", ["ce", "kd", "dist", "cmkd", "dkd", "kd+ls"])
def test_a_compiled_step_is_as_close_to_float64_as_the_plain_step(method: str, tmp_path: Path,
                                                                   test_device: torch.device) -> None:
    torch.manual_seed(3)
    student, teacher = _tiny(), _tiny().eval()
    with torch.no_grad():  # a teacher with confident, varied logits, so every loss term has a gradient
        teacher.net[-1].weight.mul_(20.0)
    runs = {name: _run(method, copy.deepcopy(student), copy.deepcopy(teacher), tmp_path, test_device,
                       compile=name == "compiled") for name in ("plain", "compiled", "float64")}
    runs["float64"].task.double()
    for run in runs.values():
        run.begin_epoch(1)
    for step in range(4):  # from the second step on with SGD's momentum buffers; on CUDA the 3rd and 4th replay graphs
        for name, run in runs.items():
            inputs, labels = _batch(step, test_device, torch.float64 if name == "float64" else torch.float32)
            with torch.no_grad():
                teacher_logits = run.task.teacher(inputs)  # float64 for the float64 run
            run.step(inputs, labels, teacher_logits=teacher_logits)
    assert _compiled_entries(runs["compiled"]._compiled_forward) > 0  # forward and loss ran compiled
    assert _compiled_entries(runs["compiled"]._optimizer_step) > 0  # and so did the SGD step
    assert runs["compiled"].compile_mode == ("reduce-overhead" if test_device.type == "cuda" else "default")
    reference = runs["float64"].student.state_dict()
    for key, exact in reference.items():
        if not exact.is_floating_point():
            continue
        plain_error = (runs["plain"].student.state_dict()[key].double() - exact).abs().max().item()
        compiled_error = (runs["compiled"].student.state_dict()[key].double() - exact).abs().max().item()
        scale = exact.abs().max().item()
        assert compiled_error <= 4 * plain_error + 1e-6 * scale, (key, compiled_error, plain_error, scale)
    plain_losses, compiled_losses = runs["plain"].running_losses(), runs["compiled"].running_losses()
    assert plain_losses.keys() == compiled_losses.keys()
    for name, value in plain_losses.items():
        assert compiled_losses[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_a_compiled_stochastic_student_keeps_its_own_random_stream(tmp_path: Path, test_device: torch.device) -> None:
    """Dropout under --compile: a student's draws do not depend on another student stepping between its steps,
    and the same seed gives the same run (reproducible per seed and device)."""
    torch.manual_seed(5)
    student, other, teacher = _tiny(0.5), _tiny(0.5), _tiny().eval().to(test_device)

    def train(with_other: bool, seed: int = 7) -> dict[str, torch.Tensor]:
        run = _run("kd", copy.deepcopy(student), teacher, tmp_path, test_device, compile=True, seed=seed)
        neighbour = _run("kd", copy.deepcopy(other), teacher, tmp_path, test_device, compile=True, seed=8)
        run.begin_epoch(1)
        neighbour.begin_epoch(1)
        for step in range(3):
            inputs, labels = _batch(step, test_device)
            with torch.no_grad():
                logits = teacher(inputs)
            run.step(inputs, labels, teacher_logits=logits)
            if with_other:
                neighbour.step(inputs, labels, teacher_logits=logits)
        return run.student.state_dict()

    alone, beside, again = train(False), train(True), train(False)
    assert all(torch.equal(alone[key], beside[key]) for key in alone)
    assert all(torch.equal(alone[key], again[key]) for key in alone)
    other_seed = train(False, seed=9)  # the draws come from the student's seed (not a constant of the graph)
    assert not torch.equal(alone["net.6.weight"], other_seed["net.6.weight"])
    stochastic = _run("kd", copy.deepcopy(student), teacher, tmp_path, test_device, compile=True, seed=7)
    stochastic.begin_epoch(1)
    inputs, labels = _batch(0, test_device)
    with torch.no_grad():
        teacher_logits = teacher(inputs)
    stochastic.step(inputs, labels, teacher_logits=teacher_logits)
    assert stochastic.compile_mode == "default"  # never CUDA-graphed


def test_more_students_than_torchs_default_recompile_limit_all_stay_compiled(
        tmp_path: Path, test_device: torch.device, caplog: pytest.LogCaptureFixture) -> None:
    """Every student and first SGD step is one more entry of the same compiled code: with 10 students (30
    entries) torch's default limit of 8 would run the later ones eagerly, with a warning."""
    torch.manual_seed(0)
    teacher = _tiny().eval().to(test_device)
    runs = [_run("kd", _tiny(), teacher, tmp_path, test_device, compile=True, seed=seed) for seed in range(10)]
    inputs, labels = _batch(0, test_device)
    with torch.no_grad():
        logits = teacher(inputs)
    with caplog.at_level("WARNING", logger="torch._dynamo"):
        for epoch in (1, 2):  # epoch 2 is after the milestone: another learning rate
            for run in runs:
                run.begin_epoch(epoch)
                run.step(inputs, labels, teacher_logits=logits)
                run.step(inputs, labels, teacher_logits=logits)
    assert runs[0].optimizer.param_groups[0]["lr"] != runs[0].config.lr
    assert not [record for record in caplog.records if "recompile_limit" in record.getMessage()]


# 200 training images in batches of 50: 4 steps an epoch; a small learning rate keeps the run well conditioned.
# kd and dkd (whose warm-up factor changes every epoch: a new float must not break the compiled step) train
# stably here; CMKD on these synthetic images does not (its CE doubles in epoch 2), so its rounding
# differences grow past 1e-3 within 8 steps; its one step is compared above.
TINY = ["--dataset", "synthetic", "--batch-size", "50", "--lr", "0.01", "--milestones", "2", "--train-limit", "200",
        "--test-limit", "100", "--epochs", "2"]


def test_a_compiled_cohort_trains_resumes_and_matches_the_plain_cohort(tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    assert main(["train", "--model", "resnet8", "--dataset", "synthetic", "--batch-size", "50", "--epochs", "1",
                 "--train-limit", "200", "--test-limit", "100", "--run-dir", str(teacher)]) == 0
    cohort = ["distill", "--teacher", str(teacher), "--student", "resnet8", "--method", "kd,dkd", *TINY]
    assert main([*cohort, "--run-dir", str(tmp_path / "plain")]) == 0
    compiled = tmp_path / "compiled"
    assert main([*cohort, "--compile", "--run-dir", str(compiled), "--stop-after", "1"]) == 0
    assert main(["distill", "--resume", "--run-dir", str(compiled)]) == 0
    for member in ("resnet8-kd-s0", "resnet8-dkd-s0"):
        assert json.loads((compiled / member / "config.json").read_text())["compile"] is True
        rows = {name: [json.loads(line) for line in (tmp_path / name / member / "metrics.jsonl").read_text().splitlines()]
                for name in ("plain", "compiled")}
        assert [row["epoch"] for row in rows["compiled"]] == [1, 2]
        for plain_row, compiled_row in zip(rows["plain"], rows["compiled"]):
            for key in [key for key in plain_row if key.startswith("train_loss")]:
                assert compiled_row[key] == pytest.approx(plain_row[key], rel=1e-3, abs=1e-6), (member, key)
