"""The clean suite: top-1, top-5, per-class accuracy (CSV), the confusion matrix (CSV), in percent, and every
image's prediction (``predictions.csv``: position, label, prediction; what image-level intervals resample)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from robustkd.evaluate.context import SuiteContext
from robustkd.evaluate.suite import Metric, Suite, SuiteOutput, register_suite
from robustkd.evaluate.suite_params import param
from robustkd.utils.atomic import write_text_atomic


@dataclass(frozen=True)
class CleanParams:
    batch_size: int = param(500, low=1)


@register_suite
class CleanSuite(Suite[CleanParams]):
    """Top-1/top-5 on the clean test set (the context's logits); per-class accuracy and confusion CSVs."""

    name = "clean"
    params = CleanParams
    metrics = (Metric("top1", "percent", True, column="clean_acc"), Metric("top5", "percent", True))
    position = 10

    def run(self, ctx: SuiteContext, params: CleanParams, work: Path) -> SuiteOutput:
        return SuiteOutput(run_clean(ctx.logits, ctx.labels, ctx.classes, work))


def run_clean(logits: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], out_dir: Path) -> dict[str, float]:
    num_classes = len(classes)
    top5 = logits.topk(min(5, num_classes), dim=1).indices
    hits = top5.eq(labels[:, None])
    predictions = top5[:, 0]
    confusion = torch.bincount(labels * num_classes + predictions, minlength=num_classes**2).view(num_classes, num_classes)
    support = confusion.sum(dim=1)
    per_class = pd.DataFrame({
        "class_index": range(num_classes), "class_name": classes, "support": support.numpy(),
        "accuracy": (100.0 * confusion.diagonal().double() / support.clamp(min=1)).numpy(),
    })
    write_text_atomic(out_dir / "per_class.csv", per_class.to_csv(index=False))
    matrix = pd.DataFrame(confusion.numpy(), index=pd.Index(classes, name="true"), columns=list(classes))
    write_text_atomic(out_dir / "confusion_matrix.csv", matrix.to_csv())
    images = pd.DataFrame({"index": range(len(labels)), "label": labels.numpy(), "prediction": predictions.numpy()})
    write_text_atomic(out_dir / "predictions.csv", images.to_csv(index=False))
    return {"top1": 100.0 * float(hits[:, 0].double().mean()), "top5": 100.0 * float(hits.any(dim=1).double().mean())}
