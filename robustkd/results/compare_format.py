"""``robustkd compare`` output: the per-pair table and the verdict table as text, Markdown, CSV or JSON.

Every renderer takes a ``paired.Comparison`` and returns a string; ``write_comparison`` prints it or writes
it atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.results.export import markdown_table
from robustkd.results.leaderboard import leaderboard_columns
from robustkd.results.paired import ONE_SEED, Comparison
from robustkd.utils.atomic import write_text_atomic
from robustkd.utils.output_path import check_output_file

FORMATS = ("table", "csv", "json", "md")
EXPLANATION = ("a − b per seed: the same seed means the same data order, augmentation and initialisation (a cohort), "
               "so only seeds both methods have are paired. Mean and sample std of the differences, "
               "{pct:g} % t-interval of the mean (n − 1 degrees of freedom); verdict for a against b: better or "
               "worse when the interval excludes 0 (direction-aware: lower is better for {lower}), "
               "else not distinguishable; with one paired seed there is no interval.")


def _digits(unit: str) -> int:
    return 2 if unit.startswith("percent") else 4


def _signed(value: float, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}f}"


def _interval(row: dict) -> str:
    if row["n_paired"] < 2:
        return "-"
    digits = _digits(row["unit"])
    return f"[{_signed(row['ci_low'], digits)}, {_signed(row['ci_high'], digits)}]"


def _evaluated_on(row: dict) -> str:
    return f"{row['suite']} {row['subset']} (suite {row['suite_sha256'][:8]})"


IMAGE_CI = "CI over seeds and images"


def per_seed_display(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per pair and metric: the per-seed differences and their statistics, formatted."""
    lines = []
    for row in rows.to_dict("records"):
        digits = _digits(row["unit"])
        lines.append({
            "a − b": f"{row['a']} − {row['b']}", "metric": row["metric"], "better": row["better"],
            "evaluated on": _evaluated_on(row), "n": row["n_paired"],
            "per seed (seed: a − b)": ", ".join(f"s{s}: {_signed(d, digits)}"
                                                for s, d in zip(row["seeds"], row["differences"])),
            "mean": _signed(row["mean_diff"], digits),
            "std": "-" if row["n_paired"] < 2 else f"{row['std_diff']:.{digits}f}",
            f"{100 * row['confidence']:g} % CI": _interval(row),
            "wins a/b/tie": f"{row['wins_a']}/{row['wins_b']}/{row['ties']}",
            "dropped": " ".join(row["dropped"]) or "-", "verdict": row["verdict"],
            IMAGE_CI: "-" if pd.isna(row.get("image_ci_low", float("nan"))) else
            f"[{_signed(row['image_ci_low'], digits)}, {_signed(row['image_ci_high'], digits)}]",
        })
    table = pd.DataFrame(lines)
    if table.empty or table[IMAGE_CI].eq("-").all():  # no metric with per-image files: the column says nothing
        return table.drop(columns=[IMAGE_CI], errors="ignore")
    return table


def verdict_display(rows: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Metrics down, pairs ("a vs b") across; each cell: verdict for a, mean difference, interval, n."""
    mine = rows[[(a, b) in pairs for a, b in zip(rows["a"], rows["b"])]]
    if mine.empty:
        return pd.DataFrame()
    table: dict[str, dict[str, str]] = {}
    for row in mine.to_dict("records"):
        digits = _digits(row["unit"])
        detail = _signed(row["mean_diff"], digits)
        if str(row.get("verdict_basis") or "").startswith("seeds and images"):
            detail += f" [{_signed(row['image_ci_low'], digits)}, {_signed(row['image_ci_high'], digits)}] (images)"
        elif row["verdict"] != ONE_SEED:
            detail += f" {_interval(row)}"
        table.setdefault(f"{row['a']} vs {row['b']}", {})[row["metric"]] = \
            f"{row['verdict']} ({detail}, n={row['n_paired']})"
    order = list(dict.fromkeys(mine["metric"]))
    columns = [f"{a} vs {b}" for a, b in pairs if f"{a} vs {b}" in table]
    shown = pd.DataFrame(table).reindex(index=order, columns=columns).fillna("-")
    better = dict(zip(mine["metric"], mine["better"]))
    shown.insert(0, "better", [better[m] for m in order])
    return shown.rename_axis("metric").reset_index()


def _sections(comparison: Comparison) -> list[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    """Per group: (title, seeds-and-cohorts line, per-seed table, verdict table)."""
    parts = []
    for group in comparison.groups.to_dict("records"):
        rows = comparison.rows[comparison.rows["group"] == group["group"]]
        if rows.empty:
            continue
        info = f"methods {group['methods']}; seeds {group['seeds']}; cohorts {group['cohorts']}"
        parts.append((group["group"], info, per_seed_display(rows), verdict_display(rows, comparison.verdict_pairs)))
    return parts


def _explanation(comparison: Comparison) -> str:
    confidence = comparison.rows["confidence"].iloc[0] if not comparison.rows.empty else 0.95
    lower = ", ".join(c.name for c in leaderboard_columns() if not c.higher_is_better)
    text = EXPLANATION.format(pct=100 * confidence, lower=lower)
    bases = sorted(set(comparison.rows["verdict_basis"].dropna())) if "verdict_basis" in comparison.rows else []
    if bases:
        text += " Verdicts use: " + "; ".join(bases) + "."
    if "image_ci_low" in comparison.rows and comparison.rows["image_ci_low"].notna().any():
        text += (" image_ci_low/high: a hierarchical bootstrap over seeds and test images (the same images for both "
                 "methods), where the metric is a mean over images.")
    return text


def render_text(comparison: Comparison) -> str:
    out = []
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 80):
        for title, info, per_seed, verdicts in _sections(comparison):
            out += [f"== {title}", info, "", "Per-seed differences:", per_seed.to_string(index=False), ""]
            if not verdicts.empty:
                out += ["Verdicts at 95 % (for a against b):", verdicts.to_string(index=False), ""]
    if not out:
        out = ["No pair of methods shares a seed, a group (teacher, architecture, training) and an evaluation.", ""]
    out.append(_explanation(comparison))
    out += [f"note: {note}" for note in comparison.notes]
    return "\n".join(out) + "\n"


def render_markdown(comparison: Comparison) -> str:
    out = []
    for title, info, per_seed, verdicts in _sections(comparison):
        out += [f"### {title}", "", info, ""]
        if not verdicts.empty:
            out += ["Verdicts at 95 % (for a against b):", "", markdown_table(verdicts)]
        out += ["Per-seed differences:", "", markdown_table(per_seed)]
    out.append(_explanation(comparison))
    out += [f"- note: {note}" for note in comparison.notes]
    return "\n".join(out) + "\n"


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def render_csv(comparison: Comparison) -> str:
    """The long table (``paired.ROW_COLUMNS``); seeds, differences and dropped joined by spaces."""
    frame = comparison.rows.copy()
    for name in ("seeds", "differences", "dropped"):
        frame[name] = [" ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values) for values in frame[name]]
    return frame.to_csv(index=False, float_format="%.6g")


def render_json(comparison: Comparison) -> str:
    rows = [{k: _plain(v) for k, v in row.items()} for row in comparison.rows.to_dict("records")]
    body = {"explanation": _explanation(comparison), "groups": comparison.groups.to_dict("records"),
            "comparisons": rows, "verdict_pairs": [list(p) for p in comparison.verdict_pairs],
            "notes": comparison.notes}
    return json.dumps(body, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v)) + "\n"


RENDERERS = {"table": render_text, "csv": render_csv, "json": render_json, "md": render_markdown}


def render_comparison(comparison: Comparison, fmt: str) -> str:
    """The comparison in ``fmt`` (one of FORMATS)."""
    if fmt not in RENDERERS:
        raise RobustKDError(f"--format: {fmt!r}; expected one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](comparison)


def write_comparison(comparison: Comparison, fmt: str, out: Path | None) -> str | None:
    """The rendered comparison: returned for printing when ``out`` is None, else written atomically to ``out``
    (refused first when ``out`` is no file robustkd may replace: robustkd/utils/output_path.py)."""
    if out is not None:
        check_output_file(out, option="--out", what="comparison")
    text = render_comparison(comparison, fmt)
    if out is None:
        return text
    try:
        write_text_atomic(out, text, follow_links=True)
    except OSError as exc:
        raise RobustKDError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    return None
