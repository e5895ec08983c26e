#!/usr/bin/env bash
# The main job: train (or reuse) a teacher, distil ce, kd, dist and cmkd students from it, run every
# evaluation suite, fill the results database, and write the leaderboard CSV and the HTML report.
#
#   scripts/train_and_eval.sh [--profile quick|paper] [--data-dir DIR] [--device DEV] [--runs-dir DIR]
#                             [--results-dir DIR] [--seeds 0,1,2]
#
# The students are one cohort (robustkd distill --method ce,kd,dist,cmkd --seeds ...): for each seed they
# share the data order, augmentation and initial weights, and the teacher runs once per batch for all of
# them. --seeds defaults to 0 for quick and 0,1,2 for paper; the leaderboard groups the seeds of a method.
#
# quick: a 2-core-CPU budget (about 25 minutes with the real CIFAR-100): resnet20 teacher (8 epochs on the
#        first 25,000 training images), resnet8 students (5 epochs on the first 15,000), clean/calibration/
#        relations on the full test set, corruption on the first 1,000 test images, adversarial on the
#        first 200, certified (n = 2,000 samples) on every 5th of the first 100. Subsets are marked as such
#        in every result, the database, the leaderboard and the report.
# paper: resnet32x4 teacher and resnet8x4 students with the 240-epoch protocol, every suite on the full
#        test set with eval_suites/*.toml (certified on every 20th image at n = 100,000): a GPU job.
# Resumable: started again, it continues interrupted training and evaluation and skips finished stages.
# With no CIFAR-100 on disk and no network it falls back to the embedded subset and says so.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=quick
data_dir="${ROBUSTKD_DATA:-$REPO_ROOT/data}"
device=auto
runs_dir="$REPO_ROOT/runs"
results_dir=""
seeds=""
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --data-dir) data_dir="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --runs-dir) runs_dir="$2"; shift 2 ;;
        --results-dir) results_dir="$2"; shift 2 ;;
        --seeds) seeds="$2"; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "train_and_eval.sh: unknown argument '$1'; expected --profile, --data-dir, --device, --runs-dir, --results-dir or --seeds" >&2; exit 2 ;;
    esac
done
suites_dir="$REPO_ROOT/eval_suites"
case "$profile" in
    quick)
        teacher=resnet20; teacher_args=(--recipe quick --epochs 8 --milestones 5,7 --train-limit 25000)
        student=resnet8; student_args=(--recipe quick --epochs 5 --milestones 3,4 --train-limit 15000 --eval-every 5)
        n_corruption=(--n-examples 1000); n_adversarial=(--n-examples 200); n_certified=(--n-examples 100)
        adversarial_suite="$suites_dir/quick/adversarial.toml"; certified_suite="$suites_dir/quick/certified.toml"
        seeds="${seeds:-0}" ;;
    paper)
        teacher=resnet32x4; teacher_args=(--recipe paper)
        student=resnet8x4; student_args=(--recipe paper)
        n_corruption=(); n_adversarial=(); n_certified=()
        adversarial_suite="$suites_dir/adversarial.toml"; certified_suite="$REPO_ROOT/eval_suites/paper_certified.toml"
        seeds="${seeds:-0,1,2}" ;;
    *) echo "train_and_eval.sh: --profile must be quick or paper, got '$profile'" >&2; exit 2 ;;
esac
results_dir="${results_dir:-$REPO_ROOT/results/$profile}"
db="$results_dir/robustkd.db"
methods=(ce kd dist cmkd)
if ! [[ "$seeds" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    echo "train_and_eval.sh: --seeds must be comma-separated non-negative integers such as 0,1,2, got '$seeds'" >&2; exit 2
fi
IFS=, read -r -a seed_list <<< "$seeds"

VENV="$(bash "$REPO_ROOT/scripts/setup_env.sh")"
robustkd="$VENV/bin/robustkd"
started=$SECONDS
teacher_run="$runs_dir/$profile/teacher-$teacher"
common=(--data-dir "$data_dir" --allow-embedded --device "$device")

teacher_cmd=(train --model "$teacher" "${teacher_args[@]}" --run-dir "$teacher_run" "${common[@]}")
cohort_run="$runs_dir/$profile/students"
cohort_cmd=(distill --teacher "$teacher_run" --student "$student" --method "$(IFS=,; echo "${methods[*]}")"
            --seeds "$seeds" "${student_args[@]}" --run-dir "$cohort_run" "${common[@]}")

# ---- the plan: what is done and what remains (robustkd decides: --plan says what --skip-finished would do) ----
status() {  # status CMD...: done or to do; a run folder holding another run stops here with robustkd's error
    local out
    out="$("$robustkd" "$@" --plan)" || exit 2
    case "$out" in *": finished already: "*) echo "done" ;; *) echo "to do" ;; esac
}
stages=("teacher $teacher" "students" "evaluate" "leaderboard+report")
echo "train_and_eval.sh ($profile): ${#stages[@]} stages; runs in $runs_dir/$profile, results in $results_dir"
t_status="$(status "${teacher_cmd[@]}")"; echo "  [1] teacher $teacher: $t_status"
c_status="$(status "${cohort_cmd[@]}")"
echo "  [2] students $student x (${methods[*]}) x seeds $seeds, one cohort: $c_status"
echo "  [3] evaluation suites (finished results are kept)"; echo "  [4] leaderboard and report"

echo "[1/${#stages[@]}] teacher $teacher -> $teacher_run ($(( (SECONDS - started) / 60 )) min elapsed)"
"$robustkd" "${teacher_cmd[@]}" --skip-finished
"$VENV/bin/python" - "$teacher_run/model.json" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
m = meta["metrics"]
print(f"    teacher {meta['architecture']}: clean top-1 {m['test_top1']:.2f}% on {m['test_n']} test images; "
      f"trained on {meta['n_train']} images from {meta['data_source']}")
PY

echo "[2/${#stages[@]}] students $student (${methods[*]}) x seeds $seeds, one cohort -> $cohort_run ($(( (SECONDS - started) / 60 )) min elapsed)"
"$robustkd" "${cohort_cmd[@]}" --skip-finished
i=3

echo "[$i/${#stages[@]}] evaluation suites -> $results_dir ($(( (SECONDS - started) / 60 )) min elapsed)"
evaluate() {  # evaluate CHECKPOINT SUITE [args...]: robustkd evaluate --skip-finished keeps a finished result
    local checkpoint="$1" suite="$2"; shift 2
    echo "    $(basename "$suite" .toml) for $(basename "$checkpoint") ($(( (SECONDS - started) / 60 )) min elapsed)"
    "$robustkd" evaluate --checkpoint "$checkpoint" --suite "$suite" --out "$results_dir" --db "$db" \
        --data-dir "$data_dir" --allow-embedded --device "$device" --skip-finished "$@"
}
models=("$teacher_run")
for seed in "${seed_list[@]}"; do for m in "${methods[@]}"; do models+=("$cohort_run/$student-$m-s$seed"); done; done
for model in "${models[@]}"; do
    evaluate "$model" clean
    evaluate "$model" calibration
    if [ "$model" != "$teacher_run" ]; then
        evaluate "$model" relations --teacher "$teacher_run"
    fi
    evaluate "$model" corruption "${n_corruption[@]}"
    evaluate "$model" "$adversarial_suite" "${n_adversarial[@]}"
    evaluate "$model" "$certified_suite" "${n_certified[@]}"
done

echo "[$((i + 1))/${#stages[@]}] leaderboard and report ($(( (SECONDS - started) / 60 )) min elapsed)"
"$robustkd" results import "$results_dir" --db "$db" > /dev/null  # idempotent: replaces, never duplicates
"$robustkd" leaderboard --db "$db"
"$robustkd" leaderboard export --db "$db" --format csv --out "$results_dir/leaderboard.csv" \
    --grid-out "$results_dir/corruption_grid.csv"
"$robustkd" leaderboard export --db "$db" --format md --out "$results_dir/leaderboard.md"
"$robustkd" compare --db "$db" --format md --out "$results_dir/compare.md"  # paired by seed: CMKD vs KD, ...
"$robustkd" report --db "$db" --out "$results_dir/report.html"
echo "done in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
echo "leaderboard: $results_dir/leaderboard.csv; paired comparison: $results_dir/compare.md"
echo "report:      $results_dir/report.html"
echo "database:    $db"
