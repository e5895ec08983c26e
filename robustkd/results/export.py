"""``robustkd leaderboard export``: the leaderboard as CSV (the project's export), JSON, Markdown or HTML,
and the disaggregated corruption table; every file written atomically."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.results.leaderboard import display_table, robustbench_json
from robustkd.utils.atomic import write_text_atomic
from robustkd.utils.output_path import check_output_file

FORMATS = ("csv", "json", "md", "html")


def markdown_table(frame: pd.DataFrame) -> str:
    cells = frame.astype(object).where(frame.notna(), "").astype(str)
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(value.replace("|", "\\|") for value in row) + " |" for row in cells.to_numpy().tolist()]
    return "\n".join(lines) + "\n"


def export_leaderboard(table: pd.DataFrame, fmt: str, out: Path, radius: float = 0.25) -> None:
    """``table`` as ``fmt`` in ``out`` (refused, before anything is rendered, when ``out`` is no file robustkd
    may replace: robustkd/utils/output_path.py)."""
    if fmt not in FORMATS:
        raise RobustKDError(f"--format: {fmt!r}; expected one of {', '.join(FORMATS)}")
    check_output_file(out, option="--out", what="leaderboard")
    if fmt == "csv":
        text = table.to_csv(index=False, float_format="%.6g")
    elif fmt == "json":
        text = json.dumps(robustbench_json(table), indent=2) + "\n"
    elif fmt == "md":
        text = markdown_table(display_table(table, radius))
    else:
        shown = display_table(table, radius).map(lambda v: html.escape(str(v)))
        text = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>robustkd leaderboard</title></head><body>"
                + shown.to_html(index=False, escape=False, na_rep="-") + "</body></html>\n")
    write_text_atomic(out, text, follow_links=True)


def export_corruption_grid(grid: pd.DataFrame, out: Path) -> None:
    """Long format: model_name, checkpoint, method, corruption, severity, accuracy (percent), subset."""
    if grid.empty:
        raise RobustKDError("leaderboard export: no corruption results recorded")
    check_output_file(out, option="--grid-out", what="corruption grid")
    write_text_atomic(out, grid.to_csv(index=False, float_format="%.4f"), follow_links=True)
