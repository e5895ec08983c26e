"""The calibration suite: metrics and reliability diagrams, before and after temperature scaling.

The temperature is fitted on held-out logits (the last ``holdout`` training images); the JSON records
whether those images were part of the model's training prefix (then the fit is optimistic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from robustkd.data.loader import TensorBatchLoader
from robustkd.data.sources import load_image_dataset
from robustkd.evaluate.calibration import calibration_metrics, fit_temperature
from robustkd.evaluate.context import SuiteContext
from robustkd.evaluate.predictions import collect_logits
from robustkd.evaluate.reliability import plot_reliability_diagram
from robustkd.evaluate.suite import Metric, Need, Plot, Suite, SuiteOutput, register_suite
from robustkd.evaluate.suite_params import param
from robustkd.utils.atomic import write_text_atomic


@dataclass(frozen=True)
class CalibrationParams:
    batch_size: int = param(500, low=1)
    n_bins: int = param(15, low=1)
    holdout: int = param(5000, low=1)


_ERRORS = ("ece", "mce", "adaptive_ece")


@register_suite
class CalibrationSuite(Suite[CalibrationParams]):
    """Calibration on the clean test set, before and after temperature scaling fitted on a training hold-out."""

    name = "calibration"
    params = CalibrationParams
    metrics = (
        Metric("accuracy", "fraction", True),
        Metric("ece", "fraction", False, column="ece", column_unit="fraction (15 bins)"),
        Metric("mce", "fraction", False), Metric("adaptive_ece", "fraction", False),
        Metric("nll", "nats", False, column="nll"),
        Metric("brier", "sum over classes, [0, 2]", False, column="brier"),
        *(Metric(f"{key}_ts", "fraction", False) for key in _ERRORS),
        Metric("nll_ts", "nats", False), Metric("brier_ts", "sum over classes, [0, 2]", False),
        Metric("temperature", "logit divisor", None),
    )
    plots = (Plot("reliability.png", "reliability diagram"),
             Plot("reliability_temperature_scaled.png", "reliability diagram after temperature scaling"))
    needs = frozenset({Need.TRAIN_SPLIT})
    position = 40
    qualifiers = ("n_bins",)

    def run(self, ctx: SuiteContext, params: CalibrationParams, work: Path) -> SuiteOutput:
        held_logits, held_labels, seen = holdout_logits(ctx, params)
        metrics = run_calibration(ctx.logits, ctx.labels, held_logits, held_labels, params.n_bins, work)
        return SuiteOutput(metrics, {"temperature_fit": f"last {params.holdout} training images",
                                     "holdout_seen_in_training": seen}, {"temperature_fit": len(held_labels)})


def holdout_logits(ctx: SuiteContext, params: CalibrationParams) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Logits of the last ``holdout`` training images, and whether the model trained on any of them."""
    train = load_image_dataset(ctx.dataset, "train", ctx.data_dir, allow_embedded=ctx.allow_embedded,
                               announce=lambda _: None)
    start = max(0, len(train) - params.holdout)
    held = train.rows(start, len(train), f"last {len(train) - start}")
    loader = TensorBatchLoader(held, params.batch_size, ctx.device, train=False)
    logits, labels = collect_logits(ctx.model, loader, ctx.num_classes)
    trained_on = ctx.model_info.get("n_train")
    seen = trained_on is None or start < int(trained_on)
    return logits, labels, seen


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
