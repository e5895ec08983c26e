"""Randomized smoothing: the Clopper-Pearson bound, radii for given counts, abstention, prediction."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binom, norm
from torch import nn

from robustkd.evaluate.smoothing import (ABSTAIN, ESTIMATION, SELECTION, Smooth, clopper_pearson_lower,
                                         inference_model, noise_batches)


class ConstantModel(nn.Module):
    """Always predicts ``label`` (a base classifier whose smoothed vote is unanimous)."""

    def __init__(self, label: int, classes: int = 10) -> None:
        super().__init__()
        self.label, self.classes = label, classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), self.classes)
        logits[:, self.label] = 1.0
        return logits


class SignModel(nn.Module):
    """Class 1 if the mean pixel exceeds 0.5, else class 0: the vote share depends on sigma."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-score, score], dim=1)


def test_unanimous_votes_give_the_closed_form_bound_and_radius() -> None:
    # With all n samples for class A, the one-sided Clopper-Pearson bound solves p^n = alpha.
    n, alpha, sigma = 100_000, 0.001, 0.25
    assert clopper_pearson_lower(n, n, alpha) == pytest.approx(alpha ** (1 / n), rel=1e-12)
    smooth = Smooth(ConstantModel(3), 10, sigma)
    certificate = smooth.certify(torch.rand(3, 8, 8), n0=100, n=n, alpha=alpha, batch_size=10_000)
    assert certificate.prediction == 3 and certificate.count == n
    assert certificate.radius == pytest.approx(sigma * norm.ppf(alpha ** (1 / n)), rel=1e-9)
    assert certificate.radius == pytest.approx(0.953, abs=0.001)  # 0.25 * Phi^-1(0.9999309)


@pytest.mark.parametrize("successes, trials", [(60, 100), (9_990, 10_000), (512, 1_000)])
def test_lower_bound_has_exact_coverage(successes: int, trials: int) -> None:
    # Clopper-Pearson: P(X >= successes | p = p_lower) = alpha exactly.
    alpha = 0.001
    p_lower = clopper_pearson_lower(successes, trials, alpha)
    assert binom.sf(successes - 1, trials, p_lower) == pytest.approx(alpha, rel=1e-6)


def test_abstains_when_the_bound_is_below_one_half() -> None:
    smooth = Smooth(SignModel(), 2, sigma=0.5)
    x = torch.full((3, 4, 4), 0.5)  # on the decision boundary: votes split about evenly
    certificate = smooth.certify(x, n0=100, n=1000, alpha=0.001, batch_size=500, seed=0)
    assert certificate.prediction == ABSTAIN and certificate.radius == 0.0
    assert smooth.predict(x, n=1000, alpha=0.001, batch_size=500, seed=1) == ABSTAIN


def test_clear_inputs_are_certified_and_predicted() -> None:
    smooth = Smooth(SignModel(), 2, sigma=0.25)
    x = torch.full((3, 4, 4), 0.6)  # mean of 48 noisy pixels: 0.6 + N(0, 0.25^2 / 48) > 0.5 almost always
    certificate = smooth.certify(x, n0=100, n=2000, alpha=0.001, batch_size=1000, seed=0)
    assert certificate.prediction == 1 and certificate.radius > 0.5
    assert smooth.predict(x, n=500, alpha=0.001, batch_size=500, seed=2) == 1


def test_counts_sum_to_the_number_of_samples_and_model_mode_is_restored() -> None:
    model = SignModel().train()
    counts = Smooth(model, 2, 0.1).sample_counts(torch.rand(3, 4, 4), 777, 100, seed=0)
    assert int(counts.sum()) == 777 and model.training


def test_sigma_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sigma must be positive"):
        Smooth(SignModel(), 2, 0.0)
    assert math.isfinite(clopper_pearson_lower(0, 10, 0.001)) and clopper_pearson_lower(0, 10, 0.001) == 0.0


class TinyConvNet(nn.Module):
    """A small convolutional base classifier with BatchNorm (non-trivial running statistics)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Linear(32, 5))
        self.body[1].running_mean.uniform_(-0.2, 0.2)
        self.body[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_noise_stream_does_not_depend_on_the_batch_size() -> None:
    def stream(batch_size: int, chunk: int = 16, stream_id: int = ESTIMATION) -> torch.Tensor:
        return torch.cat(list(noise_batches((3, 4, 5), 100, batch_size, seed=7, stream=stream_id,
                                            device=torch.device("cpu"), chunk=chunk)))
    reference = stream(100)
    assert reference.shape == (100, 3, 4, 5) and reference.is_contiguous(memory_format=torch.channels_last)
    for batch_size in (1, 7, 16, 33, 1000):
        assert torch.equal(stream(batch_size), reference)
    assert not torch.equal(stream(100, chunk=32), reference)  # the chunk is part of the stream's definition
    assert not torch.equal(stream(100, stream_id=SELECTION), reference)
    assert abs(float(reference.mean())) < 0.05 and abs(float(reference.std()) - 1) < 0.05


def test_certificates_are_reproducible_and_independent_of_the_batch_size() -> None:
    smooth = Smooth(TinyConvNet().eval(), 5, sigma=0.5, noise_chunk=64)
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(3))
    counts = smooth.sample_counts(x, 1000, 1000, seed=11)
    assert counts.dtype == torch.long and int(counts.sum()) == 1000 and int((counts > 0).sum()) >= 2
    for batch_size in (37, 64, 250):
        assert torch.equal(smooth.sample_counts(x, 1000, batch_size, seed=11), counts)
    assert not torch.equal(smooth.sample_counts(x, 1000, 1000, seed=12), counts)
    first = smooth.certify(x, 50, 1000, 0.001, 128, seed=5)
    assert smooth.certify(x, 50, 1000, 0.001, 1000, seed=5) == first


def test_inference_copy_folds_batchnorm_and_keeps_the_votes() -> None:
    model = TinyConvNet().train()
    base, folded = inference_model(model)
    assert folded and model.training and not any(isinstance(m, nn.BatchNorm2d) for m in base.modules())
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(base(x), model.eval()(x), rtol=1e-4, atol=1e-5)
    counts = [Smooth(m, 5, 0.5).sample_counts(x[0], 500, 500, seed=1) for m in (base, model)]
    assert torch.equal(counts[0], counts[1])


def test_reduced_precision_is_an_explicit_option() -> None:
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(4))
    counts = Smooth(TinyConvNet().eval(), 5, 0.5, autocast_dtype=torch.bfloat16).sample_counts(x, 300, 300, seed=2)
    assert int(counts.sum()) == 300
    assert Smooth(TinyConvNet(), 5, 0.5).autocast_dtype is None
