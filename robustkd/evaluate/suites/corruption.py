"""The corruption suite: accuracy and calibration on every (corruption, severity) cell, then mCE.

Cells come from the official files when ``source`` is ``official`` (or ``auto`` with ``official_dir``
holding them), else from the engine, generated batch by batch on the evaluation device with the same
per-image seeds as ``robustkd corrupt`` (so both give the same images). Each finished cell is appended
to ``cells.csv`` in the work folder; a killed run resumes after the last finished cell. Cells are the work items
that shards share (robustkd/evaluate/sharding.py): a cell is evaluated whole by one process. Each cell's
predictions are kept (``cell_predictions/<corruption>-s<severity>.npy``, int16, written before the cell's row), and
``per_image.csv`` counts, per evaluated image, the cells it was classified correctly in: the per-image form of
``corruptions_acc`` (its mean over images is that accuracy), read by ``compare --interval images``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from robustkd.checkpoint.io import sha256_file  # noqa: E402
from robustkd.corruptions.catalog import (BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES,  # noqa: E402
                                           check_corruption)
from robustkd.corruptions.engine import corrupt  # noqa: E402
from robustkd.corruptions.layout import imagenet_c_folder, npy_available, read_severity_block  # noqa: E402
from robustkd.corruptions.official_check import check_for_dataset, check_npy_files  # noqa: E402
from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.evaluate.finite import nonfinite_count, raise_if_nonfinite  # noqa: E402
from robustkd.evaluate.calibration import calibration_metrics  # noqa: E402
from robustkd.evaluate.context import SuiteContext  # noqa: E402
from robustkd.evaluate.corruption_metrics import corruption_summary, resolve_reference  # noqa: E402
from robustkd.evaluate.shard_table import ShardTable  # noqa: E402
from robustkd.evaluate.sharding import SINGLE, Shard  # noqa: E402
from robustkd.evaluate.suite import Metric, Plot, Suite, SuiteOutput, register_suite  # noqa: E402
from robustkd.evaluate.suite_params import param  # noqa: E402
from robustkd.evaluate.test_images import TestImages  # noqa: E402
from robustkd.utils.atomic import write_text_atomic, write_with_atomic  # noqa: E402

CELL_COLUMNS = ["corruption", "severity", "n", "accuracy", "ece", "nll", "source"]
PREDICTIONS_DIR = "cell_predictions"


@dataclass(frozen=True)
class CorruptionParams:
    """``source``: auto (official files when ``official_dir`` holds them all, else generated), generated or
    official; ``reference``: "alexnet" (ImageNet-C) or another model's corruption result folder for the
    normalised mCE ("" for none)."""

    batch_size: int = param(500, low=1)
    source: str = param("auto", choices=("auto", "generated", "official"))
    official_dir: str = param("", path=True)
    corruptions: tuple[str, ...] = param(BENCHMARK_CORRUPTIONS, nonempty=True,
                                         choices=BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
    severities: tuple[int, ...] = param(SEVERITIES, nonempty=True, low=1, high=5)
    seed: int = param(0, low=0)
    n_bins: int = param(15, low=1)
    reference: str = param("", path=True, reserved=("alexnet",))


@register_suite
class CorruptionSuite(Suite[CorruptionParams]):
    """Accuracy and ECE on every (corruption, severity) cell; mean corruption accuracy and mCE."""

    name = "corruption"
    params = CorruptionParams
    metrics = (
        Metric("corruptions_acc", "percent", True, column="corruption_acc"),
        Metric("mce_unnormalized", "percent", False, column="mce",
               column_unit="percent (1 - mean accuracy over the cells)"),
        Metric("relative_mce_unnormalized", "percent", False),
        Metric("mce", "percent", False), Metric("relative_mce", "percent", False),
        Metric("acc_severity_{severity}", "percent", True), Metric("ece_severity_{severity}", "fraction", False),
        Metric("ece_corrupted_mean", "fraction", False), Metric("acc_{corruption}", "percent", True),
    )
    plots = (Plot("accuracy_heatmap.png", "corruption accuracy heatmap"),
             Plot("accuracy_vs_severity.png", "accuracy and ECE vs severity"))
    resumable = True
    extends = frozenset({"corruptions", "severities", "batch_size"})
    position = 20
    qualifiers = ("source",)

    def check(self, params: CorruptionParams) -> None:
        _require_official_dir(params)
        folder = Path(params.official_dir) if params.source != "generated" and params.official_dir else None
        if folder is not None and folder.is_dir() and all(npy_available(folder, name) for name in params.corruptions):
            check_npy_files(folder, params.corruptions)  # every file whole, before anything runs

    def check_inputs(self, params: CorruptionParams, dataset: str, test_labels) -> None:
        """Official files: present, whole, of ``dataset``'s image size and classes, covering the clean pass
        (robustkd/corruptions/official_check.py); nothing to read for generated cells."""
        source = resolve_source(params, dataset)
        if source.kind == "official":
            check_for_dataset(source.folder, params.corruptions, dataset, test_labels)

    def run(self, ctx: SuiteContext, params: CorruptionParams, work: Path) -> SuiteOutput | None:
        source = resolve_source(params, ctx.dataset)
        cells = evaluate_cells(ctx.model, ctx.images, params, source, ctx.dataset, ctx.device, work, ctx.shard)
        if cells is None:
            return None
        metrics = summarise_cells(cells, ctx.clean_accuracy, params, ctx.dataset, work)
        write_per_image(work, cells, ctx.images.labels)
        protocol = {"source": source.kind, "official_dir": str(source.folder) if source.folder else None,
                    "cell_sources": source_record(source, params, ctx.dataset),
                    "parameters": "cifar (make_cifar_c.py)" if ctx.images.image_size == 32 else
                    "imagenet (make_imagenet_c.py)", "ece_bins": params.n_bins, "definitions": "docs/corruptions.md"}
        return SuiteOutput(metrics, protocol, {"per_cell": int(cells["n"].min())})

    def recorded_details(self, result_dir: Path) -> dict[str, tuple[float, str]]:
        """Every cell's accuracy (percent) from ``accuracy_grid.csv``, as ``cell_acc:<corruption>:<severity>``."""
        grid = result_dir / "accuracy_grid.csv"
        if not grid.is_file():
            return {}
        table = pd.read_csv(grid, index_col="corruption")
        return {f"cell_acc:{corruption}:{int(severity)}": (100.0 * float(value), "percent")
                for corruption, row in table.iterrows() for severity, value in row.items()}


@dataclass(frozen=True)
class CellSource:
    """Where the images of the cells come from: ``generated`` (engine) or ``official`` (files)."""

    kind: str
    folder: Path | None


def _require_official_dir(params: CorruptionParams) -> None:
    if params.source == "official" and not params.official_dir:
        raise RobustKDError("corruption suite: source = \"official\" needs official_dir (the CIFAR-C .npy folder "
                            "or the ImageNet-C root)")


def resolve_source(params: CorruptionParams, dataset: str) -> CellSource:
    _require_official_dir(params)
    folder = Path(params.official_dir) if params.official_dir else None
    if params.source == "generated" or folder is None:
        return CellSource("generated", None)
    if not folder.is_dir():
        raise RobustKDError(f"corruption suite: official_dir {folder} does not exist")
    if params.source == "auto":
        missing = [name for name in params.corruptions
                   if not (npy_available(folder, name) if dataset != "imagenet" else (folder / name).is_dir())]
        if missing:  # never a silent switch to generated images: the configured folder was meant to be used
            raise RobustKDError(f"corruption suite: official_dir {folder} lacks {', '.join(missing)}; provide them, "
                                "or set source = \"generated\" to generate every cell")
    return CellSource("official", folder)


def source_record(source: CellSource, params: CorruptionParams, dataset: str) -> dict[str, str]:
    """Per corruption, where its cells' images came from: the official file with its sha256 (CIFAR-C) or
    folder (ImageNet-C), or the engine with its seed."""
    if source.kind == "generated":
        return {name: f"generated by the engine (seed {params.seed})" for name in params.corruptions}
    if dataset == "imagenet":
        return {name: f"official folder {source.folder / name}" for name in params.corruptions}
    return {name: f"official file {source.folder / (name + '.npy')} sha256 {sha256_file(source.folder / (name + '.npy'))}"
            for name in params.corruptions}


@torch.no_grad()
def cell_logits(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    all_logits, all_labels = [], []
    for images, labels in batches:
        # channels_last: the files' own HWC order, and the faster convolution layout on CPU (measured).
        inputs = images.to(device, non_blocking=True).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        all_logits.append(model(inputs).float().cpu())
        all_labels.append(labels.cpu())
    logits = torch.cat(all_logits)
    raise_if_nonfinite(int(nonfinite_count(logits)), logits.numel(), f"on {len(logits)} corrupted images")
    return logits, torch.cat(all_labels)


def generated_cell(clean: TestImages, name: str, severity: int, seed: int, batch_size: int, device: torch.device
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The (corrupted uint8 images, labels) batches of one cell: image at position p seeded by (seed, p)."""
    for start, images, labels in clean.all_batches(batch_size):
        yield corrupt(images.to(device), name, severity, seed=seed, first_index=start), labels


def _official_npy(folder: Path, name: str, severity: int, indices: list[int], batch_size: int
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The cell's images at the evaluated test-set ``indices`` (a prefix, or a named selection)."""
    images, labels = read_severity_block(folder, name, severity, max(indices) + 1 if indices else 0)
    chosen = torch.as_tensor(indices, dtype=torch.int64, device=labels.device)  # indices into the file's rows
    chosen = chosen[chosen < len(labels)]  # a short file yields fewer images: _check_official_cell refuses it
    for start in range(0, len(chosen), batch_size):
        rows = chosen[start:start + batch_size]
        yield images[rows], labels[rows]


def _official_imagenet(folder: Path, name: str, severity: int, indices: list[int], batch_size: int
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The cell's images at the evaluated validation ``indices``, decoded by DataLoader workers."""
    from torchvision import datasets, transforms

    images = datasets.ImageFolder(str(imagenet_c_folder(folder, name, severity)), transform=transforms.PILToTensor())
    available = [index for index in indices if index < len(images)]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(images, available), batch_size=batch_size,
                                         num_workers=min(8, os.cpu_count() or 1))
    yield from loader


def evaluate_cells(model: nn.Module, clean: TestImages, params, source: CellSource, dataset: str,
                   device: torch.device, work_dir: Path, shard: Shard = SINGLE) -> pd.DataFrame | None:
    """Evaluate this process's requested cells not yet in ``work_dir/cells.csv``; returns all requested cells, or
    None in a process that does not summarise."""
    for name in params.corruptions:
        check_corruption(name)
    table = ShardTable(work_dir, "cells.csv", CELL_COLUMNS, shard, key=("corruption", "severity"))
    finished = {(name, int(severity)) for name, severity in table.keys("corruption", "severity")}
    cells = [(name, severity) for name in params.corruptions for severity in params.severities]
    todo = shard.todo(cells, lambda cell: cell in finished, "corruption cells")
    show = os.environ.get("ROBUSTKD_PROGRESS", "1") != "0"
    model.eval()
    for name, severity in tqdm(todo, desc="corruption cells", unit="cell", disable=not show):
        if source.kind == "generated":
            batches = generated_cell(clean, name, severity, params.seed, params.batch_size, device)
        elif dataset == "imagenet":
            batches = _official_imagenet(source.folder, name, severity, clean.indices, params.batch_size)
        else:
            batches = _official_npy(source.folder, name, severity, clean.indices, params.batch_size)
        logits, labels = cell_logits(model, batches, device)
        if source.kind == "official":
            _check_official_cell(source, name, len(clean), clean.labels, labels)
        calibration = calibration_metrics(logits, labels, params.n_bins)
        predictions = logits.argmax(dim=1).to(torch.int16).numpy()
        write_with_atomic(_cell_predictions_path(work_dir, name, severity), lambda tmp: _save_npy(tmp, predictions))
        row = [name, severity, len(labels), f"{calibration.accuracy:.6f}", f"{calibration.ece:.6f}",
               f"{calibration.nll:.6f}", source.kind]
        table.append([row])
    shard.wait_for_all()
    if not shard.summarises:
        return None
    order = {cell: number for number, cell in enumerate(cells)}
    rows = table.consolidate(lambda rows: pd.Series([order.get((c, int(v)), len(order)) for c, v in
                                                     zip(rows["corruption"], rows["severity"])], index=rows.index))
    return rows[[(c, int(v)) in order for c, v in zip(rows["corruption"], rows["severity"])]]


def _cell_predictions_path(work_dir: Path, name: str, severity: int) -> Path:
    return work_dir / PREDICTIONS_DIR / f"{name}-s{int(severity)}.npy"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would append ".npy" to the temporary name
        np.save(handle, array, allow_pickle=False)


def write_per_image(work_dir: Path, cells: pd.DataFrame, labels: torch.Tensor) -> None:
    """``per_image.csv`` (index, label, cells_correct, cells) from every cell's stored predictions; not written
    when a cell has none (a result resumed from a version that kept only the cells' aggregates)."""
    paths = [_cell_predictions_path(work_dir, name, severity) for name, severity in zip(cells["corruption"],
                                                                                        cells["severity"])]
    if not all(path.is_file() for path in paths):
        return
    truth = labels.cpu().numpy()
    correct = np.zeros(len(truth), dtype=np.int64)
    for path in paths:
        predictions = np.load(path, allow_pickle=False)
        if predictions.shape != truth.shape:
            raise RobustKDError(f"corruption suite: {path} holds {predictions.shape[0]} predictions; the clean pass "
                                f"has {truth.shape[0]} images")
        correct += predictions == truth
    table = pd.DataFrame({"index": np.arange(len(truth)), "label": truth, "cells_correct": correct,
                          "cells": len(paths)})
    write_text_atomic(work_dir / "per_image.csv", table.to_csv(index=False))


def _check_official_cell(source: CellSource, name: str, expected: int, clean_labels: torch.Tensor | None,
                         labels: torch.Tensor) -> None:
    """An official cell must hold the clean pass's images: as many (a file with fewer images per severity
    is evaluated only on request, as a subset) and, where the clean labels are known, the same labels."""
    where = source.folder / (name + ".npy") if (source.folder / (name + ".npy")).exists() else source.folder / name
    if len(labels) < expected:
        raise RobustKDError(f"corruption suite: {where} holds {len(labels)} images per severity but the clean pass "
                            f"has {expected}; evaluate the first {len(labels)} test images with --n-examples "
                            f"{len(labels)} (recorded as a subset)")
    if clean_labels is not None and not torch.equal(labels.cpu(), clean_labels[:len(labels)].cpu().long()):
        raise RobustKDError(f"corruption suite: the labels of {where} differ from the test set's (a file of "
                            "another test set, or in another order)")


def summarise_cells(cells: pd.DataFrame, clean_accuracy: float, params, dataset: str, out_dir: Path
                    ) -> dict[str, float]:
    """Write the grids and plots; return the headline metrics (accuracies and mCEs in percent)."""
    order = [name for name in params.corruptions]
    accuracy = cells.pivot(index="corruption", columns="severity", values="accuracy").loc[order]
    ece = cells.pivot(index="corruption", columns="severity", values="ece").loc[order]
    accuracy.columns = [int(c) for c in accuracy.columns]
    ece.columns = [int(c) for c in ece.columns]
    write_text_atomic(out_dir / "accuracy_grid.csv", accuracy.to_csv(index_label="corruption"))
    write_text_atomic(out_dir / "ece_grid.csv", ece.to_csv(index_label="corruption"))
    write_text_atomic(out_dir / "cells.csv", cells.to_csv(index=False))
    reference = resolve_reference(params.reference, dataset)
    fractions = corruption_summary(accuracy, clean_accuracy, reference)
    metrics = {key: 100.0 * value for key, value in fractions.items()}
    for severity in accuracy.columns:
        metrics[f"acc_severity_{severity}"] = 100.0 * float(accuracy[severity].mean())
        metrics[f"ece_severity_{severity}"] = float(ece[severity].mean())
    for name in order:
        metrics[f"acc_{name}"] = 100.0 * float(accuracy.loc[name].mean())
    metrics["ece_corrupted_mean"] = float(ece.to_numpy().mean())
    _plot_heatmap(accuracy, out_dir / "accuracy_heatmap.png")
    _plot_severity_curves(accuracy, ece, clean_accuracy, out_dir / "accuracy_vs_severity.png")
    return metrics


def _plot_heatmap(accuracy: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(accuracy) + 1.5))
    image = ax.imshow(100 * accuracy.to_numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=100)
    ax.set_xticks(range(len(accuracy.columns)), [str(c) for c in accuracy.columns])
    ax.set_yticks(range(len(accuracy)), list(accuracy.index))
    for (row, col), value in np.ndenumerate(100 * accuracy.to_numpy()):
        ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=7,
                color="white" if value < 50 else "black")
    ax.set_xlabel("severity")
    ax.set_title("top-1 accuracy (%) per corruption and severity")
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _plot_severity_curves(accuracy: pd.DataFrame, ece: pd.DataFrame, clean_accuracy: float, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    severities = [0] + list(accuracy.columns)
    for name in accuracy.index:
        left.plot(severities, [100 * clean_accuracy] + list(100 * accuracy.loc[name]), color="0.8", lw=0.8)
    left.plot(severities, [100 * clean_accuracy] + list(100 * accuracy.mean()), color="C0", lw=2.5, marker="o",
              label="mean over corruptions")
    left.set(xlabel="severity (0 = clean)", ylabel="top-1 accuracy (%)", title="accuracy vs severity")
    left.legend()
    right.boxplot([ece[s].to_numpy() for s in accuracy.columns], positions=list(accuracy.columns))
    right.set(xlabel="severity", ylabel="ECE (15 bins)", title="calibration under shift (one point per corruption)")
    fig.tight_layout()
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
