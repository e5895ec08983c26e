#!/usr/bin/env bash
# The main job: sets up the environment, then runs a packaged study (robustkd/studies/<profile>.toml):
# teacher, ce/kd/dist/cmkd students as one cohort, every suite, leaderboard, paired comparison and report.
#
#   scripts/train_and_eval.sh [--profile quick|paper] [--data-dir DIR] [--device DEV] [--runs-dir DIR]
#                             [--results-dir DIR] [--seeds 0,1,2] [--plan]
#
# quick: a 2-core-CPU budget (measured time in README.md): the committed resnet20 teacher when the real CIFAR-100
#        is under the data directory (else a resnet20 trained on the embedded subset, and it says so), resnet8
#        students, suites on test-set prefixes marked as subsets. paper: resnet32x4 -> resnet8x4, 240 epochs, 3
#        seeds, every suite on the full test set (a GPU job). Neither certifies (no noise-trained model).
# Resumable: started again, it continues interrupted training and evaluation and skips finished work.
# The same as: robustkd study run <profile> --runs-dir <runs>/<profile> --results-dir <results> ...
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=quick data_dir="${ROBUSTKD_DATA:-$REPO_ROOT/data}" device=auto runs_dir="$REPO_ROOT/runs" results_dir="" extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --data-dir) data_dir="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --runs-dir) runs_dir="$2"; shift 2 ;;
        --results-dir) results_dir="$2"; shift 2 ;;
        --seeds) extra+=(--seeds "$2"); shift 2 ;;
        --plan) extra+=(--plan); shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "train_and_eval.sh: unknown argument '$1'; expected --profile, --data-dir, --device, --runs-dir, --results-dir, --seeds or --plan" >&2; exit 2 ;;
    esac
done
case "$profile" in quick|paper) ;; *) echo "train_and_eval.sh: --profile must be quick or paper, got '$profile'" >&2; exit 2 ;; esac
VENV="$(bash "$REPO_ROOT/scripts/setup_env.sh")"
cd "$REPO_ROOT"  # the study's committed teacher is a path relative to the repository
exec "$VENV/bin/robustkd" study run "$profile" --data-dir "$data_dir" --device "$device" \
    --runs-dir "$runs_dir/$profile" --results-dir "${results_dir:-$REPO_ROOT/results/$profile}" "${extra[@]}"
