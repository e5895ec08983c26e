#!/usr/bin/env bash
# GPU checks for distillation, run on a lent GPU machine from the repository root. Results go to $OUT.
#   1. loss overhead at C=100 and C=1000 against a resnet8x4 step
#   2. distillation-epoch throughput (resnet32x4 -> resnet8x4, kd and cmkd) against the reference loop
#   3. cohort distillation (ce,kd,dist,cmkd on shared batches) against four separate runs, batch 64, fp32 and
#      bf16, with the paper-protocol (240 epochs) extrapolation
#   4. the distillation and cohort tests with the default device (cuda)
set -uo pipefail
out="${OUT:-bench-out}"; mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ROBUSTKD_NO_DOWNLOAD=1 ROBUSTKD_PROGRESS=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
timeout 120 python3 benchmarks/bench_loss_overhead.py --device cuda --classes 100 1000 --repeats 20 \
    --json "$out/loss_overhead_gpu.json" 2>&1 | tee "$out/loss_overhead_gpu.txt"
for method in kd cmkd; do
    timeout 150 python3 benchmarks/bench_train_pipeline.py --device cuda --method "$method" --teacher resnet32x4 \
        --models resnet8x4 --tile --images 20000 --repeats 3 --workers 8 --variants cl cl+bf16 \
        --data-dir /nonexistent-use-embedded --json "$out/distill_${method}_gpu.json" 2>&1 | tee "$out/distill_${method}_gpu.txt"
done
for amp in none bf16; do
    timeout 150 python3 benchmarks/bench_cohort.py --device cuda --teacher resnet32x4 --student resnet8x4 \
        --batch-size 64 --steps 200 --repeats 3 --tile --amp "$amp" --data-dir /nonexistent-use-embedded \
        --json "$out/cohort_gpu_${amp}.json" 2>&1 | tee "$out/cohort_gpu_${amp}.txt"
done
timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_distill_losses.py tests/test_distill_train.py \
    tests/test_cohort.py 2>&1 | tail -15 | tee "$out/tests_gpu.txt"
