#!/usr/bin/env bash
# The GPU check of keras_homeostasis, in one go, on a machine with NVIDIA GPUs:
#
#   1. replica equality under MirroredStrategy across all visible GPUs
#      (scaling callback and homeostatic layers; every variable's copies
#      bit-identical after fit);
#   2. the single-GPU XLA path (jit_compile=True: the whole step, homeostasis
#      included, in one XLA cluster);
#   3. the bench (`keras-homeostasis bench --quick --gpus`): whole fit epochs
#      of no normalization, BatchNorm, LayerNorm, the scaling callback, the
#      homeostatic layers and the scale-invariant layers, wall and process
#      CPU time, on one GPU with Keras'
#      default jit_compile (XLA on one GPU), one GPU with jit_compile=True,
#      MirroredStrategy over all visible GPUs, online training (batch 1,
#      steps_per_execution=250, XLA), and each variant's peak memory (GPU
#      and host) in one fit.
#
# Sized to finish within 10 minutes on one GPU; the bench takes most of it,
# prints a line per case as it goes and rewrites its tables after each part,
# so a run cut short still leaves the parts it finished.

# Usage, from the repository root after `pip install -e .`:
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default runs/gpu_check)
# Without GPUs (to try the script): GPU_CHECK_CPUS=2 bash benchmarks/gpu_check.sh
# Exit status 0 when the replica and XLA checks pass and the bench ran (the
# bench reports its targets as met or missed; missing one is not a failure).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu_check}"
CPUS="${GPU_CHECK_CPUS:-0}"
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# The bench runs child processes on the same GPUs as its own.
export TF_FORCE_GPU_ALLOW_GROWTH="${TF_FORCE_GPU_ALLOW_GROWTH:-true}"

{
  echo "# keras_homeostasis GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  else
    echo "nvidia-smi not found"
  fi
  python -c "import tensorflow as tf, keras; print('TensorFlow', tf.__version__, \
'Keras', keras.__version__, 'GPUs:', len(tf.config.list_physical_devices('GPU')))"
} | tee "$OUT/environment.txt"

status=0
if [ "$CPUS" = "0" ]; then
  GPUS=$(python -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null)
  if [ "${GPUS:-0}" = "0" ]; then
    echo "No GPU visible to TensorFlow: set GPU_CHECK_CPUS=2 to try on CPUs." >&2
    exit 2
  fi
fi

echo "== 1. Replica equality under MirroredStrategy"
if [ "$CPUS" = "0" ]; then
  python benchmarks/gpu_replica_check.py mirrored | tee "$OUT/replicas.txt" || status=1
else
  CUDA_VISIBLE_DEVICES="" python benchmarks/gpu_replica_check.py mirrored --cpus "$CPUS" \
    | tee "$OUT/replicas.txt" || status=1
fi

echo "== 2. Single-device XLA path (jit_compile=True)"
if [ "$CPUS" = "0" ]; then
  FIRST="${CUDA_VISIBLE_DEVICES:-0}"
  CUDA_VISIBLE_DEVICES="${FIRST%%,*}" python benchmarks/gpu_replica_check.py xla \
    | tee "$OUT/xla.txt" || status=1
else
  CUDA_VISIBLE_DEVICES="" python benchmarks/gpu_replica_check.py xla \
    | tee "$OUT/xla.txt" || status=1
fi

echo "== 3. Bench: whole fit epochs, ratio to no normalization"
# BENCH_ARGS adds options, e.g. BENCH_ARGS="--rounds 5" for steadier medians.
# `python -m` runs this checkout's package, installed or not.
if [ "$CPUS" = "0" ]; then
  python -m keras_homeostasis.lab.cli bench --quick --gpus --out "$OUT/bench" \
    ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" || status=1
else
  CUDA_VISIBLE_DEVICES="" python -m keras_homeostasis.lab.cli bench --quick \
    --out "$OUT/bench" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" || status=1
fi

echo "Results in $OUT (environment.txt, replicas.txt, xla.txt, bench.log,"
echo "bench/bench.md, bench/bench.csv, bench/bench_memory.csv)."
if [ "$status" != "0" ]; then
  echo "GPU check FAILED (see above)." >&2
fi
exit "$status"
