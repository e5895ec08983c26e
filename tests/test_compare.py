"""Paired comparison (robustkd compare, report section): statistics checked against scipy.stats on made-up numbers."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustkd.cli import main
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.errors import RobustKDError
from robustkd.results import store
from robustkd.results.method_labels import method_label
from robustkd.results.paired import compare, paired_stats, verdict
from robustkd.results.question import parse_pair
from robustkd.results.report import render_report

TEACHER = "7" * 64
QUICK = {"recipe": "quick", "epochs": 10, "train_limit": 15000, "noise_sd": 0.0}

# Made-up per-seed numbers. cmkd beats kd on top-1 and ECE (lower is better), loses on NLL; dist vs kd is a wash.
TOP1 = {"kd": [40.0, 41.0, 39.5], "cmkd": [42.0, 42.5, 41.8], "dist": [40.5, 40.8]}   # dist lacks seed 2
ECE = {"kd": [0.10, 0.12, 0.11], "cmkd": [0.05, 0.06, 0.055], "dist": [0.09, 0.13]}
NLL = {"kd": [1.00, 1.10, 1.05], "cmkd": [1.30, 1.45, 1.38], "dist": [0.98, 1.12]}


def _options(method: str, **overrides) -> dict:
    return {**parse_method(method, DistillOptions()).recorded_options, **overrides}


def fabricate(root: Path, *, method: str, seed: int, suite: str, metrics: dict, options: dict | None = None,
              training: dict | None = None, subset: int | None = None, tag: str = "") -> Path:
    """A result directory as ``robustkd evaluate`` writes it, for a distilled cohort member."""
    label = method + tag
    checkpoint = hashlib.sha256(f"{label}-{seed}-{json.dumps(training or QUICK, sort_keys=True)}".encode()).hexdigest()
    folder = root / f"{label}-s{seed}-{suite}-{subset or 'full'}-{checkpoint[-6:]}"
    folder.mkdir(parents=True)
    summary = {
        "name": f"resnet8-{checkpoint[:12]}", "architecture": "resnet8", "dataset": "cifar100", "clean_acc": 40.0,
        "suite": suite, "metrics": metrics, "units": {}, "protocol": {}, "n_examples": subset or 10000,
        "subset": subset is not None, "seed": seed, "device": "cpu", "package_versions": {},
        "checkpoint_sha256": checkpoint, "suite_file": f"{suite}.toml", "suite_sha256": suite[0] * 64,
        "created": "2026-11-28T00:00:00+00:00", "method": method, "teacher_sha256": TEACHER,
        "method_options": options if options is not None else _options(method), "kind": "distill",
        "training": training or QUICK,
        "cohort": {"path": "runs/cohort", "member": f"resnet8-{label}-s{seed}", "members": []},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    path = root / "r.db"
    folders = []
    for method in ("kd", "cmkd", "dist"):
        for seed, top1 in enumerate(TOP1[method]):
            folders.append(fabricate(root, method=method, seed=seed, suite="clean", metrics={"top1": top1}))
            folders.append(fabricate(root, method=method, seed=seed, suite="calibration",
                                     metrics={"ece": ECE[method][seed], "nll": NLL[method][seed], "brier": 0.6}))
            # Corruption on different prefixes: kd and dist on 500 images, cmkd on 1000 -> cmkd vs kd not compared.
            folders.append(fabricate(root, method=method, seed=seed, suite="corruption",
                                     metrics={"corruptions_acc": 30.0 + seed + (method == "dist")},
                                     subset=1000 if method == "cmkd" else 500))
    ablation = _options("cmkd", cmkd_spearman=0.5)
    folders.append(fabricate(root, method="cmkd", seed=0, suite="clean", metrics={"top1": 41.0}, options=ablation,
                             tag="-spearman0.5"))
    # Same methods, other training: never paired with the quick students above.
    for method, top1 in (("kd", 60.0), ("cmkd", 10.0)):
        folders.append(fabricate(root, method=method, seed=0, suite="clean", metrics={"top1": top1},
                                 training={**QUICK, "epochs": 20}))
    # A teacher trained from labels: not a student, never compared.
    teacher = fabricate(root, method="kd", seed=0, suite="clean", metrics={"top1": 70.0}, tag="-teacher")
    summary = json.loads((teacher / "summary.json").read_text())
    summary.update(kind="train", method=None, teacher_sha256=None, checkpoint_sha256=TEACHER)
    (teacher / "summary.json").write_text(json.dumps(summary))
    for folder in folders + [teacher]:
        store.record_result(path, folder)
    return path


def _scipy_reference(a: list[float], b: list[float]) -> dict:
    """Independent reference: scipy's paired t-test and t-interval on the differences."""
    d = np.asarray(a) - np.asarray(b)
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    return {"mean": d.mean(), "std": np.std(d, ddof=1), "low": low, "high": high,
            "p": stats.ttest_rel(a, b).pvalue}


def _row(comparison, a: str, b: str, metric: str, epochs: int = 10) -> pd.Series:
    rows = comparison.rows
    rows = rows[(rows["a"] == a) & (rows["b"] == b) & (rows["metric"] == metric)
                & rows["training"].str.contains(f"epochs={epochs} ")]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_paired_stats_match_scipy() -> None:
    a, b = [42.0, 42.5, 41.8, 40.2], [40.0, 41.0, 39.5, 40.9]
    reference = _scipy_reference(a, b)
    result = paired_stats(np.subtract(a, b), higher_is_better=True)
    assert result.n == 4
    assert result.mean == pytest.approx(reference["mean"]) and result.std == pytest.approx(reference["std"])
    assert (result.low, result.high) == pytest.approx((reference["low"], reference["high"]))
    assert result.p_value == pytest.approx(reference["p"])
    assert (result.wins_a, result.wins_b, result.ties) == (3, 1, 0)
    # Lower is better: a negative difference is a win for a.
    lower = paired_stats([-0.02, 0.0, 0.01], higher_is_better=False)
    assert (lower.wins_a, lower.wins_b, lower.ties) == (1, 1, 1)
    # Equal differences: a point interval, not NaN.
    constant = paired_stats([0.5, 0.5, 0.5], higher_is_better=True)
    assert (constant.low, constant.high) == (0.5, 0.5) and verdict(constant, True) == "better"
    one = paired_stats([1.0], higher_is_better=True)
    assert one.n == 1 and np.isnan(one.std) and np.isnan(one.low) and verdict(one, True) == "one seed: no interval"
    with pytest.raises(ValueError):
        paired_stats([], higher_is_better=True)


def test_verdicts_against_scipy(db: Path) -> None:
    comparison = compare(store.read_results(db))
    # better: cmkd - kd on top-1, interval from scipy excludes 0 on the positive side.
    row = _row(comparison, "cmkd", "kd", "clean_acc")
    reference = _scipy_reference(TOP1["cmkd"], TOP1["kd"])
    assert reference["low"] > 0 and row["verdict"] == "better"
    assert row["n_paired"] == 3 and row["seeds"] == [0, 1, 2] and row["subset"] == "full" and row["suite"] == "clean"
    assert row["differences"] == pytest.approx(list(np.subtract(TOP1["cmkd"], TOP1["kd"])))
    assert row["mean_diff"] == pytest.approx(reference["mean"]) and row["std_diff"] == pytest.approx(reference["std"])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((reference["low"], reference["high"]))
    assert row["p_value"] == pytest.approx(reference["p"])
    assert (row["wins_a"], row["wins_b"], row["ties"]) == (3, 0, 0) and row["n_dropped"] == 0
    # Direction-aware: cmkd's ECE is lower -> negative differences -> better.
    row = _row(comparison, "cmkd", "kd", "ece")
    reference = _scipy_reference(ECE["cmkd"], ECE["kd"])
    assert reference["high"] < 0 and row["verdict"] == "better" and row["better"] == "lower"
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((reference["low"], reference["high"]))
    assert (row["wins_a"], row["wins_b"]) == (3, 0)
    # worse: cmkd's NLL is higher on every seed.
    row = _row(comparison, "cmkd", "kd", "nll")
    reference = _scipy_reference(NLL["cmkd"], NLL["kd"])
    assert reference["low"] > 0 and row["verdict"] == "worse" and (row["wins_a"], row["wins_b"]) == (0, 3)
    # not distinguishable, with a missing seed: dist has seeds 0 and 1 only, kd's seed 2 is dropped.
    row = _row(comparison, "dist", "kd", "clean_acc")
    reference = _scipy_reference(TOP1["dist"], TOP1["kd"][:2])
    assert reference["low"] < 0 < reference["high"] and row["verdict"] == "not distinguishable"
    assert row["n_paired"] == 2 and row["seeds"] == [0, 1] and row["dropped"] == ["kd:2"] and row["n_dropped"] == 1
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((reference["low"], reference["high"]))
    assert (row["wins_a"], row["wins_b"]) == (1, 1)


def test_subsets_groups_and_options(db: Path) -> None:
    comparison = compare(store.read_results(db))
    rows = comparison.rows
    # Corruption: kd and dist on first500, cmkd on first1000 -> only dist vs kd is compared, on first500.
    corruption = rows[rows["metric"] == "corruption_acc"]
    assert list(zip(corruption["a"], corruption["b"], corruption["subset"])) == [("dist", "kd", "first500")]
    assert list(corruption["differences"].iloc[0]) == [1.0, 1.0] and corruption["verdict"].iloc[0] == "better"
    # The ablation member is its own method, labelled by its differing option; one seed -> no interval.
    row = _row(comparison, "cmkd[cmkd_spearman=0.5]", "cmkd", "clean_acc")
    assert row["n_paired"] == 1 and row["verdict"] == "one seed: no interval" and np.isnan(row["ci_low"])
    assert row["differences"] == pytest.approx([41.0 - 42.0]) and row["dropped"] == ["cmkd:1", "cmkd:2"]
    # The 20-epoch students form their own group: cmkd - kd there is 10 - 60 on its single seed.
    row = _row(comparison, "cmkd", "kd", "clean_acc", epochs=20)
    assert row["differences"] == [-50.0] and row["n_paired"] == 1
    assert set(comparison.groups["methods"]) == {"cmkd cmkd[cmkd_spearman=0.5] dist kd", "cmkd kd"}
    assert "trained" not in " ".join(comparison.groups["methods"]) and TEACHER[:12] not in set(rows["a"])
    assert comparison.verdict_pairs == [("cmkd", "kd"), ("cmkd", "dist"), ("dist", "kd")]
    assert method_label("cmkd", json.dumps(_options("cmkd"))) == "cmkd"
    assert method_label("kd", json.dumps(_options("kd", kd_temperature=2.0))) == "kd[kd_temperature=2]"
    assert parse_pair("cmkd[cmkd_spearman=0.5]:cmkd") == ("cmkd[cmkd_spearman=0.5]", "cmkd")
    with pytest.raises(RobustKDError, match="expected A:B"):
        parse_pair("cmkd")
    with pytest.raises(RobustKDError, match="unknown method 'fitnet'"):
        compare(store.read_results(db), pairs=[("fitnet", "kd")])


def test_cli_compare(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.json"
    assert main(["compare", "--db", str(db), "--pair", "cmkd:kd", "--metric", "ece", "--metric", "clean_acc",
                 "--format", "json", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    body = json.loads(out.read_text())
    rows = {(r["metric"], r["training"].split()[0]): r for r in body["comparisons"]}
    assert {r["a"] + ":" + r["b"] for r in body["comparisons"]} == {"cmkd:kd"} and len(rows) == 3
    reference = _scipy_reference(ECE["cmkd"], ECE["kd"])
    ece = next(r for r in body["comparisons"] if r["metric"] == "ece")
    assert (ece["ci_low"], ece["ci_high"]) == pytest.approx((reference["low"], reference["high"]))
    assert main(["compare", "--db", str(db), "--teacher", TEACHER[:8]]) == 0
    text = capsys.readouterr().out
    assert "Verdicts at 95 %" in text and "cmkd vs kd" in text and "better (+1.93 [+0.93, +2.94], n=3)" in text
    assert "s0: +2.00, s1: +1.50, s2: +2.30" in text and "kd:2" in text
    assert main(["compare", "--db", str(db), "--format", "csv", "--out", str(tmp_path / "c.csv")]) == 0
    csv = pd.read_csv(tmp_path / "c.csv")
    assert {"mean_diff", "ci_low", "ci_high", "verdict", "dropped"} <= set(csv.columns)
    assert main(["compare", "--db", str(db), "--format", "md", "--metric", "nll"]) == 0
    assert "| metric | better | cmkd vs kd |" in capsys.readouterr().out
    capsys.readouterr()
    empty = tmp_path / "empty.db"
    store.connect(empty).close()
    (tmp_path / "file").write_text("")
    for argv, message in [(["--metric", "speed"], "--metric: unknown 'speed'"),
                          (["--pair", "cmkd:fitnet"], "unknown method 'fitnet'"),
                          (["--pair", "cmkd"], "expected A:B"),
                          (["--format", "xlsx"], "--format"),
                          (["--teacher", "abc"], "no distilled students"),
                          (["--out", str(tmp_path / "file" / "c.txt")], "cannot write"),
                          (["--db", str(empty)], "holds no results"),
                          (["--db", str(tmp_path / "none.db")], "no database at")]:
        argv = ["compare", "--db", str(db), *argv] if argv[0] != "--db" else ["compare", *argv]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("robustkd: error: ") and message in err and err.count("\n") == 1, err


def test_forest_plot_draws_each_pair_where_its_numbers_are(db: Path) -> None:
    from robustkd.results.paired_plot import VERDICT_COLOURS, comparison_figure

    comparison = compare(store.read_results(db), metrics=["clean_acc", "ece"], pairs=[("cmkd", "kd"), ("dist", "kd")])
    figure = comparison_figure(comparison)
    panels = {axis.get_title().split(" ")[0]: axis for axis in figure.axes}
    assert set(panels) == {"clean_acc", "ece"} and "lower is better" in panels["ece"].get_title()
    for metric, axis in panels.items():
        lines = {line.get_gid(): line for line in axis.get_lines() if line.get_gid()}
        ticks = [label.get_text() for label in axis.get_yticklabels()]
        for _, row in comparison.rows[comparison.rows["metric"] == metric].iterrows():
            pair = f"{row['a']} - {row['b']} | {row['group']}"
            y = int(lines[f"mean {pair}"].get_ydata()[0])
            assert ticks[y].startswith(f"{row['a']} − {row['b']} (group ") and f"n={row['n_paired']}" in ticks[y]
            seeds = lines[f"seeds {pair}"]
            assert sorted(seeds.get_xdata()) == pytest.approx(sorted(row["differences"]))
            assert set(seeds.get_ydata()) == {y}
            assert list(lines[f"mean {pair}"].get_xdata()) == pytest.approx([row["mean_diff"]])
            if row["n_paired"] >= 2:
                interval = lines[f"interval {pair}"]
                assert list(interval.get_xdata()) == pytest.approx([row["ci_low"], row["ci_high"]])
                assert interval.get_color() == VERDICT_COLOURS.get(row["verdict"], "#6e7781")
    # cmkd has the lower ECE on every seed: better (green) although its bar lies left of zero.
    ece = comparison.rows[(comparison.rows["metric"] == "ece") & (comparison.rows["a"] == "cmkd")].iloc[0]
    assert ece["verdict"] == "better" and ece["ci_high"] < 0
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_cli_compare_plot(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    plot = tmp_path / "forest.png"
    assert main(["compare", "--db", str(db), "--pair", "cmkd:kd", "--plot", str(plot)]) == 0
    assert "cmkd vs kd" in capsys.readouterr().out
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[1] > image.size[0] / 2
    (tmp_path / "file").write_text("")
    assert main(["compare", "--db", str(db), "--plot", str(tmp_path / "file" / "f.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustkd: error: --plot") and "cannot write" in err and err.count("\n") == 1
    assert main(["compare", "--db", str(db), "--pair", "cmkd:kd", "--metric", "corruption_acc",
                 "--plot", str(tmp_path / "none.png")]) == 2
    assert "nothing to plot" in capsys.readouterr().err and not (tmp_path / "none.png").exists()
    # An unwritable --out: neither the text nor the plot is written (and an existing plot is left as it was).
    (tmp_path / "kept.png").write_bytes(b"old")
    assert main(["compare", "--db", str(db), "--plot", str(tmp_path / "kept.png"),
                 "--out", str(tmp_path / "file" / "c.md"), "--format", "md"]) == 2
    err = capsys.readouterr().err  # refused before anything is rendered (robustkd/utils/output_path.py)
    assert err.startswith("robustkd: error: --out") and "cannot write" in err and err.count("\n") == 1, err
    assert (tmp_path / "kept.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "forest.png", "kept.png"]
    # Both given and writable: both written, the text as asked.
    assert main(["compare", "--db", str(db), "--plot", str(tmp_path / "kept.png"), "--out", str(tmp_path / "c.md"),
                 "--format", "md", "--metric", "ece"]) == 0
    assert (tmp_path / "kept.png").read_bytes()[:4] == b"\x89PNG" and "| metric |" in (tmp_path / "c.md").read_text()


def test_report_has_paired_section(db: Path) -> None:
    page = render_report(store.read_results(db))
    section = page.split("<h2>Paired comparison</h2>", 1)[1].split("<h2>", 1)[0]
    assert "3 seeds (0 1 2)" in section and "A seed pairs data order, augmentation and initialisation" in section
    assert "<span class='better'>better</span>" in section and "<span class='worse'>worse</span>" in section
    assert "not distinguishable" in section and "s0: +2.00" in section and "cmkd vs dist" in section
    # One forest plot per group with verdict pairs, as an embedded PNG that decodes.
    import base64
    import io

    from PIL import Image

    images = section.split("<img alt='paired differences' src='data:image/png;base64,")[1:]
    assert len(images) == 2  # the quick group and the 20-epoch group
    with Image.open(io.BytesIO(base64.b64decode(images[0].split("'", 1)[0]))) as image:
        assert image.format == "PNG" and image.size[1] > 200


def test_version_1_database_gains_the_cohort_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:  # the schema as version 1 wrote it
        connection.executescript(store.SCHEMA.replace(
            "    cohort TEXT,                     -- JSON: {path, member, members} for a cohort member, else null\n", ""))
        connection.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        connection.execute("INSERT INTO results (checkpoint_sha256, suite, suite_sha256, metric, subset, value) "
                           "VALUES ('x', 'clean', 's', 'top1', '', 1.0)")
    store.record_result(path, fabricate(tmp_path, method="kd", seed=0, suite="clean", metrics={"top1": 40.0}))
    rows = store.read_results(path)
    assert len(rows) == 2 and json.loads(rows["cohort"].dropna().iloc[0])["path"] == "runs/cohort"
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(store.SCHEMA_VERSION)
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RobustKDError, match="schema version 99"):
        store.read_results(path)
