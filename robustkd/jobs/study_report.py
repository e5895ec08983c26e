"""A study's report stage: leaderboard files, corruption grid, paired comparisons (tables and forest plots),
the HTML report and the robustness/certified curves, all from the study's results database.

Every file is rewritten from the database on each run (atomically), so the report always shows every
result recorded so far. The comparisons ask the study's question (its ``[question]`` table: verdict pairs,
reference method, orientation) unless a comparison lists its own pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from robustkd.errors import RobustKDError
from robustkd.jobs.study_file import Study

CURVES_NEED = ("adversarial", "corruption", "certified")


def write_study_report(study: Study, results: Path, announce: Callable[[str], None] = print) -> list[Path]:
    """Write the study's outputs under ``results`` (from ``results/robustkd.db``); returns the files written."""
    import pandas as pd

    from robustkd.results.export import export_corruption_grid, export_leaderboard
    from robustkd.results.leaderboard import build_leaderboard, corruption_grid, display_table
    from robustkd.results.store import read_results

    db = results / "robustkd.db"
    if not db.is_file():
        raise RobustKDError(f"study {study.name}: no results database {db} yet; run the evaluate stage first")
    frame = read_results(db)
    written: list[Path] = []
    table = build_leaderboard(frame)
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 40):
        announce(display_table(table).to_string(index=False))
    for fmt in study.outputs.leaderboard:
        target = results / f"leaderboard.{fmt}"
        export_leaderboard(table, fmt, target)
        written.append(target)
    if study.outputs.corruption_grid:
        grid = corruption_grid(frame)
        if grid.empty:
            announce("corruption grid: no corruption results yet; not written")
        else:
            export_corruption_grid(grid, results / "corruption_grid.csv")
            written.append(results / "corruption_grid.csv")
    written += _comparisons(study, frame, results, announce)
    if study.outputs.report:
        from robustkd.results.report import render_report
        from robustkd.utils.atomic import write_text_atomic

        write_text_atomic(results / "report.html", render_report(frame, question=study.question,
                                                                 title=f"robustkd study {study.name}"))
        written.append(results / "report.html")
    for path in written:
        announce(f"wrote {path}")
    if study.outputs.curves:
        from robustkd.results.curves import write_curves

        written += write_curves(db, results, announce=announce)  # says what it wrote
    return written


def _comparisons(study: Study, frame, results: Path, announce: Callable[[str], None]) -> list[Path]:
    from robustkd.results.compare_format import render_comparison, write_comparison
    from robustkd.results.paired import compare
    from robustkd.results.paired_plot import comparison_figure, save_comparison_outputs
    from robustkd.results.question import parse_pair

    written = []
    specs = study.comparisons
    if not specs:
        from robustkd.jobs.study_file import ComparisonSpec

        specs = [ComparisonSpec("compare", [], [], False)]
    for spec in specs:
        pairs = [parse_pair(text) for text in spec.pairs] or None
        target = results / f"{spec.name}.md"
        try:
            comparison = compare(frame, metrics=spec.metrics or None, pairs=pairs, question=study.question,
                                 interval=spec.interval, family_wise=spec.holm)
        except RobustKDError as exc:  # students or labels not in the database yet: the other outputs go on
            announce(f"{spec.name}: not written ({exc})")
            continue
        if comparison.rows.empty:
            announce(f"{spec.name}: nothing to compare yet (no paired students with these metrics); not written")
            continue
        if spec.plot:
            plot = results / f"{spec.name}.png"
            save_comparison_outputs(comparison_figure(comparison), plot, render_comparison(comparison, "md"), target)
            written += [target, plot]
        else:
            write_comparison(comparison, "md", target)
            written.append(target)
    return written
