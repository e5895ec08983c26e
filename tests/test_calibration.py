"""Calibration metrics on hand-worked examples (including confidence exactly 1.0) and temperature fitting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from robustkd.evaluate.calibration import bin_index, calibration_metrics, fit_temperature
from robustkd.evaluate.reliability import plot_reliability_diagram


def _two_class_logits(confidences: list[float]) -> torch.Tensor:
    """Logits whose softmax is (p, 1 - p) for each p (p = 1.0 gives a -inf second logit)."""
    return torch.tensor([[0.0, math.log(1 - p) - math.log(p) if p < 1 else -math.inf] for p in confidences], dtype=torch.float64)


def test_hand_worked_ece_mce_nll_brier_with_confidence_one() -> None:
    # confidences 1.0 (right), 0.9 (right), 0.9 (wrong), 0.65 (right); predicted class is always 0.
    logits = _two_class_logits([1.0, 0.9, 0.9, 0.65])
    labels = torch.tensor([0, 0, 1, 0])
    result = calibration_metrics(logits, labels, n_bins=15)
    # bins: 1.0 -> (14/15, 1] gap 0; 0.9 x2 -> (13/15, 14/15] acc 0.5 gap 0.4; 0.65 -> (9/15, 10/15] gap 0.35
    assert result.bins["count"].tolist()[13:] == [2, 1] and result.bins["count"].iloc[9] == 1
    assert result.ece == pytest.approx(2 / 4 * 0.4 + 1 / 4 * 0.35)
    assert result.mce == pytest.approx(0.4)
    assert result.nll == pytest.approx((0 - math.log(0.9) - math.log(0.1) - math.log(0.65)) / 4)
    # Brier, summed over classes: 0, 0.1^2 + 0.1^2, 0.9^2 + 0.9^2, 0.35^2 + 0.35^2
    assert result.brier == pytest.approx((0 + 0.02 + 1.62 + 0.245) / 4)
    assert result.accuracy == pytest.approx(0.75) and result.n == 4


def test_adaptive_ece_uses_equal_mass_bins() -> None:
    logits = _two_class_logits([0.6, 0.7, 0.8, 0.95])
    labels = torch.tensor([0, 1, 0, 0])
    result = calibration_metrics(logits, labels, n_bins=2)
    # {0.6 right, 0.7 wrong}: gap |0.5 - 0.65| = 0.15; {0.8, 0.95 right}: gap |1 - 0.875| = 0.125
    assert result.adaptive_ece == pytest.approx(0.5 * 0.15 + 0.5 * 0.125)
    # equal-width, 2 bins: all four in (0.5, 1]: |0.75 - 0.7625| = 0.0125
    assert result.ece == pytest.approx(0.0125)


def test_bin_edges_are_upper_inclusive() -> None:
    confidence = torch.tensor([0.0, 1 / 15, 0.5, 14 / 15, 1.0], dtype=torch.float64)
    assert bin_index(confidence, 15).tolist() == [0, 0, 7, 13, 14]


def test_perfectly_calibrated_predictions_have_near_zero_ece() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(40000, 10, generator=generator, dtype=torch.float64) * 2
    labels = torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)
    result = calibration_metrics(logits, labels)
    assert result.ece < 0.01 and result.adaptive_ece < 0.01


def test_temperature_scaling_recovers_an_overconfidence_factor() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(20000, 10, generator=generator, dtype=torch.float64) * 2
    labels = torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)
    temperature = fit_temperature(3.0 * logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.05)
    assert calibration_metrics(3.0 * logits / temperature, labels).ece < calibration_metrics(3.0 * logits, labels).ece


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"expected logits \(N, C\) and labels \(N,\)"):
        calibration_metrics(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def test_reliability_diagram_is_written(tmp_path: Path) -> None:
    result = calibration_metrics(_two_class_logits([1.0, 0.9, 0.9, 0.65]), torch.tensor([0, 0, 1, 0]))
    plot_reliability_diagram(result, tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_crossfit_folds_and_temperatures_match_an_independent_computation() -> None:
    """Folds: the k-th image of each class (test order) in fold k % 2; each fold's images scaled by the temperature
    that minimises the other fold's NLL (scipy's bounded scalar search on numpy's log-softmax)."""
    import numpy as np
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    from robustkd.evaluate.temperature_fit import crossfit_folds, crossfit_temperatures

    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 7, (301,), generator=generator)
    logits = 3.0 * torch.randn(301, 7, generator=generator) + 4.0 * torch.nn.functional.one_hot(labels, 7)
    seen: dict[int, int] = {}
    expected_folds = []
    for label in labels.tolist():
        expected_folds.append(seen.get(label, 0) % 2)
        seen[label] = seen.get(label, 0) + 1
    folds = crossfit_folds(labels)
    assert folds.tolist() == expected_folds

    def nll(temperature: float, rows: np.ndarray) -> float:
        scaled = log_softmax(logits.numpy()[rows].astype(np.float64) / temperature, axis=1)
        return float(-scaled[np.arange(rows.sum()), labels.numpy()[rows]].mean())

    fold = np.array(expected_folds)
    fitted = [minimize_scalar(nll, bounds=(0.05, 20.0), args=(fold == k,), method="bounded",
                              options={"xatol": 1e-8}).x for k in (0, 1)]
    fit = crossfit_temperatures(logits, labels)
    assert fit.fold_temperatures == pytest.approx(tuple(fitted), rel=1e-4)
    assert fit.fold_sizes == (int((fold == 0).sum()), int((fold == 1).sum()))
    applied = np.where(fold == 0, fitted[1], fitted[0])  # each fold scaled by the other fold's temperature
    assert fit.per_image.numpy() == pytest.approx(applied, rel=1e-4)
    assert fitted[0] != pytest.approx(fitted[1], rel=1e-3)  # the test can tell the folds apart


def test_crossfit_needs_two_images() -> None:
    from robustkd.errors import RobustKDError
    from robustkd.evaluate.temperature_fit import crossfit_temperatures

    with pytest.raises(RobustKDError, match="at least 2 test images"):
        crossfit_temperatures(torch.zeros(1, 3), torch.zeros(1, dtype=torch.int64))
