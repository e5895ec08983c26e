"""Reliability diagram: accuracy against confidence per bin, with the diagonal and a confidence histogram."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robustkd.evaluate.calibration import CalibrationResult  # noqa: E402
from robustkd.utils.atomic import write_with_atomic  # noqa: E402


def plot_reliability_diagram(result: CalibrationResult, path: Path, title: str = "") -> None:
    """Write a PNG: bars of per-bin accuracy (empty bins not drawn), the identity line, and below it the
    share of examples per bin. ``result.bins`` comes from ``calibration_metrics``."""
    bins = result.bins
    filled = bins[bins["count"] > 0]
    width = float(bins["upper"].iloc[0] - bins["lower"].iloc[0])
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(filled["lower"], filled["accuracy"], width=width, align="edge", edgecolor="black", color="#4c72b0", label="accuracy")
    top.bar(filled["lower"], filled["confidence"] - filled["accuracy"], bottom=filled["accuracy"], width=width,
            align="edge", color="#dd8452", alpha=0.5, label="gap to confidence")
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(title or f"ECE {100 * result.ece:.2f} %  (n = {result.n})")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(filled["lower"], filled["count"] / result.n, width=width, align="edge", edgecolor="black", color="#55a868")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("share")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    write_with_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
