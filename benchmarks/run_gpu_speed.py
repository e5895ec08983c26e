#!/usr/bin/env python3
"""Issue 25's GPU run: the compiled training step against today's loop, and every suite's cost, on a lent GPU
machine (no package registry: the attack libraries come as carried wheels, .whl/, see docs/gpu.md). Results go
to $OUT (default ./bench-out); each stage has its own time limit (benchmarks/gpu_stages.py), 690 s in all: two
run calls of at most 600 s with --stages.

    python3 benchmarks/run_gpu_speed.py --stages env,tests,loss,cohort          # call 1 (<= 460 s)
    python3 benchmarks/run_gpu_speed.py --stages env,teacher,stacked,estimate   # call 2, while warm (<= 230 s)
    python benchmarks/run_gpu_speed.py --device cpu --dry                       # plumbing anywhere: tiny sizes

Stages (logs and JSON in logs.tar.gz; status.tsv, summary.txt):
  env       device, versions; installs the carried wheels that are missing
  tests     tests/test_compiled_step.py and tests/test_distill_losses.py with ROBUSTKD_TEST_DEVICE=--device:
            on CUDA the compiled step is CUDA-graphed and compared with float64 and with the plain step
  loss      bench_loss_overhead.py, plain and compiled: each loss as a fraction of a resnet8x4 step at batch
            64, C = 100 and 1000 (goal: CMKD <= 15 % of the compiled step)
  cohort    bench_cohort.py, resnet32x4 -> resnet8x4, ce,kd,dist,cmkd, batch 64: the plain and the compiled
            cohort against four separate runs of today's loop in the same rounds, extrapolated to 240 epochs
            (goals: <= 30 min and >= 4x)
  teacher   bench_train_pipeline.py, resnet32x4 at batch 64, channels_last with and without --compile,
            extrapolated to 240 epochs (goal: <= 15 min)
  stacked   bench_stacked_students.py: 4 resnet8x4 students in a loop against stacked (vmap), eager and
            compiled (decides whether a cohort should stack on this device)
  estimate  estimate_paper_eval.py: every eval_suites/*.toml for one resnet8x4, per suite, extrapolated to
            the full test set (goal: <= 10 min in all)
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_stages import Stage, run_stages  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STAGES = ("env", "tests", "loss", "cohort", "teacher", "stacked", "estimate")
# (GPU limit, dry-run limit) in seconds; the GPU limits leave room for compiling on a fresh inductor cache
LIMITS = {"env": (20, 60), "tests": (120, 600), "loss": (60, 300), "cohort": (260, 600), "teacher": (90, 300),
          "stacked": (60, 600), "estimate": (60, 300)}
FULL = {"loss": ["--student", "resnet8x4", "--classes", "100", "1000", "--repeats", "20"],
        "cohort": ["--teacher", "resnet32x4", "--student", "resnet8x4", "--steps", "200", "--repeats", "3"],
        "teacher": ["--models", "resnet32x4", "--images", "20000", "--repeats", "3", "--workers", "8"],
        "stacked": ["--model", "resnet8x4", "--students", "4", "--batch-size", "64", "--steps", "50", "--repeats", "5"],
        "estimate": []}
DRY = {"loss": ["--student", "resnet8", "--classes", "100", "--repeats", "1"],
       "cohort": ["--teacher", "resnet20", "--student", "resnet8", "--steps", "2", "--repeats", "1"],
       "teacher": ["--models", "resnet8", "--images", "256", "--repeats", "1", "--workers", "0"],
       "stacked": ["--model", "resnet8", "--students", "2", "--batch-size", "16", "--steps", "2", "--repeats", "1"],
       "estimate": ["--n", "clean=100", "relations=100", "--suites", "clean", "relations"]}


def _fail(message: str) -> None:
    print(f"run_gpu_speed.py: {message}", file=sys.stderr)
    sys.exit(2)


def parse(argv: list[str]) -> tuple[str, list[str], bool]:
    """(device, stages, dry) from the arguments; a bad one is one line on stderr and exit 2, before any work."""
    device, stages, dry = "cuda", list(STAGES), False
    arguments = iter(argv)
    for argument in arguments:
        if argument in ("--device", "--stages"):
            value = next(arguments, None)
            if value is None:
                _fail(f"{argument} needs a value")
            if argument == "--device":
                device = value
            else:
                stages = [name for name in value.split(",") if name]
        elif argument == "--dry":
            dry = True
        elif argument in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        else:
            _fail(f"unknown argument '{argument}'; expected --device, --stages or --dry")
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", device):
        _fail(f"--device must be cpu, cuda or cuda:N, got '{device}'")
    if not stages:
        _fail(f"--stages names no stage; expected some of {','.join(STAGES)}")
    for name in stages:
        if name not in STAGES:
            _fail(f"--stages: unknown stage '{name}'; expected some of {','.join(STAGES)}")
    return device, stages, dry


def plan(device: str, stages: list[str], dry: bool, out: Path, work: Path) -> list[Stage]:
    python = sys.executable
    sizes = DRY if dry else FULL
    embedded = ["--data-dir", str(work / "no-cifar")]  # the embedded subset, tiled: speed does not depend on the images
    commands = {
        "env": [python, "benchmarks/gpu_stages.py", "env"],
        "tests": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "tests/test_compiled_step.py",
                  "tests/test_distill_losses.py"],
        "loss": [python, "benchmarks/bench_loss_overhead.py", "--batch-size", "64", "--variants", "plain", "compiled",
                 "--json", str(out / "loss_overhead.json")],
        "cohort": [python, "benchmarks/bench_cohort.py", "--batch-size", "64", "--tile", "--variants", "plain",
                   "compiled", *embedded, "--json", str(out / "cohort.json")],
        "teacher": [python, "benchmarks/bench_train_pipeline.py", "--batch-size", "64", "--tile", "--variants", "cl",
                    "cl+compile", *embedded, "--json", str(out / "teacher.json")],
        "stacked": [python, "benchmarks/bench_stacked_students.py", "--json", str(out / "stacked.json")],
        "estimate": [python, "benchmarks/estimate_paper_eval.py", "--work", str(work / "estimate"),
                     "--json", str(out / "paper_estimate.json")],
    }
    planned = []
    for name in stages:
        command = commands[name]
        if name not in ("env", "tests"):
            command = [*command, "--device", device, *sizes[name]]
        env = {"ROBUSTKD_TEST_DEVICE": device} if name == "tests" else {}
        planned.append(Stage(name, LIMITS[name][1 if dry else 0], command, env))
    return planned


def main(argv: list[str]) -> int:
    device, stages, dry = parse(argv)
    os.chdir(REPO)
    out = Path(os.environ.get("OUT", "bench-out")).resolve()
    with tempfile.TemporaryDirectory(prefix="gpu-speed.") as scratch:
        work = Path(scratch)
        os.environ.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                           "ROBUSTKD_NO_DOWNLOAD": "1", "ROBUSTKD_PROGRESS": "0", "PYTHONUNBUFFERED": "1",
                           "MPLBACKEND": "Agg",
                           "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor")})  # fresh: compile time is measured
        title = f"run_gpu_speed.py --device {device} --stages {','.join(stages)}" + (" --dry" if dry else "")
        return run_stages(plan(device, stages, dry, out, work), out, title)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
