"""Uncertainty over seeds *and* test images for per-image metrics, and Holm's family-wise adjustment.

A seed-level t-interval treats each seed's accuracy as exact, although it is itself a mean over a finite set of
test images: on 500 certified images one model's binomial standard error is about 2 points. For a metric that
is a mean of per-image scores (clean and adversarial correctness, certified correctness at a radius), the
hierarchical bootstrap resamples both levels: per draw, seeds with replacement (the same seeds for both methods:
they are paired) and test images with replacement (the same images for both methods and every drawn seed), and
takes the mean over the drawn (seed, image) cells of ``score_a - score_b``. The percentile interval of those
draws accounts for both sources of variation (Davison & Hinkley 1997, ch. 3.8, resampling at both stages).

``holm`` adjusts the p-values of a family of tests (a verdict table) so that the chance of any false
"better/worse" is at most alpha (Holm 1979, step-down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CHUNK = 250


@dataclass(frozen=True)
class BootstrapInterval:
    """Mean difference (a - b) over every (seed, image) cell, its percentile interval, and the sizes."""

    mean: float
    low: float
    high: float
    p_value: float  # two-sided: twice the smaller share of draws on either side of 0 (at most 1)
    seeds: int
    images: int
    resamples: int


def hierarchical_bootstrap(scores_a: np.ndarray, scores_b: np.ndarray, *, confidence: float = 0.95,
                           resamples: int = RESAMPLES, seed: int = 0) -> BootstrapInterval:
    """``scores_a``/``scores_b``: (seeds, images) per-image scores of two methods, row s of both from seed s and
    column i of both from image i. Deterministic for a given ``seed``."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"hierarchical_bootstrap: expected two (seeds, images) arrays of one shape, got {a.shape}, {b.shape}")
    difference = a - b
    seeds, images = difference.shape
    generator = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for start in range(0, resamples, CHUNK):
        count = min(CHUNK, resamples - start)
        seed_weights = np.stack([np.bincount(row, minlength=seeds)
                                 for row in generator.integers(0, seeds, (count, seeds))]).astype(np.float64)
        image_weights = np.stack([np.bincount(row, minlength=images)
                                  for row in generator.integers(0, images, (count, images))]).astype(np.float64)
        # sum over drawn seeds s and drawn images i of D[s, i] = w_seed @ D @ w_image, per draw
        draws[start:start + count] = np.einsum("rs,si,ri->r", seed_weights, difference, image_weights) / (seeds * images)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    p_value = min(1.0, 2 * min(float((draws <= 0).mean()), float((draws >= 0).mean())))
    return BootstrapInterval(float(difference.mean()), float(low), float(high), p_value, seeds, images, resamples)


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted in the family)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    family = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (family - rank) * p[index]))
        adjusted[index] = running
    return adjusted
