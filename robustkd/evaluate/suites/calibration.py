"""The calibration suite: metrics and reliability diagrams, before and after temperature scaling.

The temperature is fitted on held-out logits (the last ``holdout`` training images); the JSON records
whether those images were part of the model's training prefix (then the fit is optimistic).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from robustkd.evaluate.calibration import calibration_metrics, fit_temperature
from robustkd.evaluate.reliability import plot_reliability_diagram
from robustkd.utils.atomic import write_text_atomic


def run_calibration(logits: torch.Tensor, labels: torch.Tensor, holdout_logits: torch.Tensor, holdout_labels: torch.Tensor,
                    n_bins: int, out_dir: Path) -> dict[str, float]:
    before = calibration_metrics(logits, labels, n_bins)
    temperature = fit_temperature(holdout_logits, holdout_labels)
    after = calibration_metrics(logits / temperature, labels, n_bins)
    plot_reliability_diagram(before, out_dir / "reliability.png")
    plot_reliability_diagram(after, out_dir / "reliability_temperature_scaled.png",
                             title=f"after temperature scaling (T = {temperature:.3f}): ECE {100 * after.ece:.2f} %")
    bins = pd.concat([before.bins.assign(scaling="none"), after.bins.assign(scaling="temperature")])
    write_text_atomic(out_dir / "reliability_bins.csv", bins.to_csv(index=False))
    metrics = {f"{key}": value for key, value in before.summary().items() if key != "n"}
    metrics.update({f"{key}_ts": value for key, value in after.summary().items() if key not in ("n", "accuracy")})
    metrics["temperature"] = temperature
    return metrics
