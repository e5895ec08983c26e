"""Evaluation spread over processes equals one process: torchrun ranks (gloo, two CPU processes), ``--shard K/N``
jobs merged by ``robustkd results merge``, a rank killed mid-suite and rerun, a rank that fails.

Every suite runs with item counts that do not divide by two (37 images: five adversarial batches of 8, five
certified images, three corruption and three shift-calibration cells, five clean-pass batches). Equality is
exact: every metric of every summary, the consolidated work tables (certificates but their timings), and the
database rows. The ImageNet stand-in (a folder of JPEGs streamed through the model's own preprocessing) is
evaluated by every suite through the Python API under torchrun, and a corrupt JPEG in rank 1's batch ends the
run with robustkd's one error line and nothing recorded.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from robustkd.cli import main

SUITES = {
    "clean": 'suite = "clean"\nbatch_size = 8\n',
    "calibration": 'suite = "calibration"\nbatch_size = 8\n',
    "corruption": 'suite = "corruption"\nbatch_size = 8\ncorruptions = ["fog", "jpeg_compression"]\nseverities = [1, 3]\n'
                  'source = "generated"\n',
    "shift_calibration": 'suite = "shift_calibration"\nbatch_size = 8\ncorruptions = ["fog", "contrast", "snow"]\n'
                         'severities = [2]\n',
    "certified": 'suite = "certified"\nn0 = 10\nn = 64\nbatch_size = 32\nmax = 5\npredict_n = 32\nnoise_chunk = 16\n'
                 'skip = 3\n',
    "relations": 'suite = "relations"\nbatch_size = 8\n',
    "adversarial": 'suite = "adversarial"\nbatch_size = 8\nattacks = ["fgsm", "pgd_linf", "deepfool_l2"]\n'
                   'pgd_steps = 2\ndeepfool_steps = 3\neps_curve_255 = [4.0, 8.0]\nmasking_examples = 4\n'
                   'square_queries = 5\n',
}
N_EXAMPLES = 37
TABLES = {"adversarial": "examples.csv", "certified": "certify.tsv", "corruption": "cells.csv",
          "shift_calibration": "shift_cells.csv"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update({"OMP_NUM_THREADS": "1", "ROBUSTKD_PROGRESS": "0", "PYTHONPATH": str(Path(__file__).parents[1]), **extra})
    return env


def _torchrun(args: list[str], *, module: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), *(["-m", "robustkd.cli"] if module else []), *args]
    return subprocess.run(command, capture_output=True, text=True, env=_env(**env), timeout=600)


@pytest.fixture(scope="module")
def suite_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("suites")
    paths = []
    for name, text in SUITES.items():
        (folder / f"{name}.toml").write_text(text)
        paths.append(str(folder / f"{name}.toml"))
    return paths


def _arguments(checkpoint: Path, suite_files: list[str], out: Path) -> list[str]:
    return ["evaluate", "--checkpoint", str(checkpoint), "--teacher", str(checkpoint), "--out", str(out),
            "--n-examples", str(N_EXAMPLES), "--threads", "1", *[part for path in suite_files for part in ("--suite", path)]]


def _results(out: Path) -> dict[str, dict]:
    """Per suite: its summary's metrics and counts, and its consolidated work table (timings dropped)."""
    (model,) = [folder for folder in out.iterdir() if folder.is_dir()]
    found = {}
    for folder in sorted(model.iterdir()):
        if not (folder / "summary.json").is_file():
            continue
        summary = json.loads((folder / "summary.json").read_text())
        suite = summary["suite"]
        table = None
        if suite in TABLES:
            table = pd.read_csv(folder / TABLES[suite], sep="\t" if suite == "certified" else ",")
            table = table.drop(columns=["seconds"], errors="ignore").to_dict("list")
            assert not list(folder.glob("*.shard*")), f"{folder}: shard tables left behind"
        found[suite] = {"metrics": summary["metrics"], "counts": summary["counts"], "n": summary["n_examples"],
                        "table": table, "folder": folder.name}
    return found


def _rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "robustkd.db") as db:
        return sorted(db.execute("SELECT checkpoint_sha256, suite, metric, subset, value FROM results").fetchall())


@pytest.fixture(scope="module")
def one_process(checkpoint: Path, suite_files: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one-process")
    assert main(_arguments(checkpoint, suite_files, out)) == 0
    return out


def test_two_torchrun_ranks_equal_one_process(checkpoint: Path, suite_files: list[str], one_process: Path,
                                              tmp_path: Path) -> None:
    expected = _results(one_process)
    assert set(expected) == set(SUITES) and expected["certified"]["counts"]["certified"] == 5
    run = _torchrun(_arguments(checkpoint, suite_files, tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert _results(tmp_path) == expected
    assert _rows(tmp_path) == _rows(one_process)
    recorded = run.stdout.count("rows for")
    assert recorded == len(SUITES)  # rank 0 alone recorded each suite once
    (model,) = [folder for folder in tmp_path.iterdir() if folder.is_dir()]
    assert not [entry.name for entry in model.iterdir() if entry.name.startswith(".")], "work folders left behind"


def test_shard_jobs_then_merge_equal_one_process(checkpoint: Path, suite_files: list[str], one_process: Path,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = _arguments(checkpoint, suite_files, tmp_path)
    assert main([*arguments, "--shard", "1/2"]) == 0
    merge = ["results", "merge", *arguments[1:]]
    capsys.readouterr()
    assert main(merge) == 2  # shard 0 has not run: refused, nothing recorded
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("robustkd: error: results merge:") and "not finished" in error[0]
    assert not (tmp_path / "robustkd.db").exists() or _rows(tmp_path) == []
    assert main([*arguments, "--shard", "0/2"]) == 0
    assert main(merge) == 0
    assert _results(tmp_path) == _results(one_process)
    assert _rows(tmp_path) == _rows(one_process)


def test_a_killed_rank_is_redone_by_the_rerun(checkpoint: Path, suite_files: list[str], one_process: Path,
                                              tmp_path: Path) -> None:
    killed = _torchrun(_arguments(checkpoint, suite_files, tmp_path), ROBUSTKD_KILL_AT="12", ROBUSTKD_KILL_RANK="1")
    assert killed.returncode != 0
    assert not (tmp_path / "robustkd.db").exists() or _rows(tmp_path) == []
    (model,) = [folder for folder in tmp_path.iterdir() if folder.is_dir()]
    finished = [folder for folder in model.iterdir() if (folder / "summary.json").is_file()]
    assert len(finished) < len(SUITES)  # killed mid-way: suites without work items may have finished before
    assert list(model.glob(".*.partial/*.shard1of2.*")), "rank 1 had not started a suite's items"
    rerun = _torchrun(_arguments(checkpoint, suite_files, tmp_path))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _results(tmp_path) == _results(one_process)
    assert _rows(tmp_path) == _rows(one_process)


def test_shard_flag_is_checked_before_work(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("2/2", "1", "a/b", "0/0", "1/2/3"):
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(tmp_path),
                     "--shard", bad]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert error == [f"robustkd: error: --shard {bad}: expected K/N with 0 <= K < N (e.g. 0/4, the first of four jobs)"]
    assert list(tmp_path.iterdir()) == []


STANDIN_SCRIPT = """
import os, sys, torch
from robustkd import api
from robustkd.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from robustkd.errors import RobustKDError, first_line
from robustkd.models.zoo import build_model

torch.manual_seed(0)
model = build_model("torchvision:mobilenet_v3_small", 1000, IMAGENET_MEAN, IMAGENET_STD).eval()
data, out, suites = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    api.evaluate(model, suites, dataset="imagenet", data_dir=data, out=out, teacher=model, name="standin", threads=1,
                 workers=int(os.environ.get("STANDIN_WORKERS", "0")))
except RobustKDError as exc:  # as the command line reports it
    print(f"robustkd: error: {first_line(exc)}", file=sys.stderr)
    sys.exit(2)
"""

STANDIN_SUITES = {
    "clean": 'suite = "clean"\nbatch_size = 2\n',
    "calibration": 'suite = "calibration"\nbatch_size = 2\n',
    "corruption": 'suite = "corruption"\nbatch_size = 2\ncorruptions = ["fog"]\nseverities = [1, 3, 5]\n'
                  'source = "generated"\n',
    "shift_calibration": 'suite = "shift_calibration"\nbatch_size = 2\ncorruptions = ["contrast"]\nseverities = [2, 4, 5]\n',
    "certified": 'suite = "certified"\nn0 = 4\nn = 16\nbatch_size = 16\nmax = 3\npredict_n = 0\nnoise_chunk = 8\n',
    "relations": 'suite = "relations"\nbatch_size = 2\n',
    "adversarial": 'suite = "adversarial"\nbatch_size = 2\nattacks = ["fgsm", "pgd_linf"]\npgd_steps = 1\n'
                   'eps_curve_255 = [8.0]\nmasking_examples = 2\nsquare_queries = 2\n',
}


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    """Seven photographs in three classes (odd: four clean-pass batches of 2, the last one short), the suites,
    and the script that evaluates a random-weight MobileNetV3-Small on them through ``robustkd.api``."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("imagenet-standin")
    photos = {"n01440764": ("astronaut", "coffee"), "n01443537": ("chelsea", "rocket", "camera"),
              "n01484850": ("immunohistochemistry", "hubble_deep_field")}
    for wnid, names in photos.items():
        folder = root / "imagenet" / "val" / wnid
        folder.mkdir(parents=True)
        for name in names:
            image = getattr(data, name)()
            if image.ndim == 2:
                image = image[..., None].repeat(3, axis=2)
            Image.fromarray(image).save(folder / f"ILSVRC2012_val_{name}.JPEG", quality=90)
    suites = []
    for name, text in STANDIN_SUITES.items():
        (root / f"{name}.toml").write_text(text)
        suites.append(str(root / f"{name}.toml"))
    script = root / "evaluate_standin.py"
    script.write_text(STANDIN_SCRIPT)
    return root, suites, script


@pytest.mark.slow
def test_every_suite_on_the_imagenet_standin_under_torchrun_equals_one_process(standin, tmp_path: Path) -> None:
    root, suites, script = standin
    single = subprocess.run([sys.executable, str(script), str(root), str(tmp_path / "one"), *suites],
                            capture_output=True, text=True, env=_env(), timeout=600)
    assert single.returncode == 0, single.stdout + single.stderr
    expected = _results(tmp_path / "one")
    assert set(expected) == set(STANDIN_SUITES) and expected["clean"]["n"] == 7
    ranks = _torchrun([str(script), str(root), str(tmp_path / "two"), *suites], module=False, STANDIN_WORKERS="2")
    assert ranks.returncode == 0, ranks.stdout + ranks.stderr
    assert _results(tmp_path / "two") == expected
    assert _rows(tmp_path / "two") == _rows(tmp_path / "one")


def test_a_rank_that_fails_ends_the_run_with_one_error_line_and_nothing_recorded(standin, tmp_path: Path) -> None:
    root, suites, script = standin
    broken = tmp_path / "data"
    subprocess.run(["cp", "-r", str(root / "imagenet"), str(broken)], check=True)
    data_root = tmp_path
    # The last image of the last class (position 6: clean-pass batch 3, rank 1's) is not a JPEG.
    (broken / "val" / "n01484850" / "ILSVRC2012_val_zzz_broken.JPEG").write_bytes(b"not an image")
    (tmp_path / "imagenet").symlink_to(broken)
    run = _torchrun([str(script), str(data_root), str(tmp_path / "out"), suites[0]], module=False)
    assert run.returncode != 0
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("robustkd: error:")]
    assert errors and all("ILSVRC2012_val_zzz_broken.JPEG" in line and "not a readable image" in line for line in errors)
    assert not (tmp_path / "out" / "robustkd.db").exists() or _rows(tmp_path / "out") == []
    assert not list((tmp_path / "out").glob("*/clean"))


def test_ranks_that_do_not_share_the_result_folder_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    """Rank 1 writes to another folder than rank 0 (as on two nodes without a shared file system): one line."""
    script = tmp_path / "split.py"
    script.write_text(
        "import os, sys\n"
        "from robustkd.cli import main\n"
        "out = sys.argv[1] + '-rank' + os.environ['RANK']\n"
        "sys.exit(main(['evaluate', '--checkpoint', sys.argv[2], '--suite', 'clean', '--out', out, '--threads', '1']))\n")
    run = _torchrun([str(script), str(tmp_path / "out"), str(checkpoint)], module=False)
    assert run.returncode != 0
    assert "robustkd: error: evaluate: rank 1 does not see what rank 0 wrote in" in run.stdout + run.stderr
    assert not list(tmp_path.glob("out-rank*/*/clean"))
