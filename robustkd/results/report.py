"""``robustkd report``: one self-contained HTML page (inline CSS, images as data URIs, no network).

Sections: the answer in one table (best student per criterion), the leaderboard, a per-method comparison
for each teacher (every method, with differences to the question's reference method), the paired comparison
(verdicts for the question's pairs and per-seed differences, robustkd/results/paired.py), the suites' plots
per model, and the protocol of every number (suite parameters, suite-file sha256, package versions). The
question (robustkd/results/question.py) is the caller's; ``DEFAULT_QUESTION`` when none is given.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import json
from pathlib import Path

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.evaluate.suite import suites_in_order
from robustkd.results.leaderboard import build_leaderboard, display_table, leaderboard_columns
from robustkd.results.method_labels import method_order, model_method_label
from robustkd.results.question import DEFAULT_QUESTION, Question


def declared_plots() -> list[tuple[str, str, str]]:
    """(suite, file, caption) of every plot the registered suites declare, in suite order."""
    return [(suite.name, plot.file, plot.caption) for suite in suites_in_order() for plot in suite.plots]


COMPARED = ["clean_acc", "corruption_acc", "pgd_acc", "autoattack_acc", "ece", "nll", "relation_pearson",
            "relation_spearman"]

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
.better{color:#0a6b2b;font-weight:600}.worse{color:#a11}
.plots{display:flex;flex-wrap:wrap;gap:14px}.plots figure{margin:0;border:1px solid #ddd;padding:6px}
.plots img{max-width:460px;display:block}figcaption{font-size:12px;color:#555}
.note{color:#555;font-size:13px}.wide{overflow-x:auto}details{margin:4px 0}pre{font-size:11px;background:#f7f7f7;padding:6px}
"""

LOAD_CHECK = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-ok', ok + '/' + images.length);
});
</script>"""


def _table(frame: pd.DataFrame, caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in frame.astype(object).where(frame.notna(), "-").to_numpy().tolist())
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _escaped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(lambda v: html.escape(str(v)) if isinstance(v, str) else v)


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _answer(table: pd.DataFrame, radius: float) -> str:
    students = table[table["method"].isin(method_order(table["method"]))]
    rows = []
    for column in leaderboard_columns(radius):
        values = students.dropna(subset=[column.name])
        if values.empty:
            continue
        target = values[column.name].max() if column.higher_is_better else values[column.name].min()
        best = values[values[column.name] == target]
        rows.append({"criterion": column.name, "unit": column.unit,
                     "best student": " = ".join(best["model"]) + (" (tie)" if len(best) > 1 else ""),
                     "value": f"{target:.4g}", "better": "higher" if column.higher_is_better else "lower",
                     "of": len(values)})
    if not rows:
        return "<p class='note'>No distilled students in the database yet.</p>"
    return _table(_escaped(pd.DataFrame(rows)))


def _method_comparison(table: pd.DataFrame, reference: str | None) -> str:
    """Per (dataset, teacher): each student's headline values and, when ``reference`` is a method label
    there, ``<column> Δ<reference>``: the student's value minus the reference's (green better, red worse)."""
    parts = []
    order = method_order(table["method"])
    students = table[table["method"].isin(order)]
    for (dataset, teacher), group in students.groupby(["dataset", "teacher"]):
        group = group.assign(_order=group["method"].map(order.index)).sort_values("_order")
        shown = pd.DataFrame({"student": group["model"], "seeds": group["n_seeds"]})
        mine = group[group["method"] == reference] if reference is not None else group.iloc[:0]
        for name in COMPARED:
            if group[name].isna().all():
                continue
            shown[name] = [f"{v:.3f}" if pd.notna(v) else "-" for v in group[name]]
            if not mine.empty and pd.notna(mine[name].iloc[0]):
                higher = next(c.higher_is_better for c in leaderboard_columns() if c.name == name)
                deltas = []
                for value in group[name]:
                    if pd.isna(value):
                        deltas.append("-")
                        continue
                    delta = value - mine[name].iloc[0]
                    good = (delta > 0) == higher and delta != 0
                    css = "better" if good else ("worse" if delta != 0 else "")
                    deltas.append(f"<span class='{css}'>{delta:+.3f}</span>")
                shown[f"{name} Δ{reference}"] = deltas
        parts.append(f"<h3>{html.escape(str(dataset))}, teacher {html.escape(str(teacher))}</h3>"
                     f"<div class='wide'>{_table(shown.astype(object))}</div>")
    return "".join(parts) or "<p class='note'>No students distilled from a common teacher yet.</p>"


def _paired(results: pd.DataFrame, radius: float, question: Question) -> str:
    """Per group (teacher, student architecture, training): the verdict table of ``question.pairs``, their
    forest plot, and the per-seed differences of every compared pair (oriented by ``question``)."""
    from robustkd.results.compare_format import per_seed_display, verdict_display
    from robustkd.results.paired import compare
    from robustkd.results.paired_plot import comparison_png

    try:
        comparison = compare(results, radius=radius, question=question)
    except RobustKDError:
        return "<p class='note'>No distilled students with recorded seeds to pair yet.</p>"
    parts = []
    verdict_pairs = set(comparison.verdict_pairs)
    for group in comparison.groups.to_dict("records"):
        rows = comparison.rows[comparison.rows["group"] == group["group"]]
        if rows.empty:
            continue
        seeds = group["seeds"].split()
        parts.append(
            f"<h3>{html.escape(group['group'])}</h3><p class='note'>Methods {html.escape(group['methods'])}; "
            f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({html.escape(group['seeds'])}); cohorts: "
            f"{html.escape(group['cohorts'])}. A seed pairs data order, augmentation and initialisation: each "
            "difference below is a − b between two students that differ only in their distillation method "
            "(and method options).</p>")
        verdicts = verdict_display(rows, comparison.verdict_pairs)
        if not verdicts.empty:
            parts.append("<div class='wide'>" + _table(_escaped(verdicts), "verdicts at 95 % (for a against b)")
                         .replace(">better (", "><span class='better'>better</span> (")
                         .replace(">worse (", "><span class='worse'>worse</span> (") + "</div>")
        shown = rows[[(a, b) in verdict_pairs for a, b in zip(rows["a"], rows["b"])]]
        if not shown.empty:
            png = base64.b64encode(comparison_png(dataclasses.replace(comparison, rows=shown))).decode("ascii")
            parts.append("<figure><img alt='paired differences' src='data:image/png;base64," + png + "'>"
                         "<figcaption>paired differences of the verdict pairs: seeds (|), mean (o), 95 % "
                         "t-interval (bar); green better, red worse for a</figcaption></figure>")
        parts.append("<details open><summary>per-seed differences, mean, sample std, 95 % t-interval, wins "
                     f"({len(rows)} comparisons)</summary><div class='wide'>"
                     f"{_table(_escaped(per_seed_display(rows)))}</div></details>")
    if not parts:
        return "<p class='note'>No two methods share a seed, a teacher, a student architecture and a training " \
               "configuration yet.</p>"
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in comparison.notes)
    lower = ", ".join(c.name for c in leaderboard_columns(radius) if not c.higher_is_better)
    return "".join(parts) + (f"<ul class='note'>{notes}</ul>" if notes else "") + (
        "<p class='note'>Verdict: better or worse when the 95 % t-interval of the mean difference excludes 0 "
        f"(direction-aware: lower is better for {lower}), else not distinguishable; one paired seed gives no "
        "interval. <code>robustkd compare</code> prints the same tables.</p>")


def _plots(results: pd.DataFrame) -> str:
    newest = results.sort_values("created").drop_duplicates(["checkpoint_sha256", "suite"], keep="last")
    parts = []
    for suite, file_name, caption in declared_plots():
        figures = []
        for row in newest[newest["suite"] == suite].sort_values("model_name").itertuples():
            path = Path(row.result_dir) / file_name
            if path.is_file():
                method = model_method_label(row.kind, row.method, row.method_options)
                label = f"{row.model_name} ({method}){' subset ' + row.subset if row.subset else ''}"
                figures.append(f"<figure>{_image(path)}<figcaption>{html.escape(label)}</figcaption></figure>")
        if figures:
            parts.append(f"<h3>{html.escape(caption)}</h3><div class='plots'>{''.join(figures)}</div>")
    return "".join(parts) or "<p class='note'>No plots recorded.</p>"


def _protocols(results: pd.DataFrame) -> str:
    per_result = results.drop_duplicates(["checkpoint_sha256", "suite", "suite_sha256", "subset"])
    parts = []
    for row in per_result.sort_values(["suite", "model_name"]).itertuples():
        body = json.dumps({"protocol": json.loads(row.protocol), "suite_sha256": row.suite_sha256,
                           "n_examples": row.n_examples, "subset": row.subset or "full test set",
                           "device": row.device, "seed": row.seed, "created": row.created,
                           "package_versions": json.loads(row.package_versions), "result_dir": row.result_dir},
                          indent=1, sort_keys=True)
        parts.append(f"<details><summary>{html.escape(row.suite)} — {html.escape(str(row.model_name))}"
                     f"{' (' + html.escape(row.subset) + ')' if row.subset else ''}</summary><pre>"
                     f"{html.escape(body)}</pre></details>")
    return "".join(parts)


def render_report(results: pd.DataFrame, radius: float = 0.25, title: str = "robustkd report", *,
                  question: Question = DEFAULT_QUESTION) -> str:
    """The HTML page of the store's rows (``read_results``); ``question`` names the verdict pairs, the
    orientation of the other pairs and the per-method table's reference method (None: no differences)."""
    table = build_leaderboard(results, radius)
    units = pd.DataFrame({"column": [c.name for c in leaderboard_columns(radius)],
                          "unit": [c.unit for c in leaderboard_columns(radius)],
                          "better": ["higher" if c.higher_is_better else "lower" for c in leaderboard_columns(radius)]})
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return "".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='note'>Generated {created} from {results['checkpoint_sha256'].nunique()} "
        f"checkpoints and {len(results)} recorded metrics. Values are means over seeds (± sample std, n = seeds). "
        "Suites evaluated on a prefix of the test set are listed under <em>subsets</em>.</p>",
        "<h2>Which student is more accurate, more robust and better calibrated?</h2>", _answer(table, radius),
        "<h2>Leaderboard</h2>", f"<div class='wide'>{_table(_escaped(display_table(table, radius)))}</div>",
        "<details><summary>units of the columns</summary>", _table(_escaped(units)), "</details>",
        "<h2>Per-method comparison (same teacher)</h2>", _method_comparison(table, question.reference),
        "<h2>Paired comparison</h2>", _paired(results, radius, question),
        "<h2>Plots</h2>", _plots(results),
        "<h2>Protocol of each number</h2>", _protocols(results),
        LOAD_CHECK, "</body></html>",
    ])
