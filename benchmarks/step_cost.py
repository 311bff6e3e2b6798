"""Ours against the minimal Keras VAE one compiled JAX train step at a time: how much of the
overhead that `benchmarks/run.py` measures through `fit` is in the step itself.

```bash
python benchmarks/step_cost.py                       # VAE 784-500-500-50, batch 100
python benchmarks/step_cost.py --model "VAE 784-200-200-50 (zoo)" --batch 1000 --steps 50
```

For `tfdlgm.models.VAE` and `benchmarks/peers/minimal_keras_vae.py` of the same architecture
(`workers.MODELS`), it compiles Keras' own `train_step` (the pure function of the state that `fit`
calls every step on JAX) and reports XLA's cost analysis of it (FLOPs, bytes accessed,
transcendentals) and its fused kernels, then times `--steps` steps of each, the two taking
turns for `--rounds` rounds in an order that reverses every round, and prints the ratio of the
medians. There is no fit loop, data iterator or callback here: what `run.py`'s overhead shows
beyond this ratio is the host's. It prints a table, then the figures as one JSON line. JAX only
(`KERAS_BACKEND` is set to `jax`).
"""

import argparse
import json
import os
import pathlib
import re
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402
import keras  # noqa: E402
import workers  # noqa: E402  (benchmarks/workers.py: the models and how the suite builds them)

import tfdlgm  # noqa: E402

COSTS = ("flops", "bytes accessed", "transcendentals")


def compiled_step(model, x):
    """`(jitted train_step, its state, XLA's cost analysis and fused kernels)` for `model`."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=len(x), epochs=1, verbose=0)  # builds the optimizer and metrics
    state = tuple(
        [variable.value for variable in variables]
        for variables in (
            model.trainable_variables,
            model.non_trainable_variables,
            model.optimizer.variables,
            model.metrics_variables,
        )
    )
    step = jax.jit(model.train_step, donate_argnums=0)
    compiled = step.lower(state, (x,)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    text = compiled.as_text()
    entry = text[text.index("ENTRY") :]
    figures = {name: float(cost.get(name, float("nan"))) for name in COSTS}
    figures["fused kernels"] = len(re.findall(r"= \S+ fusion\(", entry))
    return step, state, figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    vaes = [name for name, model in workers.MODELS.items() if model["class"] == "VAE"]
    parser.add_argument("--model", choices=vaes, default="VAE 784-500-500-50")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="steps per timed turn")
    parser.add_argument("--rounds", type=int, default=6, help="turns of each model")
    args = parser.parse_args(argv)
    x = jax.device_put(workers.binary_data(args.batch))
    models = {
        "ours": workers.build(tfdlgm, args.model),
        "minimal": workers.build_minimal(args.model),
    }
    steps, seconds = {}, {name: [] for name in models}
    for name, model in models.items():
        step, state, figures = compiled_step(model, x)
        _, state = step(state, (x,))  # a first call; the state is donated, so carry its output
        steps[name] = [step, jax.block_until_ready(state), figures]
    order = list(models)
    for turn in range(args.rounds):
        for name in order if turn % 2 == 0 else order[::-1]:
            step, state, _ = steps[name]
            start = time.perf_counter()
            for _ in range(args.steps):
                _, state = step(state, (x,))
            jax.block_until_ready(state)
            seconds[name].append(time.perf_counter() - start)
            steps[name][1] = state
    result = {"model": args.model, "batch_size": args.batch, "backend": "jax"}
    for name in models:
        result[name] = {
            **steps[name][2],
            "ms_per_step": 1e3 * statistics.median(seconds[name]) / args.steps,
            "turn_seconds": seconds[name],
        }
    result["ratio"] = result["ours"]["ms_per_step"] / result["minimal"]["ms_per_step"]
    print(f"{args.model}, batch {args.batch}, JAX on {jax.devices()[0].platform}")
    for key in (*COSTS, "fused kernels", "ms_per_step"):
        ours, minimal = result["ours"][key], result["minimal"][key]
        print(f"  {key:16} ours {ours:12.4g}  minimal {minimal:12.4g}  ratio {ours / minimal:.3f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
