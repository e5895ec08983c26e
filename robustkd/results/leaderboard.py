"""The leaderboard: one row per model (a group of checkpoints that differ only in their seed).

Stable columns (``LEADERBOARD_COLUMNS``; units in docs/leaderboard.md). For each model and metric the
value is the mean over its seeds, with ``<column>_std`` (sample standard deviation, empty for one seed),
``<column>_n`` (how many seeds have the metric: fewer than ``n_seeds`` while an evaluation is unfinished)
and ``n_seeds``. Per checkpoint and metric, a full-test-set result is preferred to a subset, a larger
subset to a smaller one; ``subsets`` lists the suites whose numbers come from a prefix of the test set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from robustkd.errors import RobustKDError
from robustkd.evaluate.suite import suite_class, suites_in_order
from robustkd.results.method_labels import model_method_label

# Checkpoints are seeds of one model only when all of these are equal; ``training`` is the recorded training
# configuration without the seed (recipe, epochs, batch size, lr schedule, data subset, noise, ...).
GROUP_KEYS = ["dataset", "architecture", "kind", "method", "method_options", "teacher_sha256", "training"]


@dataclass(frozen=True)
class Column:
    name: str
    suite: str
    metric: str
    unit: str
    higher_is_better: bool


def leaderboard_columns(radius: float = 0.25) -> list[Column]:
    """The columns declared by the registered suites (``Metric.column``), in suite order; a family's column
    shows the member chosen by its option (``radius``: the certified radius, on the suite's grid)."""
    options = {"radius": f"{radius:.2f}"}
    columns = []
    for suite in suites_in_order():
        for metric in suite.metrics:
            if metric.column is None:
                continue
            for placeholder, allowed in (metric.grid or {}).items():
                if options[placeholder] not in allowed:
                    raise RobustKDError(f"--{placeholder} {options[placeholder]}: the {suite.name} suite records "
                                        f"{', '.join(allowed)}")
            columns.append(Column(metric.column.format(**options), suite.name, metric.key.format(**options),
                                  metric.column_unit or metric.unit, bool(metric.higher_is_better)))
    return columns


IDENTITY_COLUMNS = ["model", "architecture", "method", "teacher", "dataset", "n_seeds", "seeds", "subsets",
                    "protocols", "checkpoints"]


def _best_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Per (checkpoint, suite, metric): the full-set row if any, else the largest subset, newest first."""
    ranked = results.assign(_full=results["subset"].eq(""), _n=results["n_examples"].fillna(0))
    ranked = ranked.sort_values(["_full", "_n", "created"], ascending=False)
    return ranked.drop_duplicates(["checkpoint_sha256", "suite", "metric"])


def _qualifiers(suite: str, protocols: pd.Series) -> set[str]:
    """``suite:key=value`` for each protocol key the suite declares as qualifying its columns (the
    AutoAttack/PGD eps actually used, the smoothing sigma and n, ...): a group that mixes values shows both."""
    keys = suite_class(suite).qualifiers
    found = set()
    for text in protocols.dropna():
        protocol = json.loads(text)
        found |= {f"{suite}:{key}={protocol[key]:g}" if isinstance(protocol.get(key), float)
                  else f"{suite}:{key}={protocol.get(key)}" for key in keys if key in protocol}
    return found


def build_leaderboard(results: pd.DataFrame, radius: float = 0.25) -> pd.DataFrame:
    """The leaderboard table from the store's rows (see ``read_results``)."""
    if results.empty:
        raise RobustKDError("leaderboard: the results database holds no results yet")
    columns = leaderboard_columns(radius)
    best = _best_rows(results.fillna({"teacher_sha256": "", "method": "", "kind": "", "method_options": "null",
                                      "training": "null"}))
    per_checkpoint = best.drop_duplicates("checkpoint_sha256").set_index("checkpoint_sha256")[GROUP_KEYS + ["seed"]]
    rows, trainings = [], []
    for key, members in per_checkpoint.groupby(GROUP_KEYS, dropna=False, sort=True):
        identity = dict(zip(GROUP_KEYS, key))
        trainings.append(json.loads(identity["training"] or "null"))
        checkpoints = list(members.index)
        seeds = sorted(int(s) for s in members["seed"].dropna())
        mine = best[best["checkpoint_sha256"].isin(checkpoints)]
        # ``trained`` (teachers, baselines), else the method with its non-default options: ablations apart.
        method = model_method_label(identity["kind"], identity["method"], identity["method_options"])
        row = {"model": f"{identity['architecture']}/{method}", "architecture": identity["architecture"],
               "method": method,
               "teacher": (identity["teacher_sha256"] or "")[:12], "dataset": identity["dataset"],
               "n_seeds": len(checkpoints), "seeds": " ".join(map(str, seeds)),
               "checkpoints": " ".join(sorted(c[:12] for c in checkpoints))}
        subsets, protocols = set(), set()
        for column in columns:
            values = mine[(mine["suite"] == column.suite) & (mine["metric"] == column.metric)]
            if values.empty:
                row[column.name], row[f"{column.name}_std"], row[f"{column.name}_n"] = None, None, 0
                continue
            per_seed = values.drop_duplicates("checkpoint_sha256")["value"]
            row[f"{column.name}_n"] = len(per_seed)
            row[column.name] = float(per_seed.mean())
            row[f"{column.name}_std"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None
            subsets |= {f"{column.suite}:{s}" for s in values["subset"] if s}
            protocols |= _qualifiers(column.suite, values["protocol"])
        row["subsets"] = " ".join(sorted(subsets))
        row["protocols"] = " ".join(sorted(protocols))
        rows.append(row)
    _name_training_differences(rows, trainings)
    order = IDENTITY_COLUMNS + [name for column in columns
                                for name in (column.name, f"{column.name}_std", f"{column.name}_n")]
    return pd.DataFrame(rows)[order]


def _name_training_differences(rows: list[dict], trainings: list[dict | None]) -> None:
    """Rows that would share a model name but were trained differently (10 and 30 epochs of one method) get
    the training settings that tell them apart appended, e.g. ``resnet8/cmkd (epochs=30, milestones=[15, 24])``."""
    by_name: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_name.setdefault(row["model"], []).append(index)
    for indices in by_name.values():
        settings = [trainings[index] or {} for index in indices]
        keys = sorted({key for setting in settings for key in setting})
        differing = [key for key in keys if len({json.dumps(s.get(key), sort_keys=True) for s in settings}) > 1]
        for index, setting in zip(indices, settings):
            if differing:
                shown = ", ".join(f"{key}={json.dumps(setting.get(key))}" for key in differing)
                rows[index]["model"] = f"{rows[index]['model']} ({shown})"


def filter_and_sort(table: pd.DataFrame, *, dataset: str | None = None, method: str | None = None,
                    teacher: str | None = None, sort: str | None = None, ascending: bool | None = None,
                    radius: float = 0.25) -> pd.DataFrame:
    if dataset:
        table = table[table["dataset"] == dataset]
    if method:
        table = table[table["method"] == method]
    if teacher:
        table = table[table["teacher"].str.startswith(teacher[:12])]
    if sort:
        if sort not in table.columns:
            raise RobustKDError(f"--sort: unknown column {sort!r}; expected one of: {', '.join(table.columns)}")
        if ascending is None:
            better = {c.name: c.higher_is_better for c in leaderboard_columns(radius)}
            ascending = not better.get(sort, False)
        table = table.sort_values(sort, ascending=ascending, na_position="last")
    return table.reset_index(drop=True)


def corruption_grid(results: pd.DataFrame, checkpoint_prefix: str | None = None) -> pd.DataFrame:
    """The disaggregated (corruption x severity) accuracy table, long format, one row per checkpoint and cell."""
    cells = _best_rows(results[results["metric"].str.startswith("cell_acc:")])
    if checkpoint_prefix:
        cells = cells[cells["checkpoint_sha256"].str.startswith(checkpoint_prefix)]
    if cells.empty:  # no corruption results yet: an empty table with its columns
        return pd.DataFrame(columns=["model_name", "checkpoint", "method", "corruption", "severity", "accuracy", "subset"])
    parts = cells["metric"].str.split(":", expand=True)
    return pd.DataFrame({
        "model_name": cells["model_name"], "checkpoint": cells["checkpoint_sha256"].str[:12],
        "method": cells["method"], "corruption": parts[1], "severity": parts[2].astype(int),
        "accuracy": cells["value"], "subset": cells["subset"],
    }).sort_values(["model_name", "corruption", "severity"]).reset_index(drop=True)


def format_cell(mean: float | None, std: float | None, n: int, digits: int = 2) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    text = f"{mean:.{digits}f}"
    if std is not None and not pd.isna(std):
        text += f" ± {std:.{digits}f}"
    return text + (f" (n={n})" if n > 1 else "")


def display_table(table: pd.DataFrame, radius: float = 0.25) -> pd.DataFrame:
    """Human-readable: mean ± std (n=seeds with the metric) per metric column; empty columns dropped."""
    shown = table[["model", "teacher", "dataset"]].copy()
    for column in leaderboard_columns(radius):
        if table[column.name].notna().any():
            digits = 3 if column.unit.startswith(("fraction", "nats", "sum", "correlation", "||")) else 2
            shown[column.name] = [format_cell(m, s, n, digits) for m, s, n in
                                  zip(table[column.name], table[f"{column.name}_std"], table[f"{column.name}_n"])]
    shown["subsets"] = table["subsets"]
    return shown


def robustbench_json(table: pd.DataFrame) -> list[dict]:
    """RobustBench model-info fields where they exist (strings, percent), then robustkd's own."""
    entries = []
    for row in table.to_dict("records"):
        entry = {"name": row["model"], "architecture": row["architecture"], "dataset": row["dataset"],
                 "eps": "8/255", "clean_acc": _percent(row["clean_acc"]), "reported": None,
                 "autoattack_acc": _percent(row["autoattack_acc"]), "corruptions_acc": _percent(row["corruption_acc"]),
                 "additional_data": False, "number_forward_passes": 1, "footnote": None,
                 "robustkd": {key: (None if pd.isna(value) else value) for key, value in row.items()}}
        entries.append(entry)
    return json.loads(json.dumps(entries, default=float))


def _percent(value: float | None) -> str | None:
    return None if value is None or pd.isna(value) else f"{value:.2f}"
