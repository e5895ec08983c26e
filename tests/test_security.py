"""Review findings (2026-12-05), each a test that failed before its fix: nothing in a file runs code or redirects
a write, and legitimate files are not refused."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path

import pytest
import torch

from robustkd.cli import main
from robustkd.errors import RobustKDError
from robustkd.models import build_network


class _CreatesMarker:
    """Unpickling this calls ``open(marker, 'w')``: the file appears if the pickle's code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("robustkd: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def imported_timm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("timm")
    from robustkd.models.foreign import timm_network

    work = tmp_path_factory.mktemp("timm")
    torch.manual_seed(0)
    torch.save(timm_network("resnet10t", 10).state_dict(), work / "w.pth")
    assert main(["import", "timm:resnet10t", "--weights", str(work / "w.pth"), "--dataset", "synthetic",
                 "--out", str(work / "ckpt")]) == 0
    return work / "ckpt"


def test_a_sidecar_cannot_make_timm_unpickle_a_file(imported_timm: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """timm.create_model(checkpoint_path=F) loads F with weights_only=False: a sidecar naming it must be refused
    before timm sees it, and the pickle's code must not run (S1)."""
    import shutil

    evil, marker = tmp_path / "evil.pth", tmp_path / "PWNED"
    torch.save({"state_dict": _CreatesMarker(marker)}, evil)
    copy = tmp_path / "ckpt"
    shutil.copytree(imported_timm, copy)
    sidecar = json.loads((copy / "model.json").read_text())
    sidecar.setdefault("architecture_options", {})["kwargs"] = {"checkpoint_path": str(evil)}
    (copy / "model.json").write_text(json.dumps(sidecar))
    capsys.readouterr()
    assert main(["info", str(copy)]) == 2
    assert "checkpoint_path refused" in _one_line(capsys) and not marker.exists()
    assert main(["import", "timm:resnet10t", "--model-arg", f"checkpoint_path={evil}", "--dataset", "synthetic",
                 "--out", str(tmp_path / "out")]) == 2
    assert "checkpoint_path refused" in _one_line(capsys) and not marker.exists() and not (tmp_path / "out").exists()


def test_a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """A planted ``.robustkd.lock`` link was truncated and overwritten through; a FIFO hung the check (S2, S4)."""
    from robustkd.utils.folder_lock import lock_folder, refuse_if_held

    precious = tmp_path / "precious.db"
    precious.write_text("IMPORTANT")
    (tmp_path / "run").mkdir()
    os.symlink(precious, tmp_path / "run" / ".robustkd.lock")
    with pytest.raises(RobustKDError, match="is not a regular file"):
        lock_folder(tmp_path / "run")
    assert precious.read_text() == "IMPORTANT"
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / ".robustkd.lock")
    refuse_if_held(tmp_path / "fifo")  # returns (a FIFO is no holder), never blocks
    with pytest.raises(RobustKDError, match="is not a regular file"):
        lock_folder(tmp_path / "fifo")


def test_a_link_planted_in_a_run_folder_is_replaced_not_written_through(tmp_path: Path) -> None:
    """robustkd's own files (configs, sidecars) never follow a link: the link is replaced and its target is
    untouched (S3); a user-named output is written through its link (follow_links)."""
    from robustkd.utils.atomic import write_json_atomic, write_text_atomic

    precious = tmp_path / "robustkd.db"
    precious.write_text("DATABASE")
    (tmp_path / "run").mkdir()
    os.symlink(precious, tmp_path / "run" / "config.json")
    write_json_atomic(tmp_path / "run" / "config.json", {"lr": 0.1})
    assert precious.read_text() == "DATABASE"
    assert not (tmp_path / "run" / "config.json").is_symlink()
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"lr": 0.1}
    target = tmp_path / "board.csv"
    os.symlink(target, tmp_path / "link.csv")
    write_text_atomic(tmp_path / "link.csv", "a\n", follow_links=True)
    assert (tmp_path / "link.csv").is_symlink() and target.read_text() == "a\n"


def test_a_state_dict_without_batchnorm_step_counters_imports(tmp_path: Path) -> None:
    """Files saved before PyTorch 0.4.1 have no ``num_batches_tracked``; torch's strict load accepts them, so
    must import (C2); their logits equal the network's."""
    torch.manual_seed(1)
    network = build_network("resnet8", 10).eval()
    state = {key: value for key, value in network.state_dict().items() if not key.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    assert main(["import", str(tmp_path / "old.pth"), "--architecture", "resnet8", "--dataset", "synthetic",
                 "--out", str(tmp_path / "ckpt")]) == 0
    from robustkd.checkpoint import load_checkpoint
    from robustkd.data import dataset_info
    from robustkd.models import Normalized

    info = dataset_info("synthetic")
    original = Normalized(network, info.mean, info.std).eval()
    loaded = load_checkpoint(tmp_path / "ckpt").model.eval()
    inputs = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), original(inputs))


def test_a_state_dict_with_non_string_keys_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Integer keys crashed the import with an AttributeError (E2)."""
    torch.save({0: torch.zeros(1)}, tmp_path / "intkey.pth")
    assert main(["import", str(tmp_path / "intkey.pth"), "--architecture", "resnet8", "--dataset", "synthetic",
                 "--out", str(tmp_path / "out")]) == 2
    assert "keys must be parameter names" in _one_line(capsys) and not (tmp_path / "out").exists()


def test_a_dangling_link_as_import_out_is_refused_before_the_import(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """It failed only after the whole import, naming a temporary folder (E3)."""
    torch.save(build_network("resnet8", 10).state_dict(), tmp_path / "w.pth")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    assert main(["import", str(tmp_path / "w.pth"), "--architecture", "resnet8", "--dataset", "synthetic",
                 "--out", str(tmp_path / "dangling")]) == 2
    assert "--out" in _one_line(capsys) and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "w.pth"]
