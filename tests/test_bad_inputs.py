"""The bad-input battery: every case is one line ``robustkd: error: ...`` naming the input, exit 2, and
nothing half-written. Cases are generated from the contracts where a contract exists (every suite field
out of range or of the wrong type) and listed by hand for the CLI, config files, sidecars, result
summaries and data files."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from robustkd.cli import main
from robustkd.evaluate.suite import suites_in_order
from robustkd.evaluate.suite_params import Range


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTKD_PROGRESS", "0")


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], fragment: str) -> str:
    """Run the CLI; assert exit 2 with exactly one stderr line, the project's prefix and ``fragment``."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("robustkd: error: "), err
    assert fragment in err[0], err[0]
    return err[0]


def _nothing_in(folder: Path) -> None:
    assert not folder.exists() or not any(folder.rglob("*")), sorted(folder.rglob("*"))


# ----- suite files: generated from every suite's params contract -----

def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _bad_suite_values() -> list[tuple[str, str, object]]:
    """(suite, key, bad value) for every field: wrong type, and out of its range or choices."""
    cases = []
    for cls in suites_in_order():
        for field in dataclasses.fields(cls.params):
            default, bounds = field.default, field.metadata.get("range", Range())
            choices = field.metadata.get("choices", ())
            if isinstance(default, bool):
                cases.append((cls.name, field.name, "yes"))
                continue
            if isinstance(default, tuple):
                cases.append((cls.name, field.name, "not an array"))
                if field.metadata.get("nonempty"):
                    cases.append((cls.name, field.name, []))
                if choices:
                    cases.append((cls.name, field.name, ["bogus"]))
                elif bounds.low is not None:
                    cases.append((cls.name, field.name, [bounds.low - 1]))
                continue
            if isinstance(default, str):
                if choices:
                    cases.append((cls.name, field.name, "bogus"))
                cases.append((cls.name, field.name, 5))
                continue
            cases.append((cls.name, field.name, "ten"))
            if bounds.low is not None:
                cases.append((cls.name, field.name, type(default)(bounds.low - 1)))
            if bounds.high is not None:
                cases.append((cls.name, field.name, type(default)(bounds.high + 1)))
            if isinstance(default, float):
                cases.append((cls.name, field.name, float("nan")))
    return cases


SUITE_CASES = _bad_suite_values()


@pytest.mark.parametrize("suite, key, value", SUITE_CASES, ids=[f"{s}.{k}={v!r}" for s, k, v in SUITE_CASES])
def test_suite_file_values(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], suite: str,
                           key: str, value: object) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(f'suite = "{suite}"\n{key} = {_toml(value)}\n')
    out = tmp_path / "out"
    _refused(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(path), "--out", str(out)], capsys, f"{key} = ")
    _nothing_in(out)


SUITE_FILE_CASES = [
    ("no_suite", "batch_size = 10\n", "must name its suite"),
    ("unknown_suite", 'suite = "fairness"\n', "unknown suite 'fairness'"),
    ("unknown_key", 'suite = "clean"\nbatchsize = 10\n', "unknown key(s) batchsize"),
    ("not_toml", 'suite = "clean\n', "does not parse"),
    ("binary", "\udcff", "does not parse"),
    ("suite_not_a_string", "suite = 5\n", "must name its suite"),
    ("official_without_dir", 'suite = "corruption"\nsource = "official"\n', "needs official_dir"),
    ("unknown_attack", 'suite = "adversarial"\nattacks = ["pgd_linfinity"]\n', "unknown attack 'pgd_linfinity'"),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in SUITE_FILE_CASES], ids=[c[0] for c in SUITE_FILE_CASES])
def test_suite_files(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                     fragment: str) -> None:
    path = tmp_path / "suite.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    _refused(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(path), "--out", str(tmp_path / "out")],
             capsys, fragment)
    _nothing_in(tmp_path / "out")


# ----- evaluate flags and paths -----

def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not what was expected\n")
    return path


EVALUATE_CASES: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    ("n_examples_zero", lambda c, t: ["--suite", "clean", "--n-examples", "0"], "--n-examples must be a positive"),
    ("n_examples_negative", lambda c, t: ["--suite", "clean", "--n-examples", "-5"], "--n-examples must be a positive"),
    ("n_examples_text", lambda c, t: ["--suite", "clean", "--n-examples", "all"], "invalid int value: 'all'"),
    ("threads_zero", lambda c, t: ["--suite", "clean", "--threads", "0"], "--threads 0: expected a positive"),
    ("threads_negative", lambda c, t: ["--suite", "clean", "--threads", "-2"], "--threads -2: expected a positive"),
    ("threads_text", lambda c, t: ["--suite", "clean", "--threads", "many"], "invalid int value"),
    ("unknown_suite_name", lambda c, t: ["--suite", "robust"], "unknown suite 'robust'"),
    ("missing_suite_file", lambda c, t: ["--suite", str(t / "none.toml")], "no file"),
    ("suite_file_is_a_folder", lambda c, t: ["--suite", str((t / "d.toml").mkdir() or t / "d.toml")], "d.toml"),
    ("official_dir_missing", lambda c, t: ["--suite", "corruption", "--official-dir", str(t / "none")],
     "no such folder"),
    ("official_dir_without_corruption", lambda c, t: ["--suite", "clean", "--official-dir", str(t)],
     "applies to the corruption suite"),
    ("overwrite_and_skip", lambda c, t: ["--suite", "clean", "--overwrite", "--skip-finished"], "contradict"),
    ("relations_without_teacher", lambda c, t: ["--suite", "relations"], "pass --teacher"),
    ("teacher_missing", lambda c, t: ["--suite", "relations", "--teacher", str(t / "nothing")], "nothing"),
    ("device_unknown", lambda c, t: ["--suite", "clean", "--device", "tpu"], "tpu"),
    ("out_under_a_file", lambda c, t: ["--suite", "clean", "--out", str(_text_file(t) / "results")], "notes.txt"),
    ("db_is_text", lambda c, t: ["--suite", "clean", "--db", str(_text_file(t))], "not a robustkd results database"),
    ("db_is_a_folder", lambda c, t: ["--suite", "clean", "--db", str(t)], "is a folder"),
    ("no_suite", lambda c, t: [], "--suite"),
]


@pytest.mark.parametrize("build, fragment", [c[1:] for c in EVALUATE_CASES], ids=[c[0] for c in EVALUATE_CASES])
def test_evaluate_flags(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], build, fragment: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    extra = build(checkpoint, work)
    out = ["--out", str(tmp_path / "out")] if "--out" not in extra else []
    _refused(["evaluate", "--checkpoint", str(checkpoint), *out, *extra], capsys, fragment)
    _nothing_in(tmp_path / "out")


# ----- checkpoints and sidecars -----

def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns("state"))
    return target


def _edit_sidecar(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    (folder / "model.json").write_text(json.dumps(meta))


SIDECAR_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("sha_is_int", lambda f: _edit_sidecar(f, weights_sha256=12), "weights_sha256"),
    ("sha_wrong", lambda f: _edit_sidecar(f, weights_sha256="0" * 64), "sha256"),
    ("classes_text", lambda f: _edit_sidecar(f, num_classes="ten"), "num_classes"),
    ("classes_huge", lambda f: _edit_sidecar(f, num_classes=10**12), "num_classes"),
    ("classes_zero", lambda f: _edit_sidecar(f, num_classes=0), "num_classes"),
    ("normalization_empty", lambda f: _edit_sidecar(f, normalization={}), "normalization"),
    ("seed_text", lambda f: _edit_sidecar(f, seed="abc"), "seed"),
    ("architecture_unknown", lambda f: _edit_sidecar(f, architecture="resnet9000"), "resnet9000"),
    ("architecture_missing", lambda f: _edit_sidecar(f, architecture=None), "architecture"),
    ("weights_file_escapes", lambda f: _edit_sidecar(f, weights_file="../ckpt/model.safetensors"), "weights_file"),
    ("weights_file_absolute", lambda f: _edit_sidecar(f, weights_file=str(f / "model.safetensors")), "weights_file"),
    ("weights_missing", lambda f: (f / "model.safetensors").unlink(), "model.safetensors"),
    ("weights_truncated", lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:100]),
     "model.safetensors"),
    ("weights_not_safetensors", lambda f: (f / "model.safetensors").write_bytes(b"\x80\x04K\x01."), "model.safetensors"),
    ("sidecar_not_json", lambda f: (f / "model.json").write_text("{architecture: resnet8"), "model.json"),
    ("sidecar_a_list", lambda f: (f / "model.json").write_text("[1, 2]"), "model.json"),
    ("sidecar_missing", lambda f: (f / "model.json").unlink(), "ckpt"),
    ("dataset_unknown", lambda f: _edit_sidecar(f, dataset="mnist"), "mnist"),
]


@pytest.mark.parametrize("damage, fragment", [c[1:] for c in SIDECAR_CASES], ids=[c[0] for c in SIDECAR_CASES])
def test_broken_checkpoints(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage,
                            fragment: str) -> None:
    folder = _copy(checkpoint, tmp_path)
    damage(folder)
    _refused(["evaluate", "--checkpoint", str(folder), "--suite", "clean", "--out", str(tmp_path / "out")], capsys,
             fragment)
    _nothing_in(tmp_path / "out")


# ----- result summaries (results import) -----

def _result(checkpoint: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(out), "--no-db"]) == 0
    (folder,) = out.glob("*/clean")
    return folder


def _edit_summary(folder: Path, **changes: object) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    summary.update(changes)
    (folder / "summary.json").write_text(json.dumps(summary))


SUMMARY_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("not_json", lambda f: (f / "summary.json").write_text("{"), "not valid JSON"),
    ("nan_metric", lambda f: (f / "summary.json").write_text(
        (f / "summary.json").read_text().replace('"top1": ', '"top1": NaN, "x": ')), "not valid JSON"),
    ("metrics_a_list", lambda f: _edit_summary(f, metrics=[1, 2]), "metrics"),
    ("metric_text", lambda f: _edit_summary(f, metrics={"top1": "high"}), "metrics"),
    ("n_examples_text", lambda f: _edit_summary(f, n_examples="ten"), "n_examples"),
    ("subset_text", lambda f: _edit_summary(f, subset="no"), "subset"),
    ("missing_suite", lambda f: _edit_summary(f, suite=None), "suite"),
    ("missing_sha", lambda f: _edit_summary(f, checkpoint_sha256=None), "checkpoint_sha256"),
    ("a_list", lambda f: (f / "summary.json").write_text("[]"), "JSON object"),
    ("lacks_fields", lambda f: (f / "summary.json").write_text('{"suite": "clean"}'), "lacks"),
]


@pytest.mark.parametrize("damage, fragment", [c[1:] for c in SUMMARY_CASES], ids=[c[0] for c in SUMMARY_CASES])
def test_broken_summaries(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage,
                          fragment: str) -> None:
    folder = _result(checkpoint, tmp_path)
    damage(folder)
    capsys.readouterr()
    db = tmp_path / "db.sqlite"
    _refused(["results", "import", str(folder), "--db", str(db)], capsys, fragment)
    assert not db.exists() or main(["leaderboard", "--db", str(db)]) == 2  # no rows were recorded


# ----- results, leaderboard, report, compare -----

RESULTS_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("import_nothing", lambda t: ["results", "import", str(t / "none")], "no result directories"),
    ("leaderboard_no_db", lambda t: ["leaderboard", "--db", str(t / "none.db")], "no database"),
    ("leaderboard_db_text", lambda t: ["leaderboard", "--db", str(_text_file(t))], "not a robustkd results database"),
    ("report_no_db", lambda t: ["report", "--db", str(t / "none.db"), "--out", str(t / "r.html")], "no database"),
    ("compare_no_db", lambda t: ["compare", "--db", str(t / "none.db")], "no database"),
    ("radius_text", lambda t: ["leaderboard", "--db", str(t / "none.db"), "--radius", "wide"], "invalid float value"),
]


@pytest.mark.parametrize("build, fragment", [c[1:] for c in RESULTS_CASES], ids=[c[0] for c in RESULTS_CASES])
def test_results_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str], build, fragment: str) -> None:
    _refused(build(tmp_path), capsys, fragment)


@pytest.fixture(scope="module")
def database(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("db")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(out)]) == 0
    return out / "robustkd.db"


BOARD_CASES: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    ("radius_off_grid", lambda d, t: ["leaderboard", "--db", str(d), "--radius", "0.3"], "--radius 0.30"),
    ("radius_negative", lambda d, t: ["leaderboard", "--db", str(d), "--radius", "-1"], "--radius -1.00"),
    ("sort_unknown", lambda d, t: ["leaderboard", "--db", str(d), "--sort", "speed"], "--sort: unknown column 'speed'"),
    ("export_format", lambda d, t: ["leaderboard", "export", "--db", str(d), "--format", "xls", "--out",
                                    str(t / "x.xls")], "xls"),
    ("export_under_file", lambda d, t: ["leaderboard", "export", "--db", str(d), "--out",
                                        str(_text_file(t) / "board.csv")], "notes.txt"),
    ("grid_without_corruption", lambda d, t: ["leaderboard", "export", "--db", str(d), "--out", str(t / "b.csv"),
                                              "--grid-out", str(t / "g.csv")], "no corruption results"),
    ("report_under_file", lambda d, t: ["report", "--db", str(d), "--out", str(_text_file(t) / "r.html")],
     "notes.txt"),
    ("compare_format", lambda d, t: ["compare", "--db", str(d), "--format", "pdf"], "pdf"),
    ("compare_radius", lambda d, t: ["compare", "--db", str(d), "--radius", "0.1"], "--radius 0.10"),
]


@pytest.mark.parametrize("build, fragment", [c[1:] for c in BOARD_CASES], ids=[c[0] for c in BOARD_CASES])
def test_leaderboard_report_compare(database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], build,
                                    fragment: str) -> None:
    capsys.readouterr()
    _refused(build(database, tmp_path), capsys, fragment)
    assert not (tmp_path / "b.csv").exists() and not (tmp_path / "x.xls").exists()


# ----- train and distill: flags and config files -----

TRAIN_CASES: list[tuple[str, list[str], str]] = [
    ("lr_text", ["--lr", "fast"], "invalid float value"),
    ("lr_negative", ["--lr", "-0.1"], "lr"),
    ("epochs_zero", ["--epochs", "0"], "epochs"),
    ("batch_zero", ["--batch-size", "0"], "batch_size"),
    ("lr_decay_negative", ["--lr-decay", "-1"], "lr_decay"),
    ("noise_nan", ["--noise-sd", "nan"], "noise_sd"),
    ("noise_negative", ["--noise-sd", "-0.1"], "noise_sd"),
    ("seed_negative", ["--seed", "-1"], "seed"),
    ("milestones_text", ["--milestones", "a,b"], "milestones"),
    ("model_unknown", ["--model", "resnet9000"], "resnet9000"),
    ("dataset_unknown", ["--dataset", "mnist"], "mnist"),
    ("amp_unknown", ["--amp", "fp8"], "fp8"),
    ("config_missing", ["--config", "/nonexistent/cfg.toml"], "cfg.toml"),
    ("train_limit_zero", ["--train-limit", "0"], "train_limit"),
    ("threads_zero", ["--threads", "0"], "--threads 0: expected a positive integer"),
]


@pytest.mark.parametrize("extra, fragment", [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_train_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str) -> None:
    run = tmp_path / "run"
    argv = ["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--run-dir", str(run)]
    _refused(argv + extra, capsys, fragment)
    _nothing_in(run)


CONFIG_CASES: list[tuple[str, str, str]] = [
    ("lr_text", 'lr = "abc"\n', "lr"),
    ("milestones_int", "milestones = 5\n", "milestones"),
    ("unknown_key", "learning_rate = 0.1\n", "learning_rate"),
    ("epochs_float", "epochs = 2.5\n", "epochs"),
    ("not_toml", "lr = = 0.1\n", "cfg.toml"),
    ("noise_text", 'noise_sd = "lots"\n', "noise_sd"),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_train_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text(text)
    run = tmp_path / "run"
    _refused(["train", "--model", "resnet8", "--dataset", "synthetic", "--config", str(config), "--run-dir", str(run)],
             capsys, fragment)
    _nothing_in(run)


DISTILL_CASES: list[tuple[str, list[str], str]] = [
    ("method_unknown", ["--method", "crd"], "crd"),
    ("ce_weight_zero", ["--method", "ce", "--ce-weight", "0"], "ce"),
    ("seeds_text", ["--method", "kd", "--seeds", "a,b"], "seeds"),
    ("seeds_negative", ["--method", "kd", "--seeds", "-1"], "seeds"),
    ("option_unknown", ["--method", "cmkd[bogus=1]"], "bogus"),
    ("option_text", ["--method", "kd[kd_temperature=hot]"], "kd_temperature"),
    ("student_unknown", ["--method", "kd", "--student", "resnet9000"], "resnet9000"),
    ("temperature_negative", ["--method", "kd", "--kd-temperature", "-4"], "kd_temperature"),
    ("duplicate_member", ["--method", "kd,kd", "--seeds", "0"], "kd"),
    ("threads_negative", ["--method", "kd", "--threads", "-1"], "--threads -1: expected a positive integer"),
]


@pytest.mark.parametrize("extra, fragment", [c[1:] for c in DISTILL_CASES], ids=[c[0] for c in DISTILL_CASES])
def test_distill_flags(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                       fragment: str) -> None:
    run = tmp_path / "run"
    argv = ["distill", "--teacher", str(checkpoint), "--student", "resnet8", "--dataset", "synthetic", "--epochs", "1",
            "--run-dir", str(run)]
    if "--student" in extra:
        argv = argv[:3] + argv[5:]
    _refused(argv + extra, capsys, fragment)
    _nothing_in(run)


def test_distill_teacher_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(["distill", "--teacher", str(tmp_path / "none"), "--student", "resnet8", "--method", "kd",
              "--dataset", "synthetic", "--run-dir", str(tmp_path / "run")], capsys, "none")
    _nothing_in(tmp_path / "run")


# ----- data files -----

def _cifar_folder(tmp_path: Path, labels: object, data: object = None) -> Path:
    root = tmp_path / "data" / "cifar-100-python"
    root.mkdir(parents=True)
    images = np.zeros((4, 3072), dtype=np.uint8) if data is None else data
    for split in ("train", "test"):  # CIFAR's own layout: bytes keys (Python 2 pickles)
        with open(root / split, "wb") as handle:
            pickle.dump({b"data": images, b"fine_labels": labels}, handle)
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": [str(i).encode() for i in range(100)]}))
    return tmp_path / "data"


DATA_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("labels_text", lambda t: _cifar_folder(t, ["a", "b", "c", "d"]), "labels must be integers"),
    ("labels_nested", lambda t: _cifar_folder(t, [[1], [2], [3], [4]]), "labels must be integers"),
    ("labels_out_of_range", lambda t: _cifar_folder(t, [0, 1, 2, 100]), "labels outside [0, 100)"),
    ("labels_count", lambda t: _cifar_folder(t, [0, 1]), "expected 4 labels"),
    ("data_wrong_width", lambda t: _cifar_folder(t, [0, 1, 2, 3], np.zeros((4, 100), dtype=np.uint8)),
     "'data' must be a uint8 array of shape (N, 3072)"),
    ("data_float", lambda t: _cifar_folder(t, [0, 1, 2, 3], np.zeros((4, 3072), dtype=np.float32)),
     "'data' must be a uint8 array"),
    ("too_few_per_class", lambda t: _cifar_folder(t, [0, 1, 2, 3]), "the files are incomplete or not CIFAR"),
    ("asks_for_a_tebibyte", lambda t: _huge_pickle(t), "1024.0 GiB"),
]


def _huge_pickle(tmp_path: Path) -> Path:
    """A 48-byte pickle whose only instruction is numpy.ndarray((2**30, 2**10), uint8): 1 TiB if allocated."""
    root = _cifar_folder(tmp_path, [0, 1, 2, 3])
    (root / "cifar-100-python" / "train").write_bytes(
        b"\x80\x02cnumpy\nndarray\nq\x00J\x00\x00\x00@J\x00\x04\x00\x00\x86q\x01X\x02\x00\x00\x00u1q\x02\x86q\x03Rq\x04.")
    return root


@pytest.mark.parametrize("make, fragment", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_broken_cifar_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], make, fragment: str) -> None:
    data = make(tmp_path)
    run = tmp_path / "run"
    _refused(["train", "--model", "resnet8", "--dataset", "cifar100", "--data-dir", str(data), "--epochs", "1",
              "--run-dir", str(run)], capsys, fragment)
    _nothing_in(run)


def test_the_battery_holds_at_least_150_cases() -> None:
    total = (len(SUITE_CASES) + len(SUITE_FILE_CASES) + len(EVALUATE_CASES) + len(SIDECAR_CASES) + len(SUMMARY_CASES)
             + len(RESULTS_CASES) + len(BOARD_CASES) + len(TRAIN_CASES) + len(CONFIG_CASES) + len(DISTILL_CASES)
             + 1 + len(DATA_CASES))
    assert total >= 150, total
