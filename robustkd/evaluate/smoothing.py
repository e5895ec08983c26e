"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): prediction and certification.

The smoothed classifier is g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I), with noise added in input
space ([0, 1] pixels; the model normalises itself). This class holds the algorithm only; I/O, resumable
per-example output and analysis live elsewhere.

- ``certify(x)``: guess the top class from ``n0`` noise samples, count it in ``n`` fresh samples, take the
  one-sided (1 - alpha) Clopper-Pearson lower bound p_A of its probability; abstain if p_A < 1/2, else
  return the class and the certified L2 radius sigma * Phi^-1(p_A).
- ``predict(x)``: count ``n`` samples; return the top class if a two-sided binomial test of its count against
  the runner-up's rejects equality at level alpha, else abstain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

ABSTAIN = -1


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower confidence bound on a binomial proportion (0 if no successes)."""
    if successes <= 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


@dataclass(frozen=True)
class Certificate:
    prediction: int  # ABSTAIN (-1) or a class index
    radius: float  # certified L2 radius in input units; 0.0 when abstaining
    count: int  # samples (of n) that voted for the predicted class
    p_lower: float


class Smooth:
    """``model`` maps (B, 3, H, W) inputs in [0, 1] to (B, num_classes) logits; ``sigma`` is the noise level."""

    def __init__(self, model: nn.Module, num_classes: int, sigma: float) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.model = model
        self.num_classes = num_classes
        self.sigma = sigma

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int,
                generator: torch.Generator | None = None) -> Certificate:
        """Certify one input ``x`` (3, H, W)."""
        guess = int(self.sample_counts(x, n0, batch_size, generator).argmax())
        count = int(self.sample_counts(x, n, batch_size, generator)[guess])
        p_lower = clopper_pearson_lower(count, n, alpha)
        if p_lower < 0.5:
            return Certificate(ABSTAIN, 0.0, count, p_lower)
        return Certificate(guess, self.sigma * float(norm.ppf(p_lower)), count, p_lower)

    def predict(self, x: torch.Tensor, n: int, alpha: float, batch_size: int,
                generator: torch.Generator | None = None) -> int:
        """The smoothed prediction for one input ``x`` (3, H, W), or ABSTAIN."""
        counts = self.sample_counts(x, n, batch_size, generator)
        top2 = counts.topk(2)
        first, second = int(top2.values[0]), int(top2.values[1])
        if binomtest(first, first + second, 0.5).pvalue > alpha:
            return ABSTAIN
        return int(top2.indices[0])

    @torch.no_grad()
    def sample_counts(self, x: torch.Tensor, num: int, batch_size: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """(num_classes,) int64 counts of the base classifier's predictions on ``num`` noisy copies of ``x``."""
        was_training = self.model.training
        self.model.eval()
        counts = torch.zeros(self.num_classes, dtype=torch.long)
        remaining = num
        while remaining > 0:
            size = min(batch_size, remaining)
            batch = x.unsqueeze(0).expand(size, *x.shape)
            noise = torch.randn(batch.shape, generator=generator, device=x.device if generator is None else generator.device)
            predictions = self.model(batch + self.sigma * noise.to(x.device)).argmax(dim=1)
            counts += torch.bincount(predictions.cpu(), minlength=self.num_classes)
            remaining -= size
        self.model.train(was_training)
        return counts
