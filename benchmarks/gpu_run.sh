#!/usr/bin/env bash
# The GPU run of the speed benchmarks and of labkit's model, training and sampling tests.
#
# Run on a machine with a CUDA GPU and an environment that has jax (with CUDA), flax, optax,
# torch (CUDA), pytest and tqdm, from the repository root:
#
#     OUT=/tmp/gpu bash benchmarks/gpu_run.sh
#
# It writes the two JSON reports to $OUT; `python benchmarks/lstm_train.py --from-json
# $OUT/lstm_train_gpu.json` (and the same for lstm_sample.py) then writes their sections of
# benchmarks/README.md. Neither benchmark is told about the GPU: JAX and torch pick it themselves.
set -u
OUT=${OUT:-/tmp/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
$PY -c "import jax, flax, optax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__); print(jax.devices())"
# --threads 0: all CPUs (the host side of both frameworks); 8192^3 products to fill the GPU for the peak.
timeout 200 $PY benchmarks/lstm_train.py --rounds 30 --threads 0 --matmul-size 8192 --check --no-write \
    --json "$OUT/lstm_train_gpu.json" 2>&1 | tail -n 30
timeout 150 $PY benchmarks/lstm_sample.py --rounds 15 --threads 0 --matmul-size 8192 --no-write \
    --json "$OUT/lstm_sample_gpu.json" 2>&1 | tail -n 25
TESTS="tests/test_models.py tests/test_train.py tests/test_sample.py tests/test_basics.py"
timeout 190 $PY -m pytest -q -p no:cacheprovider $TESTS > "$OUT/pytest_gpu.log" 2>&1
status=$?
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/pytest_gpu.log" | tail -n 20
if [ $status -ne 0 ]; then   # were the failures run-to-run differences? XLA's deterministic mode says
  XLA_FLAGS=--xla_gpu_deterministic_ops=true timeout 120 $PY -m pytest -q -p no:cacheprovider $TESTS \
      -k "same_seed or resumed or interrupted" > "$OUT/pytest_gpu_deterministic.log" 2>&1
  tail -n 5 "$OUT/pytest_gpu_deterministic.log"
fi
