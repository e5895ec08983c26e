"""A study run stage by stage: teachers, cohorts, evaluate, report (``robustkd study run``).

Every stage calls the jobs every command calls (train, distill, evaluate) with ``--skip-finished``
semantics, so running a study again resumes it where it stopped and redoes nothing finished; ``plan``
says, for each run and evaluation, whether it is finished, would resume or would start, and runs nothing.

Rules of the runner (docs/studies.md):
- A teacher with a ``checkpoint`` uses it when it is there and, for a study allowed to fall back to the
  embedded CIFAR-100 subset, when the real data set is present; otherwise its ``train`` table is trained into
  ``<runs>/<folder>`` (and the study says why).
- A cohort's members are evaluated once the whole cohort is finished (paired results need every member).
- The certified suite runs only on models trained with Gaussian noise (``noise_sd > 0``): randomized
  smoothing certifies a model trained for it. Others are skipped, and the study says so.
- Suites that need a teacher (relations) run on a cohort's members against the cohort's teacher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError
from robustkd.jobs.distill import DistillOutcome, DistillRequest, plan_distillation, run_distillation
from robustkd.jobs.run_plan import Action, Mode, RunPlan
from robustkd.jobs.study_file import CohortSpec, EvaluationSpec, Study, TeacherSpec
from robustkd.jobs.train import TrainRequest, plan_training, run_training
from robustkd.train.skip_finished import run_state
from robustkd.utils.seeding import MAX_SEED

STAGES = ("teachers", "cohorts", "evaluate", "report")
PARALLEL_STAGES = ("cohorts", "evaluate")  # one process per cohort with --jobs N
Announce = Callable[[str], None]


@dataclass(frozen=True)
class StudySettings:
    """Where and how a study runs (the command's flags): folders, data, device, threads, and a selection."""

    runs: Path
    results: Path
    data_dir: Path
    device: str | None = None
    threads: int | None = None
    seeds: list[int] | None = None
    cohorts: tuple[str, ...] = ()  # evaluate/train only these cohorts (and their teachers); () = every cohort
    jobs: int = 1  # cohorts trained / evaluated at once, each in its own process with its share of the cores
    devices: tuple[str, ...] = ()  # devices the cohort processes are placed on, round-robin; () = ``device``


def parse_devices(text: str | None, device: str | None) -> tuple[str, ...]:
    """``--devices cuda:0,cuda:1``: each checked as ``--device`` is (a device this machine has), before any work."""
    from robustkd.utils.device import resolve_device

    if text is None:
        return ()
    if device is not None:
        raise RobustKDError("--device and --devices: give one (--devices places the --jobs processes)")
    names = [name.strip() for name in text.split(",")]
    if not names or any(not name for name in names):
        raise RobustKDError(f"--devices {text}: expected comma-separated devices (e.g. cuda:0,cuda:1 or cpu)")
    for name in names:
        resolve_device(name)
    return tuple(names)


def select_stages(stage: str | None, only: str | None) -> list[str]:
    """``--stage S``: every stage up to S; ``--only S``: S alone; neither: every stage."""
    if stage is not None and only is not None:
        raise RobustKDError("--stage and --only: give one")
    for flag, name in (("--stage", stage), ("--only", only)):
        if name is not None and name not in STAGES:
            raise RobustKDError(f"{flag} {name!r} is not a stage; expected one of: {', '.join(STAGES)}")
    if only is not None:
        return [only]
    return list(STAGES[: STAGES.index(stage) + 1]) if stage is not None else list(STAGES)


class StudyRunner:
    """Plans and runs one study under ``settings``; every message goes through ``announce``."""

    def __init__(self, study: Study, settings: StudySettings, announce: Announce = print) -> None:
        self.study = study
        self.settings = settings
        self.announce = announce
        unknown = [name for name in settings.cohorts if name not in {c.name for c in study.cohorts}]
        if unknown:
            raise RobustKDError(f"--cohort {unknown[0]!r} is not a cohort of study {study.name}; expected one of: "
                                f"{', '.join(c.name for c in study.cohorts)}")
        seeds = settings.seeds
        if seeds is not None and (not seeds or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED
                                                   for s in seeds) or len(set(seeds)) != len(seeds)):
            raise RobustKDError(f"--seeds {settings.seeds}: expected distinct non-negative integers")
        self._real_data: bool | None = None

    # ---- what the study holds ----
    def cohorts(self) -> list[CohortSpec]:
        chosen = self.settings.cohorts
        return [cohort for cohort in self.study.cohorts if not chosen or cohort.name in chosen]

    def teachers(self) -> list[TeacherSpec]:
        """The teachers the selected cohorts need (every teacher when no cohort is selected), parents first."""
        wanted = set(self.study.teachers) if not self.settings.cohorts else {c.teacher for c in self.cohorts()}
        ordered: list[TeacherSpec] = []

        def add(name: str, trail: tuple[str, ...]) -> None:
            if name in trail:
                raise RobustKDError(f"study {self.study.path}: teachers start from each other in a circle "
                                    f"({' -> '.join((*trail, name))})")
            spec = self.study.teachers[name]
            parent = (spec.train or {}).get("init_from")
            if isinstance(parent, str) and parent in self.study.teachers:
                add(parent, (*trail, name))
            if spec not in ordered:
                ordered.append(spec)

        for name in self.study.teachers:
            if name in wanted:
                add(name, ())
        return ordered

    def real_data_present(self) -> bool:
        """Whether the study's data set is on disk as the real set (not checked for synthetic/imagenet)."""
        if self._real_data is None:
            from robustkd.data.cifar import CIFAR_SPECS, DataNotFoundError, load_cifar

            if self.study.dataset not in CIFAR_SPECS:
                self._real_data = True
            else:
                try:
                    load_cifar(self.study.dataset, self.settings.data_dir, "test")
                    self._real_data = True
                except DataNotFoundError:
                    self._real_data = False
        return self._real_data

    def uses_checkpoint(self, spec: TeacherSpec) -> tuple[bool, str]:
        """Whether ``spec``'s checkpoint is used, and why not when it is not. Once the study has a run of the
        teacher in its runs folder it keeps using that run (its students were distilled from it)."""
        if spec.checkpoint is None:
            return False, "no checkpoint given"
        if spec.train is not None and run_state(self.settings.runs / spec.folder) != "absent":
            return False, f"{self.settings.runs / spec.folder} holds this study's own run of it"
        if not _has_sidecar(Path(spec.checkpoint)):
            if spec.train is None:
                raise RobustKDError(f"study {self.study.name}: teacher {spec.name}'s checkpoint {spec.checkpoint} is "
                                    "missing (expected model.json + model.safetensors) and it has no train table")
            return False, f"{spec.checkpoint} is missing"
        if spec.train is not None and self.study.allow_embedded and not self.real_data_present():
            return False, (f"the real {self.study.dataset} is not under {self.settings.data_dir}: a teacher is trained "
                           f"on the data the students get")
        return True, ""

    def teacher_ready(self, name: str) -> bool:
        """A checkpoint teacher is ready when its sidecar is there; a trained one when its run is finished (a
        half-trained teacher is neither distilled from nor evaluated)."""
        spec = self.study.teachers[name]
        if self.uses_checkpoint(spec)[0]:
            return True
        return run_state(self.settings.runs / spec.folder) == "finished"

    def obtain_data(self) -> None:
        """Read the study's training data once as the cohorts will (downloading it where allowed), so that
        the choice of teacher is made with the data the students get."""
        if self.real_data_present() or not self.study.allow_embedded:
            return
        from robustkd.data import load_image_dataset

        load_image_dataset(self.study.dataset, "train", self.settings.data_dir, allow_embedded=True,
                           announce=self.announce)
        self._real_data = None  # decided again: the download may have brought the real set

    def teacher_path(self, name: str) -> Path:
        spec = self.study.teachers[name]
        used, _ = self.uses_checkpoint(spec)
        return Path(spec.checkpoint) if used else self.settings.runs / spec.folder  # type: ignore[arg-type]

    # ---- requests ----
    def train_request(self, spec: TeacherSpec) -> TrainRequest:
        table = dict(spec.train or {})
        parent = table.get("init_from")
        if isinstance(parent, str) and parent in self.study.teachers:
            table["init_from"] = str(self.teacher_path(parent))
        values = {"dataset": self.study.dataset, "device": self.settings.device}
        return TrainRequest(values, file_values=table, run_dir=self.settings.runs / spec.folder,
                            mode=Mode.SKIP_FINISHED)

    def distill_request(self, cohort: CohortSpec) -> DistillRequest:
        values = {"dataset": self.study.dataset, "teacher": str(self.teacher_path(cohort.teacher)),
                  "device": self.settings.device}
        return DistillRequest(values, methods=",".join(cohort.methods), students=",".join(cohort.students),
                              seeds=self.settings.seeds or cohort.seeds, options=dict(cohort.method_options),
                              file_values=dict(cohort.recipe), run_dir=self.settings.runs / cohort.folder,
                              mode=Mode.SKIP_FINISHED)

    def teacher_plan(self, spec: TeacherSpec) -> RunPlan[Any] | None:
        """None when the checkpoint is used; else the training plan (None too while its parent, a teacher
        trained by the study, is not finished: its config cannot be checked yet)."""
        if self.uses_checkpoint(spec)[0]:
            return None
        parent = (spec.train or {}).get("init_from")
        if isinstance(parent, str) and parent in self.study.teachers and not self.teacher_ready(parent):
            return None
        return plan_training(self.train_request(spec))

    def cohort_plan(self, cohort: CohortSpec) -> RunPlan[Any] | None:
        """The cohort's plan; None while its teacher is not ready (absent or still training)."""
        if not self.teacher_ready(cohort.teacher):
            return None
        return plan_distillation(self.distill_request(cohort))

    # ---- the plan ----
    def plan_lines(self, stages: list[str]) -> list[str]:
        study = self.study
        lines = [f"study {study.name} ({study.path}): stages {', '.join(STAGES)}; running {', '.join(stages)}",
                 f"  runs in {self.settings.runs}, results in {self.settings.results}, data in {self.settings.data_dir}"]
        for spec in self.teachers():
            used, why_not = self.uses_checkpoint(spec)
            if used:
                lines.append(f"  [teacher {spec.name}] checkpoint {spec.checkpoint}: present")
                continue
            plan = self.teacher_plan(spec)
            state = plan.line("train").removeprefix("train: ") if plan else f"to start after its parent: {self.settings.runs / spec.folder}"
            reason = f" ({why_not})" if spec.checkpoint else ""
            lines.append(f"  [teacher {spec.name}] {spec.train.get('model', 'resnet20')} trained{reason}: {state}")  # type: ignore[union-attr]
        for cohort in self.cohorts():
            try:
                plan = self.cohort_plan(cohort)
            except RobustKDError as exc:
                if "cohorts" in stages or "evaluate" in stages:
                    raise
                lines.append(f"  [cohort {cohort.name}] not usable: {exc}")
                continue
            seeds = self.settings.seeds or cohort.seeds
            state = plan.line("distill").removeprefix("distill: ") if plan else \
                f"to start once teacher {cohort.teacher} is trained: {self.settings.runs / cohort.folder}"
            lines.append(f"  [cohort {cohort.name}] {'+'.join(cohort.students)} x ({','.join(cohort.methods)}) x seeds "
                         f"{','.join(map(str, seeds))}: {state}")
        for number, evaluation in enumerate(study.evaluations, 1):
            lines.append(f"  [evaluate {number}] {', '.join(evaluation.suites)} on {', '.join(evaluation.models)}"
                         + (f" (first {evaluation.n_examples} test images)" if evaluation.n_examples else "")
                         + " (finished results are kept)")
        if not any(_is_certified(suite) for e in study.evaluations for suite in e.suites):
            lines.append("  certified: not run (this study trains no model with Gaussian noise, and randomized "
                         "smoothing certifies models trained for it)")
        lines.append(f"  [report] leaderboard ({', '.join(study.outputs.leaderboard)}), "
                     f"{', '.join(c.name for c in study.comparisons) or 'compare'}"
                     f"{', report' if study.outputs.report else ''}{', curves' if study.outputs.curves else ''} (rewritten)")
        return lines

    # ---- running ----
    def run(self, stages: list[str]) -> None:
        for line in self.plan_lines(stages):
            self.announce(line)
        for stage in stages:
            self.announce(f"[{stage}]")
            if stage in PARALLEL_STAGES and self.settings.jobs > 1 and len(self.cohorts()) > 1:
                self._run_in_processes(stage)
            else:
                getattr(self, f"_run_{stage}")()

    def _run_in_processes(self, stage: str) -> None:
        """``stage`` for each selected cohort in a process of its own (``--only STAGE --cohort NAME``), at most
        ``jobs`` at once, each with ``share_environment(jobs)`` (its share of the cores, passive OpenMP waiting:
        docs/benchmarks.md) and the next of ``devices`` (round-robin: several processes share a device when
        ``jobs`` exceeds them); output in ``<results>/logs/<stage>-<cohort>.log``."""
        import subprocess
        import sys
        import time

        from robustkd.utils.threads import share_environment

        settings = self.settings
        logs = settings.results / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        environment = share_environment(settings.jobs)
        queue = [cohort.name for cohort in self.cohorts()]
        running: dict[str, tuple[subprocess.Popen, Path]] = {}
        failed = []
        started = 0
        while queue or running:
            while queue and len(running) < settings.jobs:
                name = queue.pop(0)
                device = settings.devices[started % len(settings.devices)] if settings.devices else settings.device
                started += 1
                command = [sys.executable, "-m", "robustkd.cli", "study", "run", str(self.study.path), "--only", stage,
                           "--cohort", name, "--runs-dir", str(settings.runs), "--results-dir", str(settings.results),
                           "--data-dir", str(settings.data_dir)]
                command += ["--device", device] if device else []
                command += ["--seeds", ",".join(map(str, settings.seeds))] if settings.seeds else []
                log = logs / f"{stage}-{name}.log"
                with open(log, "w") as handle:
                    running[name] = (subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                                      env=environment), log)
                self.announce(f"  {stage} of cohort {name}: started in its own process "
                              f"({environment['OMP_NUM_THREADS']} threads{f' on {device}' if device else ''}; log {log})")
            for name, (process, log) in list(running.items()):
                if process.poll() is not None:
                    del running[name]
                    self.announce(f"  {stage} of cohort {name}: exit {process.returncode}")
                    if process.returncode != 0:
                        failed.append(f"{name} (exit {process.returncode}; see {log})")
            time.sleep(0.5)
        if failed:
            raise RobustKDError(f"study {self.study.name}: the {stage} stage failed for {', '.join(failed)}")

    def _run_teachers(self) -> None:
        self.obtain_data()
        for spec in self.teachers():
            used, why_not = self.uses_checkpoint(spec)
            if used:
                from robustkd.checkpoint import load_checkpoint

                load_checkpoint(Path(spec.checkpoint))  # type: ignore[arg-type]  # verifies the weights' SHA-256
                self.announce(f"  teacher {spec.name}: {spec.checkpoint} (weights verified)")
                continue
            if spec.checkpoint is not None:
                self.announce(f"  teacher {spec.name}: not using {spec.checkpoint}: {why_not}")
            if self.study.allow_embedded and spec.checkpoint is not None and not self.real_data_present():
                self.announce(f"  teacher {spec.name}: trained on what the students get (the embedded subset when "
                              f"{self.study.dataset} cannot be read or downloaded)")
            plan = plan_training(self.train_request(spec))
            self.announce(f"  {plan.line('train')}")
            outcome = run_training(plan, data_dir=self.settings.data_dir, allow_embedded=self.study.allow_embedded,
                                   announce=self.announce)
            self._say_trained(spec.name, outcome.run_dir)

    def _run_cohorts(self) -> None:
        for cohort in self.cohorts():
            plan = self.cohort_plan(cohort)
            if plan is None:
                raise RobustKDError(f"study {self.study.name}: cohort {cohort.name} needs teacher {cohort.teacher} "
                                    f"({self.teacher_path(cohort.teacher)}), which does not exist yet; run the "
                                    "teachers stage first")
            self.announce(f"  {plan.line('distill')}")
            outcome = run_distillation(plan, data_dir=self.settings.data_dir, allow_embedded=self.study.allow_embedded,
                                       announce=self.announce)
            self._say_cohort(cohort, outcome)

    def _say_trained(self, name: str, run_dir: Path) -> None:
        from robustkd.checkpoint import read_sidecar

        meta, _ = read_sidecar(run_dir)
        metrics = meta.get("metrics", {})
        if "test_top1" in metrics:
            self.announce(f"  teacher {name}: clean top-1 {metrics['test_top1']:.2f}% on {metrics.get('test_n')} test "
                          f"images; trained on {meta.get('n_train')} images from {meta.get('data_source')}")

    def _say_cohort(self, cohort: CohortSpec, outcome: DistillOutcome) -> None:
        diverged = [name for name, row in outcome.rows.items() if "diverged" in row]
        if diverged:
            raise RobustKDError(f"study {self.study.name}: cohort {cohort.name}: {len(diverged)} students diverged "
                                f"({', '.join(diverged)}); see {outcome.folder / 'cohort.json'}")

    def _members(self, cohort: CohortSpec) -> list[Path] | None:
        """The cohort's member folders seed by seed, or None while the cohort is not finished."""
        plan = self.cohort_plan(cohort)
        if plan is None or plan.action is not Action.SKIP:
            return None
        return [plan.run_dir / member.spec.name for member in plan.payload.members]  # type: ignore[operator]

    def _run_evaluate(self) -> None:
        from robustkd.jobs.evaluate import Recording, evaluate_checkpoints

        selected = {c.name for c in self.cohorts()} | self.evaluated_teachers()
        waiting: set[str] = set()
        for evaluation in self.study.evaluations:
            for models, teacher in self._evaluation_groups(evaluation, selected, waiting):
                for suites, group in self._suites_for(evaluation, models, teacher is not None):
                    self.announce(f"  evaluate {', '.join(suites)} on {len(group)} model(s)"
                                  + (f" against teacher {teacher}" if teacher else ""))
                    evaluate_checkpoints(group, suites, out=self.settings.results,
                                         recording=Recording.under(self.settings.results), teacher=teacher,
                                         n_examples=evaluation.n_examples, data_dir=self.settings.data_dir,
                                         allow_embedded=self.study.allow_embedded, device=self.settings.device,
                                         skip_finished=True, threads=self.settings.threads, announce=self.announce)
        for name in sorted(waiting):
            self.announce(f"  {name}: not finished yet; its evaluation runs when it is (run the study again)")

    def evaluated_teachers(self) -> set[str]:
        """Teachers this run evaluates: every teacher; with ``--cohort``, those the selected cohorts own (a teacher
        is owned by the first cohort of the file that distils from it), so that processes running separate
        cohorts at once never evaluate one teacher twice."""
        if not self.settings.cohorts:
            return set(self.study.teachers)
        owners: dict[str, str] = {}
        for cohort in self.study.cohorts:
            owners.setdefault(cohort.teacher, cohort.name)
        return {teacher for teacher, owner in owners.items() if owner in self.settings.cohorts}

    def _evaluation_groups(self, evaluation: EvaluationSpec, selected: set[str],
                           waiting: set[str]) -> list[tuple[list[Path], Path | None]]:
        """(checkpoints, teacher for suites that need one) per model entry of the evaluation."""
        groups: list[tuple[list[Path], Path | None]] = []
        for name in evaluation.models:
            if name not in selected:
                continue
            if name in self.study.teachers:
                if self.teacher_ready(name):
                    groups.append(([self.teacher_path(name)], None))
                else:
                    waiting.add(f"teacher {name}")
                continue
            cohort = self.study.cohort(name)
            members = self._members(cohort)
            if members is None:
                waiting.add(f"cohort {name}")
            else:
                groups.append((members, self.teacher_path(cohort.teacher)))
        return groups

    def _suites_for(self, evaluation: EvaluationSpec, models: list[Path],
                    has_teacher: bool) -> list[tuple[list[str], list[Path]]]:
        """(suites, models) to run: suites needing a teacher only with one; certified only on the models
        trained with Gaussian noise (the others are named as skipped)."""
        from robustkd.evaluate.suite import Need, suite_class
        from robustkd.evaluate.suite_file import load_suite

        plain, certified = [], []
        for name in evaluation.suites:
            suite = load_suite(name)
            if Need.TEACHER in suite_class(suite.name).needs and not has_teacher:
                self.announce(f"  {name}: skipped for {', '.join(map(str, models))} (a teacher has no teacher to "
                              "compare with)")
            elif suite.name == "certified":
                certified.append(name)
            else:
                plain.append(name)
        runs = [(plain, models)] if plain else []
        if certified:
            noisy = [path for path in models if _noise_trained(path)]
            untrained = [path for path in models if path not in noisy]
            if untrained:
                self.announce(f"  {', '.join(certified)}: skipped for {len(untrained)} model(s) trained without "
                              f"Gaussian noise ({', '.join(p.name for p in untrained)}): randomized smoothing "
                              "certifies a model trained for it (noise_sd > 0); no certified accuracy is reported")
            if noisy:
                runs.append((certified, noisy))
        return runs

    def _run_report(self) -> None:
        from robustkd.jobs.study_report import write_study_report

        write_study_report(self.study, self.settings.results, announce=self.announce)


def _has_sidecar(path: Path) -> bool:
    from robustkd.checkpoint import read_sidecar

    try:
        read_sidecar(path)
    except RobustKDError:
        return False
    return True


def _noise_trained(path: Path) -> bool:
    from robustkd.checkpoint import read_sidecar

    meta, _ = read_sidecar(path)
    return float(meta.get("noise_sd") or 0.0) > 0.0


def _is_certified(name: str) -> bool:
    from robustkd.evaluate.suite_file import load_suite

    return load_suite(name).name == "certified"
