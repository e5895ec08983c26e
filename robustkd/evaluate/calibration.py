"""Calibration metrics of a classifier's logits: ECE, MCE, adaptive ECE, NLL, Brier, temperature scaling.

Written here rather than imported: torchmetrics covers ECE/MCE but not adaptive ECE, per-bin tables or
temperature fitting, and netcal pulls in some 200 MB; these are a few tensor operations each.

Conventions (Guo et al. 2017): confidence = max softmax probability; ``n_bins`` equal-width bins
``(i/M, (i+1)/M]``, so a confidence of exactly 1.0 falls in the last bin (and one of exactly 0, impossible
for a softmax, in the first). ECE = sum_b (n_b / n) |acc_b - conf_b|; MCE = max over non-empty bins of
|acc_b - conf_b|; adaptive ECE uses ``n_bins`` equal-mass bins of the sorted confidences. NLL is the mean of
-log softmax(logits)[y]. Brier = mean over samples of sum over classes (p_c - 1[c = y])^2, in [0, 2].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CalibrationResult:
    ece: float
    mce: float
    adaptive_ece: float
    nll: float
    brier: float
    accuracy: float
    n: int
    bins: pd.DataFrame  # one row per equal-width bin: lower, upper, count, confidence, accuracy (NaN if empty)

    def summary(self) -> dict[str, float]:
        return {"ece": self.ece, "mce": self.mce, "adaptive_ece": self.adaptive_ece, "nll": self.nll,
                "brier": self.brier, "accuracy": self.accuracy, "n": self.n}


def bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Index of the ``(i/M, (i+1)/M]`` bin of each confidence; 0 goes to the first bin, 1 to the last."""
    inner_edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)[1:-1]
    return torch.bucketize(confidence.double(), inner_edges, right=False)


def _gap_table(confidence: torch.Tensor, correct: torch.Tensor, index: torch.Tensor, n_bins: int):
    count = torch.bincount(index, minlength=n_bins).double()
    conf_sum = torch.bincount(index, weights=confidence.double(), minlength=n_bins)
    hit_sum = torch.bincount(index, weights=correct.double(), minlength=n_bins)
    filled = count > 0
    mean_conf = torch.where(filled, conf_sum / count.clamp(min=1), torch.full_like(count, float("nan")))
    mean_acc = torch.where(filled, hit_sum / count.clamp(min=1), torch.full_like(count, float("nan")))
    return count, mean_conf, mean_acc, filled


def calibration_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> CalibrationResult:
    """Metrics of (N, C) ``logits`` against (N,) integer ``labels``; see the module docstring."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    logits, labels = logits.detach().double().cpu(), labels.detach().long().cpu()
    log_probs = F.log_softmax(logits, dim=1)
    probs = log_probs.exp()
    confidence, prediction = probs.max(dim=1)
    correct = prediction.eq(labels)
    n = len(labels)

    index = bin_index(confidence, n_bins)
    count, mean_conf, mean_acc, filled = _gap_table(confidence, correct, index, n_bins)
    gaps = (mean_acc - mean_conf).abs()
    ece = float((count[filled] / n * gaps[filled]).sum())
    mce = float(gaps[filled].max()) if filled.any() else 0.0

    order = confidence.argsort()
    mass_index = torch.empty(n, dtype=torch.long)
    for position, chunk in enumerate(np.array_split(order.numpy(), n_bins)):
        mass_index[torch.from_numpy(chunk)] = position
    m_count, m_conf, m_acc, m_filled = _gap_table(confidence, correct, mass_index, n_bins)
    adaptive_ece = float((m_count[m_filled] / n * (m_acc - m_conf).abs()[m_filled]).sum())

    nll = float(-log_probs.gather(1, labels[:, None]).mean())
    one_hot = F.one_hot(labels, logits.shape[1]).double()
    brier = float((probs - one_hot).pow(2).sum(dim=1).mean())
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count.long().numpy(),
                         "confidence": mean_conf.numpy(), "accuracy": mean_acc.numpy()})
    return CalibrationResult(ece, mce, adaptive_ece, nll, brier, float(correct.double().mean()), n, bins)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising the NLL of ``logits / T`` (held-out logits, (N, C)); LBFGS on log T."""
    logits, labels = logits.detach().double().cpu(), labels.detach().long().cpu()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
