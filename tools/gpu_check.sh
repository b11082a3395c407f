#!/usr/bin/env bash
# The whole GPU verification in one command, for a machine with an NVIDIA GPU:
# build and install fastconv with CUDA, run the GPU tests, compute-sanitizer on them,
# and the GPU benchmarks against PyTorch/cuDNN. Logs go to $OUT (default ./gpu_check_out).
#
#   bash tools/gpu_check.sh [steps...]
#     steps: build, tests (-m gpu), alltests, sanitize, bench (ops), trainbench (whole epochs)
#     default: build alltests sanitize bench trainbench
#
# MNIST ships with fastconv; Fashion-MNIST is read from FASTCONV_FASHION_DIR (default Debian's folder).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_check_out}; mkdir -p "$OUT"
REPO=$PWD
# Scratch (the CMake build, the training runs) and the folder the installed package is tested
# from (outside the source tree, so `import fastconv` finds the built one): a fresh temp folder.
WORK=${WORK:-$(mktemp -d)}
PY=${PY:-python3}
STEPS=${*:-build alltests sanitize bench trainbench}
ARCH=${FASTCONV_CUDA_ARCHS:-90}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
step() { echo; echo "=== $* ($(date +%T))"; }
for s in $STEPS; do case $s in
build)
  step build
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
  $PY -m pip install --no-build-isolation --no-deps -q \
      -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" -C cmake.define.FASTCONV_CUDA=ON \
      -C build-dir=$WORK/build . 2>&1 | tail -30 || exit 1
  (cd "$WORK" && $PY -c "import fastconv, fastconv.cuda as c; print(fastconv.info()); print('cuda', c.is_available(), c.why_unavailable() if not c.is_available() else '')")
  ;;
tests)
  step "pytest -m gpu"
  (cd "$WORK" && $PY -P -m pytest "$REPO/tests" -m gpu -q -p no:cacheprovider -p no:benchmark --maxfail=40 \
      -n ${PYTEST_WORKERS:-8} 2>&1 | tee "$OUT/pytest_gpu.log" | tail -80)
  ;;
alltests)
  step "pytest (all)"
  (cd "$WORK" && $PY -P -m pytest "$REPO/tests" -q -p no:cacheprovider -p no:benchmark -n ${PYTEST_WORKERS:-12} 2>&1 | tee "$OUT/pytest_all.log" | tail -40)
  ;;
sanitize)
  for tool in memcheck racecheck; do
    step "compute-sanitizer --tool $tool"
    (cd "$WORK" && HYPOTHESIS_PROFILE=sanitize timeout ${SANITIZE_TIMEOUT:-240} compute-sanitizer --tool $tool --error-exitcode 9 --print-limit 20 \
        $PY -P -m pytest "$REPO/tests" -m gpu -q -p no:cacheprovider -p no:benchmark \
        -k "not loss_curve and not graphs_and_eager and not dropout_model" \
        2>&1 | tee "$OUT/sanitizer_$tool.log" | tail -25)
  done
  ;;
trainbench)
  step bench_gpu_train
  $PY benchmarks/bench_gpu_train.py --epochs ${TRAIN_EPOCHS:-3} \
      --out "$OUT/gpu_train.json" 2>&1 | tee "$OUT/gpu_train.txt" | tail -40
  ;;
profile)
  step "profile a LeNet-5 and a VGG step (eager, per kernel)"
  (cd "$WORK" && for m in "lenet5 64" "vgg_small 128"; do FASTCONV_CUDA_GRAPHS=0 $PY "$REPO/tools/profile_gpu_step.py" $m; done) 2>&1 | tee "$OUT/profile.txt" | grep -v "^-" | head -80
  ;;
fullruns)
  # Full training runs with the CLI on the GPU, for the accuracy targets; logs in $OUT/runs.tar.gz.
  step "full training runs (fastconv train --device cuda)"
  mkdir -p "$WORK/runs"
  FASHION=${FASTCONV_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
  while read -r model data epochs decay; do
    where=(); [ "$data" = fashion-mnist ] && where=(--data-dir "$FASHION")   # MNIST: the shipped copy
    log=$WORK/runs/train_${model}_${data}_${epochs}ep_gpu.log
    (cd "$WORK" && $PY -m fastconv train "$model" --dataset "$data" --epochs "$epochs" \
        --lr-decay "$decay" --device cuda "${where[@]}" --verbose 2) > "$log" 2>&1
    echo "$model $data $epochs epochs (lr decay $decay): $(grep -E 'test accuracy|time per epoch' "$log" | tr '\n' ' ')"
  done <<RUNS
${FULLRUNS:-lenet5_modern mnist 12 0.9
lenet5_modern fashion-mnist 12 0.9
vgg_small mnist 20 0.85
vgg_small mnist 30 0.9
vgg_small fashion-mnist 25 0.9}
RUNS
  tar -C "$WORK" -czf "$OUT/runs.tar.gz" runs
  ;;
bench)
  step bench_gpu
  $PY benchmarks/bench_gpu.py --out "$OUT/gpu_ops.json" 2>&1 | tee "$OUT/gpu_ops.txt" | tail -60
  ;;
*) echo "unknown step $s";;
esac; done
