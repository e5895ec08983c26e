"""Nothing lost, nothing wrong (issue 24): one test per finding of the hostile-input probe.

Each test's docstring names the finding it covers. Databases: robustkd/results/store.py and db_file.py;
checkpoints: robustkd/checkpoint/verify.py; official corruption files: robustkd/corruptions/official_check.py;
the rest: config files (robustkd/train/config.py), seeds (robustkd/utils/seeding.py MAX_SEED), suite arrays
(robustkd/evaluate/suite_params.py), safetensors writes (robustkd/utils/safetensors_io.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from robustkd.cli import main
from robustkd.errors import RobustKDError
from robustkd.results import store


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTKD_PROGRESS", "0")


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], fragment: str) -> str:
    """Run the CLI; assert exit 2 with exactly one stderr line, the project's prefix and ``fragment``."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err[-5:]
    assert len(err) == 1 and err[0].startswith("robustkd: error: "), err[-5:]
    assert fragment in err[0], err[0]
    return err[0]


def _nothing_in(folder: Path) -> None:
    assert not folder.exists() or not any(folder.rglob("*")), sorted(folder.rglob("*"))


def _fake_result(root: Path, checkpoint: str = "a" * 64, suite: str = "clean") -> Path:
    folder = root / f"{checkpoint[:6]}-{suite}"
    folder.mkdir(parents=True)
    metrics = {"top1": 40.0, "top5": 70.0}
    summary = {"name": f"resnet8-{checkpoint[:12]}", "architecture": "resnet8", "dataset": "cifar100",
               "clean_acc": 40.0, "suite": suite, "metrics": metrics, "units": {k: "percent" for k in metrics},
               "protocol": {"batch_size": 100}, "n_examples": 10000, "subset": False, "seed": 0, "device": "cpu",
               "package_versions": {"torch": "x"}, "checkpoint_sha256": checkpoint, "suite_file": "x.toml",
               "suite_sha256": "s" * 64, "created": "2026-11-27T00:00:00+00:00", "method": "kd",
               "teacher_sha256": "t" * 64, "method_options": {}, "kind": "distill", "training": {"recipe": "quick"}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _database(tmp_path: Path) -> Path:
    db = tmp_path / "dbs" / "robustkd.db"
    store.record_result(db, _fake_result(tmp_path / "results"))
    return db


def _rows(db: Path) -> int:
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        connection.close()


def _evaluate(checkpoint: Path, out: Path, db: Path | None = None, *extra: str) -> list[str]:
    return ["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(out),
            *(["--db", str(db)] if db is not None else []), *extra]


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` (a file or a folder) read-only for this process: ``chattr +i`` as root (who ignores permission
    bits), else the permission bits; restored afterwards."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("running as root without chattr +i: cannot make a path read-only")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)


# ----- a database that survives any kill -----

def _table_less(db: Path) -> None:
    """What a SIGKILL left while robustkd created the database: journal mode set, no schema (4 KiB)."""
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    assert db.stat().st_size == 4096


@pytest.mark.parametrize("leftover", ["table_less", "empty"])
def test_a_database_left_empty_by_a_kill_is_created_and_records(checkpoint: Path, tmp_path: Path,
                                                                leftover: str) -> None:
    """Finding: a SIGKILL while the database is created (journal mode set, schema not written) leaves a 4 KiB
    file with no tables, and every later evaluate (with or without --skip-finished) refuses it, so the finished
    result is never recorded. Such a file (or a 0-byte one) is now a new database."""
    out, db = tmp_path / "out", tmp_path / "robustkd.db"
    assert main(_evaluate(checkpoint, out, None, "--no-db")) == 0  # the finished result, never recorded
    if leftover == "table_less":
        _table_less(db)
    else:
        db.write_bytes(b"")
    assert main(_evaluate(checkpoint, out, db, "--skip-finished")) == 0
    assert _rows(db) > 0


def test_database_creation_is_all_or_nothing(tmp_path: Path) -> None:
    """Finding: database creation had no kill boundary and no atomic step. A kill just before the new file is
    linked into place leaves no database (and no table-less file); the next recording creates it whole."""
    db, folder = tmp_path / "robustkd.db", _fake_result(tmp_path / "results")
    code = (f"from pathlib import Path; from robustkd.results import store; "
            f"store.record_result(Path({str(db)!r}), Path({str(folder)!r}))")
    log = tmp_path / "boundaries.log"
    killed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ROBUSTKD_KILL_AT": "1",
                                                               "ROBUSTKD_KILL_LOG": str(log)}, capture_output=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "link database" in log.read_text()
    assert not db.exists()
    assert store.record_result(db, folder).rows == 2 and _rows(db) == 2
    assert not list(tmp_path.glob(".robustkd.db.*"))  # the killed creator's temporary file was removed


def test_a_foreign_sqlite_file_is_never_adopted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Finding (rule): a SQLite file with other tables was adopted (tables added, journal mode changed) when a
    result was recorded into it. It is refused with one line and left byte for byte as it was."""
    db = tmp_path / "other.db"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE users (name TEXT)")
    connection.commit()
    connection.close()
    before = db.read_bytes()
    with pytest.raises(RobustKDError, match="SQLite database of something else"):
        store.record_result(db, _fake_result(tmp_path / "results"))
    _refused(["results", "import", str(tmp_path / "results"), "--db", str(db)], capsys, "something else")
    assert db.read_bytes() == before and not Path(f"{db}-wal").exists()


def test_a_newer_database_is_refused_before_any_suite_runs(checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Finding: a database of a newer schema was reported only after the suite ran (result written, not
    recorded). check_database refuses it up front: "written by a newer robustkd"."""
    db = _database(tmp_path)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    connection.close()
    _refused(_evaluate(checkpoint, tmp_path / "out", db), capsys, "written by a newer robustkd")
    _nothing_in(tmp_path / "out")


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_database_is_refused_up_front_and_still_read(checkpoint: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str], what: str) -> None:
    """Findings: a read-only database (file or folder) was reported only after the suite ran, as "is not a
    robustkd results database"; and leaderboard, report and compare no longer read it (a regression). Now
    evaluate refuses it before any suite runs, saying it is read-only, and the readers read it."""
    db = _database(tmp_path)
    with _read_only(db if what == "file" else db.parent):
        message = _refused(_evaluate(checkpoint, tmp_path / "out", db), capsys, "is read-only")
        assert "not a robustkd" not in message
        _nothing_in(tmp_path / "out")
        capsys.readouterr()
        assert main(["leaderboard", "--db", str(db)]) == 0
        assert "resnet8" in capsys.readouterr().out
        assert main(["report", "--db", str(db), "--out", str(tmp_path / "report.html")]) == 0
        assert main(["compare", "--db", str(db)]) in (0, 2)  # one model: nothing to pair, but no traceback
        assert sorted(store.read_results(db)["metric"]) == ["top1", "top5"]


def test_a_database_locked_past_the_wait_is_refused_up_front(checkpoint: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding: a database locked by another writer for longer than the wait was reported after the suite ran,
    as "is not a robustkd results database". check_database now waits, then says it is locked, before any
    suite runs."""
    db = _database(tmp_path)
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.3)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        message = _refused(_evaluate(checkpoint, tmp_path / "out", db), capsys, "is locked by another writer")
        assert "not a robustkd" not in message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _nothing_in(tmp_path / "out")


def _damage(db: Path, kind: str) -> None:
    connection = sqlite3.connect(db)
    if kind == "text_schema_version":
        connection.execute("UPDATE meta SET value = 'three' WHERE key = 'schema_version'")
    elif kind == "text_value":
        connection.execute("UPDATE results SET value = 'high' WHERE metric = 'top1'")
    else:
        connection.execute("ALTER TABLE results DROP COLUMN device")
    connection.commit()
    connection.close()


@pytest.mark.parametrize("kind", ["text_schema_version", "text_value", "dropped_column"])
def test_a_damaged_database_is_one_line(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        kind: str) -> None:
    """Finding: damaged databases (a text schema_version, a text value, a dropped column) gave tracebacks
    (exit 3). Every command now says, in one line, that the database is damaged and how."""
    db = _database(tmp_path)
    _damage(db, kind)
    _refused(_evaluate(checkpoint, tmp_path / "out", db), capsys, "is damaged")
    _nothing_in(tmp_path / "out")
    _refused(["leaderboard", "--db", str(db)], capsys, "is damaged")
    _refused(["report", "--db", str(db), "--out", str(tmp_path / "r.html")], capsys, "is damaged")
    _refused(["results", "import", str(tmp_path / "results"), "--db", str(db)], capsys, "is damaged")


# ----- files that cannot lie -----

def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns("state"))
    return target


def _rehash(folder: Path) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    (folder / "model.json").write_text(json.dumps(meta))


def test_a_header_relabelling_float_weights_as_int32_is_refused(checkpoint: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Finding: a safetensors header that relabels a float tensor as int32 (same bytes, hash re-recorded)
    loaded, converted to other numbers, and scored 30 % (the real model 65 %). Dtype kinds and shapes must match
    the architecture's state dict."""
    folder = _copy(checkpoint, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    key = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32" and k.endswith(".weight"))
    header[key]["dtype"] = "I32"
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= size
    (folder / "model.safetensors").write_bytes(data[:8] + text.ljust(size) + data[8 + size:])
    _rehash(folder)
    _refused(_evaluate(folder, tmp_path / "out", None, "--no-db"), capsys, f"tensor {key} is stored as int32")
    _nothing_in(tmp_path / "out")


def test_a_sidecar_normalization_that_differs_from_the_weights_is_refused(checkpoint: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Finding: the sidecar's normalization was validated but never compared with the mean/std buffers held in
    the weights; a sidecar could record other numbers than the model uses."""
    folder = _copy(checkpoint, tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    meta["normalization"]["mean"] = [m + 0.01 for m in meta["normalization"]["mean"]]
    (folder / "model.json").write_text(json.dumps(meta))
    _refused(_evaluate(folder, tmp_path / "out", None, "--no-db"), capsys, "normalization mean")
    _nothing_in(tmp_path / "out")


def test_a_symlinked_weights_file_outside_the_folder_is_refused(checkpoint: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Finding: a weights file that is a symlink escaped the "plain name in the sidecar's folder" rule; symlinks
    are now resolved before the confinement check."""
    folder = _copy(checkpoint, tmp_path)
    elsewhere = tmp_path / "elsewhere.safetensors"
    (folder / "model.safetensors").rename(elsewhere)
    (folder / "model.safetensors").symlink_to(elsewhere)
    _refused(_evaluate(folder, tmp_path / "out", None, "--no-db"), capsys, "outside the sidecar's folder")
    _nothing_in(tmp_path / "out")


@pytest.mark.parametrize("kind, fragment", [("nested", "too deeply"), ("huge", "a sidecar is at most")])
def test_a_deeply_nested_or_huge_sidecar_is_one_line(checkpoint: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], kind: str,
                                                     fragment: str) -> None:
    """Finding: deeply nested sidecar JSON raised json's RecursionError (a traceback); the sidecar's size was
    unbounded (a valid sidecar padded to 5 MiB was read whole). Both are one line now."""
    folder = _copy(checkpoint, tmp_path)
    if kind == "nested":
        (folder / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    else:
        meta = json.loads((folder / "model.json").read_text())
        (folder / "model.json").write_text(json.dumps({**meta, "padding": "x" * (5 << 20)}))
    _refused(_evaluate(folder, tmp_path / "out", None, "--no-db"), capsys, fragment)


# ----- official corruption files -----

N_IMAGES = 20


def _synthetic_test_labels() -> np.ndarray:
    from robustkd.data.sources import load_image_dataset

    return load_image_dataset("synthetic", "test", Path("data"), announce=lambda line: None).labels.numpy()


def _official(folder: Path, images: object = None, labels: object = None, *, truncate: bool = False) -> None:
    folder.mkdir(parents=True)
    first = _synthetic_test_labels()[:N_IMAGES]
    images = np.zeros((5 * N_IMAGES, 32, 32, 3), dtype=np.uint8) if images is None else images
    labels = np.tile(first, 5).astype(np.uint8) if labels is None else labels
    np.save(folder / "fog.npy", images, allow_pickle=True)
    np.save(folder / "labels.npy", labels, allow_pickle=True)
    if truncate:
        data = (folder / "fog.npy").read_bytes()
        (folder / "fog.npy").write_bytes(data[:len(data) // 2])


def _change_third_block(labels: np.ndarray) -> np.ndarray:
    changed = labels.copy()
    changed[2 * N_IMAGES] = (changed[2 * N_IMAGES] + 1) % 10
    return changed


def _labels(transform) -> np.ndarray:
    return transform(np.tile(_synthetic_test_labels()[:N_IMAGES], 5))


OFFICIAL_CASES = [  # (name, make the folder, a fragment of the refusal: the new rule's words, else the file's name)
    ("mnist_c_28x28", lambda d: _official(d, np.zeros((5 * N_IMAGES, 28, 28, 3), np.uint8)), "28x28 images"),
    ("tiny_imagenet_c_64x64", lambda d: _official(d, np.zeros((5 * N_IMAGES, 64, 64, 3), np.uint8)), "64x64 images"),
    ("object_array", lambda d: _official(d, np.array([None] * 5, dtype=object)), "fog.npy"),
    ("float_images", lambda d: _official(d, np.zeros((5 * N_IMAGES, 32, 32, 3), np.float32)), "fog.npy"),
    ("channels_first", lambda d: _official(d, np.zeros((5 * N_IMAGES, 3, 32, 32), np.uint8)), "fog.npy"),
    ("rows_not_5n", lambda d: _official(d, np.zeros((5 * N_IMAGES - 1, 32, 32, 3), np.uint8),
                                        _labels(lambda l: l[:-1])), "fog.npy"),
    ("zero_rows", lambda d: _official(d, np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.uint8)), "fog.npy"),
    ("label_count", lambda d: _official(d, labels=_labels(lambda l: l[:-5])), "labels.npy"),
    ("float_labels", lambda d: _official(d, labels=_labels(lambda l: l.astype(np.float32))), "labels.npy"),
    ("labels_out_of_range", lambda d: _official(d, labels=_labels(lambda l: l + 10)), "labels.npy"),
    ("labels_per_block_differ", lambda d: _official(d, labels=_labels(_change_third_block)), "labels"),
    ("labels_of_another_test_set", lambda d: _official(d, labels=_labels(lambda l: (l + 1) % 10)), "differ from the"),
    ("truncated", lambda d: _official(d, truncate=True), "fog.npy"),
    ("fewer_than_the_clean_pass", lambda d: _official(d, np.zeros((5 * 10, 32, 32, 3), np.uint8),
                                                      _labels(lambda l: l.reshape(5, -1)[:, :10].ravel())),
     "10 images per severity"),
]


@pytest.mark.parametrize("make, fragment", [c[1:] for c in OFFICIAL_CASES], ids=[c[0] for c in OFFICIAL_CASES])
def test_official_corruption_files_are_checked_whole_before_any_work(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make, fragment: str) -> None:
    """Findings: official .npy files of 28x28 or 64x64 images were evaluated as CIFAR-C; every other refusal
    (object arrays, dtype, layout, row count, labels, truncation, 0 rows: a traceback) came after the clean
    pass and left a .partial folder. All are refused in one line before any work, with nothing written."""
    make(tmp_path / "c")
    suite = tmp_path / "suite.toml"
    suite.write_text(f'suite = "corruption"\nsource = "official"\nofficial_dir = "{tmp_path / "c"}"\n'
                     'corruptions = ["fog"]\nbatch_size = 10\n')
    out = tmp_path / "out"
    _refused(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", str(N_IMAGES),
              "--out", str(out)], capsys, fragment)
    _nothing_in(out)


def test_good_official_files_still_evaluate(checkpoint: Path, tmp_path: Path) -> None:
    """The control of the cases above: the same folder with 32x32 images and the test set's labels runs."""
    _official(tmp_path / "c")
    suite = tmp_path / "suite.toml"
    suite.write_text(f'suite = "corruption"\nsource = "official"\nofficial_dir = "{tmp_path / "c"}"\n'
                     'corruptions = ["fog"]\nseverities = [1]\nbatch_size = 10\n')
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", str(N_IMAGES),
                 "--out", str(tmp_path / "out")]) == 0


# ----- no tracebacks -----

@pytest.mark.parametrize("key, values", [("severities", "[1, 1]"), ("corruptions", '["fog", "fog"]')])
def test_duplicate_severities_or_corruptions_are_refused_when_the_suite_is_loaded(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, values: str) -> None:
    """Finding: duplicate severities or corruptions in a suite file were evaluated (twice) and then failed with
    a traceback after the cells ran. The suite file is refused when loaded."""
    suite = tmp_path / "suite.toml"
    suite.write_text(f'suite = "corruption"\n{key} = {values}\n')
    _refused(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--out", str(tmp_path / "out")],
             capsys, "twice")
    _nothing_in(tmp_path / "out")


def test_seeds_beyond_64_bits_are_one_line(checkpoint: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Finding: --seed / --seeds >= 2^64 gave a traceback (torch's manual_seed overflows). Seeds are at most
    2^63 - 1 (SQLite stores them as signed 64-bit integers): one line, nothing written."""
    huge = str(2**64)
    _refused(["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--seed", huge,
              "--run-dir", str(tmp_path / "train")], capsys, "seed")
    _refused(["distill", "--teacher", str(checkpoint), "--student", "resnet8", "--method", "kd", "--dataset",
              "synthetic", "--epochs", "1", "--seeds", f"0,{huge}", "--run-dir", str(tmp_path / "distill")],
             capsys, "--seeds")
    _refused(["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--seed", str(2**63),
              "--run-dir", str(tmp_path / "train")], capsys, "seed")
    _nothing_in(tmp_path / "train")
    _nothing_in(tmp_path / "distill")


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def test_a_yaml_alias_bomb_under_a_known_key_is_one_line(tmp_path: Path) -> None:
    """Finding: a 600-byte YAML alias bomb under a known config key raised MemoryError while the error message
    was formatted. Config files are bounded (size, values after alias expansion, depth) and error messages show
    truncated reprs. Run in a child process with an 8 GiB address-space limit, so the old behaviour fails
    instead of exhausting the machine."""
    lines = ["lr:", '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"  - &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    config = tmp_path / "bomb.yaml"
    config.write_text("\n".join(lines) + "\n")
    assert config.stat().st_size < 700
    done = subprocess.run([sys.executable, "-m", "robustkd.cli", "train", "--model", "resnet8", "--dataset",
                           "synthetic", "--config", str(config), "--run-dir", str(tmp_path / "run")],
                          preexec_fn=_limit_memory, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ROBUSTKD_PROGRESS": "0", "OMP_NUM_THREADS": "1"})
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "bomb.yaml" in err[0], done.stderr[-2000:]
    _nothing_in(tmp_path / "run")


@pytest.mark.parametrize("failing_write", [4, 6], ids=["model_checkpoint", "training_state"])
def test_a_full_disk_during_train_is_one_line_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        failing_write: int) -> None:
    """Finding: ENOSPC while train saved weights gave a traceback (exit 3): safetensors reports it as a
    SafetensorError, not an OSError. It is now one line naming the file, the last good checkpoint stays
    loadable, and the run resumes. (Epoch 2's 4th write is its model checkpoint, the 6th its training state.)"""
    import safetensors.torch
    from safetensors import SafetensorError

    from robustkd.checkpoint import load_checkpoint

    real = safetensors.torch.serialize_file
    calls: list[str] = []

    def full_disk(tensors, filename, metadata=None):
        calls.append(str(filename))
        if len(calls) == failing_write:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "serialize_file", full_disk)
    run = tmp_path / "run"
    argv = ["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "50",
            "--lr", "0.05", "--milestones", "2", "--train-limit", "100", "--test-limit", "50", "--run-dir", str(run)]
    message = _refused(argv, capsys, "No space left on device")
    assert calls[-1] in message  # the file being written
    kept = load_checkpoint(run)  # the weights' hash, dtypes and normalization verified
    assert kept.meta["epoch"] == (1 if failing_write == 4 else 2)
    monkeypatch.setattr(safetensors.torch, "serialize_file", real)
    assert main([*argv, "--resume"]) == 0
    assert load_checkpoint(run).meta["epoch"] == 2


def test_a_full_disk_during_an_atomic_write_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    """Probe: disk full during a plain write named no path. An fsync failing with ENOSPC now raises an
    OSError naming the target (the CLI prints it as one line), and no temporary file is left."""
    import errno
    from unittest import mock

    from robustkd.cli import os_error_message
    from robustkd.utils.atomic import write_text_atomic

    target = tmp_path / "leaderboard.csv"
    with mock.patch("os.fsync", side_effect=OSError(errno.ENOSPC, "No space left on device")):
        with pytest.raises(OSError) as raised:
            write_text_atomic(target, "a,b\n")
    assert os_error_message(raised.value) == f"{target}: No space left on device"
    assert list(tmp_path.iterdir()) == []
