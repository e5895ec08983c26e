"""Corruption-benchmark arithmetic on a (corruption x severity) accuracy table.

Definitions (Hendrycks & Dietterich, ICLR 2019), errors E = 1 - accuracy, all as fractions:

- ``corruptions_acc``: mean accuracy over all cells (RobustBench's field);
- ``mce_unnormalized`` = 1 - corruptions_acc;
- ``relative_mce_unnormalized`` = mean over corruptions c and severities s of (E_cs - E_clean);
- with a reference model r: ``CE_c = sum_s E_cs / sum_s E^r_cs``, ``mce`` = mean_c CE_c, and
  ``relative_mce`` = mean_c [sum_s (E_cs - E_clean) / sum_s (E^r_cs - E^r_clean)].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS
from robustkd.errors import RobustKDError


@dataclass(frozen=True)
class ReferenceErrors:
    """A reference model's mean error over the five severities per corruption, and its clean error."""

    name: str
    mean_error: dict[str, float]
    clean_error: float | None
    source: str


ALEXNET_IMAGENET_C = ReferenceErrors(
    name="alexnet",
    mean_error=dict(zip(BENCHMARK_CORRUPTIONS, (
        0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360,
        0.866816, 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500))),
    clean_error=0.435,
    source="AlexNet on ImageNet-C, per-corruption errors averaged over severities as published with the "
           "benchmark (hendrycks/robustness); clean error 43.5 % from the paper's Table 1 (rounded)",
)


def reference_from_summary(path: Path) -> ReferenceErrors:
    """Another model's corruption result (its ``summary.json`` and ``accuracy_grid.csv``) as reference."""
    summary_path = path if path.name == "summary.json" else path / "summary.json"
    grid_path = summary_path.with_name("accuracy_grid.csv")
    if not summary_path.is_file() or not grid_path.is_file():
        raise RobustKDError(f"reference: {path} is not a corruption result directory (summary.json + accuracy_grid.csv)")
    summary = json.loads(summary_path.read_text())
    if summary.get("suite") != "corruption":
        raise RobustKDError(f"reference: {summary_path} is a {summary.get('suite')!r} result, expected corruption")
    grid = pd.read_csv(grid_path, index_col="corruption")
    return ReferenceErrors(name=str(summary.get("name")), mean_error=(1.0 - grid.mean(axis=1)).to_dict(),
                           clean_error=1.0 - float(summary["clean_acc"]) / 100.0, source=str(summary_path))


def resolve_reference(spec: str, dataset: str) -> ReferenceErrors | None:
    if not spec:
        return None
    if spec == "alexnet":
        if dataset != "imagenet":
            raise RobustKDError("reference = \"alexnet\": AlexNet's published errors are for ImageNet-C; "
                                "for CIFAR give another model's corruption result directory")
        return ALEXNET_IMAGENET_C
    return reference_from_summary(Path(spec))


def corruption_summary(accuracy: pd.DataFrame, clean_accuracy: float,
                       reference: ReferenceErrors | None = None) -> dict[str, float]:
    """Headline metrics (fractions) from ``accuracy`` (index: corruption, columns: severities)."""
    if accuracy.empty:
        raise RobustKDError("corruption: no (corruption, severity) cell was evaluated")
    error = 1.0 - accuracy
    clean_error = 1.0 - clean_accuracy
    metrics = {
        "corruptions_acc": float(accuracy.to_numpy().mean()),
        "mce_unnormalized": float(error.to_numpy().mean()),
        "relative_mce_unnormalized": float((error - clean_error).to_numpy().mean()),
    }
    if reference is not None:
        missing = sorted(set(accuracy.index) - set(reference.mean_error))
        if missing:
            raise RobustKDError(f"reference {reference.name}: no errors for {', '.join(missing)}")
        if len(accuracy.columns) != 5:
            raise RobustKDError("reference-normalised mCE needs all five severities")
        ref_sum = pd.Series({c: 5 * reference.mean_error[c] for c in accuracy.index})
        metrics["mce"] = float((error.sum(axis=1) / ref_sum).mean())
        if reference.clean_error is not None:
            ref_gap = ref_sum - 5 * reference.clean_error
            metrics["relative_mce"] = float(((error - clean_error).sum(axis=1) / ref_gap).mean())
    return metrics
