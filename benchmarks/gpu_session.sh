#!/usr/bin/env bash
# One session on the GPU machine (JAX and PyTorch, no TensorFlow), prepared so that a session
# lent one spends its 15 device minutes measuring, not setting up:
#   1. the benchmark suite's JAX variant and the PyTorch peer on the GPU (full mode: the GPU
#      goals first, L_5000 of vae-mnist on all 10,000 test images, then training, sampling,
#      L_5000 throughput, FLOP/s against the GPU's peak), into $OUT/results/, within
#      BENCH_SECONDS (run.py --max-seconds: what was measured before the budget ran out is
#      kept, and the report says the run is partial); then benchmarks/step_cost.py at batch
#      100 and 1000 (printed: ours against the minimal Keras VAE, one compiled step at a time);
#   2. optionally, a zoo preset trained further from its shipped weights for what is left of
#      SESSION_SECONDS less EVAL_SECONDS (`tools/train.py PRESET --continue`) and evaluated by the
#      protocol (full float32 matmuls, as on the CPU), into $OUT/zoo/PRESET/.
#
# From the development machine, in the repository root:
#   bash ../shared/tools/device-wheels.sh                    # keras, tfp-nightly, ... into .whl/
#   mkdir -p .data && cp ../shared/data/mnist.npz .data/      # MNIST (git ignores .data/)
# then the device tool's run with carry [".whl", ".data"] and timeout_s 600:
#   bash benchmarks/gpu_session.sh [PRESET]                  # e.g. iwae-mnist
# and copy the files back: $OUT/results/* into benchmarks/results/, $OUT/zoo/PRESET/* into
# zoo/PRESET/, and add the run's row (epochs, wall time, device) to zoo/TRAINING.md.
# Without .data the benchmark times L_5000 on random binary images (the time does not depend
# on the pixels); training needs MNIST.
#
# BENCH_SECONDS=0 skips the benchmark and STEP_COST=0 the step comparison, leaving the command's
# time to training (the benchmark took 262 s on the H200 on 2026-12-04). A machine stays warm
# 30 s after a call, with /tmp/gpu-session's checkpoints: a second call at once can continue
# them (`tools/train.py PRESET --continue --resume --workdir /tmp/gpu-session ...`).
#
# Dry run on any machine (Python with JAX, no TensorFlow, as the GPU image), before spending
# device time: OUT=/tmp/out REQUIRE_GPU=0 SESSION_SECONDS=300 BENCH_SECONDS=60 EVAL_SECONDS=100 \
#   LL_EXAMPLES=20 bash benchmarks/gpu_session.sh iwae-mnist   (3.6 min on the 2-core CPU)
set -euo pipefail
preset=${1:-}
out=${OUT:?run this through the device tool, which sets OUT}
session_seconds=${SESSION_SECONDS:-570}   # the whole script, within the tool's 600 s command
bench_seconds=${BENCH_SECONDS:-330}
eval_seconds=${EVAL_SECONDS:-180}         # the preset's evaluation (iwae-mnist: 118 s) and writing
ll_examples=${LL_EXAMPLES:-10000}
started=$SECONDS

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
if [ -f .data/mnist.npz ]; then export TFDLGM_MNIST=$PWD/.data/mnist.npz; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import jax, keras, tfdlgm; print(jax.devices(), jax.__version__, keras.__version__)"
if [ "${REQUIRE_GPU:-1}" = 1 ] && ! python3 -c "import jax; assert jax.default_backend() == 'gpu'"
then
  echo "gpu_session: JAX sees no GPU; stopping before spending device time on the CPU" >&2
  exit 1
fi

if [ "$bench_seconds" != 0 ]; then
  python3 benchmarks/run.py --variants jax --remeasure 0 --max-seconds "$bench_seconds" \
    --out "$out/results" || echo "gpu_session: the benchmark failed (exit $?)"
fi
# Where the overhead over the minimal Keras VAE lives on the GPU (+31% to +73% on 2026-12-04,
# against <= 10% on the CPU): the compiled train step alone, no fit loop (benchmarks/step_cost.py).
if [ "${STEP_COST:-1}" = 1 ]; then
  for batch in 100 1000; do
    timeout 90 python3 benchmarks/step_cost.py --batch "$batch" --steps 500 \
      || echo "gpu_session: step_cost.py at batch $batch failed (exit $?)"
  done
fi

if [ -n "$preset" ]; then
  if [ -z "${TFDLGM_MNIST:-}" ]; then
    echo "gpu_session: training needs MNIST: carry .data/mnist.npz" >&2
    exit 1
  fi
  # --max-minutes counts the preset's earlier training too.
  budget=$(python3 -c "import json, sys; r = json.load(open(sys.argv[1]))['training']; \
print(round(r['wall_time_minutes'] + max(0, float(sys.argv[2])) / 60, 2))" \
    "zoo/$preset/metadata.json" "$((session_seconds - (SECONDS - started) - eval_seconds))")
  echo "gpu_session: training $preset to $budget minutes in all"
  JAX_DEFAULT_MATMUL_PRECISION=highest python3 tools/train.py "$preset" --continue \
    --max-minutes "$budget" --ll-examples "$ll_examples" \
    --workdir /tmp/gpu-session --out "$out/zoo/$preset"
  tar -C /tmp/gpu-session -czf "$out/logs.tar.gz" logs   # TensorBoard; checkpoints stay there
fi
echo "gpu_session: done in $((SECONDS - started)) s"
