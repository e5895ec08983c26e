"""Per-image scores of a finished result folder, for the metrics that are means over images (percent).

``clean`` top1: ``predictions.csv`` (prediction == label); ``adversarial`` ``robust_acc_<attack>``:
``examples.csv``'s ``robust`` of that attack; ``certified`` ``certified_acc_r<r>``: ``certify.tsv``'s correct
certificates of radius >= r; ``corruption`` ``corruptions_acc``: ``per_image.csv``'s share of the cells in which
the image was classified correctly (``mce_unnormalized``: 100 minus it). Each is a Series in [0, 100] (0 or 100
but for corruption) indexed by the image's position among the evaluated images; None for a metric without
per-image files (or a result written before they existed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd


def per_image_scores(result_dir: str | Path, suite: str, metric: str) -> pd.Series | None:
    folder = Path(result_dir)
    if suite == "clean" and metric == "top1" and (folder / "predictions.csv").is_file():
        rows = pd.read_csv(folder / "predictions.csv", index_col="index")
        return 100.0 * rows["prediction"].eq(rows["label"]).astype(float)
    attack = re.fullmatch(r"robust_acc_(.+)", metric)
    if suite == "adversarial" and attack and (folder / "examples.csv").is_file():
        rows = pd.read_csv(folder / "examples.csv")
        chosen = rows[rows["attack"] == attack.group(1)].set_index("index").sort_index()
        return 100.0 * chosen["robust"].astype(float) if len(chosen) else None
    radius = re.fullmatch(r"certified_acc_r([0-9.]+)", metric)
    if suite == "certified" and radius and (folder / "certify.tsv").is_file():
        rows = pd.read_csv(folder / "certify.tsv", sep="\t").set_index("index").sort_index()
        return 100.0 * (rows["correct"].eq(1) & (rows["radius"] >= float(radius.group(1)))).astype(float)
    if suite == "corruption" and metric in ("corruptions_acc", "mce_unnormalized") and \
            (folder / "per_image.csv").is_file():
        rows = pd.read_csv(folder / "per_image.csv", index_col="index").sort_index()
        share = 100.0 * rows["cells_correct"].astype(float) / rows["cells"].astype(float)
        return share if metric == "corruptions_acc" else 100.0 - share
    return None
