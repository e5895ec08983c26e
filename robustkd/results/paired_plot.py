"""The forest plot of a paired comparison (``robustkd compare --plot FILE``).

One panel per metric, one line per compared pair ``a − b``: the per-seed differences as small marks, their
mean as a dot and its t-interval as a bar, zero as a dashed line. The colour is the verdict for a (green
better, red worse, grey not distinguishable or one seed); the panel title says whether higher or lower is
better, so a bar right of zero is not mistaken for a win where lower is better. Drawn with matplotlib; the
figure is built apart from writing it, so its content can be checked.
"""

from __future__ import annotations

import io
from contextlib import ExitStack
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from robustkd.errors import RobustKDError  # noqa: E402
from robustkd.results.paired import Comparison  # noqa: E402
from robustkd.utils.atomic import atomic_path  # noqa: E402
from robustkd.utils.output_path import check_output_files  # noqa: E402

VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#cf222e"}
OTHER_COLOUR = "#6e7781"


def comparison_figure(comparison: Comparison) -> Figure:
    """The forest plot of ``comparison.rows``; RobustKDError when there is nothing compared."""
    rows = comparison.rows
    if rows.empty:
        raise RobustKDError("compare --plot: no pair of methods shares a seed and an evaluation; nothing to plot")
    groups = list(dict.fromkeys(rows["group"]))
    teachers = rows.drop_duplicates("group").set_index("group")["teacher"]
    if len(groups) == 1:
        group_tag = {groups[0]: ""}
    elif teachers.nunique() == len(groups):  # one group per teacher: name the teacher
        group_tag = {name: f" (teacher {teachers[name][:8]})" for name in groups}
    else:  # numbered in the order of the text output's groups
        group_tag = {name: f" (group {number})" for number, name in enumerate(groups, start=1)}
    metrics = list(dict.fromkeys(rows["metric"]))
    heights = [max(1, int((rows["metric"] == metric).sum())) for metric in metrics]
    height = 0.9 * len(metrics) + 0.32 * sum(heights) + 0.4
    figure, axes = plt.subplots(len(metrics), 1, figsize=(6.4, height),
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
            labels.append(f"{row['a']} − {row['b']}{group_tag[row['group']]}  n={row['n_paired']}")
        axis.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        axis.set_yticks(range(len(mine)), labels, fontsize=8)
        axis.set_ylim(len(mine) - 0.5, -0.5)
        unit = mine["unit"].iloc[0]
        axis.set_title(f"{metric} ({unit or 'no unit'}; {mine['better'].iloc[0]} is better)", fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
    confidence = float(rows["confidence"].iloc[0])
    figure.suptitle(f"paired differences a − b: seeds (|), mean (o), {100 * confidence:g} % t-interval (bar)",
                    fontsize=9)
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.4 / height))  # the top 0.4 inch for the title
    return figure


def comparison_png(comparison: Comparison) -> bytes:
    """The forest plot as PNG bytes (for embedding, e.g. in the HTML report); the figure is closed."""
    figure = comparison_figure(comparison)
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(figure)


def save_comparison_outputs(figure: Figure, plot: Path, text: str, out: Path | None) -> None:
    """Write ``figure`` to ``plot`` and, when ``out`` is given, ``text`` to ``out``: each into a temporary file
    beside its target first, both replaced only once both are written, so an unwritable target leaves
    neither file changed. Either target that is no file robustkd may replace (robustkd/utils/output_path.py),
    or both naming one file, is refused before anything is written. The figure is closed."""
    targets = f"--plot {plot}" + (f" / --out {out}" if out is not None else "")
    try:
        check_output_files([("--plot", plot, "forest plot"), ("--out", out, "comparison")])
        with ExitStack() as stack:
            plot_tmp = stack.enter_context(atomic_path(plot, follow_links=True))
            out_tmp = stack.enter_context(atomic_path(out, follow_links=True)) if out is not None else None
            figure.savefig(plot_tmp, format="png", dpi=120)
            if out_tmp is not None:
                out_tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        failed = f"{exc.filename}: " if exc.filename else ""
        raise RobustKDError(f"{targets}: cannot write ({failed}{exc.strerror or exc})") from None
    finally:
        plt.close(figure)
