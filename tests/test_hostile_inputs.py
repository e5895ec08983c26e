"""Hostile inputs beyond the battery (issue 24): families tests/test_bad_inputs.py, test_reliability.py,
test_outputs_and_locks.py, test_import_bad_inputs.py, test_study.py and test_api.py lack.

Every case asserts the project's contract: exit 2 with exactly one stderr line ``robustkd: error: ...`` naming
the input (``robustkd.errors.RobustKDError``, one line, for the Python API), and nothing written: the test's
temporary folder (also the current directory, where default outputs such as ``results/`` and ``runs/`` go)
holds exactly what the test put there, byte for byte, before and after the command.

Families: study files (types, parse bombs, run folders, teacher chains) and ``study run`` flags; ``robustkd
import`` sources (schemes, damaged pickles and safetensors, preprocessing flags, --out, ONNX); the Python API
(suites, modules' outputs, model_info, seeds, options); results databases for the readers and the writers;
numeric and path edges of train / distill / evaluate / corrupt flags; config files and suite files that do
not parse as text; checkpoint sidecars (field types, JSON edge cases, weights that are not files); result
summaries. Cases that found a bug name it in a comment (``# fixed: ...``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from robustkd.cli import main
from robustkd.errors import RobustKDError

Build = Callable[[Path], Any]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case runs in its own empty folder: default outputs (results/, runs/) land where they are watched."""
    monkeypatch.setenv("ROBUSTKD_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)


def _snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root`` with its type, and a regular file's SHA-256 (FIFOs and devices are not read)."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[str(path.relative_to(root))] = stat.S_IFMT(info.st_mode)
    return found


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], fragment: str, root: Path) -> str:
    """Run the CLI: exit 2, one stderr line with the prefix and ``fragment``, and ``root`` exactly as it was."""
    before = _snapshot(root)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err[-5:]
    assert len(err) == 1 and err[0].startswith("robustkd: error: "), err[-5:]
    assert fragment in err[0], err[0]
    after = _snapshot(root)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))
    return err[0]


def _api_refused(call: Callable[[], Any], fragment: str, root: Path) -> str:
    before = _snapshot(root)
    with pytest.raises(RobustKDError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and fragment in message, message
    after = _snapshot(root)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))
    return message


def _ids(cases: list[tuple]) -> list[str]:
    return [case[0] for case in cases]


def _copy(checkpoint: Path, tmp_path: Path, name: str = "ckpt") -> Path:
    target = tmp_path / name
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns("state"))
    return target


def _mknod(path: Path) -> Path:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a /dev/null twin, in the temporary folder
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a character device here ({exc})")
    return path


DIGITS_5000 = "9" * 5000  # more digits than Python converts from text (ValueError, not a parse error)

# ================================================================================ study files

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
HEAD, _, REST = MINIMAL.partition("[teachers.teacher]")


def _with(old: str, new: str) -> Callable[[Path], str]:
    assert old in MINIMAL, old
    return lambda t: MINIMAL.replace(old, new, 1)


def _append(text: str) -> Callable[[Path], str]:
    return lambda t: MINIMAL + text


def _prepend(text: str) -> Callable[[Path], str]:
    return lambda t: text + MINIMAL


TEACHER_B = '[teachers.b]\ntrain = { model = "resnet8", init_from = "teacher", epochs = 1 }\n[teachers.teacher]'

STUDY_CASES: list[tuple[str, Build, str]] = [
    # wrong types everywhere
    ("seeds_a_string", _with("seeds = [0]", 'seeds = "0"'), "'seeds' must be list, got str"),
    ("students_a_string", _with('students = ["resnet8"]', 'students = "resnet8"'), "'students' must be list, got str"),
    ("methods_a_string", _with('methods = ["kd", "cmkd"]', 'methods = "kd"'), "'methods' must be list, got str"),
    ("recipe_an_int", _with("recipe = {", "recipe = 3\nx = {"), "'recipe' must be dict, got int"),
    ("leaderboard_a_string", _append('[outputs]\nleaderboard = "csv"\n'), "'leaderboard' must be list, got str"),
    ("leaderboard_format_unknown", _append('[outputs]\nleaderboard = ["xls"]\n'), "leaderboard format 'xls'"),
    ("report_a_string", _append('[outputs]\nreport = "yes"\n'), "'report' must be bool, got str"),
    ("curves_an_int", _append("[outputs]\ncurves = 1\n"), "'curves' must be bool, got int"),
    ("outputs_unknown_key", _append("[outputs]\nplots = true\n"), "[outputs]: unknown key(s) plots"),
    ("comparisons_not_tables", _prepend('comparisons = ["headline"]\n'), "[[comparisons]] #1: expected a table, got str"),
    ("comparisons_an_int", _prepend("comparisons = 3\n"), "'comparisons' must be list, got int"),
    ("cohorts_a_table", lambda t: HEAD + "cohorts = { name = 'x' }\n[teachers.teacher]" + REST.split("[[cohorts]]")[0],
     "'cohorts' must be list, got dict"),
    ("evaluations_a_string", lambda t: 'evaluations = "clean"\n' + MINIMAL.split("[[evaluations]]")[0],
     "'evaluations' must be list, got str"),
    ("teachers_an_int", lambda t: HEAD + "teachers = 3\n", "'teachers' must be dict, got int"),
    ("teachers_empty", lambda t: HEAD + "teachers = {}\n", "no [teachers.NAME] table"),
    ("teacher_a_string", lambda t: HEAD + '[teachers]\nteacher = "runs/t"\n', "[teachers.teacher]: expected a table, got str"),
    ("teacher_neither", lambda t: HEAD + '[teachers.teacher]\nfolder = "t"\n', "needs a checkpoint, a train table or both"),
    ("checkpoint_an_int", _with("[teachers.teacher]\n", "[teachers.teacher]\ncheckpoint = 5\n"),
     "'checkpoint' must be str, got int"),
    ("name_an_int", _with('name = "mine"', "name = 5"), "'name' must be str, got int"),
    ("dataset_an_int", _with('dataset = "synthetic"', "dataset = 10"), "'dataset' must be str, got int"),
    ("dataset_unknown", _with('dataset = "synthetic"', 'dataset = "mnist"'), "unknown dataset 'mnist'"),
    ("runs_an_int", _prepend("runs = 3\n"), "'runs' must be str, got int"),
    ("allow_embedded_a_string", _prepend('allow_embedded = "yes"\n'), "'allow_embedded' must be bool, got str"),
    ("misplaced_key_in_evaluations", _append('comparisons = ["a"]\n'), "[[evaluations]] #1: unknown key(s) comparisons"),
    ("dotted_key_20000_deep", _prepend(".".join(["a"] * 20000) + " = 1\n"), "unknown key(s) a"),
    # seeds, students, methods
    ("methods_empty", _with('methods = ["kd", "cmkd"]', "methods = []"), "--method '': an empty entry"),
    ("students_empty", _with('students = ["resnet8"]', "students = []"), "--student '': an empty entry"),
    ("method_blank", _with('methods = ["kd", "cmkd"]', 'methods = ["kd", " "]'), "'methods' must be a list of non-empty"),
    ("seeds_empty", _with("seeds = [0]", "seeds = []"), "'seeds' must be distinct non-negative integers"),
    ("seeds_bool", _with("seeds = [0]", "seeds = [true]"), "got [True]"),
    ("seeds_float", _with("seeds = [0]", "seeds = [1.5]"), "got [1.5]"),
    ("seeds_negative", _with("seeds = [0]", "seeds = [-1]"), "got [-1]"),
    ("seeds_2_63", _with("seeds = [0]", f"seeds = [{2**63}]"), "at most 2^63 - 1"),
    ("method_options_an_int", _with("recipe = {", "method_options = 3\nrecipe = {"), "'method_options' must be dict"),
    ("method_option_text", _with("recipe = {", 'method_options = { kd_temperature = "hot" }\nrecipe = {'),
     "kd_temperature='hot'"),
    ("recipe_sets_seed", _with("recipe = { epochs = 1", "recipe = { seed = 3, epochs = 1"), "recipe sets 'seed'"),
    ("recipe_lr_nan", _with("recipe = { epochs = 1", "recipe = { lr = nan, epochs = 1"), "lr=nan"),
    ("recipe_epochs_negative", _with("recipe = { epochs = 1", "recipe = { epochs = -1"), "epochs=-1"),
    ("train_lr_inf", _with('train = { model = "resnet8", epochs = 1', 'train = { model = "resnet8", epochs = 1, lr = inf'),
     "[teachers.teacher] train: config: lr=inf"),
    ("train_model_an_int", _with('train = { model = "resnet8"', "train = { model = 8"), "model=8"),
    ("train_sets_dataset", _with('train = { model = "resnet8"', 'train = { dataset = "cifar10", model = "resnet8"'),
     "train sets 'dataset'"),
    # evaluations
    ("suite_path_missing", _with('suites = ["clean"]', 'suites = ["/nonexistent/x.toml"]'), "--suite: no file"),
    ("suite_empty_string", _with('suites = ["clean"]', 'suites = [""]'), "'suites' must be a list of non-empty strings"),
    ("suite_a_folder", lambda t: ((t / "d.toml").mkdir(), MINIMAL.replace('suites = ["clean"]', f'suites = ["{t}/d.toml"]'))[1],
     "d.toml"),
    ("suites_a_string", _with('suites = ["clean"]', 'suites = "clean"'), "'suites' must be list, got str"),
    ("n_examples_bool", _with('suites = ["clean"]', 'suites = ["clean"]\nn_examples = true'), "'n_examples' must be int"),
    ("n_examples_float", _with('suites = ["clean"]', 'suites = ["clean"]\nn_examples = 2.5'), "'n_examples' must be int"),
    ("n_examples_zero", _with('suites = ["clean"]', 'suites = ["clean"]\nn_examples = 0'), "'n_examples' must be a positive"),
    # comparisons
    ("comparison_name_dotdot", _append('[[comparisons]]\nname = "../x"\n'), "name '../x' must be letters"),
    ("comparison_name_slash", _append('[[comparisons]]\nname = "a/b"\n'), "name 'a/b' must be letters"),
    ("comparison_name_empty", _append('[[comparisons]]\nname = ""\n'), "name '' must be letters"),
    ("comparison_names_twice", _append('[[comparisons]]\nname = "a"\n[[comparisons]]\nname = "a"\n'),
     "comparison names: 'a' is used twice"),
    ("comparison_metric_unknown", _append('[[comparisons]]\nname = "a"\nmetrics = ["speed"]\n'), "unknown metric 'speed'"),
    ("comparison_pair_malformed", _append('[[comparisons]]\nname = "a"\npairs = ["kd"]\n'), "pair 'kd': expected A:B"),
    ("comparison_plot_a_string", _append('[[comparisons]]\nname = "a"\nplot = "yes"\n'), "'plot' must be bool"),
    ("comparison_without_name", _append('[[comparisons]]\nplot = true\n'), "'name' is required"),
    # teachers starting from each other
    ("init_from_itself", _with('train = { model', 'train = { init_from = "teacher", model'), "cannot start from itself"),
    ("init_from_circle", lambda t: MINIMAL.replace("[teachers.teacher]", TEACHER_B, 1).replace(
        'train = { model = "resnet8", epochs = 1, milestones', 'train = { model = "resnet8", init_from = "b", epochs = 1, '
        'milestones', 1), "teachers start from each other in a circle"),
    # run folders: inside the runs folder, one run each. Fixed: '../escape', an absolute path and a cohort named
    # '../up' trained outside the runs folder; '', '.' and a teacher folder inside a cohort's were refused only
    # after the teacher had trained (the cohort found its folder holding the teacher's run)
    ("cohort_folder_is_teacher_folder", _with("[teachers.teacher]\n", '[teachers.teacher]\nfolder = "students"\n'),
     "run folders: 'students' is used twice"),
    ("cohort_folder_escapes", _with('name = "students"', 'name = "students"\nfolder = "../escape"'),
     "folder '../escape' must be a relative path inside the runs folder"),
    ("cohort_folder_empty", _with('name = "students"', 'name = "students"\nfolder = ""'), "folder '' must be a relative"),
    ("cohort_folder_dot", _with('name = "students"', 'name = "students"\nfolder = "."'), "folder '.' must be a relative"),
    ("cohort_folder_absolute", lambda t: MINIMAL.replace('name = "students"', f'name = "students"\nfolder = "{t}/abs"'),
     "must be a relative path inside the runs folder"),
    ("cohort_name_dotdot", lambda t: MINIMAL.replace('"students"', '"../up"'), "folder '../up' must be a relative path"),
    ("teacher_folder_dotdot", _with("[teachers.teacher]\n", '[teachers.teacher]\nfolder = "a/../../t"\n'),
     "folder 'a/../../t' must be a relative path"),
    ("teacher_folder_inside_cohort", _with("[teachers.teacher]\n", '[teachers.teacher]\nfolder = "students/t"\n'),
     "is inside cohort students's folder"),
]


def _study_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "my.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("build, fragment", [c[1:] for c in STUDY_CASES], ids=_ids(STUDY_CASES))
def test_study_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], build: Build, fragment: str) -> None:
    path = _study_file(tmp_path, build(tmp_path))
    _refused(["study", "run", str(path), "--data-dir", str(tmp_path / "data")], capsys, fragment, tmp_path)


STUDY_BYTES_CASES: list[tuple[str, Callable[[], bytes], str]] = [
    ("not_utf8", lambda: MINIMAL.encode() + b'description = "\xff\xfe"\n', "does not parse ('utf-8' codec"),
    ("two_mib", lambda: b"# " + b"x" * (2 << 20) + b"\n" + MINIMAL.encode(), "is larger than 1048576 bytes"),
    # fixed: the next three were tracebacks (RecursionError, ValueError) and exit 3
    ("nested_arrays_bomb", lambda: ("a = " + "[" * 5000 + "]" * 5000 + "\n" + MINIMAL).encode(), "nests its values too deeply"),
    ("nested_tables_bomb", lambda: ("a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n" + MINIMAL).encode(),
     "nests its values too deeply"),
    ("integer_of_5000_digits", lambda: (f"seed_of_all = {DIGITS_5000}\n" + MINIMAL).encode(), "does not parse (Exceeds"),
    ("nul_bytes", lambda: b"name = \"a\x00b\"\n" + MINIMAL.encode(), "does not parse"),
]


@pytest.mark.parametrize("make, fragment", [c[1:] for c in STUDY_BYTES_CASES], ids=_ids(STUDY_BYTES_CASES))
def test_study_files_that_do_not_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str], make, fragment: str) -> None:
    path = _study_file(tmp_path, make())
    _refused(["study", "run", str(path), "--data-dir", str(tmp_path / "data")], capsys, fragment, tmp_path)


STUDY_FLAG_CASES: list[tuple[str, list[str], str]] = [
    ("jobs_zero", ["--jobs", "0"], "--jobs 0: expected a positive integer"),
    ("jobs_negative", ["--jobs", "-1"], "--jobs -1: expected a positive integer"),
    ("jobs_text", ["--jobs", "all"], "invalid int value: 'all'"),
    ("devices_absent", ["--devices", "cpu,cuda:7"], "--device: 'cuda:7' requested but CUDA is not available here"),
    ("devices_empty", ["--devices", "cpu,"], "--devices cpu,: expected comma-separated devices"),
    ("devices_and_device", ["--devices", "cpu", "--device", "cpu"], "--device and --devices: give one"),
    ("seeds_comma", ["--seeds", ","], "--seeds ','"),
    ("seeds_empty", ["--seeds", ""], "--seeds ''"),
    ("seeds_negative", ["--seeds", "-1"], "seeds must be non-negative"),
    ("seeds_twice", ["--seeds", "0,0"], "names a seed twice"),
    ("seeds_2_64", ["--seeds", str(2**64)], "at most 9223372036854775807"),
    ("stage_empty", ["--stage", ""], "--stage '' is not a stage"),
    ("only_empty", ["--only", ""], "--only '' is not a stage"),
    ("only_unknown", ["--only", "students"], "--only 'students' is not a stage"),
    ("threads_zero", ["--threads", "0"], "--threads 0: expected a positive integer"),
    ("threads_100000", ["--threads", "100000"], "--threads 100000: expected at most"),  # fixed: OpenMP crashed
    ("cohort_empty", ["--cohort", ""], "--cohort '' is not a cohort"),
    ("plan_and_unknown_cohort", ["--plan", "--cohort", "ghosts"], "--cohort 'ghosts' is not a cohort"),
    ("device_unknown", ["--device", "tpu"], "unknown device 'tpu'"),  # refused when the teacher stage starts
]


@pytest.mark.parametrize("extra, fragment", [c[1:] for c in STUDY_FLAG_CASES], ids=_ids(STUDY_FLAG_CASES))
def test_study_run_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str) -> None:
    path = _study_file(tmp_path, MINIMAL)
    _refused(["study", "run", str(path), "--data-dir", str(tmp_path / "data"), *extra], capsys, fragment, tmp_path)


def test_study_teacher_starting_from_an_unknown_teacher_is_refused_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``init_from`` that names no teacher of the study is a checkpoint path; absent, it is refused when the
    teacher stage plans it, with nothing trained or created."""
    path = _study_file(tmp_path, MINIMAL.replace("train = { model", 'train = { init_from = "ghost", model'))
    _refused(["study", "run", str(path), "--data-dir", str(tmp_path / "data")], capsys, "no sidecar ghost", tmp_path)


# ================================================================================ robustkd import

def _state(classes: int = 10) -> dict[str, torch.Tensor]:
    from robustkd.models import build_network

    torch.manual_seed(0)
    return build_network("resnet8", classes).state_dict()


def _file(t: Path, name: str, data: bytes) -> Path:
    (t / name).write_bytes(data)
    return t / name


def _saved(t: Path, obj: Any, name: str = "in.pth") -> Path:
    torch.save(obj, t / name)
    return t / name


def _safetensors(t: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in _state().items()}, str(t / "in.safetensors"))
    return t / "in.safetensors"


def _zip_of_garbage(t: Path) -> Path:
    with zipfile.ZipFile(t / "in.pth", "w") as archive:
        archive.writestr("archive/data.pkl", b"garbage\x00\x01")
    return t / "in.pth"


def _header(entries: dict, payload: bytes = b"\0" * 8) -> bytes:
    text = json.dumps(entries).encode()
    return struct.pack("<Q", len(text)) + text + payload


A = ["--architecture", "resnet8", "--dataset", "synthetic"]


def _sd(make: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    """``import FILE --architecture resnet8 --dataset synthetic --out <t>/out`` for the file ``make`` writes."""
    return lambda t: [str(make(t)), *A, "--out", str(t / "out"), *extra]


def _ok(t: Path) -> Path:
    return _saved(t, _state())


def _as(kind: str) -> Callable[[Path], Path]:
    def make(t: Path) -> Path:
        state = _state()
        if kind == "int32":
            state = {k: (v.to(torch.int32) if v.is_floating_point() else v) for k, v in state.items()}
        else:  # nan
            state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))
        return _saved(t, state)
    return make


IMPORT_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # sources that name nothing, or something that cannot exist
    ("unknown_scheme", lambda t: ["foo:bar", "--out", str(t / "out")], "cannot tell what 'foo:bar' is"),
    ("timm_empty_name", lambda t: ["timm:", "--out", str(t / "out")], "'timm:' names no model or file after timm:"),
    ("torchvision_empty_name", lambda t: ["torchvision:", "--out", str(t / "out")], "names no model or file"),
    ("robustbench_empty", lambda t: ["robustbench:", "--out", str(t / "out")], "names no model or file"),
    ("state_dict_empty", lambda t: ["state_dict:", *A, "--out", str(t / "out")], "names no model or file"),
    ("onnx_scheme_empty", lambda t: ["onnx:", "--dataset", "cifar10", "--out", str(t / "out")], "names no model or file"),
    ("torchvision_NOPE", lambda t: ["torchvision:NOPE", "--out", str(t / "out")], "unknown torchvision model 'NOPE'"),
    ("robustbench_dataset_dotdot", lambda t: ["robustbench:../../etc/Linf/x", "--out", str(t / "out")],
     "expected robustbench:DATASET/THREAT/NAME"),
    ("robustbench_threat_dotdot", lambda t: ["robustbench:cifar10/../x", "--out", str(t / "out")],
     "unknown threat model '..'"),
    ("robustbench_four_parts", lambda t: ["robustbench:cifar10/Linf/a/b", "--out", str(t / "out")],
     "expected robustbench:DATASET/THREAT/NAME"),
    ("robustbench_threat_unknown", lambda t: ["robustbench:cifar10/L7/Standard", "--out", str(t / "out")],
     "unknown threat model 'L7'"),
    ("robustbench_model_dir_a_file", lambda t: ["robustbench:cifar10/Linf/Standard", "--model-dir",
                                                str(_file(t, "md", b"x")), "--out", str(t / "out")],
     "md/cifar10/Linf/Standard.pt"),
    ("unknown_suffix", _sd(lambda t: _file(t, "in.npz", b"PK")), "cannot tell what"),
    # weights files that are not what they say
    ("pth_zip_of_garbage", _sd(_zip_of_garbage), "cannot be read with weights_only=True"),
    ("pth_random_bytes", _sd(lambda t: _file(t, "in.pth", bytes(range(256)) * 16)), "cannot be read with weights_only"),
    ("pth_empty", _sd(lambda t: _file(t, "in.pth", b"")), "cannot be read with weights_only=True"),
    # fixed: a text file, a pickle whose memo, stack or frame is damaged: tracebacks (KeyError, IndexError,
    # struct.error; exit 3); an odd pickle protocol: torch's warning as two more stderr lines
    ("pt_text_file", _sd(lambda t: _file(t, "in.pt", b"hello world\n")), "cannot be read with weights_only=True"),
    ("pickle_memo_missing", _sd(lambda t: _file(t, "in.pth", b"\x80Kh\x05.")), "cannot be read with weights_only"),
    ("pickle_stack_empty", _sd(lambda t: _file(t, "in.pth", b"\x80\x04K")), "cannot be read with weights_only"),
    ("pickle_float_truncated", _sd(lambda t: _file(t, "in.pth", b"\x80\x02G.")), "cannot be read with weights_only"),
    ("pickle_protocol_4_int", _sd(lambda t: _file(t, "in.bin", b"\x80\x04K\x05.")), "cannot be read with weights_only"),
    ("pickle_of_a_text_file", _sd(lambda t: _file(t, "in.pth", b"just some notes\n")), "cannot be read with weights_only"),
    ("pth_a_list", _sd(lambda t: _saved(t, [1, 2])), "holds no state dict of tensors"),
    ("pth_a_tensor", _sd(lambda t: _saved(t, torch.zeros(3))), "holds no state dict of tensors"),
    ("pth_int_keys", _sd(lambda t: _saved(t, {1: torch.zeros(3)})), "keys must be parameter names (strings)"),
    ("pth_strings_not_tensors", _sd(lambda t: _saved(t, {"model": {"conv1.weight": "x"}})), "holds no state dict"),
    ("pth_nan_weights", _sd(_as("nan")), "logits on the probe batch are not finite"),
    ("pth_int32_weights", _sd(_as("int32")), "holds int32 values in the file, float32 in the network"),  # fixed: imported
    ("safetensors_truncated", _sd(lambda t: _file(t, "in.safetensors", _safetensors(t).read_bytes()[:5000])),
     "is not a readable safetensors file"),
    ("safetensors_header_2_40", _sd(lambda t: _file(t, "in.safetensors", struct.pack("<Q", 2**40) + b"{}")),
     "is not a readable safetensors file"),
    ("safetensors_header_past_the_end", _sd(lambda t: _file(t, "in.safetensors", struct.pack("<Q", 1000) + b"{}")),
     "is not a readable safetensors file"),
    ("safetensors_header_not_json", _sd(lambda t: _file(t, "in.safetensors", struct.pack("<Q", 5) + b"{{{{{")),
     "is not a readable safetensors file"),
    ("safetensors_empty", _sd(lambda t: _file(t, "in.safetensors", b"")), "is not a readable safetensors file"),
    ("safetensors_offsets_past_the_data", _sd(lambda t: _file(t, "in.safetensors", _header(
        {"fc.bias": {"dtype": "F32", "shape": [10], "data_offsets": [0, 400]}}))), "is not a readable safetensors file"),
    ("weights_a_folder", _sd(lambda t: (t / "in.pth").mkdir() or t / "in.pth"), "no such state dict file"),
    # preprocessing and class-count flags
    ("mean_two_values", _sd(_ok, "--mean", "0.5", "0.5", "--std", "1", "1", "1"), "--mean: expected 3 arguments"),
    ("mean_four_values", _sd(_ok, "--mean", "0", "0", "0", "0", "--std", "1", "1", "1"), "unrecognized arguments: 0"),
    ("std_all_zero", _sd(_ok, "--mean", "0", "0", "0", "--std", "0", "0", "0"), "--std must be positive"),
    ("std_negative", _sd(_ok, "--mean", "0", "0", "0", "--std", "-1", "1", "1"), "--std must be positive"),
    ("mean_nan", _sd(_ok, "--mean", "nan", "0", "0", "--std", "1", "1", "1"), "--mean takes 3 finite numbers"),
    ("mean_inf", _sd(_ok, "--mean", "inf", "0", "0", "--std", "1", "1", "1"), "--mean takes 3 finite numbers"),
    ("std_nan", _sd(_ok, "--mean", "0", "0", "0", "--std", "nan", "1", "1"), "--std takes 3 finite numbers"),
    ("std_inf", _sd(_ok, "--mean", "0", "0", "0", "--std", "inf", "1", "1"), "--std takes 3 finite numbers"),
    ("num_classes_zero", _sd(_ok, "--num-classes", "0"), "--num-classes 0 does not match synthetic"),
    ("num_classes_negative", _sd(_ok, "--num-classes", "-1"), "--num-classes -1 does not match"),
    ("num_classes_2_40", _sd(_ok, "--num-classes", str(2**40)), f"--num-classes {2**40} does not match"),
    ("architecture_unknown", lambda t: [str(_ok(t)), "--architecture", "resnet9", "--dataset", "synthetic", "--out",
                                        str(t / "out")], "unknown model 'resnet9'"),
    # --out
    ("out_a_file", lambda t: [str(_ok(t)), *A, "--out", str(_file(t, "o", b"x"))], "is a regular file; expected a folder"),
    ("out_the_source", lambda t: [str(_ok(t)), *A, "--out", str(t / "in.pth")], "is a regular file; expected a folder"),
    ("out_under_a_file", lambda t: [str(_ok(t)), *A, "--out", str(_file(t, "o", b"x") / "x")], "o/x"),
    ("out_holds_the_source", lambda t: [str(_ok(t)), *A, "--out", str(t)], "is not empty"),
    ("out_empty_string", lambda t: [str(_ok(t)), *A, "--out", ""], "--out . is not empty"),
    # constructor arguments and torchvision weights
    ("model_arg_without_equals", lambda t: ["timm:resnet10t", "--model-arg", "x", "--weights", str(_ok(t)), "--out",
                                            str(t / "out")], "expected KEY=VALUE"),
    ("model_arg_nan", lambda t: ["timm:resnet10t", "--model-arg", "drop_rate=NaN", "--weights", str(_ok(t)), "--out",
                                 str(t / "out")], "constructor arguments must be JSON values"),
    ("torchvision_weights_enum_unknown", lambda t: ["torchvision:resnet18", "--torchvision-weights", "NOPE", "--weights",
                                                    str(_ok(t)), "--out", str(t / "out")],
     "'NOPE' is not a member of ResNet18_Weights"),
    ("torchvision_weights_missing", lambda t: ["torchvision:resnet18", "--weights", str(t / "none.pth"), "--out",
                                               str(t / "out")], "no such weights file"),
    ("torchvision_weights_of_another_network", lambda t: ["torchvision:resnet18", "--weights", str(_ok(t)), "--out",
                                                          str(t / "out")], "does not fit torchvision:resnet18"),
]


@pytest.mark.parametrize("build, fragment", [c[1:] for c in IMPORT_CASES], ids=_ids(IMPORT_CASES))
def test_import_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str], build, fragment: str) -> None:
    argv = build(tmp_path)
    _refused(["import", *argv], capsys, fragment, tmp_path)


def test_an_odd_pickle_protocol_is_one_stderr_line_in_a_real_process(tmp_path: Path) -> None:
    """Fixed: torch.load warned (UserWarning, two lines on stderr) about a pickle of protocol 4 before refusing it;
    pytest captures warnings, so this case runs the command as a user does."""
    import subprocess
    import sys

    weights = _file(tmp_path, "in.bin", b"\x80\x04K\x05.")
    before = _snapshot(tmp_path)
    done = subprocess.run([sys.executable, "-m", "robustkd.cli", "import", str(weights), *A, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ROBUSTKD_PROGRESS": "0", "OMP_NUM_THREADS": "1"})
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr[-2000:]
    assert err[0].startswith("robustkd: error: refusing ") and "in.bin" in err[0], err
    assert _snapshot(tmp_path) == before


def _onnx(t: Path, kind: str) -> Path:
    if kind == "random":
        return _file(t, "in.onnx", bytes(range(256)) * 8)
    if kind == "empty":
        return _file(t, "in.onnx", b"")
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Shrink", ["flat"], ["y"], lambd=0.5)]
    graph = helper.make_graph(nodes, "shrink", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(t / "in.onnx"))
    return t / "in.onnx"


@pytest.mark.parametrize("kind, fragment", [("random", "is not an ONNX model"), ("empty", "is not an ONNX model"),
                                            ("shrink", "uses operators onnx2torch cannot convert: Shrink")])
def test_import_onnx_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, fragment: str) -> None:
    pytest.importorskip("onnx")
    if kind == "shrink":
        pytest.importorskip("onnx2torch")
    path = _onnx(tmp_path, kind)
    _refused(["import", str(path), "--dataset", "cifar10", "--out", str(tmp_path / "out")], capsys, fragment, tmp_path)


# ================================================================================ the Python API

class _Net(torch.nn.Module):
    """A linear model on [0, 1] images whose output is what ``mode`` says."""

    def __init__(self, classes: int = 10, mode: str = "logits") -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 * 32 * 32, classes)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> Any:
        y = self.linear(x.flatten(1))
        return {"tuple": lambda: (y, y), "dict": lambda: {"logits": y}, "nan": lambda: y * float("nan"),
                "vector": lambda: y[:, 0], "one_row": lambda: y[:1], "logits": lambda: y}[self.mode]()


def _quiet(line: str) -> None:
    pass


Prepare = Callable[[Path, Path], Callable[[], Any]]  # (tmp folder, checkpoint) -> the call, inputs written


def _now(call: Callable[[Path, Path], Any]) -> Prepare:
    """A call that needs no input files."""
    return lambda t, c: (lambda: call(t, c))


def _api() -> Any:
    from robustkd import api

    return api


def _evaluate(model: Any = None, **kwargs: Any) -> Prepare:
    from robustkd import api

    options = {"suites": ["clean"], "dataset": "synthetic", **kwargs}
    return _now(lambda t, c: api.evaluate(_Net() if model is None else model, out=t / "results", announce=_quiet,
                                          **options))


def _distill(**kwargs: Any) -> Prepare:
    from robustkd import api

    options = {"students": "resnet8", "methods": "kd", "dataset": "synthetic", **kwargs}
    return _now(lambda t, c: api.distill(teacher=c, run_dir=t / "run", announce=_quiet, **options))


def _study(**kwargs: Any) -> Prepare:
    from robustkd import api

    return _now(lambda t, c: api.study("smoke", plan=True, data_dir=t / "data", announce=_quiet, **kwargs))


def _import(**kwargs: Any) -> Prepare:
    from robustkd import api

    options = {"architecture": "resnet8", "dataset": "synthetic", **kwargs}
    def prepare(t: Path, c: Path) -> Callable[[], Any]:
        weights = _ok(t)  # written before the snapshot
        return lambda: api.import_model(str(weights), t / "out", announce=_quiet, **options)
    return prepare


API_CASES: list[tuple[str, Prepare, str]] = [
    # suites: fixed: [3] and None were TypeErrors, [] evaluated nothing silently, a bare "name" was read letter by
    # letter ("unknown suite 'n'")
    ("suites_an_int_entry", _evaluate(suites=[3]), "suites=[3]; expected a list of suite names"),
    ("suites_none", _evaluate(suites=None), "suites=None"),
    ("suites_empty", _evaluate(suites=[]), "suites=[]"),
    ("suites_a_bare_unknown_name", _evaluate(suites="nosuch"), "unknown suite 'nosuch'"),
    ("suites_a_set", _evaluate(suites={"clean"}), "suites={'clean'}"),
    ("n_examples_true", _evaluate(n_examples=True), "--n-examples must be a positive integer, got True"),
    ("n_examples_float", _evaluate(n_examples=2.5), "got 2.5"),
    ("n_examples_text", _evaluate(n_examples="10"), "got 10"),
    ("dataset_upper_case", _evaluate(dataset="CIFAR100"), "unknown dataset 'CIFAR100'"),
    ("dataset_an_int", _evaluate(dataset=100), "unknown dataset 100"),
    # what a module returns: fixed: a tuple or dict was an AttributeError; one row of logits for a batch of
    # many was evaluated and recorded
    ("module_returns_a_tuple", _evaluate(_Net(mode="tuple")), "the model returns a tuple; expected a tensor"),
    ("module_returns_a_dict", _evaluate(_Net(mode="dict")), "the model returns a dict"),
    ("module_returns_one_row", _evaluate(_Net(mode="one_row")), "returns 1 rows of logits for a batch of"),
    ("module_returns_a_vector", _evaluate(_Net(mode="vector")), "the model outputs () per input"),
    ("module_of_5_classes", _evaluate(_Net(classes=5)), "the model outputs (5,) per input; the dataset has 10"),
    ("module_returns_nan", _evaluate(_Net(mode="nan")), "non-finite logits"),
    # what is evaluated: fixed: 42, None and [] were TypeErrors or evaluated nothing
    ("model_an_int", _evaluate(42), "got int 42"),
    ("model_none", _now(lambda t, c: _api().evaluate(None, out=t, announce=_quiet)), "got NoneType"),
    ("model_empty_list", _now(lambda t, c: _api().evaluate([], out=t, announce=_quiet)), "got list"),
    ("checkpoint_list_with_an_int", _now(lambda t, c: _api().evaluate([c, 3], out=t, announce=_quiet)),
     "got list"),
    # name and model_info: fixed: AttributeErrors, or a refusal after the suite ran that left its .tmp folder
    ("model_info_a_string", _evaluate(model_info="resnet"), "model_info='resnet'; expected a dict"),
    ("model_info_architecture_an_int", _evaluate(model_info={"architecture": 5}), "model_info architecture=5"),
    ("model_info_method_options_a_list", _evaluate(model_info={"method_options": [1]}), "model_info method_options=[1]"),
    ("model_info_teacher_a_string", _evaluate(model_info={"teacher": "t"}), "model_info teacher='t'"),
    ("name_an_int", _evaluate(name=5), "name=5; expected a string"),
    ("threads_text", _evaluate(threads="2"), "--threads '2': expected a positive integer"),
    ("threads_a_million", _evaluate(threads=10**6), "--threads 1000000: expected at most"),  # fixed: a segfault
    ("teacher_path_for_a_module", _evaluate(suites=["relations"], teacher="runs/t"), "teacher= must be a module too"),
    ("module_teacher_for_a_checkpoint", _now(lambda t, c: _api().evaluate(
        c, out=t, teacher=_Net(), announce=_quiet)), "not a module"),
    ("checkpoint_of_another_dataset", _now(lambda t, c: _api().evaluate(
        c, out=t, dataset="cifar10", announce=_quiet)), "is a synthetic model; dataset='cifar10'"),
    # distill
    ("distill_seeds_twice", _distill(seeds=[0, 0]), "names a seed twice"),  # fixed: trained a duplicate cohort
    ("distill_seeds_negative", _distill(seeds=[-1]), "seed=-1"),
    ("distill_seeds_empty", _distill(seeds=[]), "no members"),
    ("distill_seeds_a_string", _distill(seeds="01"), "seed='0'"),
    ("distill_seeds_float", _distill(seeds=[0.5]), "seed=0.5"),
    ("distill_seeds_bool", _distill(seeds=[True]), "seed=True"),
    ("distill_seeds_2_64", _distill(seeds=[2**64]), "at most 9223372036854775807"),
    ("distill_methods_a_list", _distill(methods=["kd"]), "--method entry \"['kd']\""),
    ("distill_options_a_list", _distill(options=[1]), "options=[1]; expected a dict"),  # fixed: a TypeError
    ("distill_options_unknown", _distill(options={"bogus": 1}), "unknown distill option(s) bogus"),
    ("distill_epochs_text", _distill(epochs="1"), "epochs='1'"),
    ("distill_stop_after_zero", _distill(stop_after=0, epochs=1, train_limit=50, test_limit=20),
     "--stop-after 0: expected a positive epoch number"),  # fixed: a config-only run folder, exit 0
    ("train_stop_after_negative", _now(lambda t, c: _api().train(
        model="resnet8", dataset="synthetic", epochs=1, stop_after=-1, run_dir=t / "run", announce=_quiet)),
     "--stop-after -1"),  # fixed: as above
    ("train_epochs_bool", _now(lambda t, c: _api().train(
        model="resnet8", dataset="synthetic", epochs=True, run_dir=t / "run", announce=_quiet)), "epochs=True"),
    ("train_resume_and_skip", _now(lambda t, c: _api().train(
        model="resnet8", resume=True, skip_finished=True, run_dir=t / "run", announce=_quiet)), "resume and skip_finished"),
    # study
    ("study_missing_file", _now(lambda t, c: _api().study(t / "none.toml", plan=True)), "study: no file"),
    ("study_a_folder", lambda t, c: (t / "d.toml").mkdir() or (lambda: _api().study(t / "d.toml", plan=True)),
     "study: no file"),
    ("study_seeds_negative", _study(seeds=[-1]), "--seeds [-1]"),  # fixed: planned
    ("study_seeds_a_string", _study(seeds="0"), "--seeds ['0']"),  # fixed: planned
    ("study_seeds_2_64", _study(seeds=[2**64]), "--seeds [18446744073709551616]"),  # fixed: planned
    ("study_seeds_twice", _study(seeds=[1, 1]), "--seeds [1, 1]"),
    ("study_cohort_a_bare_unknown_name", _study(cohorts="nosuch"), "--cohort 'nosuch'"),  # fixed: read as letters
    ("study_stage_unknown", _study(stage="x"), "--stage 'x' is not a stage"),
    # import_model
    ("import_mean_of_two", _import(mean=[0, 0], std=[1, 1, 1]), "--mean takes 3 finite numbers"),
    ("import_mean_a_string", _import(mean="000", std="111"), "--mean takes 3 finite numbers"),
    ("import_num_classes_text", _import(num_classes="10"), "--num-classes '10' does not match"),  # fixed: "10 ... 10"
    ("import_num_classes_bool", _import(num_classes=True), "--num-classes True does not match"),
    ("import_model_kwargs_a_list", _import(model_kwargs=[1]), "model_kwargs=[1]"),  # fixed: a TypeError
]


@pytest.mark.parametrize("prepare, fragment", [c[1:] for c in API_CASES], ids=_ids(API_CASES))
def test_api(checkpoint: Path, tmp_path: Path, prepare: Prepare, fragment: str) -> None:
    _api_refused(prepare(tmp_path, checkpoint), fragment, tmp_path)


# ================================================================================ results databases

def _fake_result(root: Path) -> Path:
    folder = root / "resnet8-clean"
    folder.mkdir(parents=True)
    metrics = {"top1": 40.0, "top5": 70.0}
    summary = {"name": "resnet8-aaaaaaaaaaaa", "architecture": "resnet8", "dataset": "cifar100", "clean_acc": 40.0,
               "suite": "clean", "metrics": metrics, "units": {k: "percent" for k in metrics},
               "protocol": {"batch_size": 100}, "n_examples": 10000, "subset": False, "seed": 0, "device": "cpu",
               "package_versions": {"torch": "x"}, "checkpoint_sha256": "a" * 64, "suite_file": "x.toml",
               "suite_sha256": "s" * 64, "created": "2026-11-27T00:00:00+00:00", "method": "kd",
               "teacher_sha256": "t" * 64, "method_options": {}, "kind": "distill", "training": {"recipe": "quick"}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture(scope="module")
def good_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from robustkd.results import store

    root = tmp_path_factory.mktemp("good-db")
    store.record_result(root / "robustkd.db", _fake_result(root / "results"))
    return root / "robustkd.db"


LOOSE = "CREATE TABLE r2 AS SELECT * FROM results; DROP TABLE results; ALTER TABLE r2 RENAME TO results;"


def _sql(script: str, start_from_good: bool = True) -> Callable[[Path, Path], Path]:
    def make(t: Path, good: Path) -> Path:
        db = t / "x.db"
        if start_from_good:
            shutil.copy(good, db)
        connection = sqlite3.connect(db)
        connection.executescript(script)
        connection.commit()
        connection.close()
        return db
    return make


DB_CASES: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("results_of_other_columns_no_meta", _sql("CREATE TABLE results (a TEXT, b INT);", False), "lacks the table meta"),
    ("results_of_other_columns", _sql("CREATE TABLE results (a TEXT); CREATE TABLE meta (key TEXT, value TEXT); "
                                      "INSERT INTO meta VALUES ('schema_version', '1');", False),
     "the results table lacks the column(s) checkpoint_sha256"),  # fixed: refused, but switched to WAL first
    ("results_a_view", _sql("CREATE TABLE meta (key TEXT, value TEXT); CREATE VIEW results AS SELECT 1 AS a;", False),
     "lacks the table results"),
    ("null_suite", _sql(LOOSE + "UPDATE results SET suite = NULL;"), "holds suite = None where text belongs"),
    ("null_metric", _sql(LOOSE + "UPDATE results SET metric = NULL;"), "holds metric = None where text belongs"),
    ("null_checkpoint", _sql(LOOSE + "UPDATE results SET checkpoint_sha256 = NULL;"), "holds checkpoint_sha256 = None"),
    ("null_subset", _sql(LOOSE + "UPDATE results SET subset = NULL;"), "holds subset = None"),
    ("blob_value", _sql("UPDATE results SET value = x'00ff';"), "where a number belongs"),
    ("protocol_not_json", _sql("UPDATE results SET protocol = '{';"), "holds protocol = '{' where JSON text belongs"),
    ("schema_version_null", _sql("UPDATE meta SET value = NULL WHERE key = 'schema_version';"),
     "schema_version = None is not a version number"),
    ("schema_version_absent", _sql("DELETE FROM meta;"), "its meta table has no schema_version"),
    ("sqlite_header_then_garbage", lambda t, g: _file(t, "x.db", b"SQLite format 3\x00" + bytes(range(256)) * 16),
     "is not a robustkd results database (file is not a database)"),
    ("truncated", lambda t, g: _file(t, "x.db", g.read_bytes()[:5000]), "x.db is damaged"),
    ("a_folder", lambda t, g: (t / "x.db").mkdir() or t / "x.db", "no database at"),
    ("a_fifo", lambda t, g: os.mkfifo(t / "x.db") or t / "x.db", "no database at"),
    ("a_character_device", lambda t, g: _mknod(t / "x.db"), "no database at"),
    ("under_a_file", lambda t, g: _file(t, "f", b"x") / "x.db", "no database at"),
]

READERS: dict[str, Callable[[Path, Path], list[str]]] = {
    "leaderboard": lambda db, t: ["leaderboard", "--db", str(db)],
    "export": lambda db, t: ["leaderboard", "export", "--db", str(db), "--out", str(t / "board.csv"),
                             "--grid-out", str(t / "grid.csv")],
    "report": lambda db, t: ["report", "--db", str(db), "--out", str(t / "report.html")],
    "compare": lambda db, t: ["compare", "--db", str(db), "--out", str(t / "compare.md"), "--plot", str(t / "f.png")],
}


@pytest.mark.parametrize("make, fragment", [c[1:] for c in DB_CASES], ids=_ids(DB_CASES))
def test_databases_for_the_readers(good_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make,
                                   fragment: str) -> None:
    """leaderboard, leaderboard export, report and compare: one line each, the database and folder untouched."""
    db = make(tmp_path, good_db)
    for command, build in READERS.items():
        _refused(build(db, tmp_path), capsys, fragment, tmp_path)


@pytest.mark.parametrize("command", list(READERS))
def test_a_zero_byte_database_is_new_and_empty_for_the_readers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               command: str) -> None:
    """A 0-byte file is a new database (robustkd/results/db_file.py): the readers say it holds no results, in one
    line, and leave nothing beside it. (A writable one is given the empty schema as it is read, by design:
    store.read_results brings a database robustkd can write to the current schema first.)"""
    db = _file(tmp_path, "x.db", b"")
    capsys.readouterr()
    assert main(READERS[command](db, tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustkd: error: ") and "holds no results yet" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert connection.execute("SELECT COUNT(*) FROM results").fetchone() == (0,)
    finally:
        connection.close()


WRITER_CASES: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("fifo", lambda t, g: os.mkfifo(t / "x.db") or t / "x.db", "is not a regular file; expected a SQLite file"),  # fixed:
    ("character_device", lambda t, g: _mknod(t / "x.db"), "is not a regular file; expected a SQLite file"),  # "a folder"
    ("results_of_other_columns", _sql("CREATE TABLE results (a TEXT, b INT);", False), "lacks the table meta"),
    ("null_suite", _sql(LOOSE + "UPDATE results SET suite = NULL;"), "holds suite = None where text belongs"),
    ("sqlite_header_then_garbage", lambda t, g: _file(t, "x.db", b"SQLite format 3\x00" + bytes(range(256)) * 16),
     "file is not a database"),
]


@pytest.mark.parametrize("make, fragment", [c[1:] for c in WRITER_CASES], ids=_ids(WRITER_CASES))
def test_databases_for_the_writers(checkpoint: Path, good_db: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], make, fragment: str) -> None:
    """evaluate refuses before any suite runs; results import records nothing; neither changes the database."""
    db = make(tmp_path, good_db)
    _fake_result(tmp_path / "results")
    _refused(["evaluate", "--checkpoint", str(checkpoint), "--suite", "clean", "--out", str(tmp_path / "out"),
              "--db", str(db)], capsys, fragment, tmp_path)
    _refused(["results", "import", str(tmp_path / "results"), "--db", str(db)], capsys, fragment, tmp_path)


# ================================================================================ numeric and path edges of flags

def _train(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda t, c: ["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--train-limit", "50",
                         "--test-limit", "20", "--run-dir", str(t / "run"), *extra]


def _distill_cli(*extra: str, student: bool = True) -> Callable[[Path, Path], list[str]]:
    return lambda t, c: ["distill", "--teacher", str(c), "--dataset", "synthetic", "--epochs", "1", "--train-limit", "50",
                         "--test-limit", "20", "--run-dir", str(t / "run"), *(["--student", "resnet8"] if student else []),
                         *extra]


def _evaluate_cli(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda t, c: ["evaluate", "--checkpoint", str(c), "--out", str(t / "out"),
                         *([] if "--suite" in extra else ["--suite", "clean"]), *extra]


def _corrupt(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda t, c: ["corrupt", "--dataset", "synthetic", "--out", str(t / "c"), "--n-examples", "10", *extra]


FLAG_CASES: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    # train
    ("train_lr_inf", _train("--lr", "inf"), "lr=inf; expected a finite number"),
    ("train_lr_nan", _train("--lr", "nan"), "lr=nan; expected a finite number"),
    ("train_noise_inf", _train("--noise-sd", "inf"), "noise_sd=inf"),
    ("train_momentum_nan", _train("--momentum", "nan"), "momentum=nan"),
    ("train_momentum_negative", _train("--momentum", "-1"), "momentum=-1.0; expected a number in [0, 1)"),
    ("train_momentum_one_and_a_half", _train("--momentum", "1.5"), "momentum=1.5"),
    ("train_weight_decay_negative", _train("--weight-decay", "-1"), "weight_decay=-1.0"),
    ("train_weight_decay_inf", _train("--weight-decay", "inf"), "weight_decay=inf"),
    ("train_lr_decay_inf", _train("--lr-decay", "inf"), "lr_decay=inf"),
    ("train_milestones_decreasing", _train("--milestones", "5,3"), "milestones=[5, 3]"),
    ("train_milestones_zero", _train("--milestones", "0"), "milestones=[0]"),
    ("train_test_limit_zero", _train("--test-limit", "0"), "test_limit=0"),
    ("train_test_limit_negative", _train("--test-limit", "-1"), "test_limit=-1"),
    ("train_eval_every_zero", _train("--eval-every", "0"), "eval_every=0"),
    ("train_epochs_in_e_notation", _train("--epochs", "1e3"), "invalid int value: '1e3'"),
    ("train_epochs_of_5000_digits", _train("--epochs", DIGITS_5000), "--epochs: invalid int value"),
    ("train_seed_float", _train("--seed", "1.5"), "invalid int value: '1.5'"),
    # fixed: --stop-after 0 or -1 trained nothing, left a config-only run folder and exited 0
    ("train_stop_after_zero", _train("--stop-after", "0"), "--stop-after 0: expected a positive epoch number"),
    ("train_stop_after_negative", _train("--stop-after", "-1"), "--stop-after -1"),
    ("train_threads_100000", _train("--threads", "100000"), "--threads 100000: expected at most"),  # fixed: a crash
    ("train_resume_and_plan", _train("--resume", "--plan"), "--plan and --resume: give one"),
    ("train_resume_nothing", _train("--resume"), "holds no run to resume"),
    ("train_model_empty", _train("--model", ""), "unknown model ''"),
    ("train_model_torchvision_unknown", _train("--model", "torchvision:nope"), "unknown torchvision model 'nope'"),
    ("train_model_a_path", _train("--model", "../resnet8"), "unknown model '../resnet8'"),
    ("train_dataset_empty", _train("--dataset", ""), "unknown dataset ''"),
    ("train_init_from_a_text_file", lambda t, c: _train("--init-from", str(_file(t, "notes.txt", b"x")))(t, c),
     "notes.txt is not valid JSON"),
    ("train_init_from_another_architecture", lambda t, c: _train("--init-from", str(c), "--model", "resnet20")(t, c),
     "holds a resnet8, expected resnet20"),
    ("train_run_dir_a_file", lambda t, c: _train("--run-dir", str(_file(t, "f", b"x")))(t, c), "is a file; expected a folder"),
    ("train_run_dir_under_a_file", lambda t, c: _train("--run-dir", str(_file(t, "f", b"x") / "run"))(t, c),
     "a part of its path is a file"),
    # distill
    ("distill_seeds_comma", _distill_cli("--method", "kd", "--seeds", ","), "--seeds ','"),
    ("distill_seeds_empty", _distill_cli("--method", "kd", "--seeds", ""), "--seeds ''"),
    ("distill_seeds_twice", _distill_cli("--method", "kd", "--seeds", "0,0"), "names a seed twice"),
    ("distill_method_empty", _distill_cli("--method", ""), "--method '': an empty entry"),  # fixed: trained kd
    ("distill_student_empty", _distill_cli("--method", "kd", "--student", "", student=False),
     "--student '': an empty entry"),  # fixed: trained the default student
    ("distill_method_trailing_comma", _distill_cli("--method", "kd,"), "--method 'kd,': an empty entry"),
    ("distill_method_open_bracket", _distill_cli("--method", "kd["), "a '[' without its ']'"),
    ("distill_method_extra_bracket", _distill_cli("--method", "kd[kd_temperature=1]]"), "a ']' without its '['"),
    ("distill_option_nan", _distill_cli("--method", "kd[kd_temperature=nan]"), "kd_temperature=nan"),
    ("distill_option_inf", _distill_cli("--method", "kd[kd_temperature=inf]"), "kd_temperature=inf"),
    ("distill_option_overflow", _distill_cli("--method", "kd[kd_temperature=1e999]"), "kd_temperature=inf"),
    ("distill_option_twice", _distill_cli("--method", "kd[kd_temperature=4,kd_temperature=5]"),
     "sets kd_temperature twice"),  # fixed: the last one won silently
    ("distill_option_choice_unknown", _distill_cli("--method", "cmkd[cmkd_weighting=bogus]"), "cmkd_weighting='bogus'"),
    ("distill_addon_unknown", _distill_cli("--method", "kd+bogus"), "unknown distillation add-on 'bogus'"),
    ("distill_addon_twice", _distill_cli("--method", "kd+spearman+spearman"), "names a term twice"),
    ("distill_student_trailing_comma", _distill_cli("--method", "kd", "--student", "resnet8,", student=False),
     "--student 'resnet8,': an empty entry"),
    ("distill_student_twice", _distill_cli("--method", "kd", "--student", "resnet8,resnet8", student=False),
     "names an architecture twice"),
    ("distill_temperature_nan", _distill_cli("--method", "kd", "--kd-temperature", "nan"), "kd_temperature=nan"),
    ("distill_temperature_inf", _distill_cli("--method", "kd", "--kd-temperature", "inf"), "kd_temperature=inf"),
    ("distill_temperature_zero", _distill_cli("--method", "kd", "--kd-temperature", "0"), "kd_temperature=0.0"),
    ("distill_teacher_of_another_dataset", _distill_cli("--method", "kd", "--dataset", "cifar10"),
     "was trained on synthetic"),
    ("distill_teacher_a_file", lambda t, c: _distill_cli("--method", "kd", "--teacher", str(_file(t, "t.json", b"x")))(t, c),
     "t.json is not valid JSON"),
    ("distill_teacher_an_empty_folder", lambda t, c: _distill_cli("--method", "kd", "--teacher", str(t))(t, c),
     "no sidecar"),
    # fixed: a checkpoint folder without training state (a copied, committed or imported checkpoint) named as the
    # --run-dir of a solo distillation was refused, and then deleted as if it were the refused run's own leftovers
    ("distill_run_dir_a_checkpoint", lambda t, c: _distill_cli("--method", "kd", "--run-dir", str(_copy(c, t)))(
        t, _copy(c, t, "teacher")), "already holds a run"),
    ("distill_cohort_run_dir_a_checkpoint", lambda t, c: _distill_cli("--method", "kd,ce", "--seeds", "0", "--run-dir",
                                                                      str(_copy(c, t)))(t, _copy(c, t, "teacher")),
     "already holds a run"),
    ("distill_stop_after_zero", _distill_cli("--method", "kd", "--stop-after", "0"), "--stop-after 0"),  # fixed
    ("distill_threads_100000", _distill_cli("--method", "kd", "--threads", "100000"), "--threads 100000"),  # fixed
    # evaluate
    ("evaluate_n_examples_in_e_notation", _evaluate_cli("--n-examples", "1e3"), "invalid int value: '1e3'"),
    ("evaluate_n_examples_empty", _evaluate_cli("--n-examples", ""), "invalid int value: ''"),
    ("evaluate_suite_empty", _evaluate_cli("--suite", ""), "unknown suite ''"),
    ("evaluate_checkpoint_empty", lambda t, c: ["evaluate", "--checkpoint", "", "--suite", "clean", "--out",
                                                str(t / "out")], "no sidecar"),
    ("evaluate_threads_100000", _evaluate_cli("--threads", "100000"), "--threads 100000"),  # fixed: a segfault
    ("evaluate_device_negative_index", _evaluate_cli("--device", "cuda:-1"), "unknown device 'cuda:-1'"),
    ("evaluate_device_index_text", _evaluate_cli("--device", "cuda:x"), "unknown device 'cuda:x'"),
    # corrupt
    ("corrupt_corruptions_empty", _corrupt("--corruptions", ""), "--corruptions '' names no corruption"),  # fixed: wrote
    ("corrupt_corruptions_comma", _corrupt("--corruptions", ","), "names no corruption"),  # labels and a manifest only
    ("corrupt_corruption_unknown", _corrupt("--corruptions", "fog,nope"), "unknown name 'nope'"),
    ("corrupt_seed_negative", _corrupt("--corruptions", "fog", "--seed", "-1"), "--seed -1"),  # fixed: generated
    ("corrupt_seed_2_64", _corrupt("--corruptions", "fog", "--seed", str(2**64)), "at most 9223372036854775807"),  # fixed
    ("corrupt_n_examples_zero", lambda t, c: ["corrupt", "--dataset", "synthetic", "--out", str(t / "c"), "--n-examples",
                                              "0"], "must be positive integers"),
    ("corrupt_batch_size_zero", _corrupt("--batch-size", "0"), "must be positive integers"),
    ("corrupt_imagenet", lambda t, c: ["corrupt", "--dataset", "imagenet", "--out", str(t / "c")], "--dataset imagenet"),
    ("corrupt_out_a_file", lambda t, c: ["corrupt", "--dataset", "synthetic", "--out", str(_file(t, "c", b"x"))],
     "expected a folder"),
]


@pytest.mark.parametrize("build, fragment", [c[1:] for c in FLAG_CASES], ids=_ids(FLAG_CASES))
def test_flags(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], build, fragment: str) -> None:
    argv = build(tmp_path, checkpoint)
    _refused(argv, capsys, fragment, tmp_path)


# ================================================================================ config files and suite files

CONFIG_CASES: list[tuple[str, str, bytes, str]] = [
    # fixed: the first four were tracebacks (UnicodeDecodeError, ValueError) and exit 3
    ("toml_not_utf8", "toml", b"lr = 0.1\n# \xff\xfe\n", "does not parse ('utf-8' codec"),
    ("yaml_not_utf8", "yaml", b"lr: 0.1\n# \xff\xfe\n", "does not parse ('utf-8' codec"),
    ("toml_integer_of_5000_digits", "toml", f"epochs = {DIGITS_5000}\n".encode(), "does not parse (Exceeds"),
    ("yaml_integer_of_5000_digits", "yaml", f"epochs: {DIGITS_5000}\n".encode(), "does not parse (Exceeds"),
    ("toml_nested_arrays", "toml", ("milestones = " + "[" * 3000 + "]" * 3000 + "\n").encode(), "nests its values"),
    ("json_suffix", "json", b'{"lr": 0.1}', "must end in .toml, .yaml or .yml"),
    ("yaml_a_list", "yaml", b"- 1\n- 2\n", "must hold a mapping of keys to values"),
    ("yaml_python_tag", "yaml", b"lr: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
    ("toml_method_options_for_train", "toml", b"[method_options]\nkd_temperature = 4\n", "unknown key(s) method_options"),
    ("toml_teacher_for_train", "toml", b"teacher = 'x'\n", "unknown key(s) teacher"),
    ("toml_epochs_bool", "toml", b"epochs = true\n", "epochs=True"),
    ("toml_seed_float", "toml", b"seed = 1e3\n", "seed=1000.0; expected an integer"),
    ("toml_milestones_floats", "toml", b"milestones = [1.5]\n", "milestones=[1.5]; expected a list of integers"),
    ("toml_init_from_an_int", "toml", b"init_from = 3\n", "init_from=3; expected a string"),
    ("yaml_key_missing", "yaml", b": 0.1\n", "does not parse (while parsing a block mapping)"),
]


@pytest.mark.parametrize("suffix, data, fragment", [c[1:] for c in CONFIG_CASES], ids=_ids(CONFIG_CASES))
def test_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str, data: bytes,
                      fragment: str) -> None:
    config = _file(tmp_path, f"cfg.{suffix}", data)
    _refused(["train", "--model", "resnet8", "--dataset", "synthetic", "--config", str(config), "--run-dir",
              str(tmp_path / "run")], capsys, fragment, tmp_path)


SUITE_CASES: list[tuple[str, str, Callable[[Path], bytes], str]] = [
    ("include_of_another_file", "s.toml", lambda t: b'suite = "clean"\ninclude = "other.toml"\n', "unknown key(s) include"),
    ("official_dir_a_file", "s.toml", lambda t: (_file(t, "afile", b"x"), f'suite = "corruption"\nsource = "official"\n'
                                                 f'official_dir = "{t}/afile"\n'.encode())[1], "afile does not exist"),
    ("official_dir_escaping", "s.toml", lambda t: b'suite = "corruption"\nsource = "official"\nofficial_dir = "'
     + b"../" * 40 + b'etc"\n', "etc/labels.npy is missing"),
    ("long_corruption_name", "s.toml", lambda t: ('suite = "corruption"\ncorruptions = ["' + "x" * 100_000 + '"]\n').encode(),
     "corruptions = ['xxxx"),
    ("long_suite_name", "s.toml", lambda t: ('suite = "' + "x" * 100_000 + '"\n').encode(), "unknown suite 'xxxx"),
    # fixed: the next three were tracebacks (ValueError, RecursionError) and exit 3
    ("batch_size_of_5000_digits", "s.toml", lambda t: f'suite = "clean"\nbatch_size = {DIGITS_5000}\n'.encode(),
     "does not parse (Exceeds"),
    ("nested_arrays", "s.toml", lambda t: ('suite = "clean"\nx = ' + "[" * 5000 + "]" * 5000 + "\n").encode(),
     "nests its values too deeply"),
    ("nested_inline_tables", "s.toml", lambda t: ('suite = "clean"\nx = ' + "{a = " * 5000 + "1" + "}" * 5000 + "\n"
                                                  ).encode(), "nests its values too deeply"),
    ("batch_size_overflowing_float", "s.toml", lambda t: b'suite = "clean"\nbatch_size = 1e400\n', "batch_size = inf"),
    ("suite_an_array", "s.toml", lambda t: b'suite = ["clean"]\n', "must name its suite"),
    ("suite_a_table", "s.toml", lambda t: b'[suite]\nname = "clean"\n', "must name its suite"),
    ("upper_case_suffix", "s.TOML", lambda t: b'suite = "clean"\n', "unknown suite"),
    ("no_suffix", "s", lambda t: b'suite = "clean"\n', "unknown suite"),
    ("nul_byte", "s.toml", lambda t: b'suite = "cle\x00an"\n', "does not parse"),
]


@pytest.mark.parametrize("name, make, fragment", [c[1:] for c in SUITE_CASES], ids=_ids(SUITE_CASES))
def test_suite_files(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, make,
                     fragment: str) -> None:
    path = _file(tmp_path, name, make(tmp_path))
    _refused(["evaluate", "--checkpoint", str(checkpoint), "--suite", str(path), "--out", str(tmp_path / "out")],
             capsys, fragment, tmp_path)


# ================================================================================ checkpoint sidecars

def _edit(**changes: object) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        meta = json.loads((folder / "model.json").read_text())
        meta.update(changes)
        (folder / "model.json").write_text(json.dumps(meta))
    return damage


def _text(transform: Callable[[str], str]) -> Callable[[Path], None]:
    return lambda folder: (folder / "model.json").write_text(transform((folder / "model.json").read_text()))


def _raw(data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        old = (folder / "model.json").read_bytes()
        (folder / "model.json").write_bytes(data(old) if callable(data) else data)
    return damage


def _replace(name: str, kind: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).unlink()
        if kind == "folder":
            (folder / name).mkdir()
        else:
            os.mkfifo(folder / name)
    return damage


def _normalization(**changes: object) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        meta = json.loads((folder / "model.json").read_text())
        meta["normalization"] = {**meta["normalization"], **changes}
        (folder / "model.json").write_text(json.dumps(meta))
    return damage


CLASSES_5000 = _text(lambda s: s.replace('"num_classes": 10', '"num_classes": ' + DIGITS_5000))

SIDECAR_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("classes_a_numeric_string", _edit(num_classes="10"), "num_classes = '10'; expected an integer"),
    ("classes_a_float", _edit(num_classes=10.0), "num_classes = 10.0"),
    ("classes_true", _edit(num_classes=True), "num_classes = True"),
    ("classes_negative", _edit(num_classes=-10), "num_classes = -10"),
    ("classes_of_another_dataset", _edit(num_classes=100), "a resnet8 with 100 classes has (100,)"),
    ("classes_of_5000_digits", CLASSES_5000, "is not valid JSON (Exceeds"),  # fixed: a traceback, exit 3
    ("architecture_a_list", _edit(architecture=["resnet8"]), "architecture = ['resnet8']; expected a model name"),
    ("architecture_an_int", _edit(architecture=8), "architecture = 8"),
    ("architecture_empty", _edit(architecture=""), "architecture = ''"),
    ("architecture_a_path", _edit(architecture="../resnet8"), "unknown model '../resnet8'"),
    ("architecture_onnx_without_its_graph", _edit(architecture="onnx:x"), "architecture_options = {}"),
    ("architecture_torchvision_of_other_shapes", _edit(architecture="torchvision:resnet18"),
     "a torchvision:resnet18 with 10 classes has"),
    ("dataset_null", _edit(dataset=None), "dataset = None; expected a dataset name"),
    ("dataset_an_int", _edit(dataset=100), "dataset = 100"),
    ("normalization_two_means", _edit(normalization={"mean": [1, 2], "std": [1, 1, 1]}), "normalization = {'mean': [1, 2]"),
    ("normalization_a_string", _edit(normalization="imagenet"), "normalization = 'imagenet'"),
    ("normalization_nan", _text(lambda s: s.replace('"mean": [', '"mean": [NaN, ', 1)), "normalization = {'mean': [nan"),
    ("normalization_zero_std", _normalization(std=[0, 0, 0]), "'std': [0, 0, 0]"),
    ("normalization_null", _edit(normalization=None), "normalization = None"),
    ("weights_file_dotdot", _edit(weights_file=".."), "weights_file = '..'"),
    ("weights_file_empty", _edit(weights_file=""), "weights_file = ''"),
    ("weights_file_an_int", _edit(weights_file=5), "weights_file = 5"),
    ("weights_file_the_sidecar", _edit(weights_file="model.json"), "model.json sha256"),
    ("weights_a_folder", _replace("model.safetensors", "folder"), "model.safetensors named by model.json is missing"),
    ("weights_a_fifo", _replace("model.safetensors", "fifo"), "model.safetensors named by model.json is missing"),
    ("weights_empty", lambda f: (f / "model.safetensors").write_bytes(b""), "does not match its sidecar"),
    ("weights_header_2_40", lambda f: (f / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}"),
     "does not match its sidecar"),
    ("sha_short", _edit(weights_sha256="abc"), "weights_sha256 = 'abc'; expected 64 lowercase hex digits"),
    ("sha_upper_case", _text(lambda s: s.replace(json.loads(s)["weights_sha256"], json.loads(s)["weights_sha256"].upper())),
     "expected 64 lowercase hex digits"),
    ("sidecar_with_a_bom", _raw(lambda old: b"\xef\xbb\xbf" + old), "Unexpected UTF-8 BOM"),
    ("sidecar_not_utf8", _raw(lambda old: old + b" \xff"), "'utf-8' codec can't decode"),
    ("sidecar_empty", _raw(b""), "is not valid JSON"),
    ("sidecar_null", _raw(b"null"), "must hold a JSON object"),
    ("sidecar_a_string", _raw(b'"hello"'), "must hold a JSON object"),
    ("sidecar_a_folder", _replace("model.json", "folder"), "no sidecar"),
    ("sidecar_a_fifo", _replace("model.json", "fifo"), "no sidecar"),
]


@pytest.mark.parametrize("damage, fragment", [c[1:] for c in SIDECAR_CASES], ids=_ids(SIDECAR_CASES))
def test_sidecars(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage, fragment: str) -> None:
    folder = _copy(checkpoint, tmp_path)
    damage(folder)
    _refused(["evaluate", "--checkpoint", str(folder), "--suite", "clean", "--out", str(tmp_path / "out")], capsys,
             fragment, tmp_path)


TEACHER_CASES: list[tuple[str, str, Callable[[Path], None], str]] = [
    ("distill_teacher_classes_text", "distill", _edit(num_classes="10"), "num_classes = '10'"),
    ("distill_teacher_dataset_null", "distill", _edit(dataset=None), "dataset = None"),
    ("distill_teacher_architecture_a_list", "distill", _edit(architecture=["x"]), "architecture = ['x']"),
    ("distill_teacher_classes_of_5000_digits", "distill", CLASSES_5000, "is not valid JSON (Exceeds"),  # fixed
    ("distill_teacher_weights_a_folder", "distill", _replace("model.safetensors", "folder"), "is missing"),
    ("train_init_from_classes_of_5000_digits", "train", CLASSES_5000, "is not valid JSON (Exceeds"),  # fixed
    ("evaluate_teacher_classes_of_5000_digits", "evaluate", CLASSES_5000, "is not valid JSON (Exceeds"),  # fixed
]


@pytest.mark.parametrize("command, damage, fragment", [c[1:] for c in TEACHER_CASES], ids=_ids(TEACHER_CASES))
def test_checkpoints_in_other_roles(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    command: str, damage, fragment: str) -> None:
    """The same damage in a teacher (distill, evaluate's relations suite) or a fine-tune's start (train)."""
    folder = _copy(checkpoint, tmp_path)
    damage(folder)
    argv = {"distill": ["distill", "--teacher", str(folder), "--student", "resnet8", "--method", "kd", "--dataset",
                        "synthetic", "--epochs", "1", "--run-dir", str(tmp_path / "run")],
            "train": ["train", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--init-from",
                      str(folder), "--run-dir", str(tmp_path / "run")],
            "evaluate": ["evaluate", "--checkpoint", str(checkpoint), "--teacher", str(folder), "--suite", "relations",
                         "--out", str(tmp_path / "out")]}[command]
    _refused(argv, capsys, fragment, tmp_path)


# ================================================================================ result summaries

def _summary(transform: Callable[[dict], str]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / "summary.json").write_text(transform(json.loads((folder / "summary.json").read_text())))
    return damage


SUMMARY_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("nested_100000_deep", lambda f: (f / "summary.json").write_text("[" * 100_000 + "]" * 100_000),
     "nests its JSON too deeply"),  # fixed: a RecursionError traceback, exit 3
    ("integer_of_5000_digits", _summary(lambda s: json.dumps(s).replace('"n_examples": 10000',
                                                                         '"n_examples": ' + DIGITS_5000)),
     "is not valid JSON (Exceeds"),
    ("with_a_bom", lambda f: (f / "summary.json").write_bytes(b"\xef\xbb\xbf" + (f / "summary.json").read_bytes()),
     "Unexpected UTF-8 BOM"),
    ("not_utf8", lambda f: (f / "summary.json").write_bytes((f / "summary.json").read_bytes()[:-1] + b', "x": "\xff"}'),
     "is not valid JSON"),
    ("metric_a_bool", _summary(lambda s: json.dumps({**s, "metrics": {"top1": True}})), "metrics={'top1': True}"),
    ("metric_a_table", _summary(lambda s: json.dumps({**s, "metrics": {"top1": {"a": 1}}})), "metrics={'top1': {'a': 1}}"),
    ("clean_acc_text", _summary(lambda s: json.dumps({**s, "clean_acc": "high"})), "clean_acc='high'"),
    ("protocol_a_list", _summary(lambda s: json.dumps({**s, "protocol": [1]})), "protocol=[1]"),
    ("created_an_int", _summary(lambda s: json.dumps({**s, "created": 5})), "created=5"),
    ("infinity", _summary(lambda s: json.dumps(s).replace('"clean_acc": 40.0', '"clean_acc": Infinity')),
     "is not valid JSON"),
]


@pytest.mark.parametrize("damage, fragment", [c[1:] for c in SUMMARY_CASES], ids=_ids(SUMMARY_CASES))
def test_result_summaries(tmp_path: Path, capsys: pytest.CaptureFixture[str], damage, fragment: str) -> None:
    folder = _fake_result(tmp_path / "results")
    damage(folder)
    _refused(["results", "import", str(tmp_path / "results"), "--db", str(tmp_path / "x.db")], capsys, fragment,
             tmp_path)


def test_there_are_at_least_100_new_cases() -> None:
    total = (len(STUDY_CASES) + len(STUDY_BYTES_CASES) + len(STUDY_FLAG_CASES) + 1 + len(IMPORT_CASES) + 3 + 1
             + len(API_CASES) + len(DB_CASES) + len(WRITER_CASES) + len(FLAG_CASES) + len(CONFIG_CASES)
             + len(SUITE_CASES) + len(SIDECAR_CASES) + len(TEACHER_CASES) + len(SUMMARY_CASES))
    assert total >= 100, total
