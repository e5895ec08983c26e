#!/usr/bin/env bash
# GPU checks for the foundation, run on a lent GPU machine from the repository root (no installs needed
# beyond torch, torchvision, safetensors, pandas, scipy, tqdm, pyyaml). Results go to $OUT (or ./bench-out).
#   1. training-pipeline benchmark on the GPU: reference (PIL + DataLoader, NCHW fp32) vs robustkd variants
#   2. the test suite with the default device (cuda): device placement, augmentation, resume on the GPU
set -uo pipefail
out="${OUT:-bench-out}"; mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ROBUSTKD_NO_DOWNLOAD=1 ROBUSTKD_PROGRESS=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/gpu.txt"
timeout 330 python3 benchmarks/bench_train_pipeline.py --device cuda --models resnet20 resnet8x4 --tile --images 25000 \
    --repeats 3 --workers 8 --variants nchw cl cl+bf16 cl+bf16+compile --data-dir /nonexistent-use-embedded \
    --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.txt"
timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_train.py tests/test_data.py tests/test_checkpoint.py 2>&1 | tail -15 | tee "$out/tests_gpu.txt"
