#!/usr/bin/env bash
# The study (issue 12): do CMKD students beat KD and DIST students? A resnet20 teacher distilled into resnet8
# students on CIFAR-100, ce/kd/dist/cmkd as one cohort paired by seed, every suite, paired differences with
# 95 % intervals; an ablation of CMKD's knobs on the same seeds; a noise-trained teacher/student pair for
# certified robustness. Protocol, commands and results: docs/study.md.
#
#   scripts/study.sh [--data-dir DIR] [--device DEV] [--runs-dir DIR] [--results-dir DIR] [--teacher DIR]
#                    [--seeds 0,1,2] [--stage STAGE | --only STAGE] [--cohort COHORT] [--threads N] [--smoke]
#
# Stages, in order: teacher (the committed checkpoints/cifar100-resnet20, verified), main (the cohort),
# ablation, noise (teacher fine-tuned with --noise-sd 0.25, then its cohort), evaluate, report.
# --stage S runs every stage up to S (--stage main: just the teacher check and the main cohort); --only S
# runs S alone. evaluate evaluates the cohorts that are finished and says which are not yet; --cohort C
# (main, ablation or noise) limits it to that cohort (main includes the teacher), so that separate processes
# can evaluate separate cohorts at once (one GPU, benchmarks/run_gpu_study.sh).
# Resumable after any interruption: run the same command again. Every train/distill/evaluate call takes
# --skip-finished (finished runs and results are skipped, interrupted ones resumed); a run folder holding a
# run with other settings is refused, never overwritten.
# --smoke checks the plumbing (about 15 minutes on a loaded 2-core machine): synthetic data, a tiny resnet20
# teacher trained here (unless --teacher), 1 epoch on 200 images, seeds 0,1, evaluation on small prefixes with
# reduced corruption and adversarial suites (written into the results folder) and quick/certified (n = 2,000).
# --threads N sets OMP_NUM_THREADS / MKL_NUM_THREADS for every command. ROBUSTKD_PYTHON=PY runs robustkd as
# `PY -m robustkd.cli` (robustkd importable by PY) instead of from the project's virtual environment.
#
# Cost on this machine (2 CPU cores; estimate, derivation in docs/study.md): main cohort ~2.1 h, ablation
# cohort ~3.0 h, noise teacher ~8 min, noise cohort ~2.1 h, evaluation ~2.8 h (certified 1.9 h of it),
# report < 1 min: ~10 h on an idle machine, from the idle step times in docs/benchmarks.md. Measured under
# load (a teacher training alongside, load average 3.7-4.1) a resnet8 training step ran 11x slower than idle
# (91 img/s against ~1,040): do not run the study next to another job.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
# Defaults are relative to the repository (the runs record the teacher's path; relative paths survive a move).
data_dir="${ROBUSTKD_DATA:-data}"
device=auto
runs_dir=runs/study
results_dir=results/study
teacher=""
seeds=""
stage=report
only=""
cohort=""
threads=""
smoke=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) data_dir="$(absolute "$2")"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --runs-dir) runs_dir="$(absolute "$2")"; shift 2 ;;
        --results-dir) results_dir="$(absolute "$2")"; shift 2 ;;
        --teacher) teacher="$(absolute "$2")"; shift 2 ;;
        --seeds) seeds="$2"; shift 2 ;;
        --stage) stage="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --cohort) cohort="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --smoke) smoke=1; shift ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "study.sh: unknown argument '$1'; expected --data-dir, --device, --runs-dir, --results-dir, --teacher, --seeds, --stage, --only, --cohort, --threads or --smoke" >&2; exit 2 ;;
    esac
done
cd "$REPO_ROOT"

stages=(teacher main ablation noise evaluate report)
stage_index() {  # stage_index NAME OPTION: its position in the stage list, or a one-line error
    local i
    for i in "${!stages[@]}"; do [ "${stages[$i]}" = "$1" ] && { echo "$i"; return; }; done
    echo "study.sh: $2 '$1' is not a stage; expected one of: ${stages[*]}" >&2; exit 2
}
if [ -n "$only" ]; then
    first=$(stage_index "$only" --only); last=$first
    [ "$stage" = report ] || { echo "study.sh: --stage and --only: give one" >&2; exit 2; }
else
    first=0; last=$(stage_index "$stage" --stage)
fi
case "$cohort" in
    ""|main|ablation|noise) ;;
    *) echo "study.sh: --cohort '$cohort' is not a cohort; expected one of: main ablation noise" >&2; exit 2 ;;
esac
if [ -n "$threads" ]; then
    [[ "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "study.sh: --threads must be a positive integer, got '$threads'" >&2; exit 2; }
    export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
fi

methods=ce,kd,dist,cmkd
# One CMKD knob changed per member; the default CMKD of the same seeds is the main cohort's cmkd member.
ablation="cmkd[cmkd_spearman=0.5],cmkd[cmkd_spearman=2],cmkd[cmkd_rank_strength=0.03],cmkd[cmkd_rank_strength=0.3],cmkd[cmkd_teacher_ranks=soft]"
if [ "$smoke" = 1 ]; then
    data=(--dataset synthetic)
    budget=(--recipe quick --epochs 1 --milestones 1 --lr 0.1 --batch-size 50 --train-limit 200 --test-limit 100)
    noise_budget=(--recipe quick --epochs 1 --milestones 1 --lr 0.01 --batch-size 50 --train-limit 200 --test-limit 100)
    # Reduced suites (written at the evaluate stage): 3 corruptions x 2 severities; PGD and a short Square
    # check, no AutoAttack (an untrained model keeps its constant answer, so every attack runs to its end).
    smoke_suites="$results_dir/smoke-suites"
    corruption=(--suite "$smoke_suites/corruption.toml" --n-examples 20)
    adversarial=(--suite "$smoke_suites/adversarial.toml" --n-examples 5)
    certified=(--suite quick/certified --n-examples 5)
    seeds="${seeds:-0,1}"
else
    data=(--dataset cifar100)
    # The quick recipe (lr 0.1 at batch 128, x0.1 after epochs 5 and 8): 10 epochs fit 2 cores (docs/study.md).
    budget=(--recipe quick --epochs 10 --milestones 5,8 --lr 0.1 --batch-size 128)
    # Fine-tuning a converged teacher to the noise: a tenth of the students' lr, x0.1 after epoch 3.
    noise_budget=(--recipe quick --epochs 5 --milestones 3 --lr 0.01 --batch-size 128)
    corruption=(--suite corruption --n-examples 2000)
    adversarial=(--suite study/adversarial --n-examples 500)
    certified=(--suite study/certified)
    seeds="${seeds:-0,1,2}"
fi
if ! [[ "$seeds" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    echo "study.sh: --seeds must be comma-separated non-negative integers such as 0,1,2, got '$seeds'" >&2; exit 2
fi
smoke_teacher=()
if [ -z "$teacher" ]; then
    if [ "$smoke" = 1 ]; then
        teacher="$runs_dir/teacher-smoke"
        smoke_teacher=(train --model resnet20 --dataset synthetic --recipe quick --epochs 2 --milestones 1 --lr 0.05
                       --batch-size 50 --train-limit 200 --test-limit 100 --run-dir "$teacher")
    else
        teacher=checkpoints/cifar100-resnet20
    fi
fi

if [ -n "${ROBUSTKD_PYTHON:-}" ]; then
    robustkd=("$ROBUSTKD_PYTHON" -m robustkd.cli); python=("$ROBUSTKD_PYTHON")
else
    VENV="$(bash "$REPO_ROOT/scripts/setup_env.sh")"
    robustkd=("$VENV/bin/robustkd"); python=("$VENV/bin/python")
fi
common=(--data-dir "$data_dir" --device "$device")
db="$results_dir/robustkd.db"
noise_teacher="$runs_dir/teacher-resnet20-noise0.25"
main_cmd=(distill --teacher "$teacher" --student resnet8 --method "$methods" --seeds "$seeds" "${data[@]}"
          "${budget[@]}" --run-dir "$runs_dir/students" "${common[@]}")
ablation_cmd=(distill --teacher "$teacher" --student resnet8 --method "$ablation" --seeds "$seeds" "${data[@]}"
              "${budget[@]}" --run-dir "$runs_dir/ablation" "${common[@]}")
noise_teacher_cmd=(train --model resnet20 --init-from "$teacher" --noise-sd 0.25 "${data[@]}" "${noise_budget[@]}"
                   --run-dir "$noise_teacher" "${common[@]}")
noise_cmd=(distill --teacher "$noise_teacher" --student resnet8 --method "$methods" --seeds "$seeds" --noise-sd 0.25
           "${data[@]}" "${budget[@]}" --run-dir "$runs_dir/noise-students" "${common[@]}")
started=$SECONDS
elapsed() { echo "$(( (SECONDS - started) / 60 )) min elapsed"; }
plan() {  # plan CMD...: "finished already", "to resume" or "to start" (robustkd decides); a run folder
          # holding a run with other settings stops the study here with robustkd's one-line error
    local out
    out="$("${robustkd[@]}" "$@" --plan)" || exit 2
    echo "${out#*: }"
}

# ---- the plan ----
echo "study.sh$([ "$smoke" = 1 ] && echo ' (smoke: synthetic plumbing check)'): stages ${stages[*]}; running ${stages[*]:$first:$((last - first + 1))}"
echo "  runs in $runs_dir, results in $results_dir, data in $data_dir, seeds $seeds"
if [ -n "${smoke_teacher[*]}" ]; then
    state="$(plan "${smoke_teacher[@]}" "${common[@]}")"; echo "  [teacher]  $state"
elif [ -f "$teacher/model.json" ]; then
    echo "  [teacher]  $teacher: present"
else
    echo "  [teacher]  $teacher: MISSING"
fi
state="$(plan "${main_cmd[@]}")"; echo "  [main]     resnet8 x ($methods) x seeds $seeds: $state"
state="$(plan "${ablation_cmd[@]}")"; echo "  [ablation] resnet8 x ($ablation) x seeds $seeds: $state"
state="$(plan "${noise_teacher_cmd[@]}")"; echo "  [noise]    resnet20 teacher fine-tuned at noise 0.25: $state"
state="$(plan "${noise_cmd[@]}")"; echo "             resnet8 x ($methods) x seeds $seeds at noise 0.25: $state"
echo "  [evaluate] every suite (robustkd evaluate --skip-finished keeps finished results)"
echo "  [report]   leaderboard, corruption grid, paired comparison, report (rewritten)"
runs() { [ "$first" -le "$1" ] && [ "$1" -le "$last" ]; }  # runs INDEX: the stage is selected

if runs 0; then
    echo "[teacher] $teacher ($(elapsed))"
    if [ -n "${smoke_teacher[*]}" ]; then
        "${robustkd[@]}" "${smoke_teacher[@]}" "${common[@]}" --skip-finished
    elif [ ! -f "$teacher/model.json" ] || [ ! -f "$teacher/model.safetensors" ]; then
        echo "study.sh: the study's teacher $teacher is missing (expected model.json + model.safetensors): it is the committed resnet20 of checkpoints/registry.json (cifar100-resnet20); pass --teacher DIR for another" >&2
        exit 2
    fi
    "${robustkd[@]}" info "$teacher" > /dev/null  # verifies the weights' SHA-256 against the sidecar
    echo "    $teacher: weights verified"
fi
if runs 1; then
    echo "[main] ($(elapsed))"; "${robustkd[@]}" "${main_cmd[@]}" --skip-finished
fi
if runs 2; then
    echo "[ablation] ($(elapsed))"; "${robustkd[@]}" "${ablation_cmd[@]}" --skip-finished
fi
if runs 3; then
    echo "[noise] teacher ($(elapsed))"; "${robustkd[@]}" "${noise_teacher_cmd[@]}" --skip-finished
    echo "[noise] students ($(elapsed))"; "${robustkd[@]}" "${noise_cmd[@]}" --skip-finished
fi

evaluate() {  # evaluate ARGS...: robustkd evaluate into the study's results and database
    echo "    robustkd evaluate $* ($(elapsed))"
    "${robustkd[@]}" evaluate "$@" --out "$results_dir" --db "$db" --data-dir "$data_dir" --device "$device" --skip-finished
}
finished() {  # finished CMD...: robustkd says the run of CMD is finished
    local state
    state="$(plan "$@")" || exit 2
    case "$state" in "finished already: "*) return 0 ;; *) return 1 ;; esac
}
members() {  # members COHORT_DIR: --checkpoint for every member folder of a cohort, seed by seed (folders
            # end in -s<seed>), so that an interrupted evaluation already holds whole seeds to pair
    local folder
    for folder in "$1"/*/; do folder="${folder%/}"; printf '%s\t%s\n' "${folder##*-s}" "$folder"; done \
        | sort -s -n -k1,1 | cut -f2- | while IFS= read -r folder; do printf -- '--checkpoint\n%s\n' "$folder"; done
}
if runs 4; then
    echo "[evaluate] -> $results_dir ($(elapsed))"
    if ! "${robustkd[@]}" evaluate --help | grep -q -- --skip-finished; then
        echo "study.sh: this robustkd's evaluate has no --skip-finished yet (needed to resume the evaluation); update robustkd" >&2
        exit 2
    fi
    wanted() { [ -z "$cohort" ] || [ "$cohort" = "$1" ]; }  # wanted COHORT: --cohort selects it (or none given)
    if [ "$smoke" = 1 ] && wanted main; then
        mkdir -p "$smoke_suites"
        printf '%s\n' 'suite = "corruption"' 'corruptions = ["gaussian_noise", "fog", "jpeg_compression"]' \
            'severities = [1, 5]' > "$smoke_suites/.corruption.tmp"
        printf '%s\n' 'suite = "adversarial"' 'attacks = ["pgd_linf"]' 'eps_curve_255 = [0.5, 1.0, 2.0, 8.0]' \
            'masking_examples = 2' 'square_queries = 10' > "$smoke_suites/.adversarial.tmp"
        mv "$smoke_suites/.corruption.tmp" "$smoke_suites/corruption.toml"
        mv "$smoke_suites/.adversarial.tmp" "$smoke_suites/adversarial.toml"
    fi
    main_ready=0; ablation_ready=0; noise_ready=0
    if wanted main; then
        evaluate --checkpoint "$teacher" --suite clean --suite calibration
        if finished "${main_cmd[@]}"; then
            main_ready=1
            mapfile -t main_students < <(members "$runs_dir/students")
            evaluate "${main_students[@]}" --teacher "$teacher" --suite clean --suite calibration --suite relations
            evaluate "${main_students[@]}" "${adversarial[@]}"
            evaluate "${main_students[@]}" "${corruption[@]}"
        fi
    fi
    if wanted ablation && finished "${ablation_cmd[@]}"; then
        ablation_ready=1
        mapfile -t ablation_students < <(members "$runs_dir/ablation")
        evaluate "${ablation_students[@]}" --teacher "$teacher" --suite clean --suite calibration --suite relations
    fi
    if wanted noise && finished "${noise_teacher_cmd[@]}" && finished "${noise_cmd[@]}"; then
        noise_ready=1
        mapfile -t noise_students < <(members "$runs_dir/noise-students")
        evaluate --checkpoint "$noise_teacher" --suite clean --suite calibration
        evaluate "${noise_students[@]}" --teacher "$noise_teacher" --suite clean --suite calibration --suite relations
        # students first (seed by seed), the teacher (3x a student's cost) last: an interrupted certification
        # already holds comparable students
        evaluate "${noise_students[@]}" --checkpoint "$noise_teacher" "${certified[@]}"
    fi
    for name in main ablation noise; do
        ready="${name}_ready"
        if wanted "$name" && [ "${!ready}" = 0 ]; then
            echo "    $name: not finished yet; its evaluation runs when it is (run the study again)"
        fi
    done
fi
if runs 5; then
    echo "[report] -> $results_dir ($(elapsed))"
    "${robustkd[@]}" leaderboard --db "$db"
    "${robustkd[@]}" leaderboard export --db "$db" --format csv --out "$results_dir/leaderboard.csv" \
        --grid-out "$results_dir/corruption_grid.csv"
    "${robustkd[@]}" leaderboard export --db "$db" --format md --out "$results_dir/leaderboard.md"
    "${robustkd[@]}" compare --db "$db" --format md --out "$results_dir/compare.md"  # paired by seed, 95 % t-intervals
    pairs=()
    IFS=, read -ra variants <<< "$ablation"
    for variant in "${variants[@]}"; do pairs+=(--pair "$variant:cmkd"); done
    "${robustkd[@]}" compare --db "$db" "${pairs[@]}" --format md --out "$results_dir/ablation.md"  # variant - default CMKD
    # Figures: the forest plot of the three headline pairs (every cohort) on the headline metrics, the
    # robustness and certified curves.
    headline=()
    for metric in clean_acc corruption_acc pgd_acc_eps0.5 pgd_acc_eps1 pgd_acc_eps2 ece nll certified_acc_r0.25 \
                  relation_spearman; do headline+=(--metric "$metric"); done
    "${robustkd[@]}" compare --db "$db" --pair cmkd:kd --pair cmkd:dist --pair dist:kd "${headline[@]}" --format md \
        --out "$results_dir/compare_headline.md" --plot "$results_dir/paired_differences.png"
    PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "${python[@]}" "$REPO_ROOT/scripts/study_figures.py" \
        --db "$db" --out-dir "$results_dir"
    "${robustkd[@]}" report --db "$db" --out "$results_dir/report.html"
fi
echo "study.sh: done in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
