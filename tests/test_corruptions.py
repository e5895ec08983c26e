"""The corruption engine against a per-image reference port, its randomness, the .npy layout, mCE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from corruption_reference import plasma_fractal as reference_plasma
from corruption_reference import reference
from robustkd.cli import main
from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS, PROFILES
from robustkd.corruptions.engine import CORRUPTIONS, apply_with_draws, corrupt, draw_batch
from robustkd.corruptions.layout import read_severity_block, write_corruption_npy, write_labels_npy
from robustkd.corruptions.plasma import plasma_draw_count, plasma_fractal, replay_uniform
from robustkd.data.embedded import load_embedded_cifar100
from robustkd.errors import RobustKDError
from robustkd.evaluate.corruption_metrics import ALEXNET_IMAGENET_C, corruption_summary


@pytest.fixture(scope="module")
def cifar_images() -> torch.Tensor:
    """Six real CIFAR-100 test images (embedded subset), uint8 (6, 3, 32, 32)."""
    return load_embedded_cifar100("test").images[::97][:6].contiguous()


def _mean_abs_diff(name: str, images: torch.Tensor, severity: int, profile_name: str) -> tuple[float, int]:
    profile = PROFILES[profile_name]
    draws = draw_batch(images, name, severity, seed=3, first_index=0, profile=profile)
    ours = apply_with_draws(images, name, severity, draws, profile).permute(0, 2, 3, 1).numpy().astype(int)
    hwc = images.permute(0, 2, 3, 1).numpy()
    theirs = np.stack([reference(name, hwc[i], profile.parameter(name, severity),
                                 {k: v[i].numpy() for k, v in draws.items()}) for i in range(len(hwc))]).astype(int)
    diff = np.abs(ours - theirs)
    return float(diff.mean()), int(diff.max())


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_cifar_parameters_match_the_per_image_reference(name: str, cifar_images: torch.Tensor) -> None:
    """Same draws -> within 1 uint8 level mean absolute difference, for all five severities (measured: <= 0.2)."""
    for severity in range(1, 6):
        mad, worst = _mean_abs_diff(name, cifar_images, severity, "cifar")
        assert mad <= 1.0, (name, severity, mad, worst)
        assert worst <= 4, (name, severity, mad, worst)


@pytest.mark.parametrize("name", ["gaussian_noise", "defocus_blur", "zoom_blur", "snow", "frost", "fog", "contrast",
                                  "elastic_transform", "pixelate", "jpeg_compression", "motion_blur", "brightness"])
def test_imagenet_parameters_match_the_per_image_reference(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 256, (2, 3, 14, 14), generator=generator).float()
    images = torch.nn.functional.interpolate(coarse, size=(224, 224), mode="bicubic").clamp(0, 255).to(torch.uint8)
    for severity in (1, 3, 5):
        mad, worst = _mean_abs_diff(name, images, severity, "imagenet")
        assert mad <= 1.0, (name, severity, mad, worst)


@pytest.mark.slow
def test_imagenet_glass_blur_matches_the_reference() -> None:
    images = torch.randint(0, 256, (1, 3, 224, 224), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    for severity in range(1, 6):
        assert _mean_abs_diff("glass_blur", images, severity, "imagenet")[0] <= 1.0


def test_plasma_fractal_matches_the_reference_draw_for_draw() -> None:
    draws = torch.rand(3, plasma_draw_count(32), generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
    ours = plasma_fractal(32, 2.5, replay_uniform(draws)).numpy()
    assert ours.shape == (3, 32, 32) and plasma_draw_count(32) == 3 * (1 + 4 + 16 + 64 + 256)
    for i in range(3):  # batched maps equal the per-image reference, draw for draw
        np.testing.assert_allclose(ours[i], reference_plasma(32, 2.5, draws[i].numpy()), rtol=0, atol=1e-12)
        assert ours[i].min() == 0.0 and ours[i].max() == 1.0


def test_draws_follow_the_scripts_distributions(cifar_images: torch.Tensor) -> None:
    profile = PROFILES["cifar"]
    many = cifar_images.repeat(20, 1, 1, 1)
    glass = draw_batch(many[:4], "glass_blur", 1, seed=0, first_index=0, profile=profile)["offsets"]
    assert set(glass.unique().tolist()) == {-1, 0}  # randint(-1, 1): the upper bound is exclusive
    assert glass.shape == (4, 1, 30 * 30, 2)
    impulse = draw_batch(many, "impulse_noise", 5, seed=0, first_index=0, profile=profile)
    assert impulse["flipped"].double().mean().item() == pytest.approx(0.07, abs=0.005)
    assert impulse["salted"].double().mean().item() == pytest.approx(0.5, abs=0.01)
    normal = draw_batch(many, "gaussian_noise", 1, seed=0, first_index=0, profile=profile)["normal"]
    assert normal.std().item() == pytest.approx(1.0, abs=0.01) and abs(normal.mean().item()) < 0.01
    angles = draw_batch(many, "motion_blur", 1, seed=0, first_index=0, profile=profile)["angle"]
    assert -45 <= angles.min() < -30 and 30 < angles.max() <= 45
    # The published noise: clean pixel + N(0, c) clipped, so the perturbation's std is c away from the bounds.
    noisy = corrupt(many, "gaussian_noise", 3, seed=0).float()
    middle = (many > 60) & (many < 195)
    assert ((noisy - many.float())[middle] / 255).std().item() == pytest.approx(0.08, rel=0.05)


def test_results_depend_on_seed_and_index_not_on_batching(cifar_images: torch.Tensor) -> None:
    whole = corrupt(cifar_images, "fog", 4, seed=1)
    parts = torch.cat([corrupt(cifar_images[:2], "fog", 4, seed=1),
                       corrupt(cifar_images[2:], "fog", 4, seed=1, first_index=2)])
    assert torch.equal(whole, parts)
    assert torch.equal(whole, corrupt(cifar_images, "fog", 4, seed=1))
    assert not torch.equal(whole, corrupt(cifar_images, "fog", 4, seed=2))
    assert whole.dtype == torch.uint8 and whole.shape == cifar_images.shape


def test_corrupt_refuses_bad_input(cifar_images: torch.Tensor) -> None:
    with pytest.raises(RobustKDError, match="unknown name 'blur'"):
        corrupt(cifar_images, "blur", 1)
    with pytest.raises(RobustKDError, match="severity: expected an integer 1..5"):
        corrupt(cifar_images, "fog", 6)
    with pytest.raises(RobustKDError, match="expected a uint8 tensor"):
        corrupt(cifar_images.float(), "fog", 1)
    with pytest.raises(RobustKDError, match="32x32 \\(CIFAR\\) and 224x224"):
        corrupt(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "fog", 1)


def test_npy_layout_round_trip(tmp_path: Path, cifar_images: torch.Tensor) -> None:
    blocks = [corrupt(cifar_images, "contrast", severity) for severity in range(1, 6)]
    labels = torch.arange(len(cifar_images))
    write_corruption_npy(tmp_path, "contrast", blocks)
    write_labels_npy(tmp_path, labels, 100)
    raw = np.load(tmp_path / "contrast.npy", allow_pickle=False)
    assert raw.shape == (30, 32, 32, 3) and raw.dtype == np.uint8
    assert np.load(tmp_path / "labels.npy").dtype == np.uint8
    for severity in range(1, 6):
        images, got = read_severity_block(tmp_path, "contrast", severity)
        assert torch.equal(images, blocks[severity - 1]) and torch.equal(got, labels)
    first, _ = read_severity_block(tmp_path, "contrast", 2, limit=2)
    assert torch.equal(first, blocks[1][:2])
    np.save(tmp_path / "fog.npy", raw.astype(np.float32))
    with pytest.raises(RobustKDError, match="must be uint8 \\(5N, H, W, 3\\)"):
        read_severity_block(tmp_path, "fog", 1)
    with pytest.raises(RobustKDError, match="missing"):
        read_severity_block(tmp_path, "snow", 1)


def test_mce_arithmetic_on_a_made_up_table() -> None:
    index = list(BENCHMARK_CORRUPTIONS)
    accuracy = pd.DataFrame([[(i + s) / 40 for s in range(1, 6)] for i in range(15)], index=index, columns=range(1, 6))
    clean = 0.8
    metrics = corruption_summary(accuracy, clean, ALEXNET_IMAGENET_C)
    cells = [(i + s) / 40 for i in range(15) for s in range(1, 6)]
    assert metrics["corruptions_acc"] == pytest.approx(sum(cells) / 75)  # = (7 + 3) / 40 = 0.25
    assert metrics["corruptions_acc"] == pytest.approx(0.25)
    assert metrics["mce_unnormalized"] == pytest.approx(0.75)
    assert metrics["relative_mce_unnormalized"] == pytest.approx(0.75 - 0.2)
    alexnet = ALEXNET_IMAGENET_C.mean_error
    expected_ce = [sum(1 - (i + s) / 40 for s in range(1, 6)) / (5 * alexnet[c]) for i, c in enumerate(index)]
    assert metrics["mce"] == pytest.approx(sum(expected_ce) / 15)
    expected_rel = [sum(1 - (i + s) / 40 - 0.2 for s in range(1, 6)) / (5 * (alexnet[c] - 0.435))
                    for i, c in enumerate(index)]
    assert metrics["relative_mce"] == pytest.approx(sum(expected_rel) / 15)
    # A model with AlexNet's own errors has mCE exactly 1.
    own = pd.DataFrame({s: [1 - alexnet[c] for c in index] for s in range(1, 6)}, index=index)
    assert corruption_summary(own, 0.565, ALEXNET_IMAGENET_C)["mce"] == pytest.approx(1.0)


def test_corruption_suite_generated_equals_official_and_resumes(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "c"
    assert main(["corrupt", "--dataset", "synthetic", "--out", str(data), "--corruptions", "fog,pixelate",
                 "--n-examples", "40"]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["n_images"] == 40 and set(manifest["files"]) == {"fog.npy", "pixelate.npy", "labels.npy"}
    suite = tmp_path / "suite.toml"
    results = {}
    for source in ("generated", "official"):
        suite.write_text(f'suite = "corruption"\nsource = "{source}"\nofficial_dir = "{data}"\n'
                         'corruptions = ["fog", "pixelate"]\nbatch_size = 16\n')
        out = tmp_path / source
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", "40",
                     "--out", str(out)]) == 0
        (folder,) = list(out.glob("*/corruption-first40"))
        results[source] = json.loads((folder / "summary.json").read_text())
        grid = pd.read_csv(folder / "accuracy_grid.csv", index_col="corruption")
        assert list(grid.index) == ["fog", "pixelate"] and list(grid.columns) == ["1", "2", "3", "4", "5"]
        assert (folder / "accuracy_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert results["generated"]["metrics"] == results["official"]["metrics"]
    assert results["official"]["protocol"]["source"] == "official" and results["generated"]["subset"] is True
    assert results["generated"]["units"]["corruptions_acc"] == "percent"
    assert results["generated"]["units"]["ece_severity_1"] == "fraction"


def test_corruption_cells_resume_after_a_kill(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import robustkd.evaluate.suites.corruption as suite_module

    suite = tmp_path / "suite.toml"
    suite.write_text('suite = "corruption"\ncorruptions = ["contrast", "brightness"]\nseverities = [1, 2]\n')
    calls: list[int] = []
    original = suite_module.calibration_metrics

    def failing_after_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(suite_module, "calibration_metrics", failing_after_three)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--out", str(tmp_path)]) == 130
    (partial,) = list(tmp_path.glob("*/.corruption.partial"))
    assert len(pd.read_csv(partial / "cells.csv")) == 3
    calls.clear()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--out", str(tmp_path)]) == 0
    assert len(calls) == 1  # only the missing cell was evaluated
    (done,) = list(tmp_path.glob("*/corruption"))
    assert len(pd.read_csv(done / "cells.csv")) == 4 and not partial.exists()
    # Per image: the cells it was right in, from every cell's stored predictions (three written before the kill).
    from robustkd.results.per_image import per_image_scores

    per_image = pd.read_csv(done / "per_image.csv")
    assert per_image["cells"].eq(4).all() and len(per_image) == 200 and per_image["index"].tolist() == list(range(200))
    stored = [np.load(path) for path in sorted((done / "cell_predictions").glob("*.npy"))]
    assert len(stored) == 4 and all(p.shape == (200,) for p in stored)
    labels = per_image["label"].to_numpy()
    assert per_image["cells_correct"].tolist() == sum(p == labels for p in stored).tolist()
    summary = json.loads((done / "summary.json").read_text())
    share = per_image_scores(done, "corruption", "corruptions_acc")
    assert share.mean() == pytest.approx(summary["metrics"]["corruptions_acc"], abs=1e-9)
    assert (share + per_image_scores(done, "corruption", "mce_unnormalized")).eq(100.0).all()


@pytest.mark.parametrize("content, message", [
    ('suite = "corruption"\ncorruptions = ["fogg"]\n', "corruptions = ['fogg']; expected one of: gaussian_noise"),
    ('suite = "corruption"\nsource = "official"\n', "needs official_dir"),
    ('suite = "corruption"\nseverities = [1, "2"]\n', "expected an array of int"),
])
def test_corruption_suite_refusals(checkpoint: Path, tmp_path: Path, content: str, message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(content)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_changed_parameters_do_not_resume_old_work(checkpoint: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text('suite = "corruption"\ncorruptions = ["contrast"]\nseverities = [1]\n')
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--out", str(tmp_path)]) == 0
    (done,) = list(tmp_path.glob("*/corruption"))
    done.rename(done.with_name(".corruption.partial"))  # as a killed run leaves it
    suite.write_text('suite = "corruption"\ncorruptions = ["contrast"]\nseverities = [1]\nseed = 7\n')
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--out", str(tmp_path)]) == 0
    assert "was started with other corruption parameters; starting it afresh" in capsys.readouterr().out
    cells = pd.read_csv(done / "cells.csv")
    assert len(cells) == 1
