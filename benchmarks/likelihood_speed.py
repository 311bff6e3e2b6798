"""L_5000 throughput per backend against the machine's matmul peak, measured in one run.

Run:

```bash
TFDLGM_MNIST=../shared/data/mnist.npz python benchmarks/likelihood_speed.py   # ~5 min, 2 cores
python benchmarks/likelihood_speed.py --examples 8 --presets vae-mnist --out /tmp/speed  # smoke
```

What it measures. Each variant runs in its own process: `tensorflow` (the default install:
`tfdlgm.backend.tensorflow.uses_xla` decides, no XLA on a CPU-only machine), `tensorflow-xla`
(the same with XLA forced on) and `jax`. In each, every preset in `--presets` estimates
`log_likelihood(x, num_samples=5000)` on the first `--examples` protocol test images (after a
warm-up call that compiles), and the process times a square float32 matmul (`keras.ops`,
compiled, median of 5) for the machine's peak in the same run. A preset's work per image is
estimated as

```none
FLOP per image ~= 2 k sum_layers (inputs x outputs)       (every dense kernel, once per sample)
```

an upper bound (the VAE's encoder runs once per image, not k times), so the share of peak it
gives is generous. Writes `likelihood-speed.{json,md}` under `--out` with images/s, the share
of the peak, and each TensorFlow variant's ratio to JAX (issue goal: >= 0.8x).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

VARIANTS = {
    "tensorflow": {"KERAS_BACKEND": "tensorflow"},
    "tensorflow-xla": {"KERAS_BACKEND": "tensorflow", "TFDLGM_BENCH_FORCE_XLA": "1"},
    "jax": {"KERAS_BACKEND": "jax"},
}
NUM_SAMPLES = 5000


def matmul_gflops(size=2000, repeats=5):
    """GFLOP/s of a compiled `size` x `size` float32 matmul on this backend (median)."""
    import keras
    import numpy as np
    from keras import ops

    a = ops.convert_to_tensor(np.random.default_rng(0).standard_normal((size, size), "float32"))
    if keras.backend.backend() == "jax":
        import jax

        matmul = jax.jit(lambda u: u @ u)
    else:
        import tensorflow as tf

        matmul = tf.function(lambda u: u @ u)
    ops.convert_to_numpy(matmul(a))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ops.convert_to_numpy(matmul(a))
        times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2] / 1e9


def flop_per_image(model, num_samples):
    """2 k sum(inputs x outputs) over the model's dense kernels (an upper bound)."""
    return (
        2
        * num_samples
        * sum(
            int(w.shape[0]) * int(w.shape[1]) for w in model.trainable_weights if len(w.shape) == 2
        )
    )


def worker(presets, examples):
    """One variant's figures (this process's backend), as a dict."""
    if os.environ.get("TFDLGM_BENCH_FORCE_XLA"):
        from tfdlgm.backend import tensorflow as tensorflow_backend

        tensorflow_backend.uses_xla = lambda: True
    import keras

    from tfdlgm import evaluation, zoo

    x = evaluation.protocol_test_set()[:examples]
    peak = matmul_gflops()
    rows = {}
    for name in presets:
        model = zoo.load(name)
        model.log_likelihood(x[:2], num_samples=NUM_SAMPLES, verbose=0)  # compiles
        start = time.perf_counter()
        values = model.log_likelihood(x, num_samples=NUM_SAMPLES, seed=0, verbose=0)
        seconds = time.perf_counter() - start
        rate = examples / seconds
        gflops = rate * flop_per_image(model, NUM_SAMPLES) / 1e9
        rows[name] = {
            "images_per_second": rate,
            "seconds": seconds,
            "mean_log_likelihood": float(values.mean()),
            "gflops_upper_bound": gflops,
            "share_of_peak": gflops / peak,
        }
    return {"backend": keras.backend.backend(), "matmul_gflops": peak, "presets": rows}


def run_variant(variant, presets, examples):
    env = {**os.environ, **VARIANTS[variant], "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run(
        [sys.executable, __file__, "--worker", "--presets", *presets, "--examples", str(examples)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if process.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.splitlines()[-1])


def markdown(result):
    presets = result["presets"]
    lines = [
        "# L_5000 throughput per backend",
        "",
        f"{result['date']}, {result['machine']}; {result['examples']} protocol test images per "
        f"preset, k = {NUM_SAMPLES}, after a compiling warm-up. Peak: a compiled 2000 x 2000 "
        "float32 matmul in the same process. Share of peak uses an upper bound on the work "
        "(every dense kernel once per sample).",
        "",
        "| preset | variant | images/s | matmul peak GFLOP/s | share of peak | / jax |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in presets:
        jax_rate = result["variants"]["jax"]["presets"][name]["images_per_second"]
        for variant, figures in result["variants"].items():
            row = figures["presets"][name]
            lines.append(
                f"| {name} | {variant} | {row['images_per_second']:.2f} | "
                f"{figures['matmul_gflops']:.0f} | {row['share_of_peak']:.0%} | "
                f"{row['images_per_second'] / jax_rate:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["vae-mnist", "dlgm-mnist", "lvae-mnist"])
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.examples < 2:
        parser.error(f"--examples must be at least 2. Received: {args.examples}")
    if args.worker:
        print(json.dumps(worker(args.presets, args.examples)))
        return 0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "examples": args.examples,
        "presets": args.presets,
        "variants": {v: run_variant(v, args.presets, args.examples) for v in VARIANTS},
    }
    (out / "likelihood-speed.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "likelihood-speed.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
