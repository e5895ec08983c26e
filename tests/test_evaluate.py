"""`robustkd evaluate`: suite files, result directories, refusals (wrong outputs, bad inputs, unknown keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustkd.cli import main
from robustkd.errors import RobustKDError
from robustkd.evaluate.predictions import collect_logits
from robustkd.evaluate.suite_file import load_suite


def test_clean_and_calibration_results(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--suite", "calibration", "--out", str(tmp_path)]) == 0
    meta = json.loads((checkpoint / "model.json").read_text())
    folder = tmp_path / f"resnet8-{meta['weights_sha256'][:12]}"
    clean = json.loads((folder / "clean" / "summary.json").read_text())
    assert clean["metrics"]["top1"] == pytest.approx(meta["metrics"]["test_top1"])  # the same 200 test images
    assert clean["n_examples"] == 200 and clean["subset"] is False and clean["checkpoint_sha256"] == meta["weights_sha256"]
    assert len(clean["suite_sha256"]) == 64 and clean["package_versions"]["torch"] == torch.__version__
    per_class = (folder / "clean" / "per_class.csv").read_text().splitlines()
    assert len(per_class) == 11 and (folder / "clean" / "confusion_matrix.csv").is_file()
    calibration = json.loads((folder / "calibration" / "summary.json").read_text())
    assert {"ece", "mce", "adaptive_ece", "nll", "brier", "ece_ts", "temperature"} <= set(calibration["metrics"])
    assert calibration["protocol"]["n_bins"] == 15 and calibration["protocol"]["temperature_fit"].startswith("two-fold")
    assert sum(calibration["protocol"]["temperature_fit_folds"]) == 200  # fitted on test images, never training ones
    assert (folder / "calibration" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    # A second run refuses to overwrite; --n-examples writes a separate, marked subset result.
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(tmp_path)]) == 2
    assert "already holds a result; pass --overwrite" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(tmp_path), "--n-examples", "50"]) == 0
    subset = json.loads((folder / "clean-first50" / "summary.json").read_text())
    assert subset["subset"] is True and subset["n_examples"] == 50


@pytest.mark.parametrize("content, message", [
    ('suite = "clean"\nbatch = 10\n', "unknown key(s) batch; the clean suite takes: batch_size"),
    ("batch_size = 10\n", "must name its suite"),
    ('suite = "clean"\nbatch_size = "ten"\n', "batch_size = 'ten'; expected an integer"),
    ('suite = "fairness"\n', "unknown suite 'fairness'; expected one of: clean, corruption, adversarial, calibration, shift_calibration, certified, relations"),
])
def test_suite_files_are_validated(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(content)
    with pytest.raises(RobustKDError) as error:
        load_suite(str(path))
    assert message in str(error.value)


def test_unknown_suite_name() -> None:
    with pytest.raises(RobustKDError, match="unknown suite 'robust'; expected one of: clean, corruption, adversarial, "
                                            "calibration, shift_calibration, certified, relations, all"):
        load_suite("robust")


class _Loader:
    def __init__(self, inputs: torch.Tensor) -> None:
        self.inputs = inputs

    def epoch(self, _: int):
        yield self.inputs, torch.zeros(len(self.inputs), dtype=torch.long)


def test_inputs_outside_unit_range_and_wrong_output_sizes_are_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    with pytest.raises(RobustKDError, match=r"inputs must lie in \[0, 1\]"):
        collect_logits(model, _Loader(torch.rand(2, 3, 4, 4) * 255), 10)
    with pytest.raises(RobustKDError, match=r"the model outputs \(10,\) per input; the dataset has 100 classes"):
        collect_logits(model, _Loader(torch.rand(2, 3, 4, 4)), 100)


def test_certified_suite_resumes_without_redoing_finished_images(checkpoint: Path, tmp_path: Path) -> None:
    def suite(max_images: int) -> Path:
        path = tmp_path / f"certified{max_images}.toml"
        path.write_text(f'suite = "certified"\nsigma = 0.25\nn0 = 10\nn = 200\nbatch_size = 100\nmax = {max_images}\nskip = 7\n'
                        'predict_n = 200\n')
        return path

    out = tmp_path / "results"
    # A first run certifies 3 images, then is "killed" before finishing the suite: simulate by keeping its
    # work folder and discarding the finished result, as an interrupted run leaves it.
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite(3)), "--out", str(out)]) == 0
    folder = next(p for p in out.iterdir() if p.is_dir())
    finished = folder / "certified"
    first_rows = (finished / "certify.tsv").read_text().splitlines()
    assert len(first_rows) == 4 and first_rows[0].startswith("index\tlabel")
    finished.rename(folder / ".certified.partial")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite(5)), "--out", str(out)]) == 0
    rows = (finished / "certify.tsv").read_text().splitlines()
    assert rows[:4] == first_rows and len(rows) == 6  # the first three lines untouched, two appended
    assert [int(line.split("\t")[0]) for line in rows[1:]] == [0, 7, 14, 21, 28]
    summary = json.loads((finished / "summary.json").read_text())
    metrics = summary["metrics"]
    assert metrics["n_certified"] == 5 and 0 <= metrics["certified_acc_r0.00"] <= 100
    assert 0 <= metrics["smoothed_acc"] <= 100 and 0 <= metrics["predict_abstain_rate"] <= 100
    assert metrics["certified_acc_r0.00"] >= metrics["certified_acc_r0.50"] >= metrics["certified_acc_r1.50"]
    assert (finished / "certified_accuracy.png").is_file() and summary["units"]["certified_acc_r0.25"] == "percent"


def test_certified_refuses_a_selection_of_one_class_from_a_periodic_test_file(tmp_path: Path) -> None:
    """The class-interleaved CIFAR-100 copy repeats its classes with period 100: every 100th image is one class.
    Seen in the study (2026-12-04): skip = 100 certified 100 images of class 0 alone."""
    from robustkd.data.dataset import ImageDataset
    from robustkd.evaluate.suites.certified import CertifiedParams, certify_dataset

    count, classes = 60, 10
    dataset = ImageDataset("periodic", "test", torch.randint(0, 256, (count, 3, 8, 8), dtype=torch.uint8),
                           torch.arange(count) % classes, tuple(map(str, range(classes))), (0.5,) * 3, (0.25,) * 3,
                           "generated")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, classes))
    one_class = CertifiedParams(n0=5, n=20, batch_size=20, skip=classes, predict_n=0)
    with pytest.raises(RobustKDError, match="every 10-th test image covers only 1 of 10 classes .* such as 9"):
        certify_dataset(model, dataset, one_class, tmp_path / "a", torch.device("cpu"))
    assert not (tmp_path / "a" / "certify.tsv").exists() or len((tmp_path / "a" / "certify.tsv").read_text()
                                                                  .splitlines()) <= 1  # nothing certified
    every_class = CertifiedParams(n0=5, n=20, batch_size=20, skip=classes - 1, predict_n=0)
    rows, _ = certify_dataset(model, dataset, every_class, tmp_path / "b", torch.device("cpu"))
    assert sorted(rows["label"]) == sorted(int(i * (classes - 1)) % classes for i in range(len(rows)))
    assert rows["label"].nunique() == min(len(rows), classes)
