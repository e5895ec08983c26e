"""Paired comparison of distillation methods: per-seed differences between students of one teacher.

Students (distilled checkpoints) are grouped by dataset, teacher sha256, student architecture and training
provenance (``training``: the recorded training configuration without the seed); runs that differ in any
of these are never paired. Within a group a student's *method label* is its method plus the recorded
options that differ from today's defaults (``cmkd``, ``cmkd[cmkd_spearman=0.5]``;
robustkd/results/method_labels.py). Two labels are paired on a seed when both have a checkpoint of that
seed: in a cohort (docs/cohort.md) a seed fixes data order, augmentation and initialisation, so the
difference of two members is the effect of the method on that draw.

A metric is compared on one *evaluation* (suite, suite-file sha256, subset) that both students of a seed
were evaluated on; of the evaluations shared by a pair, the one with the most paired seeds is used (ties:
the metric's own suite, then the full test set, then the larger prefix). Seeds a method has for the metric
but that are not paired are reported as dropped.

Which pairs get verdicts and how every other pair is oriented is the caller's ``Question``
(robustkd/results/question.py; ``DEFAULT_QUESTION`` when none is given).

Two intervals: the seed-level t-interval (every row), and for metrics that are means over test images (clean,
adversarial, certified; robustkd/results/per_image.py) a hierarchical bootstrap over seeds and images
(robustkd/results/image_level.py; ``image_ci_low``/``image_ci_high``). ``interval`` says which one the verdicts
use, and ``family_wise`` applies Holm's adjustment to the verdict pairs' p-values (``verdict_basis`` names both).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from robustkd.errors import RobustKDError
from robustkd.results.image_level import hierarchical_bootstrap, holm
from robustkd.results.leaderboard import Column, leaderboard_columns
from robustkd.results.method_labels import format_value, method_label  # scripts/study_figures.py reads it here
from robustkd.results.question import DEFAULT_QUESTION, Question
from robustkd.results.question import parse_pair  # noqa: F401  (re-exported: the CLI's --pair reads it here)

CONFIDENCE = 0.95
GROUP_KEYS = ["dataset", "teacher_sha256", "architecture", "training"]
ONE_SEED = "one seed: no interval"
NOT_DISTINGUISHABLE = "not distinguishable"


@dataclass(frozen=True)
class PairedStats:
    """Summary of differences d_i = a_i - b_i over n paired seeds.

    ``std`` is the sample standard deviation (ddof=1); ``low``/``high`` the two-sided t-interval of the mean
    (n - 1 degrees of freedom) and ``p_value`` the paired t-test's; all three are NaN when n < 2. When every
    difference is equal (std 0) the interval is the point [mean, mean] and p is 0 (mean != 0) or 1.
    ``wins_a`` counts seeds where a is better in the metric's direction, ``ties`` exact zeros.
    """

    n: int
    mean: float
    std: float
    low: float
    high: float
    p_value: float
    wins_a: int
    wins_b: int
    ties: int


def paired_stats(differences: Sequence[float], higher_is_better: bool, confidence: float = CONFIDENCE) -> PairedStats:
    """Statistics of the per-seed differences (a - b); ``differences`` must be non-empty and finite."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0 or not np.isfinite(d).all():
        raise ValueError(f"paired_stats: needs at least one finite difference, got {list(d)}")
    n, mean = int(d.size), float(d.mean())
    std = float(d.std(ddof=1)) if n > 1 else math.nan
    low = high = p_value = math.nan
    if n > 1 and std == 0.0:
        low = high = mean
        p_value = 0.0 if mean != 0.0 else 1.0
    elif n > 1:
        low, high = (float(x) for x in stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n)))
        p_value = float(stats.ttest_1samp(d, 0.0).pvalue)
    a_better = d > 0 if higher_is_better else d < 0
    return PairedStats(n, mean, std, low, high, p_value, wins_a=int(a_better.sum()),
                       wins_b=int(((d != 0) & ~a_better).sum()), ties=int((d == 0).sum()))


def verdict(result: PairedStats, higher_is_better: bool) -> str:
    """``better`` / ``worse`` (for a against b) when the interval excludes 0, else ``not distinguishable``;
    ``one seed: no interval`` for n < 2. Direction-aware: for a lower-is-better metric a negative mean is better."""
    if result.n < 2:
        return ONE_SEED
    if result.low <= 0.0 <= result.high:
        return NOT_DISTINGUISHABLE
    return "better" if (result.mean > 0) == higher_is_better else "worse"


def training_text(training_json: str | None) -> str:
    """``recipe=quick epochs=10 train_limit=15000`` from the stored training JSON (unset keys left out)."""
    training = json.loads(training_json) if training_json else None
    if not isinstance(training, dict):
        return "training unrecorded"
    return " ".join(f"{k}={format_value(v)}" for k, v in sorted(training.items()) if v is not None) or "-"


def students(results: pd.DataFrame) -> pd.DataFrame:
    """One row per distilled checkpoint with a teacher and a seed: checkpoint_sha256, the group keys, label,
    seed (int), created (its newest result) and cohort (the cohort's path, '' for a solo run)."""
    rows = results[results["method"].notna() & results["teacher_sha256"].notna() & results["seed"].notna()
                   & results["kind"].fillna("distill").ne("train")]
    if rows.empty:
        return pd.DataFrame(columns=["checkpoint_sha256", *GROUP_KEYS, "label", "seed", "created", "cohort"])
    rows = rows.assign(training=rows["training"].fillna("null"), method_options=rows["method_options"].fillna("null"),
                       dataset=rows["dataset"].fillna(""), architecture=rows["architecture"].fillna(""))
    cohort = rows["cohort"] if "cohort" in rows.columns else pd.Series("null", index=rows.index)
    rows = rows.assign(cohort=cohort.fillna("null").map(lambda text: (json.loads(text) or {}).get("path") or ""))
    newest = rows.sort_values("created").drop_duplicates("checkpoint_sha256", keep="last")
    labels = [method_label(m, o) for m, o in zip(newest["method"], newest["method_options"])]
    return newest.assign(label=labels, seed=newest["seed"].astype(int))[
        ["checkpoint_sha256", *GROUP_KEYS, "label", "seed", "created", "cohort"]].reset_index(drop=True)


def metric_values(results: pd.DataFrame, column: Column) -> pd.DataFrame:
    """The stored values of one headline column, one row per (checkpoint, suite, suite_sha256, subset):
    the column's own suite and metric; for ``clean_acc`` also every suite's ``clean_acc`` (evaluated images)."""
    own = (results["suite"] == column.suite) & (results["metric"] == column.metric)
    if column.name == "clean_acc":
        own |= results["metric"] == "clean_acc"
    rows = results[own & np.isfinite(results["value"].astype(float))]
    rows = rows.assign(own_suite=rows["suite"].eq(column.suite), n_examples=rows["n_examples"].fillna(0).astype(int))
    rows = rows.sort_values(["own_suite", "created"]).drop_duplicates(
        ["checkpoint_sha256", "suite", "suite_sha256", "subset"], keep="last")
    return rows[["checkpoint_sha256", "suite", "suite_sha256", "subset", "n_examples", "own_suite", "value",
                 "result_dir"]]


@dataclass
class Comparison:
    """``rows``: one row per (group, pair, metric) with the per-seed differences and their statistics
    (columns in ``ROW_COLUMNS``); ``groups``: the groups' seeds and cohorts; ``notes``: what was dropped or merged."""

    rows: pd.DataFrame
    groups: pd.DataFrame
    pairs: list[tuple[str, str]]
    verdict_pairs: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)


ROW_COLUMNS = ["group", "dataset", "teacher", "architecture", "training", "a", "b", "metric", "unit", "better",
               "suite", "suite_sha256", "subset", "n_examples", "n_paired", "seeds", "differences", "mean_a", "mean_b",
               "mean_diff", "std_diff", "ci_low", "ci_high", "confidence", "p_value", "wins_a", "wins_b", "ties",
               "dropped", "n_dropped", "image_ci_low", "image_ci_high", "image_p_value", "n_images", "verdict",
               "verdict_basis", "p_holm"]
INTERVALS = ("seeds", "images")


def group_name(dataset: str, teacher_sha256: str, architecture: str, training: str) -> str:
    return f"{dataset}, teacher {teacher_sha256[:12]}, student {architecture}, {training_text(training)}"


def compare(results: pd.DataFrame, *, metrics: Sequence[str] | None = None,
            pairs: Sequence[tuple[str, str]] | None = None, teacher: str | None = None, radius: float = 0.25,
            confidence: float = CONFIDENCE, question: Question = DEFAULT_QUESTION, interval: str = "seeds",
            family_wise: bool = False) -> Comparison:
    """Paired comparison of the store's rows (``read_results``).

    ``metrics``: headline column names (default: all of ``leaderboard_columns(radius)``); ``pairs``: the only
    (a, b) labels compared, as a - b, and the verdict pairs (``--pair``); without them every pair of labels
    within a group is compared, oriented by ``question.orient``, ``question.pairs`` first (and, of them, those
    whose labels are in the database are the verdict pairs); ``teacher``: a sha256 prefix; ``interval``: the
    interval the verdicts use, ``seeds`` (t-interval over seeds) or ``images`` (the hierarchical bootstrap over
    seeds and test images where the metric has per-image files, else seeds); ``family_wise``: Holm over the
    verdict pairs' rows. Raises RobustKDError for an unknown metric or label, or when there are no distilled
    students to compare.
    """
    if interval not in INTERVALS:
        raise RobustKDError(f"--interval {interval}: expected one of: {', '.join(INTERVALS)}")
    columns = leaderboard_columns(radius)
    by_name = {c.name: c for c in columns}
    unknown = [m for m in metrics or [] if m not in by_name]
    if unknown:
        raise RobustKDError(f"--metric: unknown {', '.join(map(repr, unknown))}; expected one of: {', '.join(by_name)}")
    chosen = [by_name[m] for m in dict.fromkeys(metrics)] if metrics else columns
    if results.empty:
        raise RobustKDError("compare: the results database holds no results yet")
    pool = students(results)
    if teacher:
        pool = pool[pool["teacher_sha256"].str.startswith(teacher.lower())]
    if pool.empty:
        raise RobustKDError("compare: no distilled students (with a teacher and a seed) in the database"
                            + (f" for teacher {teacher}" if teacher else ""))
    known = sorted(set(pool["label"]))
    for pair in pairs or []:
        missing = [label for label in pair if label not in known]
        if missing:
            raise RobustKDError(f"--pair {pair[0]}:{pair[1]}: unknown method {missing[0]!r}; "
                                f"methods in the database: {', '.join(known)}")
    notes: list[str] = []
    rows: list[dict] = []
    group_rows: list[dict] = []
    results = results[results["checkpoint_sha256"].isin(pool["checkpoint_sha256"])]
    values = {c.name: metric_values(results, c).merge(pool, on="checkpoint_sha256") for c in chosen}
    for key, members in pool.groupby(GROUP_KEYS, sort=True):
        identity = dict(zip(GROUP_KEYS, key))
        name = group_name(*key)
        duplicated = members.groupby(["label", "seed"]).size()
        for (label, seed), count in duplicated[duplicated > 1].items():
            notes.append(f"{name}: {label} seed {seed} has {count} checkpoints; the newest result of each is used")
        labels = sorted(set(members["label"]))
        group_pairs = [p for p in pairs if p[0] in labels and p[1] in labels] if pairs else \
            sorted((question.orient(a, b) for a, b in combinations(labels, 2)), key=question.pair_order)
        group_rows.append({"group": name, **identity, "methods": " ".join(labels),
                           "seeds": " ".join(map(str, sorted(set(members["seed"])))),
                           "cohorts": " ".join(sorted(set(members["cohort"]) - {""})) or "-",
                           "n_checkpoints": len(members)})
        for a, b in group_pairs:
            for column in chosen:
                row = _compare_one(values[column.name], identity, a, b, column, confidence)
                if row is not None:
                    rows.append({"group": name, "dataset": identity["dataset"],
                                 "teacher": identity["teacher_sha256"][:12], "architecture": identity["architecture"],
                                 "training": training_text(identity["training"]), **row})
    if pairs:
        for a, b in pairs:
            if not any(r["a"] == a and r["b"] == b for r in rows):
                notes.append(f"{a}:{b}: no seed with both, in one group (teacher, architecture, training) "
                             "and on one evaluation")
    verdict_pairs = list(pairs) if pairs else [p for p in question.pairs if p[0] in known and p[1] in known]
    compared = list(pairs) if pairs else sorted(dict.fromkeys((r["a"], r["b"]) for r in rows),
                                                key=question.pair_order)
    table = _apply_verdicts(pd.DataFrame(rows, columns=ROW_COLUMNS), verdict_pairs, interval, family_wise, confidence)
    return Comparison(table, pd.DataFrame(group_rows), compared, verdict_pairs, notes)


def _apply_verdicts(rows: pd.DataFrame, verdict_pairs: list[tuple[str, str]], interval: str, family_wise: bool,
                    confidence: float) -> pd.DataFrame:
    """Each row's verdict from the chosen interval, and with ``family_wise`` Holm-adjusted over the verdict
    pairs' rows (a verdict then needs an adjusted p below 1 - confidence as well)."""
    if rows.empty:
        return rows
    use_images = (interval == "images") & rows["image_ci_low"].notna()
    rows["verdict_basis"] = np.where(use_images, f"seeds and images: hierarchical bootstrap, {100 * confidence:g} %",
                                     f"seeds: t-interval, {100 * confidence:g} %")
    for index in rows.index[use_images]:
        row = rows.loc[index]
        if row["n_paired"] >= 2 or row["n_images"] >= 2:
            low, high = row["image_ci_low"], row["image_ci_high"]
            rows.at[index, "verdict"] = NOT_DISTINGUISHABLE if low <= 0.0 <= high else \
                ("better" if (row["mean_diff"] > 0) == (row["better"] == "higher") else "worse")
    if family_wise:
        family = [(a, b) in verdict_pairs for a, b in zip(rows["a"], rows["b"])]
        p = np.where(use_images, rows["image_p_value"], rows["p_value"]).astype(float)
        adjusted = np.full(len(rows), np.nan)
        adjusted[np.array(family)] = holm(p[np.array(family)])
        rows["p_holm"] = adjusted
        count = int(np.sum(family))
        for index, position in zip(rows.index, range(len(rows))):
            if family[position]:
                rows.at[index, "verdict_basis"] += f", Holm over {count} tests"
                if rows.at[index, "verdict"] in ("better", "worse") and not adjusted[position] < 1 - confidence:
                    rows.at[index, "verdict"] = NOT_DISTINGUISHABLE
    return rows


def _image_interval(paired: pd.DataFrame, suite: str, column: Column, confidence: float) -> dict:
    """The hierarchical bootstrap over the paired seeds and their common test images, when every paired result
    folder has per-image scores of the column's own metric; NaN columns otherwise."""
    from robustkd.results.per_image import per_image_scores

    empty = {"image_ci_low": np.nan, "image_ci_high": np.nan, "image_p_value": np.nan, "n_images": 0}
    if suite != column.suite:
        return empty
    sides = []
    for side in ("a", "b"):
        scores = [per_image_scores(folder, suite, column.metric) if isinstance(folder, str) else None
                  for folder in paired[f"result_dir_{side}"]]
        if any(score is None for score in scores):
            return empty
        sides.append(scores)
    index = sides[0][0].index
    if any(not score.index.equals(index) for scores in sides for score in scores):
        return empty  # not the same images in every result: no image pairing
    result = hierarchical_bootstrap(np.stack([s.to_numpy() for s in sides[0]]), np.stack([s.to_numpy() for s in sides[1]]),
                                    confidence=confidence)
    return {"image_ci_low": result.low, "image_ci_high": result.high, "image_p_value": result.p_value,
            "n_images": result.images}


def _compare_one(values: pd.DataFrame, identity: dict, a: str, b: str, column: Column,
                 confidence: float) -> dict | None:
    """The comparison of labels a and b of one group on one column, or None when no seed pairs."""
    mine = values
    for key, value in identity.items():
        mine = mine[mine[key] == value]
    mine = mine.sort_values("created").drop_duplicates(["label", "seed", "suite", "suite_sha256", "subset"],
                                                       keep="last")
    side_a, side_b = mine[mine["label"] == a], mine[mine["label"] == b]
    if side_a.empty or side_b.empty:
        return None
    evaluation = ["suite", "suite_sha256", "subset"]
    joined = side_a.merge(side_b, on=evaluation + ["seed"], suffixes=("_a", "_b"))
    if joined.empty:
        return None
    ranked = joined.groupby(evaluation).agg(n=("seed", "size"), own=("own_suite_a", "first"),
                                             n_examples=("n_examples_a", "max")).reset_index()
    ranked["full"] = ranked["subset"].eq("")
    best = tuple(ranked.sort_values(["n", "own", "full", "n_examples"], ascending=False)[evaluation].iloc[0])
    paired = joined[(joined[evaluation] == pd.Series(best, index=evaluation)).all(axis=1)].sort_values("seed")
    differences = (paired["value_a"] - paired["value_b"]).to_numpy()
    result = paired_stats(differences, column.higher_is_better, confidence)
    seeds = [int(s) for s in paired["seed"]]
    dropped = sorted([f"{a}:{s}" for s in set(side_a["seed"]) - set(seeds)] +
                     [f"{b}:{s}" for s in set(side_b["seed"]) - set(seeds)])
    suite, suite_sha256, subset = best
    image = _image_interval(paired, suite, column, confidence)
    return {**image, "a": a, "b": b, "metric": column.name, "unit": column.unit,
            "better": "higher" if column.higher_is_better else "lower", "suite": suite, "suite_sha256": suite_sha256,
            "subset": subset or "full", "n_examples": int(paired["n_examples_a"].max()), "n_paired": result.n,
            "seeds": seeds, "differences": [float(x) for x in differences],
            "mean_a": float(paired["value_a"].mean()), "mean_b": float(paired["value_b"].mean()),
            "mean_diff": result.mean, "std_diff": result.std, "ci_low": result.low, "ci_high": result.high,
            "confidence": confidence, "p_value": result.p_value, "wins_a": result.wins_a, "wins_b": result.wins_b,
            "ties": result.ties, "dropped": dropped, "n_dropped": len(dropped),
            "verdict": verdict(result, column.higher_is_better)}
