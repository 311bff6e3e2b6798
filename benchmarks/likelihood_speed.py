"""L_5000 throughput per backend and of the PyTorch peer, against the machine's matmul peak.

Run:

```bash
TFDLGM_MNIST=../shared/data/mnist.npz python benchmarks/likelihood_speed.py --readme README.md
python benchmarks/likelihood_speed.py --examples 4 --num-samples 50 --out /tmp/speed  # smoke
python benchmarks/likelihood_speed.py --render benchmarks/results/likelihood-speed.json \\
    --readme README.md   # re-writes the Markdown, the chart and README's block, measures nothing
```

What it measures. Each variant runs in its own process, threads left at each library's
default: `tensorflow` (the default install: `tfdlgm.backend.tensorflow.uses_xla` decides, no
XLA on a CPU-only machine), `tensorflow-xla` (the same with XLA forced on), `jax`, and for
vae-mnist the PyTorch peer (`benchmarks/peers/torch_likelihood.py`: the preset's weights in a
PyTorch VAE, the same estimator), `torch-eager` and `torch-compile`. Every variant reads the
same first `--examples` protocol test images (`tfdlgm.evaluation.protocol_test_set`, written
once to a file by one more process). In each, every preset in `--presets` estimates
`log_likelihood(x, num_samples=5000)` on them in `--windows` timed calls (each with other
samples) after an untimed call on the same images (which compiles); images/s is the median
call's, and the slowest and fastest calls bound it. The process also times a square float32
matmul (compiled; median of 5) for the machine's peak in the same run. A preset's work per
image is counted as

```none
FLOP per image ~= 2 k sum_kernels (inputs x outputs)       (every dense kernel, once per sample)
```

from the model's 2-D weights: an upper bound, since the encoder runs once per image, not k
times (vae-mnist, 784-200-200-50: 423,600 multiply-adds counted per sample, 206,800 of them
the decoder's, which does run per sample), and the activations, the sampling and the
log-sum-exp are not counted. So the share of the peak it gives is generous.

The peer check: each PyTorch variant's mean L_k over the images must equal the default
variant's within 4 Monte Carlo standard errors (estimated from the spread of each image's L_k
across the windows), or the run exits with status 1. Writes `likelihood-speed.{json,md,png}`
under `--out`, with the issue's goals met or missed (ours against the peer, TensorFlow against
JAX, the share of the peak, the projected time of the 10,000 test images); `--readme FILE`
puts the summary block (`readme_block`) between the file's markers. A result's `note` (free
text on how it was measured, where the report's own set-up line would not say it) is printed
with it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import charts
import numpy as np

KERAS_VARIANTS = {
    "tensorflow": {"KERAS_BACKEND": "tensorflow"},
    "tensorflow-xla": {"KERAS_BACKEND": "tensorflow", "TFDLGM_BENCH_FORCE_XLA": "1"},
    "jax": {"KERAS_BACKEND": "jax"},
}
PEER_VARIANTS = {"torch-eager": False, "torch-compile": True}  # torch.compile or not
PEER_PRESETS = ("vae-mnist",)
VARIANTS = (*KERAS_VARIANTS, *PEER_VARIANTS)
DEFAULT_VARIANT = "tensorflow"
NUM_SAMPLES = 5000
TEST_IMAGES = 10_000
ZOO = pathlib.Path(__file__).parents[1] / "zoo"
README_BEGIN = "<!-- begin: written by python benchmarks/likelihood_speed.py --readme README.md -->"
README_END = "<!-- end: written by benchmarks/likelihood_speed.py -->"
# The goals: (ours / peer eager on the default backend, on the best backend), TF / JAX,
# the best backend's share of the matmul peak, the 10,000 test images' time (s).
GOAL_DEFAULT_VS_PEER, GOAL_BEST_VS_PEER, GOAL_TF_VS_JAX = 1.0, 1.4, 0.8
GOAL_SHARE_OF_PEAK, GOAL_TEST_SET_SECONDS = 0.5, 300
AGREEMENT_STANDARD_ERRORS = 4
NOT_RUN = "a variant or preset it needs was not in this run"


def matmul_gflops(size=2000, repeats=5):
    """GFLOP/s of a compiled `size` x `size` float32 matmul on this backend (median)."""
    import keras
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


def timed_row(seconds, values, flop, peak):
    """One preset's figures from its timed calls: `seconds` per call and each call's `[N]`
    L_k values (other samples each call, the same images)."""
    values = np.asarray(values, dtype="float64")  # [windows, N]
    windows, examples = values.shape
    rate = examples / float(np.median(seconds))
    # Each image's L_k varies across the calls by the Monte Carlo error alone.
    variance = float(values.var(axis=0, ddof=1).mean()) if windows > 1 else None
    return {
        "images_per_second": rate,
        "window_seconds": list(seconds),
        "mean_log_likelihood": float(values.mean()),
        "standard_error": None if variance is None else (variance / values.size) ** 0.5,
        "gflops_upper_bound": rate * flop / 1e9,
        "share_of_peak": rate * flop / 1e9 / peak,
    }


def keras_worker(presets, x, num_samples, windows):
    """One Keras variant's figures (this process's backend), as a dict."""
    if os.environ.get("TFDLGM_BENCH_FORCE_XLA"):
        from tfdlgm.backend import tensorflow as tensorflow_backend

        tensorflow_backend.uses_xla = lambda: True
    import keras

    from tfdlgm import zoo

    peak = matmul_gflops()
    rows = {}
    for name in presets:
        model = zoo.load(name)
        model.log_likelihood(x, num_samples=num_samples, verbose=0)  # compiles
        seconds, values = [], []
        for window in range(windows):
            start = time.perf_counter()
            values.append(model.log_likelihood(x, num_samples, seed=window, verbose=0))
            seconds.append(time.perf_counter() - start)
        rows[name] = timed_row(seconds, values, flop_per_image(model, num_samples), peak)
    backend = keras.backend.backend()
    library = __import__(backend)
    return {
        "versions": {"keras": keras.__version__, backend: library.__version__},
        "matmul_gflops": peak,
        "presets": rows,
    }


def torch_worker(presets, x, num_samples, windows, compile):
    """The PyTorch peer's figures on the presets it has (`PEER_PRESETS`), as a dict."""
    from peers import torch_likelihood

    peak = torch_likelihood.matmul_gflops()
    rows = {}
    for name in presets:
        if name in PEER_PRESETS:
            seconds, values, flop = torch_likelihood.measure(
                ZOO / name, x, num_samples, windows, compile
            )
            rows[name] = timed_row(seconds, values, flop, peak)
    return {"versions": torch_likelihood.versions(), "matmul_gflops": peak, "presets": rows}


def run_variant(variant, presets, images, num_samples, windows):
    """Starts `variant`'s process and returns its figures."""
    env = {**os.environ, **KERAS_VARIANTS.get(variant, {}), "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["--worker", variant, "--images", str(images), "--presets", *presets]
    args += ["--num-samples", str(num_samples), "--windows", str(windows)]
    process = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False
    )
    if process.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.splitlines()[-1])


def write_images(examples, path):
    """The first `examples` protocol test images, in a `.npy` file every variant reads, written
    by a process of its own (reading them imports Keras; the PyTorch processes do not)."""
    process = subprocess.run(
        [sys.executable, __file__, "--write-images", str(path), "--examples", str(examples)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=False,
    )
    if process.returncode != 0:
        raise RuntimeError(f"reading the test images failed:\n{process.stderr[-3000:]}")


# -- the report ------------------------------------------------------------------------------


def _row(result, variant, preset):
    return result["variants"].get(variant, {}).get("presets", {}).get(preset)


def _rate(result, variant, preset):
    row = _row(result, variant, preset)
    return row["images_per_second"] if row else None


def _ours(result, preset):
    """`{variant: images/s}` of our variants that measured `preset`."""
    rates = {v: _rate(result, v, preset) for v in KERAS_VARIANTS}
    return {v: rate for v, rate in rates.items() if rate is not None}


def _status(met):
    return "met" if met else "missed"


def _against_peer(goal, variant, prefix, ours, peer, target):
    """A goal's line for `variant`'s images/s against the PyTorch peer's: met at `target`x."""
    if not peer or variant not in ours:
        return {"goal": goal, "status": "not measured", "figures": NOT_RUN}
    ratio = ours[variant] / peer
    figures = f"{prefix}{ratio:.2f}x: {ours[variant]:.1f} against {peer:.1f} images/s"
    return {"goal": goal, "status": _status(ratio >= target), "figures": figures}


def goals(result):
    """The issue's goals as `{"goal", "status", "figures"}`; status is met, missed or not
    measured (a variant or preset left out of the run)."""
    out = []
    preset = PEER_PRESETS[0]
    peer = _rate(result, "torch-eager", preset)
    ours = _ours(result, preset)
    k = f"L_{result['num_samples']}"

    goal = (
        f"{preset} {k}, default backend ({DEFAULT_VARIANT}) >= {GOAL_DEFAULT_VS_PEER}x "
        "PyTorch eager"
    )
    out.append(_against_peer(goal, DEFAULT_VARIANT, "", ours, peer, GOAL_DEFAULT_VS_PEER))
    goal = f"{preset} {k}, best backend >= {GOAL_BEST_VS_PEER}x PyTorch eager"
    best = max(ours, key=ours.get) if ours else None
    out.append(_against_peer(goal, best, f"{best}, ", ours, peer, GOAL_BEST_VS_PEER))

    goal = f"{k}, TensorFlow (default) >= {GOAL_TF_VS_JAX}x JAX per preset"
    cases = []
    for name in result["presets"]:
        tf_rate, jax_rate = _rate(result, "tensorflow", name), _rate(result, "jax", name)
        if tf_rate and jax_rate:
            cases.append((name, tf_rate / jax_rate))
    if cases:
        met = sum(ratio >= GOAL_TF_VS_JAX for _, ratio in cases)
        status = f"met in {met} of {len(cases)}" if 0 < met < len(cases) else _status(met)
        figures = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in cases)
        out.append({"goal": goal, "status": status, "figures": figures})
    else:
        out.append({"goal": goal, "status": "not measured", "figures": NOT_RUN})

    goal = f"{preset} {k}, best backend >= {GOAL_SHARE_OF_PEAK:.0%} of the measured matmul peak"
    if ours:
        best = max(ours, key=ours.get)
        row, peak = _row(result, best, preset), result["variants"][best]["matmul_gflops"]
        figures = (
            f"{best}: {row['share_of_peak']:.0%} of {peak:.0f} GFLOP/s, "
            f"{row['gflops_upper_bound']:.0f} GFLOP/s by the upper-bound count"
        )
        met = row["share_of_peak"] >= GOAL_SHARE_OF_PEAK
        out.append({"goal": goal, "status": _status(met), "figures": figures})
    else:
        out.append({"goal": goal, "status": "not measured", "figures": NOT_RUN})

    goal = (
        f"{preset} {k} on the {TEST_IMAGES:,} test images in < {GOAL_TEST_SET_SECONDS / 60:.0f} "
        "min on the default install"
    )
    if DEFAULT_VARIANT in ours:
        seconds = TEST_IMAGES / ours[DEFAULT_VARIANT]
        figures = (
            f"projected {seconds / 60:.1f} min: {TEST_IMAGES:,} / {ours[DEFAULT_VARIANT]:.1f} "
            "images/s"
        )
        out.append(
            {"goal": goal, "status": _status(seconds < GOAL_TEST_SET_SECONDS), "figures": figures}
        )
    else:
        out.append({"goal": goal, "status": "not measured", "figures": NOT_RUN})
    return out


def peer_checks(result):
    """Each PyTorch variant's mean L_k against the default variant's on the same images:
    `{"variant", "ours", "peer", "difference", "standard_error", "agree"}` (agree is None
    where a side has one window, so no error estimate)."""
    checks = []
    for preset in PEER_PRESETS:
        ours = _row(result, DEFAULT_VARIANT, preset)
        for variant in PEER_VARIANTS:
            peer = _row(result, variant, preset)
            if not ours or not peer:
                continue
            difference = peer["mean_log_likelihood"] - ours["mean_log_likelihood"]
            errors = (ours.get("standard_error"), peer.get("standard_error"))
            error = None if None in errors else (errors[0] ** 2 + errors[1] ** 2) ** 0.5
            checks.append(
                {
                    "preset": preset,
                    "variant": variant,
                    "ours": ours["mean_log_likelihood"],
                    "peer": peer["mean_log_likelihood"],
                    "difference": difference,
                    "standard_error": error,
                    "agree": None
                    if error is None
                    else abs(difference) <= AGREEMENT_STANDARD_ERRORS * error,
                }
            )
    return checks


def _check_line(check):
    verdict = (
        "not judged (one window: no Monte Carlo error estimate)"
        if check["agree"] is None
        else "**agree**"
        if check["agree"]
        else "**disagree: the peer is wrong**"
    )
    error = "-" if check["standard_error"] is None else f"{check['standard_error']:.3f}"
    return (
        f"- Peer check, {check['preset']}: mean L_k {check['ours']:.3f} nats ({DEFAULT_VARIANT}) "
        f"and {check['peer']:.3f} ({check['variant']}), difference {check['difference']:+.3f}, "
        f"Monte Carlo standard error of the difference {error}: {verdict} (within "
        f"{AGREEMENT_STANDARD_ERRORS} standard errors)"
    )


def _calls(result):
    return f"{result['windows']} timed call" + ("s" if result["windows"] > 1 else "")


def _variants(result):
    return [v for v in VARIANTS if v in result["variants"]]


def readme_block(result):
    """The summary README.md shows between `README_BEGIN` and `README_END`: images/s per
    preset and variant, the goals and the peer check."""
    variants = _variants(result)
    lines = [
        f"L_{result['num_samples']} throughput, test images/s, median of {_calls(result)} on "
        f"{result['examples']} protocol test images ({result['date']}, {result['machine']}, "
        f"{result['mode']} mode; "
        "[report](benchmarks/results/likelihood-speed.md), "
        "[chart](benchmarks/results/likelihood-speed.png))"
        + (f". {result['note']}" if result.get("note") else ":"),
        "",
        "| preset | " + " | ".join(variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]
    for preset in result["presets"]:
        cells = [_rate(result, v, preset) for v in variants]
        lines.append(
            f"| {preset} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |"
        )
    lines += ["", "Goals (issue 37):", "", *_goal_lines(result)]
    return "\n".join(lines) + "\n"


def _goal_lines(result):
    lines = [f"- {g['goal']}: **{g['status']}** ({g['figures']})" for g in goals(result)]
    return lines + [_check_line(check) for check in peer_checks(result)]


def markdown(result):
    """The report: set-up, images/s per preset and variant with the windows' range, the share
    of the peak, the ratios, the goals and the peer check."""
    k = result["num_samples"]
    lines = [
        f"# L_{k} throughput per backend and the PyTorch peer",
        "",
        f"{result['date']}, {result['machine']}, {result['mode']} mode; the first "
        f"{result['examples']} protocol test images, k = {k}, {_calls(result)} "
        "per preset and variant after an untimed call on the same images (which "
        "compiles); images/s is the median call's, the range the slowest and fastest calls'. "
        "Peak: a compiled 2000 x 2000 float32 matmul in the same process. FLOP count: "
        "2 k x sum of inputs x outputs over every dense kernel, as if the encoder ran once per "
        "sample (it runs once per image), activations, sampling and log-sum-exp not counted: "
        "an upper bound on the work, so the share of the peak is an upper bound too."
        + (f" {result['note']}" if result.get("note") else ""),
        "",
        "Versions per process (threads at each library's default):",
        "",
    ]
    for variant in _variants(result):
        versions = ", ".join(f"{k} {v}" for k, v in result["variants"][variant]["versions"].items())
        lines.append(f"- `{variant}`: {versions}")
    lines += [
        "",
        "| preset | variant | images/s | slowest-fastest call | mean L_k (nats) | "
        "matmul peak GFLOP/s | share of peak | / jax | / torch eager |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for preset in result["presets"]:
        for variant in _variants(result):
            row = _row(result, variant, preset)
            if not row:
                continue
            rate = row["images_per_second"]
            worst, best = charts.window_range(rate, row["window_seconds"])
            ratios = [_rate(result, "jax", preset), _rate(result, "torch-eager", preset)]
            lines.append(
                f"| {preset} | {variant} | {rate:.2f} | {worst:.2f}-{best:.2f} | "
                f"{row['mean_log_likelihood']:.2f} | "
                f"{result['variants'][variant]['matmul_gflops']:.0f} | "
                f"{row['share_of_peak']:.0%} | "
                + " | ".join("-" if r is None else f"{rate / r:.2f}x" for r in ratios)
                + " |"
            )
    lines += ["", "## Goals (issue 37)", "", *_goal_lines(result)]
    return "\n".join(lines) + "\n"


def chart(result, path):
    """images/s per preset and variant, error bars from the slowest to the fastest call."""
    groups = []
    for preset in result["presets"]:
        bars = []
        for variant in _variants(result):
            row = _row(result, variant, preset)
            if row:
                rate = row["images_per_second"]
                bars.append((variant, rate, *charts.window_range(rate, row["window_seconds"])))
        groups.append((preset, bars))
    k = result["num_samples"]
    title = (
        f"L_{k} throughput, {result['examples']} test images, {result['machine']}, "
        f"{result['date']} ({result['mode']} mode)"
    )
    axis = f"test images/s (k = {k}; bar: median of {_calls(result)}, whiskers: slowest-fastest)"
    return charts.bar_chart(path, title, axis, groups)


def put_readme_block(readme, block):
    """`readme`'s text with `block` between `README_BEGIN` and `README_END`."""
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(
            f"The README has no block to write: it needs the lines {README_BEGIN!r} and "
            f"{README_END!r}, in that order."
        )
    return readme[: begin + len(README_BEGIN)] + "\n" + block + readme[end:]


def readme_section(readme):
    """The text between `README_BEGIN` and `README_END` (what `put_readme_block` wrote)."""
    begin = readme.index(README_BEGIN) + len(README_BEGIN) + 1
    return readme[begin : readme.index(README_END)]


def write_report(result, out, readme=None):
    """Writes `likelihood-speed.{json,md,png}` under `out`, and README's block if `readme`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "likelihood-speed.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "likelihood-speed.md").write_text(text)
    chart(result, out / "likelihood-speed.png")
    if readme:
        readme = pathlib.Path(readme)
        readme.write_text(put_readme_block(readme.read_text(), readme_block(result)))
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["vae-mnist", "dlgm-mnist", "lvae-mnist"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=NUM_SAMPLES, help="k (smoke: fewer)")
    parser.add_argument("--windows", type=int, default=3, help="timed calls per preset")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument("--readme", default=None, help="a README.md whose block to re-write")
    parser.add_argument("--render", default=None, help="a result's JSON: re-write its report")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--write-images", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.examples < 1 or args.num_samples < 1 or args.windows < 1:
        parser.error(
            "--examples, --num-samples and --windows must be positive. Received: "
            f"{args.examples}, {args.num_samples}, {args.windows}"
        )
    if args.write_images:
        from tfdlgm import evaluation

        np.save(args.write_images, evaluation.protocol_test_set()[: args.examples])
        return 0
    if args.worker:
        x = np.load(args.images)
        if args.worker in PEER_VARIANTS:
            compile = PEER_VARIANTS[args.worker]
            figures = torch_worker(args.presets, x, args.num_samples, args.windows, compile)
        else:
            figures = keras_worker(args.presets, x, args.num_samples, args.windows)
        print(json.dumps(figures))
        return 0
    if args.render:
        result = json.loads(pathlib.Path(args.render).read_text())
    else:
        result = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "mode": "full" if args.num_samples == NUM_SAMPLES else "smoke",
            "examples": args.examples,
            "num_samples": args.num_samples,
            "windows": args.windows,
            "presets": args.presets,
            "variants": {},
        }
        with tempfile.TemporaryDirectory() as folder:
            images = pathlib.Path(folder) / "images.npy"
            write_images(args.examples, images)
            for variant in args.variants:
                print(f"[likelihood-speed] {variant} ...", file=sys.stderr, flush=True)
                figures = run_variant(variant, args.presets, images, args.num_samples, args.windows)
                result["variants"][variant] = figures
    print(write_report(result, pathlib.Path(args.out), args.readme))
    return 1 if any(check["agree"] is False for check in peer_checks(result)) else 0


if __name__ == "__main__":
    sys.exit(main())
