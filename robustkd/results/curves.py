"""The study's curves (docs/study.md), drawn from a results database and the result folders it points to.

    write_curves(Path("results/study/robustkd.db"), Path("results/study"))      # a study's report stage
    python scripts/study_figures.py --db results/study/robustkd.db --out-dir results/study

Writes, for the methods ce, kd, dist and cmkd (ablation variants left out), each curve the mean over a
method's seeds with a band of ± one sample std, and a dashed line for every teacher evaluated the same way:

- ``robustness_curves.png``: PGD-Linf robust accuracy against eps (the adversarial suite's ``eps_curve.csv``)
  and accuracy on corrupted images against severity, averaged over the 15 corruptions (``accuracy_grid.csv``);
- ``certified_curves.png``: certified accuracy against the L2 radius, from each image's radius in
  ``certify.tsv`` (a fine grid, not only the suite's 0.25 steps), with the number of images in the title.

A figure whose suite has no results in the database is skipped with a note. The paired statistics are
``robustkd compare`` (``--plot`` for their forest plot); these figures show levels, not paired differences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.results.method_labels import method_label  # noqa: E402
from robustkd.results.store import read_results  # noqa: E402
from robustkd.utils.figures import save_png  # noqa: E402

METHODS = ["ce", "kd", "dist", "cmkd"]
COLOURS = {"ce": "#6e7781", "kd": "#0969da", "dist": "#bf8700", "cmkd": "#cf222e"}
RADII = np.linspace(0.0, 1.0, 101)


def result_folders(results: pd.DataFrame, suite: str, db: Path) -> pd.DataFrame:
    """One row per checkpoint with a ``suite`` result: label (method, or ``teacher``), seed, result_dir, subset
    (its newest result). A recorded folder that is not here (a database made on another machine, such as the
    GPU's) is looked for beside the database, as ``<db folder>/<model folder>/<result folder>``."""
    rows = results[results["suite"] == suite].sort_values("created")
    rows = rows.drop_duplicates("checkpoint_sha256", keep="last")
    labels = ["teacher" if kind == "train" else method_label(str(method), options)
              for kind, method, options in zip(rows["kind"], rows["method"], rows["method_options"])]
    folders = [_local(Path(recorded), db.parent) for recorded in rows["result_dir"]]
    rows = rows.assign(label=labels, result_dir=folders)
    teachers = set(rows.loc[rows["label"].isin(METHODS), "teacher_sha256"].dropna())
    if len(teachers) > 1:  # a curve averages one method's seeds: students of two teachers are not seeds
        raise RobustKDError(f"study figures: the {suite} results hold students of {len(teachers)} teachers "
                            f"({', '.join(sorted(t[:12] for t in teachers))}); expected one per database")
    return rows[["checkpoint_sha256", "label", "seed", "result_dir", "subset", "model_name"]]


def _severity(column: str, folder: Path) -> int:
    try:
        return int(column)
    except ValueError:
        raise RobustKDError(f"study figures: {Path(folder) / 'accuracy_grid.csv'}: column {column!r} is not a "
                            "severity") from None


def _local(recorded: Path, db_folder: Path) -> Path:
    beside = db_folder / recorded.parent.name / recorded.name
    return recorded if recorded.is_dir() or not beside.is_dir() else beside


def _read(path: Path, columns: tuple[str, ...] = (), **kwargs) -> pd.DataFrame:
    """``path`` as a DataFrame that has ``columns`` (or its index named so); else one RobustKDError."""
    try:
        frame = pd.read_csv(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise RobustKDError(f"study figures: cannot read {path} ({exc})") from None
    missing = [c for c in columns if c not in frame.columns and c != frame.index.name]
    if missing:
        raise RobustKDError(f"study figures: {path} lacks the column(s) {', '.join(missing)}")
    return frame


def _band(axis: plt.Axes, x: np.ndarray, curves: list[np.ndarray], label: str, colour: str) -> None:
    stacked = np.vstack(curves)
    mean = stacked.mean(axis=0)
    axis.plot(x, mean, color=colour, label=f"{label} (n={len(curves)})", gid=f"mean {label}")
    if len(curves) > 1:
        std = stacked.std(axis=0, ddof=1)
        axis.fill_between(x, mean - std, mean + std, color=colour, alpha=0.18, linewidth=0)


def _by_method(folders: pd.DataFrame, curve) -> dict[str, list[np.ndarray]]:
    return {method: [curve(Path(d)) for d in folders[folders["label"] == method].sort_values("seed")["result_dir"]]
            for method in METHODS if (folders["label"] == method).any()}


def _teachers(axis: plt.Axes, folders: pd.DataFrame, x: np.ndarray, curve) -> None:
    for row in folders[folders["label"] == "teacher"].itertuples():
        axis.plot(x, curve(Path(row.result_dir)), color="black", linestyle="--", linewidth=1,
                  label=f"teacher {row.model_name}", gid=f"teacher {row.model_name}")


def robustness_figure(results: pd.DataFrame, db: Path) -> plt.Figure | None:
    adversarial, corruption = result_folders(results, "adversarial", db), result_folders(results, "corruption", db)
    if adversarial.empty and corruption.empty:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    if not adversarial.empty:
        eps = _read(Path(adversarial["result_dir"].iloc[0]) / "eps_curve.csv", ("eps_255",))["eps_255"].to_numpy()
        eps = eps[eps <= 2.0]  # the informative part: undefended students are at ~0 beyond

        def pgd(folder: Path) -> np.ndarray:
            table = _read(folder / "eps_curve.csv", ("eps_255", "robust_acc")).set_index("eps_255")["robust_acc"]
            values = table.reindex(eps).to_numpy(dtype=float)
            if np.isnan(values).any():
                raise RobustKDError(f"study figures: {folder / 'eps_curve.csv'} lacks some of the eps {list(eps)}")
            return values

        for method, curves in _by_method(adversarial, pgd).items():
            _band(left, eps, curves, method, COLOURS[method])
        _teachers(left, adversarial, eps, pgd)
        subset = adversarial["subset"].iloc[0] or "full test set"
        left.set(xlabel="eps (/255, L-inf)", ylabel="robust accuracy (%)", title=f"PGD-20 ({subset})")
        left.legend(fontsize=8)
    if not corruption.empty:
        first = _read(Path(corruption["result_dir"].iloc[0]) / "accuracy_grid.csv", index_col="corruption")
        severities = np.array([_severity(column, folder=corruption["result_dir"].iloc[0]) for column in first.columns])
        corruptions = len(first)

        def severity_mean(folder: Path) -> np.ndarray:
            grid = _read(folder / "accuracy_grid.csv", index_col="corruption")
            if sorted(grid.columns) != sorted(first.columns) or len(grid) != corruptions:
                raise RobustKDError(f"study figures: {folder / 'accuracy_grid.csv'} has other corruptions or "
                                    f"severities than {corruption['result_dir'].iloc[0]}")
            return 100.0 * grid[list(first.columns)].mean(axis=0).to_numpy(dtype=float)

        for method, curves in _by_method(corruption, severity_mean).items():
            _band(right, severities, curves, method, COLOURS[method])
        _teachers(right, corruption, severities, severity_mean)
        subset = corruption["subset"].iloc[0] or "full test set"
        right.set(xlabel="severity", ylabel=f"accuracy, mean of {corruptions} corruptions (%)", xticks=severities,
                  title=f"corruptions ({subset})")
        right.legend(fontsize=8)
    figure.tight_layout()
    return figure


def certified_figure(results: pd.DataFrame, db: Path) -> plt.Figure | None:
    certified = result_folders(results, "certified", db)
    if certified.empty:
        return None
    counts: set[int] = set()

    def curve(folder: Path) -> np.ndarray:
        rows = _read(folder / "certify.tsv", ("radius", "correct"), sep="\t")
        counts.add(len(rows))
        correct = rows["correct"].to_numpy() == 1
        radius = rows["radius"].to_numpy(dtype=float)
        return np.array([100.0 * np.mean(correct & (radius >= r)) for r in RADII])

    figure, axis = plt.subplots(figsize=(5.6, 3.8))
    for method, curves in _by_method(certified, curve).items():
        _band(axis, RADII, curves, method, COLOURS[method])
    _teachers(axis, certified, RADII, curve)
    images = "/".join(str(c) for c in sorted(counts))
    axis.set(xlabel="L2 radius", ylabel="certified accuracy (%)",
             title=f"randomized smoothing ({images} images, {certified['subset'].iloc[0] or 'full test set'})")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def write_curves(db: Path, out_dir: Path, prefix: str = "", announce=print) -> list[Path]:
    """Write ``<out_dir>/<prefix>robustness_curves.png`` and ``certified_curves.png`` from ``db``; a figure
    whose suites have no results is skipped (and said). Every figure is built before any is written."""
    figures: dict[str, plt.Figure] = {}
    written = []
    try:
        results = read_results(db)
        for name, build in (("robustness_curves", robustness_figure), ("certified_curves", certified_figure)):
            figure = build(results, db)
            if figure is None:
                announce(f"{name}: no results of its suites in {db}; skipped")
            else:
                figures[name] = figure
        for name in list(figures):
            target = out_dir / f"{prefix}{name}.png"
            save_png(figures.pop(name), target, "--out-dir")
            announce(f"wrote {target}")
            written.append(target)
    finally:
        for figure in figures.values():
            plt.close(figure)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="results database")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--prefix", default="", help="prefix of the file names (e.g. 'certified500_')")
    args = parser.parse_args(argv)
    try:
        write_curves(args.db, args.out_dir, args.prefix)
    except RobustKDError as exc:
        print(f"robustkd: error: {exc}", file=sys.stderr)
        return 2
    return 0
