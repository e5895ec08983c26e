"""Device mixing caught on a CPU-only machine: the corruption engine, the suites, smoothing, the losses, training.

The bug class: a tensor made on the CPU (``torch.tensor(...)``, ``torch.arange(n)``, a kernel built without
``device=``) meets the images on the accelerator. On a CPU-only machine both are CPU tensors and nothing
fails; on CUDA the operation raises "Expected all tensors to be on the same device". These tests run the
code on a second device that exists on any machine (``tests/fake_device.py``): tensors on it carry real CPU
values (so data-dependent code runs and results can be compared with the CPU's), report a device that is
not the CPU (so ``device=x.device`` and ``.to(x.device)`` in the code under test create device tensors),
and every ATen operation is checked against the rule CUDA applies:

- all tensor operands on one device, except a 0-dim CPU tensor in a pointwise (TensorIterator) operation,
  which CUDA accepts as a "CPU scalar" (a shape-(1,) CPU tensor is *not* accepted: the radius-0 branch of
  ``filters.correlate1d`` multiplied device images by such a kernel and failed on CUDA);
- CPU index tensors of ``x[index]`` / ``x[index] = v`` are accepted (CUDA copies them over);
- copies between devices (``.to``, ``copy_``, slice assignment) are accepted;
- a generator must live on the device of the tensor it fills.

The check sees ATen operations (after Python and composite decomposition), which is where CUDA's own check
runs, so it also catches mixing inside library code. Limits: values are computed on the CPU, so device
*numerics* (the GPU JPEG codec's 127-level difference) need a GPU (``benchmarks/run_gpu_checks.sh``);
foolbox (eagerpy accepts only plain ``torch.Tensor``) is not run here. With ``ROBUSTKD_TEST_DEVICE=cuda``
the last test also compares the engine on that real device with the CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fake_device import FAKE, DeviceMixingError, fake_device, to_cpu, to_device
from torch import nn

from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES
from robustkd.corruptions.engine import DEVICE_EXACT, corrupt
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.evaluate.runner import evaluate_model
from robustkd.evaluate.smoothing import Smooth
from robustkd.evaluate.suite_file import load_suite
from robustkd.models.zoo import build_model

ALL_CORRUPTIONS = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS


def _images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ----- the mechanism itself -----

def test_fake_device_applies_cudas_rules() -> None:
    with fake_device():
        x = to_device(torch.arange(6.0).view(2, 3))
        assert x.device == FAKE and torch.equal(to_cpu(x * 2), torch.arange(6.0).view(2, 3) * 2)
        weights = torch.tensor([0.5], dtype=torch.float64)
        with pytest.raises(DeviceMixingError, match="same device"):
            x * weights.to(x.dtype)  # the old correlate1d radius-0 branch
        with pytest.raises(DeviceMixingError):
            x + torch.zeros(2, 3)
        with pytest.raises(DeviceMixingError):
            torch.cat((x, torch.zeros(1, 3)))
        with pytest.raises(DeviceMixingError):
            torch.stack((x.sum(), torch.tensor(1.0)))  # a 0-dim CPU tensor outside a pointwise operation
        assert to_cpu(x * torch.tensor(2.0)).sum() == 30  # a CPU scalar in a pointwise operation is fine
        assert to_cpu(x[torch.tensor([1])]).tolist() == [[3.0, 4.0, 5.0]]  # CPU indices are fine
        x[:, torch.tensor([0])] = torch.tensor(7.0)
        x[0] = torch.tensor([9.0, 9.0, 9.0])  # a copy across devices
        assert x.tolist() == [[9.0, 9.0, 9.0], [7.0, 4.0, 5.0]]
        made = [torch.zeros(3, device=x.device), torch.arange(3, device=x.device), torch.tensor([1, 2], device=x.device),
                torch.as_tensor([1.0], device=x.device), torch.ones(2).to(x.device), torch.zeros_like(x)]
        assert all(t.device == FAKE for t in made) and x.cpu().device.type == "cpu"
        with pytest.raises(DeviceMixingError, match="generator"):
            torch.randn(3, generator=torch.Generator(), device=x.device)
        with pytest.raises(DeviceMixingError, match="generator"):
            torch.randn(3, generator=torch.Generator(device=x.device))
        assert torch.randn(3, generator=torch.Generator(device=x.device), device=x.device).device == FAKE
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()


# ----- the corruption engine -----

def _corrupt_on_device(images: torch.Tensor, name: str, severity: int) -> torch.Tensor:
    with fake_device() as mode:
        out = corrupt(to_device(images), name, severity, seed=3, first_index=5)
        assert out.device == FAKE and out.dtype == torch.uint8
        assert mode.device_ops, "nothing ran on the device"
    return to_cpu(out)


@pytest.mark.parametrize("severity", [1, 5])
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_every_corruption_runs_on_a_second_device(name: str, severity: int) -> None:
    images = _images(2, 32)
    assert torch.equal(_corrupt_on_device(images, name, severity), corrupt(images, name, severity, seed=3, first_index=5))


@pytest.mark.slow
@pytest.mark.parametrize("severity", [2, 3, 4])
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_every_corruption_and_severity_runs_on_a_second_device(name: str, severity: int) -> None:
    images = _images(2, 32)
    assert torch.equal(_corrupt_on_device(images, name, severity), corrupt(images, name, severity, seed=3, first_index=5))


IMAGENET_FAST = ("defocus_blur", "glass_blur", "zoom_blur", "frost", "fog", "pixelate", "jpeg_compression")
"""The 224-pixel cases with size-dependent code paths (FFT defocus, a plasma of 256, uncropped frost
textures, zoom matrices, Pillow box weights) that take well under a second each."""


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in IMAGENET_FAST else pytest.mark.slow)
                                  for n in ALL_CORRUPTIONS])
def test_imagenet_sized_corruptions_run_on_a_second_device(name: str) -> None:
    images = _images(1, 224, seed=1)
    assert torch.equal(_corrupt_on_device(images, name, 1), corrupt(images, name, 1, seed=3, first_index=5))


def test_jpeg_codes_device_images_with_the_cpu_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.io

    seen: list[str] = []
    original = torchvision.io.encode_jpeg

    def recording_encode(images, *args, **kwargs):
        seen.extend(type(image).__name__ + ":" + image.device.type for image in images)
        return original(images, *args, **kwargs)

    monkeypatch.setattr(torchvision.io, "encode_jpeg", recording_encode)
    images = _images(2, 32)
    _corrupt_on_device(images, "jpeg_compression", 3)
    assert seen == ["Tensor:cpu", "Tensor:cpu"]  # never the device's (GPU) codec


# ----- the suites, smoothing -----

SUITES = {
    "clean": 'suite = "clean"\nbatch_size = 8\n',
    "calibration": 'suite = "calibration"\nbatch_size = 8\nholdout = 16\n',
    "corruption": 'suite = "corruption"\nbatch_size = 8\ncorruptions = ["glass_blur", "fog", "jpeg_compression"]\n'
                  'severities = [1]\n',
    "certified": 'suite = "certified"\nn0 = 10\nn = 64\nbatch_size = 24\nmax = 2\npredict_n = 32\nnoise_chunk = 16\n',
    "relations": 'suite = "relations"\nbatch_size = 8\n',
}
ADVERSARIAL = {"adversarial": 'suite = "adversarial"\nbatch_size = 4\nattacks = ["fgsm", "pgd_linf", "cw_l2"]\npgd_steps = 2\n'
                              'cw_steps = 2\neps_curve_255 = [8.0]\nmasking_examples = 2\nsquare_queries = 2\n'}


def _metrics(folder: Path) -> dict:
    import json

    return json.loads((folder / "summary.json").read_text())["metrics"]


def _evaluate(tmp_path: Path, device: torch.device, suites: dict[str, str], model: nn.Module, tag: str,
              n_examples: int = 16) -> list[Path]:
    files = []
    for name, text in suites.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        files.append(load_suite(str(path)))
    torch.manual_seed(0)
    teacher = build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3)
    runs = evaluate_model(model, name=tag, dataset="synthetic", suites=files, out_root=tmp_path / "out",
                          data_dir=tmp_path, device=device, n_examples=n_examples, teacher=teacher)
    return [run.target for run in runs]


def _suites_on_a_second_device(tmp_path: Path) -> list[Path]:
    torch.manual_seed(1)
    model = build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3)
    with fake_device() as mode:
        folders = _evaluate(tmp_path, FAKE, SUITES, model, "device")
        folders += _evaluate(tmp_path, FAKE, ADVERSARIAL, model, "device", n_examples=4)
        assert {"aten.convolution", "aten.bincount", "aten.index"} <= mode.device_ops
    assert [folder.name for folder in folders] == [f"{name}-first16" for name in SUITES] + ["adversarial-first4"]
    return folders


def test_every_suite_runs_on_a_second_device(tmp_path: Path) -> None:
    from robustkd.data.synthetic import make_synthetic

    folders = _suites_on_a_second_device(tmp_path)
    test = make_synthetic("test")
    torch.manual_seed(1)
    model = build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3).eval()
    with torch.no_grad():
        top1 = 100.0 * float(model(test.images[:16].float() / 255).argmax(1).eq(test.labels[:16]).double().mean())
    assert _metrics(folders[0])["top1"] == pytest.approx(top1)
    assert _metrics(folders[3])["n_certified"] == 2 and "robust_acc_pgd_linf" in _metrics(folders[5])


@pytest.mark.slow
def test_every_suite_gives_the_cpus_results_on_a_second_device(tmp_path: Path) -> None:
    on_device = _suites_on_a_second_device(tmp_path)
    torch.manual_seed(1)
    model = build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3)
    on_cpu = _evaluate(tmp_path, torch.device("cpu"), SUITES, model, "cpu")
    on_cpu += _evaluate(tmp_path, torch.device("cpu"), ADVERSARIAL, model, "cpu", n_examples=4)
    for cpu_folder, device_folder in zip(on_cpu, on_device):
        assert _metrics(device_folder) == pytest.approx(_metrics(cpu_folder), rel=1e-6, abs=1e-9), cpu_folder.name


@pytest.mark.slow
def test_autoattack_runs_on_a_second_device(tmp_path: Path, checkpoint: Path) -> None:
    from robustkd.checkpoint.io import load_checkpoint

    model = load_checkpoint(checkpoint).model
    suites = {"adversarial": 'suite = "adversarial"\nbatch_size = 8\nattacks = ["autoattack"]\neps_curve_255 = [8.0]\n'
                             'masking_examples = 0\n'}
    on_cpu = _evaluate(tmp_path, torch.device("cpu"), suites, model, "cpu", n_examples=8)
    with fake_device():
        on_device = _evaluate(tmp_path, FAKE, suites, model.cpu(), "device", n_examples=8)
    assert _metrics(on_device[0]) == _metrics(on_cpu[0])


class _SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_smoothing_counts_on_a_second_device() -> None:
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    smooth = Smooth(_SmallNet().eval(), 4, 0.5, noise_chunk=32)
    expected = (smooth.sample_counts(x, 200, 64, seed=4), smooth.certify(x, 20, 200, 0.001, 64, seed=4),
                smooth.predict(x, 100, 0.01, 64, seed=4))
    with fake_device():
        device_smooth = Smooth(_SmallNet().eval().to(FAKE), 4, 0.5, noise_chunk=32)
        counts = device_smooth.sample_counts(to_device(x), 200, 64, seed=4)
        assert counts.device == FAKE  # the votes are counted on the device
        certificate = device_smooth.certify(to_device(x), 20, 200, 0.001, 64, seed=4)
        predicted = device_smooth.predict(to_device(x), 100, 0.01, 64, seed=4)
    assert torch.equal(to_cpu(counts), expected[0]) and certificate == expected[1] and predicted == expected[2]


# ----- distillation losses and the trainer -----

LOSS_SPECS = [("ce", {}), ("kd", {}), ("dist", {}), ("cmkd", {}), ("kd+spearman", {}), ("dist+pearson", {}),
              ("cmkd", {"cmkd_difficulty": "true_prob", "cmkd_weighting": "value_hard"}),
              ("cmkd", {"cmkd_difficulty": "none", "cmkd_weighting": "equal", "cmkd_teacher_ranks": "soft"})]


@pytest.mark.parametrize("spec, options", LOSS_SPECS, ids=[f"{s}-{'-'.join(o.values()) or 'default'}" for s, o in LOSS_SPECS])
def test_distillation_losses_on_a_second_device(spec: str, options: dict) -> None:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(16, 10, generator=generator)
    teacher = torch.randn(16, 10, generator=generator)
    labels = torch.randint(0, 10, (16,), generator=generator)
    method = parse_method(spec, DistillOptions(**options))

    def run(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[dict, torch.Tensor]:
        s = s.clone().requires_grad_(True)
        losses = method.losses(s, t, y)
        sum(losses.values()).backward()
        return losses, s.grad

    cpu_losses, cpu_grad = run(student, teacher, labels)
    with fake_device():
        losses, grad = run(to_device(student), to_device(teacher), to_device(labels))
        assert all(value.device == FAKE for value in losses.values()) and grad.device == FAKE
    assert set(losses) == set(cpu_losses)
    for name in cpu_losses:
        torch.testing.assert_close(to_cpu(losses[name]).detach(), cpu_losses[name].detach())
    torch.testing.assert_close(to_cpu(grad), cpu_grad)


def test_a_training_step_of_the_trainer_on_a_second_device(tmp_path: Path) -> None:
    from robustkd.data.loader import TensorBatchLoader
    from robustkd.data.synthetic import SYNTHETIC_MEAN, SYNTHETIC_STD, make_synthetic
    from robustkd.distill.task import DistillationTask
    from robustkd.train.config import TrainConfig
    from robustkd.train.loop import Placement, Trainer
    from robustkd.train.run_dir import RunDirectory

    train, test = make_synthetic("train", per_class=4), make_synthetic("test", per_class=2)
    config = TrainConfig(model="resnet8", dataset="synthetic", epochs=1, batch_size=16, lr=0.05, milestones=[1],
                         noise_sd=0.1)

    def one_epoch(device: torch.device, folder: str) -> tuple[dict, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        student = build_model("resnet8", 10, SYNTHETIC_MEAN, SYNTHETIC_STD)
        teacher = build_model("resnet8", 10, SYNTHETIC_MEAN, SYNTHETIC_STD).eval()
        task = DistillationTask(student, teacher, parse_method("cmkd+pearson", DistillOptions()), {"path": "t"})
        loaders = [TensorBatchLoader(data, 16, device, train=is_train, seed=0, noise_sd=0.1 if is_train else 0.0,
                                     channels_last=True) for data, is_train in ((train, True), (test, False))]
        trainer = Trainer(config, task, *loaders, RunDirectory.create(tmp_path / folder, resume=False),
                          Placement(device), {"architecture": "resnet8"}, announce=lambda _: None)
        row = trainer.train_epoch(1)
        return row, {k: to_cpu(v).detach().clone() for k, v in trainer.student.state_dict().items()}

    cpu_row, cpu_weights = one_epoch(torch.device("cpu"), "cpu")
    with fake_device():
        row, weights = one_epoch(FAKE, "device")
    assert row["train_loss"] == pytest.approx(cpu_row["train_loss"], rel=1e-5)
    assert row["test_top1"] == pytest.approx(cpu_row["test_top1"]) and "train_loss_addon_pearson" in row
    for name, value in cpu_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5)


# ----- a real accelerator, when the tests are given one -----

def test_corruptions_on_the_test_device_match_the_cpu(test_device: torch.device) -> None:
    if test_device.type == "cpu":
        pytest.skip("ROBUSTKD_TEST_DEVICE is the CPU (benchmarks/run_gpu_checks.sh sets cuda)")
    images = _images(16, 32)
    for name in ALL_CORRUPTIONS:
        for severity in SEVERITIES:
            expected = corrupt(images, name, severity)
            got = corrupt(images.to(test_device), name, severity).cpu()
            difference = int((got.int() - expected.int()).abs().max())
            assert difference <= (0 if name in DEVICE_EXACT else 1), (name, severity, difference)


@pytest.mark.parametrize("name", ["cpu", "auto"])
def test_resolving_a_device_turns_tf32_off(name: str) -> None:
    """float32 is float32 on every device: cuDNN's TF32 default (on for convolutions) changed 2 of 10,000
    teacher predictions on an H200 against the CPU."""
    from robustkd.utils.device import resolve_device

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        resolve_device(name)
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
