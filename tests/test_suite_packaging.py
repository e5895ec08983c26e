"""Suite files ship with the package: one source of truth, names never shadowed, a wheel that works when installed.

The packaged files (``robustkd/evaluate/suites_data/``) are what ``--suite NAME`` runs; ``eval_suites/`` is a
byte-identical copy for users to read and edit. The wheel test builds the package from a copy of the source,
installs it into a fresh virtual environment that reuses ``.venv``'s dependencies but not its robustkd, and
runs ``robustkd evaluate --suite clean`` from an empty directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from robustkd.errors import RobustKDError
from robustkd.evaluate.suite_file import load_suite, packaged_suite_names

REPO = Path(__file__).resolve().parents[1]
PACKAGED = REPO / "robustkd" / "evaluate" / "suites_data"
USER_COPY = REPO / "eval_suites"
EXPECTED = {"adversarial", "calibration", "certified", "clean", "corruption", "paper_certified", "quick/adversarial",
            "quick/certified", "relations", "study/adversarial", "study/certified",
            "study/certified_500", "smoke/corruption", "smoke/adversarial"}


def _tomls(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*.toml"))}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_eval_suites_is_a_byte_identical_copy_of_the_packaged_files() -> None:
    packaged, user = _tomls(PACKAGED), _tomls(USER_COPY)
    assert {name[:-5] for name in packaged} == EXPECTED == set(packaged_suite_names())
    assert sorted(packaged) == sorted(user), "eval_suites/ and robustkd/evaluate/suites_data/ hold different files"
    drifted = [name for name in packaged if packaged[name] != user[name]]
    assert not drifted, (f"eval_suites/ differs from the packaged suite files in {', '.join(drifted)}: edit "
                         "robustkd/evaluate/suites_data/ and copy it: cp -r robustkd/evaluate/suites_data/. eval_suites/")


def test_a_name_never_resolves_to_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "eval_suites").mkdir()
    (tmp_path / "eval_suites" / "clean.toml").write_text('suite = "clean"\nbatch_size = 7\n')
    (tmp_path / "clean").write_text('suite = "clean"\nbatch_size = 9\n')
    monkeypatch.chdir(tmp_path)
    named = load_suite("clean")
    assert named.sha256 == _sha256(PACKAGED / "clean.toml") and named.params.batch_size == 500
    assert named.path.resolve() == (PACKAGED / "clean.toml").resolve()
    local = load_suite("eval_suites/clean.toml")  # a path ending in .toml is a file
    assert local.params.batch_size == 7 and local.path == Path("eval_suites/clean.toml")
    assert load_suite("quick/adversarial").sha256 == _sha256(PACKAGED / "quick" / "adversarial.toml")
    for bad in ("eval_suites/clean", "../clean", "quick/../clean"):
        with pytest.raises(RobustKDError, match=f"unknown suite {bad!r}.*paper_certified, quick/adversarial"):
            load_suite(bad)


def test_relative_paths_in_a_suite_file_resolve_against_its_folder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "c.toml").write_text('suite = "corruption"\nofficial_dir = "CIFAR-100-C"\nreference = "../teacher/corruption"\n')
    (folder / "a.toml").write_text(f'suite = "corruption"\nofficial_dir = "{tmp_path}/abs"\nreference = "alexnet"\n')
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    relative = load_suite("../suites/c.toml").params
    assert relative.official_dir == str(folder / "CIFAR-100-C")
    assert relative.reference == str(folder / ".." / "teacher" / "corruption")
    absolute = load_suite(str(folder / "a.toml")).params
    assert absolute.official_dir == f"{tmp_path}/abs" and absolute.reference == "alexnet"
    assert load_suite("corruption").params.official_dir == "" and load_suite("corruption").params.reference == ""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding robustkd from a wheel built off a copy of the source, and .venv's dependencies."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "robustkd", source / "robustkd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(work / "dist"), str(source)], check=True, cwd=work, env=_clean_env())
    wheel = next((work / "dist").glob("robustkd-*.whl"))
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("robustkd/")}
    in_source = {path.relative_to(source).as_posix() for path in (source / "robustkd").rglob("*") if path.is_file()}
    assert in_source - shipped == set(), "files of the package missing from the wheel"
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=_clean_env())
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  check=True, capture_output=True, text=True, env=_clean_env()).stdout.strip())
    # .venv's site-packages as plain path entries (after the fresh venv's own): its .pth files, among them
    # the editable robustkd's finder, are not run.
    (purelib / "zz_robustkd_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "--ignore-installed", "-q", str(wheel)], check=True, cwd=work, env=_clean_env())
    return venv


def _clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    return {**env, "ROBUSTKD_NO_DOWNLOAD": "1", "ROBUSTKD_PROGRESS": "0", "OMP_NUM_THREADS": "2"}


def _evaluate(venv: Path, checkpoint: Path, cwd: Path, *extra: str) -> dict:
    """The installed ``robustkd evaluate`` run in ``cwd``; the clean result's summary."""
    done = subprocess.run([str(venv / "bin" / "robustkd"), "evaluate", "--checkpoint", str(checkpoint), "--out", "results",
                           "--no-db", *extra], cwd=cwd, env=_clean_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    meta = json.loads((checkpoint / "model.json").read_text())
    return json.loads((cwd / "results" / f"resnet8-{meta['weights_sha256'][:12]}" / "clean" / "summary.json").read_text())


def test_installed_wheel_runs_a_named_suite_from_an_empty_directory(installed: Path, checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    probe = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import json, robustkd; from robustkd.evaluate.suite_file import packaged_suite_names; "
                            "print(json.dumps([robustkd.__file__, packaged_suite_names()]))"],
                           cwd=empty, env=_clean_env(), check=True, capture_output=True, text=True)
    module, names = json.loads(probe.stdout)
    assert Path(module).resolve().is_relative_to(installed.resolve()) and set(names) == EXPECTED
    summary = _evaluate(installed, checkpoint, empty, "--suite", "clean")
    assert summary["suite"] == "clean" and summary["n_examples"] == 200
    assert summary["suite_sha256"] == _sha256(USER_COPY / "clean.toml")
    assert Path(summary["suite_file"]).resolve().is_relative_to(installed.resolve())
    # The packaged studies come with the wheel: listed, and planned from an empty folder.
    listed = subprocess.run([str(installed / "bin" / "robustkd"), "study", "list"], cwd=empty, env=_clean_env(),
                            capture_output=True, text=True, check=True).stdout
    assert [line.split()[0] for line in listed.splitlines()] == ["cmkd", "paper", "quick", "smoke"]
    plan = subprocess.run([str(installed / "bin" / "robustkd"), "study", "run", "smoke", "--plan"], cwd=empty,
                          env=_clean_env(), capture_output=True, text=True, check=True).stdout
    assert "[cohort main] resnet8 x (ce,kd,dist,cmkd) x seeds 0,1: to start once teacher teacher is trained" in plan


@pytest.mark.slow
def test_installed_wheel_is_not_shadowed_by_a_local_eval_suites(installed: Path, checkpoint: Path,
                                                                 tmp_path: Path) -> None:
    """A ./eval_suites/clean.toml does not shadow the packaged suite; given as a path, it is read."""
    (tmp_path / "eval_suites").mkdir()
    (tmp_path / "eval_suites" / "clean.toml").write_text('suite = "clean"\nbatch_size = 7\n')
    named = _evaluate(installed, checkpoint, tmp_path, "--suite", "clean")
    assert named["suite_sha256"] == _sha256(USER_COPY / "clean.toml")
    local = _evaluate(installed, checkpoint, tmp_path, "--suite", "eval_suites/clean.toml", "--overwrite")
    assert local["suite_sha256"] == _sha256(tmp_path / "eval_suites" / "clean.toml")
