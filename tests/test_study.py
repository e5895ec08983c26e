"""``robustkd study run``: study files are checked before anything runs; --plan runs nothing; the smoke study
goes end to end through every stage and a second run redoes nothing; the quick profile's plan certifies nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from robustkd.cli import main

REPO = Path(__file__).resolve().parents[1]


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("robustkd: error: ") and err.count("\n") == 1, err
    return err


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my.toml"
    path.write_text(text)
    return path


MINIMAL = '''name = "mine"
dataset = "synthetic"
[teachers.teacher]
train = { model = "resnet8", epochs = 1, milestones = [1], batch_size = 50, train_limit = 100, test_limit = 50 }
[[cohorts]]
name = "students"
students = ["resnet8"]
methods = ["kd", "cmkd"]
seeds = [0]
recipe = { epochs = 1, milestones = [1], batch_size = 50, train_limit = 100, test_limit = 50 }
[[evaluations]]
models = ["students"]
suites = ["clean"]
'''


@pytest.mark.parametrize("change, message", [
    (("[teachers.teacher]", "[teachers.teacher]\nbogus = 1"), "[teachers.teacher]: unknown key(s) bogus"),
    (('students = ["resnet8"]', 'students = ["resnet8"]\nteacher = "nobody"'), "teacher 'nobody' is not a teacher"),
    (('methods = ["kd", "cmkd"]', 'methods = ["kd", "fitnet"]'), "unknown distillation method 'fitnet'"),
    (('suites = ["clean"]', 'suites = ["nope"]'), "nope"),
    (('models = ["students"]', 'models = ["ghosts"]'), "'ghosts' is neither a teacher nor a cohort"),
    (("seeds = [0]", "seeds = [0, 0]"), "'seeds' must be distinct non-negative integers"),
    (('suites = ["clean"]\n', 'suites = ["clean"]\n[question]\npairs = ["kd:kd"]\n'), "compares kd with itself"),
    (("recipe = {", 'recipe = { lr_typo = 1, '), "unknown key(s) lr_typo"),
    (('suites = ["clean"]\n', 'suites = ["clean"]\n[[comparisons]]\nname = "c"\ninterval = "pixels"\n'),
     "[[comparisons]] #1: interval 'pixels'; expected one of: seeds, images"),
    (('suites = ["clean"]\n', 'suites = ["clean"]\n[[comparisons]]\nname = "c"\nholm = "yes"\n'), "holm"),
])
def test_a_bad_study_file_gets_one_line_and_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch, change, message) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, MINIMAL.replace(*change))
    code = main(["study", "run", str(path), "--data-dir", str(tmp_path / "data")])
    assert code == 2
    assert message in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.toml"]


@pytest.mark.parametrize("args, message", [
    (["study", "run", "nosuch"], "'nosuch' is not a packaged study (cmkd, paper, quick, smoke)"),
    (["study", "run", "missing.toml"], "study: no file missing.toml"),
    (["study", "run", "smoke", "--stage", "students"], "--stage 'students' is not a stage; expected one of: teachers, "
                                                       "cohorts, evaluate, report"),
    (["study", "run", "smoke", "--stage", "cohorts", "--only", "report"], "--stage and --only: give one"),
    (["study", "run", "smoke", "--cohort", "students"], "--cohort 'students' is not a cohort of study smoke"),
    (["study", "run", "smoke", "--seeds", "0,x"], "--seeds '0,x': expected comma-separated non-negative integers"),
])
def test_bad_arguments_get_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                    args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_the_quick_plan_runs_nothing_and_certifies_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """From a folder without the committed teacher or CIFAR-100: the plan trains a teacher, says why, and says
    that nothing is certified; it writes nothing."""
    monkeypatch.chdir(tmp_path)
    assert main(["study", "run", "quick", "--plan", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "[teacher teacher] resnet20 trained (checkpoints/cifar100-resnet20 is missing): to start: runs/quick/teacher-resnet20" in out
    assert "[cohort students] resnet8 x (ce,kd,dist,cmkd) x seeds 0: to start once teacher teacher is trained" in out
    assert "certified: not run (this study trains no model with Gaussian noise" in out
    assert list(tmp_path.iterdir()) == []


def test_the_quick_plan_uses_the_committed_teacher_only_with_the_real_data(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Run from the repository (the committed teacher is there): with no real CIFAR-100 under the data folder
    the teacher is trained on what the students get."""
    os.chdir(REPO)
    try:
        assert main(["study", "run", "quick", "--plan", "--data-dir", str(tmp_path / "no-data"),
                     "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]) == 0
    finally:
        os.chdir(tmp_path)
    out = capsys.readouterr().out
    assert f"the real cifar100 is not under {tmp_path / 'no-data'}: a teacher is trained on the data the students get" in out
    assert not (tmp_path / "runs").exists()


def test_a_teacher_the_study_trained_stays_its_teacher(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint teacher with a training fallback: once the study has its own run of the teacher, it keeps it
    (its students were distilled from it), even when the checkpoint becomes usable."""
    monkeypatch.chdir(tmp_path)
    checkpoint = REPO / "checkpoints" / "cifar100-resnet20"
    study = _write(tmp_path, f'''name = "sticky"
allow_embedded = true
[teachers.teacher]
checkpoint = "{checkpoint}"
train = {{ model = "resnet20", epochs = 1, milestones = [1] }}
''')
    assert main(["study", "run", str(study), "--plan", "--data-dir", str(tmp_path / "no-data")]) == 0
    assert "a teacher is trained on the data the students get): to start: runs/sticky/teacher-teacher" in capsys.readouterr().out
    folder = tmp_path / "runs" / "sticky" / "teacher-teacher"
    folder.mkdir(parents=True)
    from robustkd.train.command import TrainRunConfig
    from robustkd.train.config import resolve_config

    config = resolve_config(TrainRunConfig, {"model": "resnet20", "epochs": 1, "milestones": [1]}, {"dataset": "cifar100"})
    (folder / "config.json").write_text(json.dumps(config.to_dict()))  # as if killed in its first epoch
    assert main(["study", "run", str(study), "--plan", "--data-dir", str(REPO / "data")]) == 0
    assert "runs/sticky/teacher-teacher holds this study's own run of it" in capsys.readouterr().out


def test_the_smoke_study_runs_every_stage_and_a_second_run_redoes_nothing(tmp_path: Path) -> None:
    """First with --jobs 2 (cohorts trained and evaluated two at a time, each in its own process), then again in
    one process: the second run finds everything finished."""
    env = {**os.environ, "ROBUSTKD_NO_DOWNLOAD": "1", "ROBUSTKD_PROGRESS": "0"}
    command = [sys.executable, "-m", "robustkd.cli", "study", "run", "smoke", "--data-dir", str(tmp_path / "data")]
    first = subprocess.run([*command, "--jobs", "2", "--devices", "cpu,cpu"], cwd=tmp_path, capture_output=True, text=True, env=env,
                           timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    results = tmp_path / "results" / "smoke"
    board = pd.read_csv(results / "leaderboard.csv")
    assert {"ce", "kd", "dist", "cmkd", "cmkd[cmkd_spearman=0.5]", "trained"} <= set(board["method"])
    for name in ("leaderboard.md", "corruption_grid.csv", "compare.md", "ablation.md", "compare_headline.md",
                 "compare_headline.png", "report.html", "robustness_curves.png", "certified_curves.png"):
        assert (results / name).is_file(), name
    # The headline comparison's verdicts use the image-level interval (clean accuracy has per-image files; ECE
    # does not, so it keeps the seeds' t-interval), Holm-adjusted, and the table says so.
    headline = (results / "compare_headline.md").read_text()
    assert "seeds and images: hierarchical bootstrap, 95 %, Holm over" in headline
    assert "Verdicts use:" in headline and "seeds: t-interval" in headline
    # Certification ran on the noise-trained students only, and the others were named as skipped.
    certified = board.dropna(subset=["certified_acc_r0.25"]) if "certified_acc_r0.25" in board else board.iloc[:0]
    assert len(certified) == 2 and certified["n_seeds"].eq(2).all()
    logs = tmp_path / "results" / "smoke" / "logs"
    cores = os.cpu_count() or 1
    assert f"cohorts of cohort noise: started in its own process ({max(1, cores // 2)} threads on cpu" in first.stdout
    assert "skipped for 8 model(s) trained without Gaussian noise" in (logs / "evaluate-main.log").read_text()
    # --cohort: the shared teacher is evaluated once, by the first cohort distilled from it.
    assert "evaluate clean, calibration on 1 model(s)" in (logs / "evaluate-main.log").read_text()
    assert "on 1 model(s)\n" not in (logs / "evaluate-ablation.log").read_text()
    # A solo-layout check of the cohort folders and the teachers trained in order (the noise teacher's parent).
    noise_meta = json.loads((tmp_path / "runs" / "smoke" / "teacher-noise" / "model.json").read_text())
    assert noise_meta["init_from"]["path"] == str(Path("runs/smoke/teacher-teacher")) and noise_meta["noise_sd"] == 0.25
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("finished already") >= 5 and " added " not in second.stdout
    assert "[cohort main] resnet8 x (ce,kd,dist,cmkd) x seeds 0,1: finished already: runs/smoke/students" in second.stdout


@pytest.mark.parametrize("name", ["cmkd", "paper", "quick", "smoke"])
def test_every_packaged_study_file_is_valid(name: str) -> None:
    """Each packaged study parses with every check of the format (methods, suites, pairs, folders)."""
    from robustkd.jobs.study_file import load_study, packaged_study_names

    assert name in packaged_study_names()
    study = load_study(name)
    assert study.cohorts and study.evaluations


def test_the_cmkd_study_declares_v2s_cohorts_one_seed_each() -> None:
    from robustkd.jobs.study_file import load_study

    cohorts = {cohort.name: cohort for cohort in load_study("cmkd").cohorts}
    for seed in range(3):
        assert cohorts[f"main-v2-s{seed}"].seeds == [seed] and "dkd" in cohorts[f"main-v2-s{seed}"].methods
        assert cohorts[f"long-s{seed}"].seeds == [seed] and cohorts[f"long-s{seed}"].recipe["epochs"] == 30
