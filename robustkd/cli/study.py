"""``robustkd study``: run, plan, list or show a declarative study file (robustkd.jobs.study)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError


def register(commands: Any) -> None:
    study = commands.add_parser("study", help="run a study file: teachers, cohorts, evaluations, comparisons, "
                                              "report (docs/studies.md)")
    actions = study.add_subparsers(dest="study_action", required=True)
    run = actions.add_parser("run", help="run (or resume) a study; --plan says what is finished and what would run")
    run.add_argument("study", help="a packaged study (quick, paper, cmkd, smoke; see `robustkd study list`) or a .toml file")
    run.add_argument("--plan", action="store_true", help="print what is finished, would resume or would start; run nothing")
    run.add_argument("--stage", help="run every stage up to this one (teachers, cohorts, evaluate, report)")
    run.add_argument("--only", help="run this stage alone")
    run.add_argument("--cohort", action="append", default=[],
                     help="only this cohort (and its teacher) in every stage (repeatable)")
    run.add_argument("--runs-dir", type=Path, help="run folders (default: the study's runs, e.g. runs/quick)")
    run.add_argument("--results-dir", type=Path, help="results and database (default: the study's, e.g. results/quick)")
    run.add_argument("--data-dir", help="data directory (default: $ROBUSTKD_DATA, else ./data)")
    run.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    run.add_argument("--threads", type=int, help="CPU threads of this process (default: OMP_NUM_THREADS, else one per core)")
    run.add_argument("--seeds", help="comma-separated seeds for every cohort (default: each cohort's own)")
    run.add_argument("--jobs", type=int, default=1,
                     help="train and evaluate this many cohorts at once, each in its own process with its share of "
                          "the CPU cores (default 1)")
    run.add_argument("--devices", help="comma-separated devices the --jobs processes are placed on, round-robin "
                                       "(e.g. cuda:0,cuda:1; several processes share a device when --jobs exceeds "
                                       "them)")
    run.set_defaults(handler=run_study)
    listing = actions.add_parser("list", help="the packaged studies with their descriptions")
    listing.set_defaults(handler=list_studies)
    show = actions.add_parser("show", help="print a packaged study file (a start for your own)")
    show.add_argument("study")
    show.set_defaults(handler=show_study)


def run_study(args: argparse.Namespace) -> int:
    from robustkd.data import resolve_data_dir
    from robustkd.distill.cohort_spec import parse_seeds
    from robustkd.jobs.study import StudyRunner, StudySettings, parse_devices, select_stages
    from robustkd.jobs.study_file import load_study
    from robustkd.utils.threads import set_threads

    stages = select_stages(args.stage, args.only)
    if args.jobs < 1:
        raise RobustKDError(f"--jobs {args.jobs}: expected a positive integer")
    devices = parse_devices(args.devices, args.device)
    study = load_study(args.study)
    threads = set_threads(args.threads) if args.threads is not None else None
    settings = StudySettings(runs=args.runs_dir or Path(study.runs), results=args.results_dir or Path(study.results),
                             data_dir=resolve_data_dir(args.data_dir), device=args.device or (devices[0] if devices else None),
                             threads=threads,
                             seeds=parse_seeds(args.seeds) if args.seeds is not None else None,
                             cohorts=tuple(args.cohort), jobs=args.jobs, devices=devices)
    runner = StudyRunner(study, settings)
    if args.plan:
        print("\n".join(runner.plan_lines(stages)))
        return 0
    runner.run(stages)
    return 0


def list_studies(_: argparse.Namespace) -> int:
    from robustkd.jobs.study_file import load_study, packaged_study_names

    for name in packaged_study_names():
        print(f"{name:8s} {load_study(name).description}")
    return 0


def show_study(args: argparse.Namespace) -> int:
    from robustkd.jobs.study_file import load_study

    print(load_study(args.study).path.read_text(), end="")
    return 0

