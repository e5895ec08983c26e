#!/usr/bin/env python3
"""The stages of a GPU run on a lent machine (benchmarks/run_gpu_speed.py; ``env`` is also run_gpu_checks.sh's).

A stage is a command with its own time limit and log. A stage that fails or runs out of time is recorded
(exit 124 for a timeout, as coreutils' ``timeout``), and the next stage runs. The whole process group of a
timed-out stage is killed, so no orphaned worker keeps the GPU. At the end ``out`` holds ``status.tsv``,
``summary.txt`` and ``logs.tar.gz`` with everything else, because the run tool brings back at most 8 files.

    python benchmarks/gpu_stages.py env   # versions and device; installs the carried wheels (.whl/) that are missing
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# module to import -> name of its carried wheel (made as docs/gpu.md says)
CARRIED_WHEELS = {"torchattacks": "torchattacks", "foolbox": "foolbox", "eagerpy": "eagerpy", "git": "gitpython",
                  "gitdb": "gitdb", "smmap": "smmap", "requests": "requests", "urllib3": "urllib3", "idna": "idna",
                  "certifi": "certifi", "chardet": "chardet", "pyautoattack": "pyautoattack",
                  "imagecorruptions": "imagecorruptions"}
KEPT = ("status.tsv", "summary.txt", "logs.tar.gz")


@dataclass(frozen=True)
class Stage:
    """``command`` (argv) run with at most ``limit`` seconds, logged to ``<out>/<name>.log``."""

    name: str
    limit: int
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


def run_stage(stage: Stage, out: Path) -> tuple[int, float]:
    """Run one stage; returns (exit code, 124 for a timeout; seconds)."""
    started = time.monotonic()
    with open(out / f"{stage.name}.log", "w") as log:
        process = subprocess.Popen(list(stage.command), stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **stage.env}, start_new_session=True)
        try:
            code = process.wait(timeout=stage.limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = 124
    return code, time.monotonic() - started


def run_stages(stages: Sequence[Stage], out: Path, title: str) -> int:
    """Run ``stages`` in order into ``out``; writes the status, the summary and the archive; 0 if all exited 0."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = ["stage\texit\tseconds\tlimit"]
    for stage in stages:
        print(f"== {stage.name} (limit {stage.limit} s, {time.monotonic() - started:.0f} s elapsed)", flush=True)
        code, seconds = run_stage(stage, out)
        rows.append(f"{stage.name}\t{code}\t{seconds:.0f}\t{stage.limit}")
        (out / "status.tsv").write_text("\n".join(rows) + "\n")
        tail = (out / f"{stage.name}.log").read_text(errors="replace").splitlines()[-4:]
        print("\n".join(f"   {line}" for line in tail) + f"\n   -> exit {code} after {seconds:.0f} s", flush=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    summary = f"{title}: {time.monotonic() - started:.0f} s in all, {stamp}\n" + "\n".join(rows) + "\n"
    (out / "summary.txt").write_text(summary)
    print(summary, end="")
    packed = sorted(path for path in out.iterdir() if path.is_file() and path.name not in KEPT)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as archive:
        for path in packed:
            archive.add(path, arcname=path.name)
    for path in packed:
        path.unlink()
    return 0 if all(row.split("\t")[1] == "0" for row in rows[1:]) else 1


def environment() -> int:
    """Print the device and versions; install the carried wheels of the packages that are missing."""
    import torch
    import torchvision

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    print(f"python {sys.version.split()[0]} torch {torch.__version__} torchvision {torchvision.__version__}: {name}")
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"], check=False)
    else:
        print("no nvidia-smi")
    missing = [wheel for module, wheel in CARRIED_WHEELS.items() if importlib.util.find_spec(module) is None]
    if missing:
        wheels = [str(path) for wheel in missing for path in sorted(Path(".whl").glob(f"{wheel}-*.whl"))]
        print("installing the carried wheels:", " ".join(wheels) or f"none found for {missing}", flush=True)
        if len(wheels) < len(missing) or subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                                                         "--no-deps", *wheels]).returncode:
            return 1
    check = "import torchattacks, foolbox, pyautoattack; from robustkd.corruptions.frost import frost_folder; " \
            "print('attack libraries and frost textures:', frost_folder())"
    return subprocess.run([sys.executable, "-c", check]).returncode  # a fresh interpreter sees the new packages


if __name__ == "__main__":
    if sys.argv[1:] != ["env"]:
        sys.exit("usage: python benchmarks/gpu_stages.py env")
    sys.exit(environment())
