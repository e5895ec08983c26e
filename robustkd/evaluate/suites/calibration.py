"""The calibration suite: metrics and reliability diagrams, before and after temperature scaling.

The temperature never sees an image the model trained on (robustkd/evaluate/temperature_fit.py): by default it
is cross-fitted on two class-stratified folds of the evaluated test images (each fold scaled by the temperature
fitted on the other); ``temperature_fit = "train_holdout"`` fits it on the last ``holdout`` training images and
is refused for a model that trained on any of them. The protocol says which data fitted it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robustkd.errors import RobustKDError
from robustkd.evaluate.calibration import calibration_metrics, fit_temperature
from robustkd.evaluate.context import SuiteContext
from robustkd.evaluate.held_out_logits import check_held_out, held_out_logits
from robustkd.evaluate.reliability import plot_reliability_diagram
from robustkd.evaluate.suite import Metric, Plot, Suite, SuiteOutput, register_suite
from robustkd.evaluate.suite_params import param
from robustkd.evaluate.temperature_fit import FITS, crossfit_temperatures
from robustkd.utils.atomic import write_text_atomic


@dataclass(frozen=True)
class CalibrationParams:
    """``temperature_fit``: crossfit (two class-stratified folds of the test images, default), train_holdout
    (the last ``holdout`` training images, for a model trained without them) or folder (``fit_folder``, images the
    user names held out); see robustkd/evaluate/held_out_logits.py."""

    batch_size: int = param(500, low=1)
    n_bins: int = param(15, low=1)
    temperature_fit: str = param("crossfit", choices=FITS)
    holdout: int = param(5000, low=1)
    fit_folder: str = param("", path=True)


_ERRORS = ("ece", "mce", "adaptive_ece")


@register_suite
class CalibrationSuite(Suite[CalibrationParams]):
    """Calibration on the clean test set, before and after temperature scaling fitted on held-out images."""

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
        Metric("temperature_fold_{fold}", "logit divisor", None),
    )
    plots = (Plot("reliability.png", "reliability diagram"),
             Plot("reliability_temperature_scaled.png", "reliability diagram after temperature scaling"))
    position = 40
    qualifiers = ("n_bins",)

    def check_model(self, params: CalibrationParams, model_info: dict[str, Any]) -> None:
        check_held_out(params, model_info)

    def run(self, ctx: SuiteContext, params: CalibrationParams, work: Path) -> SuiteOutput:
        fit = fitted_temperature(ctx, params)
        before = calibration_metrics(ctx.logits, ctx.labels, params.n_bins)
        after = calibration_metrics(fit.scale(ctx.logits), ctx.labels, params.n_bins)
        plot_reliability_diagram(before, work / "reliability.png")
        plot_reliability_diagram(after, work / "reliability_temperature_scaled.png",
                                 title=f"after temperature scaling (T = {fit.shown}): ECE {100 * after.ece:.2f} %")
        bins = pd.concat([before.bins.assign(scaling="none"), after.bins.assign(scaling="temperature")])
        write_text_atomic(work / "reliability_bins.csv", bins.to_csv(index=False))
        metrics = {key: value for key, value in before.summary().items() if key != "n"}
        metrics.update({f"{key}_ts": value for key, value in after.summary().items() if key not in ("n", "accuracy")})
        metrics.update(fit.metrics)
        return SuiteOutput(metrics, fit.protocol, {"temperature_fit": fit.images})


@dataclass(frozen=True)
class FittedTemperature:
    """Per-image temperatures and how they were fitted (``protocol``, ``metrics``, images used)."""

    per_image: torch.Tensor
    metrics: dict[str, float]
    protocol: dict[str, object]
    images: int
    shown: str

    def scale(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.per_image.to(logits.dtype)[:, None]


def fitted_temperature(ctx: SuiteContext, params) -> FittedTemperature:
    """The temperature of each evaluated test image under ``params.temperature_fit`` (see the module docstring)."""
    if params.temperature_fit == "crossfit":
        fit = crossfit_temperatures(ctx.logits, ctx.labels)
        first, second = fit.fold_temperatures
        return FittedTemperature(
            fit.per_image, {"temperature": (first + second) / 2, "temperature_fold_0": first, "temperature_fold_1": second},
            {"temperature_fit": "two-fold cross-fit on the evaluated test images (class-stratified; each fold "
             "scaled by the temperature fitted on the other)", "temperature_fit_folds": list(fit.fold_sizes),
             "temperature": "mean of the two fold temperatures"},
            len(ctx.labels), f"{first:.3f} / {second:.3f}")
    held_logits, held_labels, description = held_out_logits(ctx, params)
    temperature = fit_temperature(held_logits, held_labels)
    return FittedTemperature(torch.full((len(ctx.labels),), temperature, dtype=torch.float64,
                                        device=ctx.logits.device),
                             {"temperature": temperature}, {"temperature_fit": description},
                             len(held_labels), f"{temperature:.3f}")
