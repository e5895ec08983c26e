#!/usr/bin/env bash
# The main job: train (or reuse) a teacher on CIFAR-100 and report its clean accuracy.
# Later stages (distilled students, evaluation suites, leaderboard) extend this script.
#
#   scripts/train_and_eval.sh [--profile quick|paper] [--data-dir DIR] [--device DEV] [--runs-dir DIR]
#
# quick: resnet20 teacher, 8 epochs of the `quick` recipe on the first 25,000 training images (a marked
#        subset: 250 per class in class-balanced copies) - about 7 minutes on 2 CPU cores.
# paper: resnet32x4 teacher, the standard 240-epoch protocol on the full training set - a GPU job.
# Resumable: started again, it continues an interrupted run and reuses a finished one.
# With no CIFAR-100 on disk and no network it falls back to the embedded subset and says so.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=quick
data_dir="${ROBUSTKD_DATA:-$REPO_ROOT/data}"
device=auto
runs_dir="$REPO_ROOT/runs"
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --data-dir) data_dir="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --runs-dir) runs_dir="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "train_and_eval.sh: unknown argument '$1'; expected --profile, --data-dir, --device or --runs-dir" >&2; exit 2 ;;
    esac
done
case "$profile" in
    quick) teacher=resnet20; teacher_args=(--recipe quick --epochs 8 --milestones 5,7 --train-limit 25000) ;;
    paper) teacher=resnet32x4; teacher_args=(--recipe paper) ;;
    *) echo "train_and_eval.sh: --profile must be quick or paper, got '$profile'" >&2; exit 2 ;;
esac

VENV="$(bash "$REPO_ROOT/scripts/setup_env.sh")"
robustkd="$VENV/bin/robustkd"
run="$runs_dir/$profile/teacher-$teacher"

echo "[1/1] teacher $teacher ($profile profile) -> $run"
if [ -d "$run/state" ]; then
    "$robustkd" train --run-dir "$run" --resume --data-dir "$data_dir" --allow-embedded --device "$device"
else
    "$robustkd" train --model "$teacher" "${teacher_args[@]}" --run-dir "$run" --data-dir "$data_dir" --allow-embedded --device "$device"
fi
"$VENV/bin/python" - "$run/model.json" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
m = meta["metrics"]
print(f"teacher {meta['architecture']}: clean top-1 {m['test_top1']:.2f}%, top-5 {m['test_top5']:.2f}% "
      f"on {m['test_n']} test images; trained on {meta['n_train']} images from {meta['data_source']}")
print(f"checkpoint: {sys.argv[1]}")
PY
