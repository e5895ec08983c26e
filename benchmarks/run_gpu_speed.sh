#!/usr/bin/env bash
# Issue 25's GPU run: the compiled training step against today's loop, and every suite's cost, for a lent GPU
# machine (no package registry: the attack libraries come as carried wheels, .whl/, see docs/gpu.md). Run from
# anywhere; everything goes to $OUT (default ./bench-out). Each stage has its own time limit (690 s in all: two
# run calls of at most 600 s, with --stages); a stage that fails or times out is recorded and the next one runs.
#
#   benchmarks/run_gpu_speed.sh --stages env,tests,loss,cohort        # call 1 on the GPU machine (<= 460 s)
#   benchmarks/run_gpu_speed.sh --stages env,teacher,stacked,estimate # call 2, while it is warm (<= 230 s)
#   benchmarks/run_gpu_speed.sh --device cpu --dry                    # plumbing check anywhere: tiny sizes
#
# Stages (logs: $OUT/<stage>.log, JSON beside them, packed into logs.tar.gz; summary: status.tsv, summary.txt):
#   env      device, versions; installs the carried wheels that are missing
#   tests    tests/test_compiled_step.py and tests/test_distill_losses.py with ROBUSTKD_TEST_DEVICE=--device:
#            on CUDA the compiled step is CUDA-graphed and compared with float64 and with the plain step
#   loss     benchmarks/bench_loss_overhead.py, plain and compiled: each loss as a fraction of a resnet8x4
#            step at batch 64, C = 100 and 1000 (goal: CMKD <= 15 % of the compiled step)
#   cohort   benchmarks/bench_cohort.py, resnet32x4 -> resnet8x4, ce,kd,dist,cmkd, batch 64: the plain and the
#            compiled cohort against four separate runs of today's loop, in the same rounds, extrapolated to
#            240 epochs (goals: <= 30 min and >= 4x)
#   teacher  benchmarks/bench_train_pipeline.py, resnet32x4 at batch 64, channels_last with and without
#            --compile, extrapolated to 240 epochs (goal: <= 15 min)
#   stacked  benchmarks/bench_stacked_students.py: 4 resnet8x4 students stepped in a loop against stacked into
#            one vmapped network, eager and compiled (decides whether a cohort should stack on this device)
#   estimate benchmarks/estimate_paper_eval.py: every eval_suites/*.toml for one resnet8x4, per suite,
#            extrapolated to the full test set (goal: <= 10 min in all)
set -uo pipefail
device=cuda
dry=0
all_stages=env,tests,loss,cohort,teacher,stacked,estimate
stages=$all_stages
while [ $# -gt 0 ]; do
    case "$1" in
        --device) [ $# -ge 2 ] || { echo "run_gpu_speed.sh: --device needs a value" >&2; exit 2; }
                  device="$2"; shift 2 ;;
        --stages) [ $# -ge 2 ] || { echo "run_gpu_speed.sh: --stages needs a value" >&2; exit 2; }
                  stages="$2"; shift 2 ;;
        --dry) dry=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "run_gpu_speed.sh: unknown argument '$1'; expected --device, --stages or --dry" >&2; exit 2 ;;
    esac
done
[ -n "${stages//,/}" ] || { echo "run_gpu_speed.sh: --stages names no stage; expected some of $all_stages" >&2; exit 2; }
for name in ${stages//,/ }; do
    [[ ",$all_stages," == *",$name,"* ]] || { echo "run_gpu_speed.sh: --stages: unknown stage '$name'; expected some of $all_stages" >&2; exit 2; }
done
wanted() { [[ ",$stages," == *",$1,"* ]]; }
[[ "$device" =~ ^(cpu|cuda(:[0-9]+)?)$ ]] || { echo "run_gpu_speed.sh: --device must be cpu, cuda or cuda:N, got '$device'" >&2; exit 2; }
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benchmarks/gpu_stages.sh
begin_stages gpu-speed
export TORCHINDUCTOR_CACHE_DIR="$work/inductor"   # a fresh compile cache: the compile time is part of the run
stage_vars=(py device work out)

embedded=(--data-dir "$work/no-cifar")   # the embedded CIFAR-100 subset, tiled: speed does not depend on the images
if [ "$dry" = 1 ]; then   # tiny sizes: checks the plumbing, measures nothing
    limits=(env=60 tests=600 loss=300 cohort=600 teacher=300 stacked=600 estimate=300)
    loss=(--student resnet8 --classes 100 --repeats 1)
    cohort=(--teacher resnet20 --student resnet8 --steps 2 --repeats 1)
    teacher=(--models resnet8 --images 256 --repeats 1 --workers 0)
    stacked=(--model resnet8 --students 2 --batch-size 16 --steps 2 --repeats 1)
    est=(--n clean=100 relations=100 --suites clean relations)
else                      # the GPU run: two calls (see the top), each under the run tool's 600 s
    limits=(env=20 tests=120 loss=60 cohort=260 teacher=90 stacked=60 estimate=60)
    loss=(--student resnet8x4 --classes 100 1000 --repeats 20)
    cohort=(--teacher resnet32x4 --student resnet8x4 --steps 200 --repeats 3)
    teacher=(--models resnet32x4 --images 20000 --repeats 3 --workers 8)
    stacked=(--model resnet8x4 --students 4 --batch-size 64 --steps 50 --repeats 5)
    est=()
fi

tests_stage() {
    ROBUSTKD_TEST_DEVICE="$device" "$py" -m pytest -q -p no:cacheprovider -rfE tests/test_compiled_step.py \
        tests/test_distill_losses.py
}

wanted env && stage env env_stage
wanted tests && stage tests tests_stage
wanted loss && stage loss "$py" benchmarks/bench_loss_overhead.py --device "$device" --batch-size 64 \
    --variants plain compiled "${loss[@]}" --json "$out/loss_overhead.json"
wanted cohort && stage cohort "$py" benchmarks/bench_cohort.py --device "$device" --batch-size 64 --tile \
    --variants plain compiled "${cohort[@]}" "${embedded[@]}" --json "$out/cohort.json"
wanted teacher && stage teacher "$py" benchmarks/bench_train_pipeline.py --device "$device" --batch-size 64 --tile \
    --variants cl cl+compile "${teacher[@]}" "${embedded[@]}" --json "$out/teacher.json"
wanted stacked && stage stacked "$py" benchmarks/bench_stacked_students.py --device "$device" "${stacked[@]}" \
    --json "$out/stacked.json"
wanted estimate && stage estimate "$py" benchmarks/estimate_paper_eval.py --device "$device" "${est[@]}" \
    --work "$work/estimate" --json "$out/paper_estimate.json"

finish_stages "run_gpu_speed.sh --device $device --stages $stages$([ "$dry" = 1 ] && echo ' --dry')"
