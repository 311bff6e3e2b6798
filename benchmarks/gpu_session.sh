#!/usr/bin/env bash
# One session on the GPU machine (JAX and PyTorch, no TensorFlow), prepared so that a session
# lent one spends its 15 device minutes measuring, not setting up:
#   1. the benchmark suite's JAX variant and the PyTorch peer on the GPU (full mode: training,
#      sampling, L_5000 throughput, FLOP/s against the GPU's peak, the two GPU goals, among
#      them L_5000 of vae-mnist on all 10,000 test images), into $OUT/results/;
#   2. optionally, a zoo preset trained further from its shipped weights for MINUTES minutes
#      (`zoo/train.py PRESET --continue`) and evaluated by the protocol, into $OUT/zoo/PRESET/.
#
# From the development machine, in the repository root:
#   bash ../shared/tools/device-wheels.sh                    # keras, tfp-nightly, ... into .whl/
#   mkdir -p .data && cp ../shared/data/mnist.npz .data/      # MNIST (git ignores .data/)
# then the device tool's run with carry [".whl", ".data"] and timeout_s 600:
#   bash benchmarks/gpu_session.sh [PRESET MINUTES]          # e.g. vae-mnist 4
# and copy the files back: $OUT/results/* into benchmarks/results/, $OUT/zoo/PRESET/* into
# zoo/PRESET/ (its card then lists this run's command and device after the earlier ones).
# Without .data the benchmark times L_5000 on random binary images (the time does not depend
# on the pixels); training needs MNIST. A preset's evaluation after training (L_5000 on all
# 10,000 test images) runs on the GPU too, within MINUTES' remainder of the 600 s command.
set -euo pipefail
preset=${1:-}
minutes=${2:-4}
out=${OUT:?run this through the device tool, which sets OUT}

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=2
if [ -f .data/mnist.npz ]; then export TFDLGM_MNIST=$PWD/.data/mnist.npz; fi
nvidia-smi --query-gpu=name,memory.total --format=csv || true
python3 -c "import jax, keras, tfdlgm; print(jax.devices(), keras.__version__)"

# The benchmark gets 6 minutes at most, so that the training below still has its share; the
# zoo's figures are not re-measured here (the CPU can do that), only tabulated.
timeout 360 python3 benchmarks/run.py --variants jax --remeasure 0 --out "$out/results" \
  || echo "gpu_session: the benchmark stopped early (exit $?)"

if [ -n "$preset" ]; then
  if [ -z "${TFDLGM_MNIST:-}" ]; then
    echo "gpu_session: training needs MNIST: carry .data/mnist.npz" >&2
    exit 1
  fi
  # --max-minutes counts the preset's earlier training too.
  budget=$(python3 -c "import json, sys; r = json.load(open(sys.argv[1]))['recipe']; \
print(r['wall_time_minutes'] + float(sys.argv[2]))" "zoo/$preset/config.json" "$minutes")
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  python3 zoo/train.py "$preset" --continue --epochs 3280 --max-minutes "$budget" \
    --workdir /tmp/gpu-session --out "$out/zoo/$preset" --device "$gpu (JAX)"
  cp -r /tmp/gpu-session/logs "$out/logs"   # TensorBoard; the checkpoints stay there
fi
