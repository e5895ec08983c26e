"""Named selections of test images: RobustBench's 5,000 ImageNet ids and Cohen et al.'s every 100th image, their
labels in result folders and the results store, and the refusals."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from robustkd.cli import main
from robustkd.data.selections import Selection, robustbench_image_ids, selection_indices
from robustkd.errors import RobustKDError


def test_robustbench_ids_are_the_5000_files_robustbench_ships_in_its_order() -> None:
    ids = robustbench_image_ids()
    assert len(ids) == 5000 and len(set(ids)) == 5000
    assert ids[0] == "n09468604/ILSVRC2012_val_00015253.JPEG"  # the first line of robustbench's file
    assert all(i.count("/") == 1 and i.startswith("n") and i.endswith(".JPEG") for i in ids)


def test_robustbench_selection_maps_ids_to_folder_positions_in_the_file_order() -> None:
    ids = robustbench_image_ids()
    # A validation folder in ImageFolder order (sorted), holding the 5,000 and some others.
    paths = sorted([f"/data/imagenet/val/{i}" for i in ids] + [f"/data/imagenet/val/n99999999/extra_{k}.JPEG"
                                                               for k in range(3)])
    indices = selection_indices(Selection.ROBUSTBENCH_5000, "imagenet", len(paths), paths)
    assert len(indices) == 5000
    assert ["/".join(Path(paths[i]).parts[-2:]) for i in indices] == ids


def test_robustbench_selection_refuses_a_folder_without_its_images_and_other_datasets() -> None:
    with pytest.raises(RobustKDError, match=r"5000 of its 5000 images are not in the ImageNet validation folder"):
        selection_indices(Selection.ROBUSTBENCH_5000, "imagenet", 2, ["/v/n1/a.JPEG", "/v/n1/b.JPEG"])
    with pytest.raises(RobustKDError, match="subset of the ImageNet validation set"):
        selection_indices(Selection.ROBUSTBENCH_5000, "cifar100", 10000)


def test_every100_is_cohen_et_al_s_skip_100() -> None:
    assert selection_indices(Selection.EVERY_100, "imagenet", 50_000)[:3] == [0, 100, 200]
    assert len(selection_indices(Selection.EVERY_100, "imagenet", 50_000)) == 500
    assert selection_indices(Selection.ALL, "imagenet", 50_000) is None
    with pytest.raises(RobustKDError, match="--selection first: expected one of: all, robustbench5000, every100"):
        Selection.parse("first")


def test_a_selection_is_named_in_the_folder_the_summary_and_the_subset_label(checkpoint: Path, tmp_path: Path) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(tmp_path),
                 "--selection", "every100"]) == 0
    (model,) = [folder for folder in tmp_path.iterdir() if folder.is_dir()]
    summary = json.loads((model / "clean-every100" / "summary.json").read_text())
    assert summary["selection"] == "every100" and summary["subset"] is True and summary["n_examples"] == 2
    assert summary["prefix"] is None
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(tmp_path),
                 "--selection", "every100", "--n-examples", "1"]) == 0
    summary = json.loads((model / "clean-every100-first1" / "summary.json").read_text())
    assert summary["n_examples"] == 1 and summary["prefix"] == 1
    with sqlite3.connect(tmp_path / "robustkd.db") as db:
        labels = {row[0] for row in db.execute("SELECT DISTINCT subset FROM results")}
    assert labels == {"every100", "every100-first1"}


def test_robustbench_selection_on_cifar_is_refused_before_any_work(checkpoint: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(tmp_path / "out"),
                 "--selection", "robustbench5000"]) == 2
    assert "subset of the ImageNet validation set" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*/clean*"))
