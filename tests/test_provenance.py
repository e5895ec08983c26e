"""Every result says what it measured: official corruption files (counts, labels, sources with sha256),
--official-dir, `robustkd corrupt --n-examples` files, --threads, file permissions, the leaderboard's
clean accuracy."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from robustkd.cli import main
from robustkd.utils.atomic import write_text_atomic

SUITE = 'suite = "corruption"\nbatch_size = 50\ncorruptions = ["fog"]\nseverities = [1, 2]\n'


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`robustkd corrupt` output for the first 50 synthetic test images (the test set has 200)."""
    out = tmp_path_factory.mktemp("official") / "SYN-C"
    assert main(["corrupt", "--dataset", "synthetic", "--out", str(out), "--corruptions", "fog", "--n-examples", "50",
                 "--batch-size", "25"]) == 0
    return out


def _summary(out: Path, suite: str) -> dict:
    (path,) = out.glob(f"*/{suite}/summary.json")
    return json.loads(path.read_text())


def test_corrupt_says_when_its_files_are_robustkd_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    assert main(["corrupt", "--dataset", "synthetic", "--out", str(out), "--corruptions", "fog", "--n-examples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "20 images per severity, not 10000" in printed and "robustkd only" in printed
    assert np.load(out / "fog.npy").shape == (100, 32, 32, 3)


def test_a_smaller_official_set_is_an_error_unless_the_prefix_is_asked_for(
        checkpoint: Path, official: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "c.toml"
    suite.write_text(SUITE)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--official-dir", str(official),
            "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holds 50 images per severity but the clean pass has 200" in err and "--n-examples 50" in err
    assert not list((tmp_path / "out").glob("*/corruption*"))  # nothing recorded, no result folder
    assert main(args + ["--n-examples", "50"]) == 0
    summary = _summary(tmp_path / "out", "corruption-first50")
    assert summary["subset"] is True and summary["n_examples"] == 50 and summary["counts"] == {"per_cell": 50}
    sha = hashlib.sha256((official / "fog.npy").read_bytes()).hexdigest()
    assert summary["protocol"]["source"] == "official"
    assert summary["protocol"]["cell_sources"] == {"fog": f"official file {official.resolve() / 'fog.npy'} sha256 {sha}"}
    assert summary["protocol"]["official_dir"] == str(official.resolve())


def test_official_labels_must_be_the_test_sets(checkpoint: Path, official: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    (shuffled / "fog.npy").write_bytes((official / "fog.npy").read_bytes())
    labels = np.load(official / "labels.npy")
    np.save(shuffled / "labels.npy", np.roll(labels, 1))
    suite = tmp_path / "c.toml"
    suite.write_text(SUITE)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--official-dir", str(shuffled),
                 "--n-examples", "50", "--out", str(tmp_path / "out")]) == 2
    assert "labels of" in capsys.readouterr().err


def test_auto_never_switches_silently_to_generated_images(checkpoint: Path, official: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "c.toml"
    suite.write_text(f'suite = "corruption"\nofficial_dir = "{official}"\ncorruptions = ["fog", "snow"]\n')
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", "50",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"official_dir {official} lacks snow" in err and 'source = "generated"' in err


def test_official_dir_needs_the_corruption_suite(checkpoint: Path, official: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--official-dir", str(official),
                 "--out", str(tmp_path)]) == 2
    assert "--official-dir applies to the corruption suite" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "corruption", "--official-dir",
                 str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_threads_are_set_and_recorded(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--threads", "1",
                     "--out", str(tmp_path)]) == 0
        assert _summary(tmp_path, "clean")["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--threads", "0",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--threads 0: expected a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    from robustkd.checkpoint.io import save_checkpoint
    from robustkd.models.zoo import build_model

    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "result.json", "{}")
        # safetensors replaces the temporary file with one of its own (created 0600): the mode still follows
        save_checkpoint(tmp_path / "model", build_model("resnet8", 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                        {"architecture": "resnet8", "num_classes": 10, "dataset": "synthetic"})
    finally:
        os.umask(old)
    for name in ("result.json", "model.json", "model.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors", "result.json"]


def test_leaderboard_clean_acc_comes_only_from_the_clean_suite(checkpoint: Path, tmp_path: Path) -> None:
    from robustkd.results.leaderboard import build_leaderboard
    from robustkd.results.store import read_results

    suite = tmp_path / "a.toml"
    suite.write_text('suite = "adversarial"\nbatch_size = 10\nattacks = ["fgsm"]\neps_curve_255 = []\n'
                     'masking_examples = 0\n')
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(suite), "--n-examples", "10",
                 "--out", str(tmp_path)]) == 0
    table = build_leaderboard(read_results(tmp_path / "robustkd.db"))
    assert table["clean_acc"].isna().all()  # the adversarial suite's 10-image clean accuracy is not shown as it
    # the eps and steps actually used qualify the adversarial columns
    assert table["protocols"].iloc[0] == "adversarial:linf_eps_255=8 adversarial:pgd_steps=20"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(tmp_path)]) == 0
    table = build_leaderboard(read_results(tmp_path / "robustkd.db"))
    assert table["clean_acc"].iloc[0] == pytest.approx(_summary(tmp_path, "clean")["metrics"]["top1"])


def test_n_examples_covering_the_test_set_is_not_a_subset(checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--n-examples", "5000",
                 "--out", str(tmp_path)]) == 0
    assert "covers the whole synthetic test set (200 images)" in capsys.readouterr().out
    summary = _summary(tmp_path, "clean")  # no -first5000 folder
    assert summary["subset"] is False and summary["n_examples"] == 200


def test_a_busy_machine_gets_a_note_not_a_changed_default(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from robustkd.utils import threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (7.6, 5.0, 4.0))
    monkeypatch.setattr(threads, "interactive", lambda: True)
    try:
        torch.set_num_threads(2)
        assert threads.set_threads(None) == 2  # the default does not depend on the load
        assert "consider --threads 1" in capsys.readouterr().err
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.2, 0.1, 0.1))
        assert threads.set_threads(None) == 2 and capsys.readouterr().err == ""
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (7.6, 5.0, 4.0))
        monkeypatch.setattr(threads, "interactive", lambda: False)
        assert threads.set_threads(None) == 2 and capsys.readouterr().err == ""  # scripts: no note
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
