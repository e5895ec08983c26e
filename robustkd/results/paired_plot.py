"""The forest plot of a paired comparison (``robustkd compare --plot FILE``).

One panel per metric, one line per compared pair ``a − b``: the per-seed differences as small marks, their
mean as a dot and its t-interval as a bar, zero as a dashed line. The colour is the verdict for a (green
better, red worse, grey not distinguishable or one seed); the panel title says whether higher or lower is
better, so a bar right of zero is not mistaken for a win where lower is better. Drawn with matplotlib; the
figure is built apart from writing it, so its content can be checked.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.results.paired import Comparison  # noqa: E402
from robustkd.utils.figures import save_png  # noqa: E402

VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#cf222e"}
OTHER_COLOUR = "#6e7781"


def comparison_figure(comparison: Comparison) -> Figure:
    """The forest plot of ``comparison.rows``; RobustKDError when there is nothing compared."""
    rows = comparison.rows
    if rows.empty:
        raise RobustKDError("compare --plot: no pair of methods shares a seed and an evaluation; nothing to plot")
    several_groups = rows["group"].nunique() > 1
    group_number = {name: number for number, name in enumerate(dict.fromkeys(rows["group"]), start=1)}
    metrics = list(dict.fromkeys(rows["metric"]))
    heights = [max(1, int((rows["metric"] == metric).sum())) for metric in metrics]
    figure, axes = plt.subplots(len(metrics), 1, figsize=(6.4, 0.9 * len(metrics) + 0.32 * sum(heights)),
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
    for axis, metric in zip(axes[:, 0], metrics):
        mine = rows[rows["metric"] == metric].reset_index(drop=True)
        labels = []
        for y, row in mine.iterrows():  # each artist's gid names its kind, pair and group (for tests, SVG ids)
            colour = VERDICT_COLOURS.get(row["verdict"], OTHER_COLOUR)
            if row["n_paired"] >= 2:
                axis.plot([row["ci_low"], row["ci_high"]], [y, y], color=colour, linewidth=2.5, solid_capstyle="butt",
                          gid=f"interval {row['a']} - {row['b']} | {row['group']}")
            axis.plot(row["differences"], [y] * len(row["differences"]), linestyle="none", marker="|", markersize=9,
                      color=colour, alpha=0.7, gid=f"seeds {row['a']} - {row['b']} | {row['group']}")
            axis.plot([row["mean_diff"]], [y], marker="o", color=colour, gid=f"mean {row['a']} - {row['b']} | {row['group']}")
            group = f" (group {group_number[row['group']]})" if several_groups else ""
            labels.append(f"{row['a']} − {row['b']}{group}  n={row['n_paired']}")
        axis.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        axis.set_yticks(range(len(mine)), labels, fontsize=8)
        axis.set_ylim(len(mine) - 0.5, -0.5)
        unit = mine["unit"].iloc[0]
        axis.set_title(f"{metric} ({unit or 'no unit'}; {mine['better'].iloc[0]} is better)", fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
    confidence = float(rows["confidence"].iloc[0])
    figure.suptitle(f"paired differences a − b: seeds (|), mean (o), {100 * confidence:g} % t-interval (bar)",
                    fontsize=9)
    figure.tight_layout()
    return figure


def write_comparison_plot(comparison: Comparison, out: Path) -> None:
    """Write the forest plot as a PNG to ``out``, atomically."""
    save_png(comparison_figure(comparison), out, "--plot")
