"""What the command modules share: the one-line error parser, the run and hyperparameter flags, and the
translation of ``--resume`` / ``--skip-finished`` / ``--plan`` into a job mode."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from robustkd.errors import RobustKDError
from robustkd.jobs.run_plan import Mode

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


class OneLineErrors(argparse.ArgumentParser):
    """argparse with the project's error format: one line ``robustkd: error: <command>: ...``, exit 2
    (``--help`` shows the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("robustkd").strip()
        sys.stderr.write(f"robustkd: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USER_ERROR)


def int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``distill``; defaults are None so the config file can fill them."""
    group = parser.add_argument_group("run")
    group.add_argument("--config", type=Path, help="TOML or YAML file with config keys (flags override it)")
    group.add_argument("--recipe", help="paper (240 epochs) or quick (a CPU-minutes budget)")
    group.add_argument("--dataset", help="cifar100, cifar10, imagenet or synthetic")
    group.add_argument("--data-dir", help="data directory (default: $ROBUSTKD_DATA, else ./data)")
    group.add_argument("--allow-embedded", action="store_true",
                       help="fall back to the embedded CIFAR-100 subset when the data is missing and cannot be downloaded")
    group.add_argument("--run-dir", type=Path, help="run directory (default: runs/<model>-<dataset>-<recipe>-s<seed>-<time>)")
    group.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last epoch")
    group.add_argument("--threads", type=int, help="CPU threads (default: OMP_NUM_THREADS, else one per core; "
                                                   "use 1 per process when several run at once); not part of the config")
    group.add_argument("--skip-finished", action="store_true",
                       help="with --run-dir: exit 0 if it holds this run finished, resume it if interrupted, start it "
                            "if absent; a run there with another config is refused (for scripts run again and again)")
    group.add_argument("--plan", action="store_true",
                       help="print what --skip-finished would do with --run-dir (finished already, to resume, to start) "
                            "and exit without training")
    group.add_argument("--stop-after", type=int, metavar="EPOCH", help="stop after this epoch (resume later)")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    hyper = parser.add_argument_group("hyperparameters")
    hyper.add_argument("--epochs", type=int)
    hyper.add_argument("--batch-size", type=int)
    hyper.add_argument("--lr", type=float)
    hyper.add_argument("--momentum", type=float)
    hyper.add_argument("--weight-decay", type=float)
    hyper.add_argument("--milestones", type=int_list, help="epochs after which lr is multiplied by --lr-decay, e.g. 150,180,210")
    hyper.add_argument("--lr-decay", type=float)
    hyper.add_argument("--seed", type=int)
    hyper.add_argument("--noise-sd", type=float, help="Gaussian noise augmentation sigma in [0, 1] pixel units")
    hyper.add_argument("--deterministic", action="store_const", const=True, help="deterministic kernels (reproducible CPU runs)")
    hyper.add_argument("--channels-last", dest="channels_last", action="store_const", const=True)
    hyper.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False)
    hyper.add_argument("--amp", choices=["none", "bf16", "fp16"])
    hyper.add_argument("--compile", action="store_const", const=True,
                       help="torch.compile the whole training step (forward, loss, backward, SGD step); CUDA graphs on CUDA")
    hyper.add_argument("--train-limit", type=int, help="train on the first N training images only")
    hyper.add_argument("--holdout", type=int, metavar="N",
                       help="never train on the last N training images (recorded in the checkpoint: calibration's "
                            "temperature_fit = \"train_holdout\" may fit on them)")
    hyper.add_argument("--test-limit", type=int, help="evaluate on the first N test images only")
    hyper.add_argument("--eval-every", type=int, help="evaluate every N epochs (and after the last)")


def config_values(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line (None where a flag was not given)."""
    from robustkd.train.config import TrainConfig

    return {field.name: getattr(args, field.name, None) for field in dataclasses.fields(TrainConfig)}


def run_mode(args: argparse.Namespace) -> Mode:
    """``--resume``, ``--skip-finished`` / ``--plan`` or neither, as a job mode (the two are exclusive)."""
    for flag, given in (("--skip-finished", args.skip_finished), ("--plan", args.plan)):
        if given and args.resume:
            raise RobustKDError(f"{flag} and --resume: give one (--skip-finished resumes an interrupted run itself)")
    if args.resume:
        return Mode.RESUME
    return Mode.SKIP_FINISHED if args.skip_finished or args.plan else Mode.NEW


def is_main_rank() -> bool:
    """Rank 0 of a torchrun job (or a single process): the one that prints."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def say_plan_line(line: str) -> None:
    if is_main_rank():
        print(line)
