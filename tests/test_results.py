"""Results store (SQLite), leaderboard, exports and the HTML report."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from robustkd.cli import main
from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS
from robustkd.errors import RobustKDError
from robustkd.results import store
from robustkd.results.leaderboard import (
    IDENTITY_COLUMNS,
    build_leaderboard,
    corruption_grid,
    display_table,
    filter_and_sort,
)
from robustkd.results.report import render_report

STABLE_METRIC_COLUMNS = ["clean_acc", "corruption_acc", "mce", "pgd_acc", "pgd_acc_eps0.5", "pgd_acc_eps1",
                         "pgd_acc_eps2", "autoattack_acc", "worst_case_linf_acc",
                         "ece", "nll", "brier", "certified_acc_r0.25", "relation_pearson", "relation_spearman",
                         "relation_kendall", "class_correlation_distance"]


def fake_result(root: Path, checkpoint: str, suite: str, metrics: dict, *, method: str = "kd", seed: int = 0,
                subset: int | None = None, teacher: str = "t" * 64, suite_sha: str = "s" * 64,
                options: dict | None = None, protocol: dict | None = None) -> Path:
    folder = root / f"{checkpoint[:6]}-{suite}-{suite_sha[:4]}-{subset or 'full'}"
    folder.mkdir(parents=True)
    summary = {"name": f"resnet8-{checkpoint[:12]}", "architecture": "resnet8", "dataset": "cifar100",
               "clean_acc": metrics.get("top1", 40.0), "suite": suite, "metrics": metrics,
               "units": {k: "percent" for k in metrics}, "protocol": protocol or {"batch_size": 100},
               "n_examples": subset or 10000, "subset": subset is not None, "seed": seed, "device": "cpu",
               "package_versions": {"torch": "x"}, "checkpoint_sha256": checkpoint, "suite_file": "x.toml",
               "suite_sha256": suite_sha, "created": "2026-11-27T00:00:00+00:00", "method": method,
               "teacher_sha256": teacher, "method_options": options or {"kd_temperature": 4.0}, "kind": "distill",
               "training": {"recipe": "quick"}}
    (folder / "summary.json").write_text(json.dumps(summary))
    if suite == "corruption":
        grid = pd.DataFrame({s: [0.5] * 15 for s in range(1, 6)}, index=pd.Index(BENCHMARK_CORRUPTIONS, name="corruption"))
        grid.to_csv(folder / "accuracy_grid.csv")
    return folder


def _count(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def test_record_replaces_its_own_rows(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    folder = fake_result(tmp_path, "a" * 64, "corruption", {"corruptions_acc": 50.0, "mce_unnormalized": 50.0})
    first = store.record_result(db, folder)
    assert first.rows == 2 + 75 and first.replaced == 0  # 2 metrics + the 15 x 5 cells
    again = store.record_result(db, folder)
    assert again.replaced == 77 and _count(db) == 77
    # A subset result of the same checkpoint and suite is a different result, kept beside the full one.
    store.record_result(db, fake_result(tmp_path, "a" * 64, "corruption", {"corruptions_acc": 49.0}, subset=500))
    assert _count(db) == 77 + 1 + 75
    rows = store.read_results(db)
    assert set(rows["subset"]) == {"", "first500"} and rows["method_options"].iloc[0] == '{"kd_temperature": 4.0}'


def test_a_crash_mid_write_leaves_the_old_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.db"
    folder = fake_result(tmp_path, "b" * 64, "calibration", {"ece": 0.1, "nll": 2.0})
    store.record_result(db, folder)
    real_connect = store.connect

    class Failing:
        def __init__(self, connection: sqlite3.Connection) -> None:
            self.connection = connection

        def execute(self, *args):
            return self.connection.execute(*args)

        def executemany(self, *args):
            raise OSError("disk full")

        def close(self) -> None:
            self.connection.close()

    monkeypatch.setattr(store, "connect", lambda path: Failing(real_connect(path)))
    with pytest.raises(OSError):
        store.record_result(db, folder)
    monkeypatch.setattr(store, "connect", real_connect)
    rows = store.read_results(db)
    assert sorted(rows["metric"]) == ["ece", "nll"]  # the DELETE was rolled back with the failed INSERT


def _record_many(args: tuple[str, list[str]]) -> None:
    db, folders = args
    for folder in folders:
        store.record_result(Path(db), Path(folder))


def test_concurrent_writers_lose_no_rows(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    jobs = []
    for worker in range(4):
        folders = [str(fake_result(tmp_path / f"w{worker}", f"{worker}{i}".ljust(64, "c"), "calibration",
                                   {"ece": 0.1, "nll": 1.0, "brier": 0.5})) for i in range(6)]
        jobs.append((str(db), folders))
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_record_many, jobs)
    assert _count(db) == 4 * 6 * 3


def test_import_skips_work_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "results"
    fake_result(root / "m", "d" * 64, "clean", {"top1": 41.0, "top5": 70.0})
    partial = fake_result(root / "m", "e" * 64, "clean", {"top1": 1.0})
    partial.rename(root / "m" / ".clean.partial")
    assert main(["results", "import", str(root), "--db", str(tmp_path / "r.db")]) == 0
    assert "added 2 rows" in capsys.readouterr().out
    assert main(["results", "import", str(root), "--db", str(tmp_path / "r.db")]) == 0
    assert "replaced its 2 earlier rows with 2 rows" in capsys.readouterr().out
    assert set(store.read_results(tmp_path / "r.db")["checkpoint_sha256"]) == {"d" * 64}


def _board(tmp_path: Path) -> pd.DataFrame:
    db = tmp_path / "r.db"
    for seed, (top1, ece) in enumerate([(40.0, 0.10), (42.0, 0.14)]):
        sha = f"kd{seed}".ljust(64, "0")
        store.record_result(db, fake_result(tmp_path, sha, "clean", {"top1": top1}, seed=seed))
        store.record_result(db, fake_result(tmp_path, sha, "calibration", {"ece": ece, "nll": 2.0, "brier": 0.7},
                                            seed=seed))
    store.record_result(db, fake_result(tmp_path, "dist0".ljust(64, "0"), "clean", {"top1": 45.0}, method="dist"))
    store.record_result(db, fake_result(tmp_path, "dist0".ljust(64, "0"), "clean", {"top1": 10.0}, method="dist",
                                        subset=100))
    store.record_result(db, fake_result(tmp_path, "dist0".ljust(64, "0"), "corruption", {"corruptions_acc": 30.0},
                                        method="dist", subset=500))
    return store.read_results(db)


def test_leaderboard_groups_seeds_and_prefers_full_results(tmp_path: Path) -> None:
    table = build_leaderboard(_board(tmp_path))
    assert list(table.columns[:len(IDENTITY_COLUMNS)]) == IDENTITY_COLUMNS
    assert [c for c in table.columns[len(IDENTITY_COLUMNS):] if not c.endswith(("_std", "_n"))] == STABLE_METRIC_COLUMNS
    kd = table[table["method"] == "kd"].iloc[0]
    assert kd["n_seeds"] == 2 and kd["seeds"] == "0 1"
    assert kd["clean_acc"] == pytest.approx(41.0) and kd["clean_acc_std"] == pytest.approx(2 ** 0.5)
    assert kd["ece"] == pytest.approx(0.12) and kd["subsets"] == ""
    assert kd["clean_acc_n"] == 2 and kd["corruption_acc_n"] == 0
    dist = table[table["method"] == "dist"].iloc[0]
    assert dist["clean_acc"] == 45.0 and pd.isna(dist["clean_acc_std"])  # the full result wins over first100
    assert dist["subsets"] == "corruption:first500" and dist["corruption_acc"] == 30.0
    best_first = filter_and_sort(table, sort="clean_acc")
    assert list(best_first["method"]) == ["dist", "kd"]
    assert list(filter_and_sort(table, sort="ece")["method"])[0] == "kd"  # lower is better; dist has none
    assert list(filter_and_sort(table, method="kd")["method"]) == ["kd"]
    with pytest.raises(RobustKDError, match="unknown column 'speed'"):
        filter_and_sort(table, sort="speed")
    grid = corruption_grid(store.read_results(tmp_path / "r.db"))
    assert len(grid) == 75 and set(grid["accuracy"]) == {50.0} and set(grid["subset"]) == {"first500"}


def test_a_metric_evaluated_on_fewer_seeds_shows_its_own_count(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    for seed, top1 in enumerate([40.0, 42.0, 44.0]):
        store.record_result(db, fake_result(tmp_path, f"kd{seed}".ljust(64, "0"), "clean", {"top1": top1}, seed=seed))
    store.record_result(db, fake_result(tmp_path, "kd0".ljust(64, "0"), "calibration",
                                        {"ece": 0.1, "nll": 2.0, "brier": 0.7}, seed=0))
    table = build_leaderboard(store.read_results(db))
    row = table.iloc[0]
    assert row["n_seeds"] == 3 and row["clean_acc_n"] == 3 and row["ece_n"] == 1
    shown = display_table(table).iloc[0]
    assert shown["clean_acc"] == "42.00 ± 2.00 (n=3)"
    assert shown["ece"] == "0.100"  # one seed so far: neither a std nor the group's n=3


def test_exports(tmp_path: Path) -> None:
    _board(tmp_path)
    db = str(tmp_path / "r.db")
    for fmt in ("csv", "json", "md", "html"):
        assert main(["leaderboard", "export", "--db", db, "--format", fmt, "--out", str(tmp_path / f"b.{fmt}"),
                     "--grid-out", str(tmp_path / "grid.csv")]) == 0
    csv = pd.read_csv(tmp_path / "b.csv")
    assert len(csv) == 2 and "clean_acc_std" in csv.columns and "n_seeds" in csv.columns
    entries = json.loads((tmp_path / "b.json").read_text())
    assert {"name", "architecture", "dataset", "clean_acc", "autoattack_acc", "corruptions_acc", "eps"} <= set(entries[0])
    assert entries[0]["clean_acc"] in ("41.00", "45.00")
    assert (tmp_path / "b.md").read_text().startswith("| model | teacher | dataset | clean_acc")
    assert "41.00 ± 1.41 (n=2)" in (tmp_path / "b.md").read_text()
    assert "<table" in (tmp_path / "b.html").read_text()
    assert pd.read_csv(tmp_path / "grid.csv").shape == (75, 7)
    assert main(["leaderboard", "export", "--db", db, "--format", "xlsx", "--out", str(tmp_path / "b.x")]) == 2


def test_evaluate_records_and_leaderboard_shows(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(out)]) == 0
    assert f"{out / 'robustkd.db'}: added" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(out), "--overwrite"]) == 0
    assert "replaced its 2 earlier rows with 2 rows" in capsys.readouterr().out
    assert main(["leaderboard", "--db", str(out / "robustkd.db")]) == 0
    shown = capsys.readouterr().out
    assert "resnet8/trained" in shown and "synthetic" in shown
    assert main(["leaderboard", "--db", str(tmp_path / "none.db")]) == 2
    assert "no database at" in capsys.readouterr().err


def test_report_is_self_contained(tmp_path: Path, checkpoint: Path) -> None:
    out = tmp_path / "results"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--suite", "calibration",
                 "--out", str(out)]) == 0
    results = store.read_results(out / "robustkd.db")
    page = render_report(results)
    assert "<h2>Leaderboard</h2>" in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert page.count("<table") >= 2 and "reliability diagram" in page  # leaderboard + units (no students here)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="needs Chromium (apt-get install chromium; .ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path, checkpoint: Path) -> None:
    out = tmp_path / "results"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--suite", "calibration",
                 "--out", str(out)]) == 0
    report = tmp_path / "report.html"
    assert main(["report", "--db", str(out / "robustkd.db"), "--out", str(report)]) == 0
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
            "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(base + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = dom.stdout.count("<img")
    assert images >= 1 and f'data-images-ok="{images}/{images}"' in dom.stdout  # every plot decoded
    assert "Uncaught" not in dom.stderr and "Failed to load resource" not in dom.stderr
    shot = tmp_path / "report.png"
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1400,2400", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("L").getextrema()
        assert image.size == (1400, 2400) and colours[0] < 100 and colours[1] > 200  # text and plots drawn


def test_only_checkpoints_differing_in_their_seed_are_grouped(tmp_path: Path) -> None:
    """Three seed-0 checkpoints trained differently are three models; two seeds of one config are one."""
    db = tmp_path / "r.db"
    trainings = [{"recipe": "quick", "epochs": 3, "epochs_completed": 3, "lr_decay": 0.1, "train_limit": None},
                 {"recipe": "quick", "epochs": 3, "epochs_completed": 1, "lr_decay": 0.1, "train_limit": None},
                 {"recipe": "quick", "epochs": 3, "epochs_completed": 3, "lr_decay": 0.2, "train_limit": 50}]
    for number, training in enumerate(trainings):
        folder = fake_result(tmp_path, f"m{number}".ljust(64, "0"), "clean", {"top1": 10.0 * (number + 1)})
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "training": training}))
        store.record_result(db, folder)
    for seed in (1, 2):  # two more seeds of the first configuration
        folder = fake_result(tmp_path, f"s{seed}".ljust(64, "0"), "clean", {"top1": 12.0}, seed=seed)
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "training": trainings[0]}))
        store.record_result(db, folder)
    table = build_leaderboard(store.read_results(db)).sort_values("clean_acc")
    assert list(table["n_seeds"]) == [3, 1, 1]
    assert list(table["seeds"]) == ["0 1 2", "0", "0"]
    assert table["clean_acc"].tolist() == pytest.approx([(10.0 + 12.0 + 12.0) / 3, 20.0, 30.0])
    shown = display_table(table)
    assert "±" not in " ".join(shown["clean_acc"].iloc[1:])  # a group of one has no spread
    # One name per model: the settings that differ between the three are appended to each name, and only those.
    assert list(table["model"]) == [
        'resnet8/kd (epochs_completed=3, lr_decay=0.1, train_limit=null)',
        'resnet8/kd (epochs_completed=1, lr_decay=0.1, train_limit=null)',
        'resnet8/kd (epochs_completed=3, lr_decay=0.2, train_limit=50)']


def test_grid_export_without_corruption_results_is_refused_before_writing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    store.record_result(db, fake_result(tmp_path, "kd0".ljust(64, "0"), "clean", {"top1": 40.0}))
    assert corruption_grid(store.read_results(db)).empty
    assert main(["leaderboard", "export", "--db", str(db), "--format", "csv", "--out", str(tmp_path / "b.csv"),
                 "--grid-out", str(tmp_path / "grid.csv")]) == 2
    err = capsys.readouterr().err
    assert err == "robustkd: error: leaderboard export --grid-out: the database holds no corruption results\n"
    assert not (tmp_path / "b.csv").exists() and not (tmp_path / "grid.csv").exists()


def test_ablation_members_are_separate_rows_labelled_by_their_options(tmp_path: Path) -> None:
    """Members of one cohort that differ in a method option (cmkd_spearman) are different models."""
    db = tmp_path / "r.db"
    for seed in (0, 1):
        for tag, options in (("d", {"cmkd_spearman": 1.0}), ("h", {"cmkd_spearman": 0.5})):
            checkpoint = f"{tag}{seed}" * 32
            store.record_result(db, fake_result(tmp_path, checkpoint, "clean", {"top1": 40.0 + seed}, method="cmkd",
                                                seed=seed, options=options))
    table = build_leaderboard(store.read_results(db)).set_index("model")
    assert sorted(table.index) == ["resnet8/cmkd", "resnet8/cmkd[cmkd_spearman=0.5]"]
    assert (table["n_seeds"] == 2).all()


CERTIFIED = {"certified_acc_r0.25": 20.0, "n_certified": 102.0}


@pytest.mark.parametrize(("protocol", "prefix", "label"), [
    ({"skip": 99, "max": -1}, None, "skip99"),
    ({"skip": 19, "max": 500}, None, "skip19-max500"),
    ({"skip": 99, "max": -1}, 2000, "first2000-skip99"),
    ({"skip": 1, "max": -1}, None, ""),
    ({"skip": 1, "max": -1}, 2000, "first2000"),
])
def test_a_certified_selection_is_labelled_a_subset(tmp_path: Path, protocol: dict, prefix: int | None,
                                                     label: str) -> None:
    db = tmp_path / "r.db"
    store.record_result(db, fake_result(tmp_path, "c".ljust(64, "0"), "certified", CERTIFIED, subset=prefix,
                                        protocol={"sigma": 0.25, "n": 10000, **protocol}))
    results = store.read_results(db)
    assert set(results["subset"]) == {label}
    row = build_leaderboard(results).iloc[0]
    assert row["subsets"] == (f"certified:{label}" if label else "")
    assert row["certified_acc_r0.25"] == 20.0


def test_version_2_database_relabels_certified_selections(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    store.record_result(db, fake_result(tmp_path, "c".ljust(64, "0"), "certified", CERTIFIED,
                                        protocol={"skip": 99, "max": -1}))
    store.record_result(db, fake_result(tmp_path, "c".ljust(64, "0"), "clean", {"top1": 40.0}, subset=500))
    store.record_result(db, fake_result(tmp_path, "d".ljust(64, "0"), "certified", CERTIFIED, subset=300,
                                        protocol={"skip": 7, "max": -1}))
    with sqlite3.connect(db) as connection:  # as robustkd's schema version 2 recorded them
        connection.execute("UPDATE results SET subset = '' WHERE subset = 'skip99'")
        connection.execute("UPDATE results SET subset = 'first300' WHERE subset = 'first300-skip7'")
        connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    results = store.read_results(db)
    labels = results.groupby(["checkpoint_sha256", "suite"])["subset"].agg(set).to_dict()
    assert labels == {("c".ljust(64, "0"), "certified"): {"skip99"}, ("c".ljust(64, "0"), "clean"): {"first500"},
                      ("d".ljust(64, "0"), "certified"): {"first300-skip7"}}
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
    store.record_result(db, fake_result(tmp_path / "again", "c".ljust(64, "0"), "certified", CERTIFIED,
                                        protocol={"skip": 99, "max": -1}))
    assert _count(db) == len(results)  # re-recording replaces the relabelled rows instead of adding to them


def test_relabelling_runs_once_and_touches_only_version_2_labels(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    store.record_result(db, fake_result(tmp_path, "c".ljust(64, "0"), "certified", CERTIFIED, subset=2000,
                                        protocol={"skip": 99, "max": -1}))
    store.record_result(db, fake_result(tmp_path, "e".ljust(64, "0"), "clean", {"top1": 40.0}))
    with sqlite3.connect(db) as connection:
        # Labels robustkd never wrote (hand-made, or from a later version) and one that is already version 3.
        connection.execute("UPDATE results SET subset = 'imagenet-val-a' WHERE suite = 'clean'")
        connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    before = store.read_results(db)
    assert set(before["subset"]) == {"first2000-skip99", "imagenet-val-a"}  # a second pass changes nothing
    # A migration that finds the version already raised under its lock (another process was first) stops.
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE results SET subset = 'first2000' WHERE suite = 'certified'")
        connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    connection = sqlite3.connect(db, isolation_level=None)
    real_execute = connection.execute

    class RacedConnection:  # the version reads 2 before the lock and 3 under it
        reads = 0

        def execute(self, sql: str, *args):
            if "schema_version" in sql and sql.startswith("SELECT"):
                RacedConnection.reads += 1
                return real_execute("SELECT ?", ("2" if RacedConnection.reads == 1 else "3",))
            return real_execute(sql, *args)

    store._migrate(RacedConnection(), db)
    assert RacedConnection.reads == 2
    assert {row[0] for row in real_execute("SELECT DISTINCT subset FROM results WHERE suite = 'certified'")} == {"first2000"}
    connection.close()
