"""``robustkd distill``: one student or a cohort (robustkd.jobs.distill)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from robustkd.cli.common import add_train_options, config_values, is_main_rank, run_mode, say_plan_line
from robustkd.errors import RobustKDError


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """One flag per DistillOptions field (``--kd-temperature``, ``--cmkd-weighting``, ...); see docs/cmkd.md."""
    from robustkd.distill.options import DistillOptions

    group = parser.add_argument_group("method options (defaults in docs/cmkd.md)")
    for option in dataclasses.fields(DistillOptions):
        kind = str if isinstance(option.default, str) else float
        group.add_argument(f"--{option.name.replace('_', '-')}", dest=f"opt_{option.name}", type=kind,
                           metavar="VALUE" if kind is float else "NAME")


def register(commands: Any) -> None:
    distill = commands.add_parser("distill", help="distil a student from a teacher checkpoint")
    distill.add_argument("--teacher", help="teacher checkpoint (run directory, .json or .safetensors)")
    distill.add_argument("--student", dest="model",
                         help="student architecture (see `robustkd models`); a comma-separated list trains a cohort")
    distill.add_argument("--method", help="ce, kd, dist, cmkd, dkd or kd+ls (logit-standardised KD), optionally with add-ons: "
                                          "kd+spearman, dist+spearman, ...; "
                                          "a comma-separated list (ce,kd,dist,cmkd) trains a cohort on shared batches, "
                                          "and cmkd[cmkd_spearman=0.5] sets options for one member")
    distill.add_argument("--seeds", help="comma-separated seeds (e.g. 0,1,2): a cohort with every method and student "
                                         "per seed; students of one seed share data order, augmentation and init")
    distill.add_argument("--no-fuse-teacher", dest="fuse_teacher", action="store_const", const=False,
                         help="keep the teacher's BatchNorm layers instead of folding them into its convolutions")
    add_train_options(distill)
    add_method_options(distill)
    distill.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from robustkd.distill.cohort_spec import parse_seeds
    from robustkd.jobs.distill import DistillRequest, plan_distillation, run_distillation
    from robustkd.jobs.run_plan import Action
    from robustkd.utils.threads import set_threads

    mode = run_mode(args)
    set_threads(args.threads)
    values = {**config_values(args), "teacher": args.teacher, "fuse_teacher": args.fuse_teacher}
    options = {k.removeprefix("opt_"): v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    request = DistillRequest(values, methods=args.method, students=args.model,
                             seeds=parse_seeds(args.seeds) if args.seeds is not None else None, options=options,
                             config_file=args.config, run_dir=args.run_dir, mode=mode)
    plan = plan_distillation(request)
    if plan.action is Action.SKIP or args.plan:
        say_plan_line(plan.line("distill"))
        return 0
    outcome = run_distillation(plan, data_dir=args.data_dir, stop_after=args.stop_after,
                               allow_embedded=args.allow_embedded)
    if not is_main_rank():
        return 0
    diverged = [name for name, row in outcome.rows.items() if "diverged" in row]
    for name, row in outcome.rows.items():
        if "test_top1" in row:
            where = outcome.member_dir(name) / "model.json"
            label = "" if outcome.solo else f"{name}: "
            print(f"{label}test top-1 {row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}% after epoch {row['epoch']}; "
                  f"checkpoint {where}")
    if diverged:
        raise RobustKDError(f"cohort {outcome.folder}: {len(diverged)} of {len(outcome.rows)} students diverged and "
                            f"stopped ({', '.join(diverged)}); the others finished; see {outcome.folder / 'cohort.json'}")
    return 0
