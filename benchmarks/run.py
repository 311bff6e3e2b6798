"""The benchmark suite: throughput across models, backends and devices against a PyTorch peer,
and the zoo's likelihoods against the published figures.

Run (from the repository root; `tfdlgm bench [ARGS]` is the same command):

```bash
pip install -e ".[bench,jax]"            # the peer (torch) and the JAX backend
python benchmarks/run.py --quick         # < 3 min on 2 CPU cores: CI's smoke run
python benchmarks/run.py                 # full (~20 min on 2 idle cores: 1,210 s on 2026-12-02)
python benchmarks/run.py --smoke --out /tmp/bench   # seconds: the active backend, a tiny model
python benchmarks/run.py --steps-per-execution 16   # Keras' compile(steps_per_execution=16)
python benchmarks/run.py --max-seconds 330          # stop there, keeping what was measured
tfdlgm bench --quick                     # the same through the CLI
```

What it measures. Each Keras variant runs in its own subprocess with `KERAS_BACKEND` set:
TensorFlow with `jit_compile=False`, TensorFlow with `jit_compile=True` (XLA), and JAX
(jit-compiled, as Keras always does on JAX); the PyTorch peer (`benchmarks/peers/torch_vae.py`,
eager and `torch.compile`) runs in one more. Every figure is the median of repeated timed
windows after a warm-up window (compilation excluded), with every window's time and
`os.getloadavg()` recorded beside it:

* training examples/s: `model.fit` on in-memory binary data (`shuffle=False`, Adam 1e-3), one
  window = one epoch of `steps` batches (in full mode one MNIST epoch, 50,000 images, so the
  per-epoch cost counts as much as in real training; see `PLANS`), for the VAE 784-500-500-50
  (tanh), the zoo's VAE 784-200-200-50 (tanh) and DLGM 784-200-200/200 (rank-one q, relu), at
  batch 100 and 1000; the same for the PyTorch peer (identical VAE and step: Bernoulli
  likelihood, diagonal Gaussian q, one reparameterised sample, analytic KL, Adam) and for a
  minimal hand-written Keras VAE (`benchmarks/peers/minimal_keras_vae.py`, plain `keras.ops`, no
  TFP), whose ratio to ours is the project's overhead; ours and the minimal one take turns epoch
  by epoch in an order that reverses each epoch (timing all of ours first had tripled the
  overhead on 2026-12-02: +26% against +7% to +10% in turns);
* ancestral sampling examples/s (`model.sample`) and `log_likelihood` test images/s with
  k = 5000 (measured once per backend: neither depends on `fit`'s `jit_compile`; the
  estimator is always compiled, jax.jit or tf.function with XLA, and sampling runs eagerly);
* on a GPU (full mode), L_5000 of vae-mnist on all 10,000 test images, the time of the GPU
  goal (the fixed-binarised test set when MNIST is found, else random binary images: the time
  does not depend on the pixels); not run on a CPU-only machine (16 min on 2 cores); the smoke
  mode times the same call on 2 images with k = 10;
* achieved GFLOP/s, counting the dense layers only (2 * in * out per example per layer
  forward, x3 for forward and backward; for L_5000, k decoder passes per image), and, on a GPU
  whose peak is known, the fraction of its FP32 peak;
* data-parallel scaling (full and smoke modes): `fit` examples/s at one global batch on 1, 2,
  4, ... devices, one process per count, for TensorFlow (`MirroredStrategy`) and JAX
  (`keras.distribution.DataParallel`) through `tfdlgm.distribute.data_parallel`; the zoo VAE at
  batch 1000 in full mode. Without an accelerator it runs on 2 virtual CPU devices that share
  the same cores: the machinery's cost, not a speed-up (the report says which it measured);
* the likelihood table: every zoo preset's recorded figures (ELBO, L_1, L_5, L_50, L_5000, KL
  per layer, active units; `zoo/<name>/config.json`) against the published figure; in full mode
  re-measured by `tfdlgm.evaluation.evaluate_protocol` on the first `--remeasure` test images
  when MNIST is found (`TFDLGM_MNIST`); and each preset's `zoo.load` wall time (first load in
  the process, then a second; the goal is well under 5 s on the 2-core CPU).

Goals (reported as met or missed, with the margin; never asserted): the shipped VAE's training
throughput on the default backend (TensorFlow, default `jit_compile`) >= the PyTorch eager peer;
the fastest backend >= 1.4x that peer; the overhead over the minimal Keras VAE < 10%; and on
the GPU machine, the fastest backend >= 1.4x `torch.compile` at batch 1000 and vae-mnist's
L_5000 on the whole test set in under 10 s ("not measured" elsewhere). On the GPU machine
(JAX, no TensorFlow) `benchmarks/gpu_session.sh` runs the suite's JAX variant and the peer.

Writes `<device>-<date>.json` and `.md` (`-quick` / `-smoke` before the suffix in those modes)
and `<stem>-training.png` under `--out` (default `benchmarks/results/`); `--report FILE.json`
re-derives the goals and re-writes the Markdown and chart of an existing result. Timings on a
machine shared with other work are noisy: the load averages in the results say how loaded it was.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

BENCHMARKS = pathlib.Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:  # `tfdlgm bench` runs this file with runpy
    sys.path.insert(0, str(BENCHMARKS))

import report  # noqa: E402  (benchmarks/report.py, after the path is set)

# The architectures: the peer has the VAEs only (its implementation is a plain VAE).
MODELS = {
    "VAE 784-500-500-50": {
        "class": "VAE",
        "kwargs": {"latent_dim": 50, "hidden": (500, 500), "activation": "tanh"},
        "peer": True,
    },
    "VAE 784-200-200-50 (zoo)": {
        "class": "VAE",
        "kwargs": {"latent_dim": 50, "hidden": (200, 200), "activation": "tanh"},
        "peer": True,
    },
    "DLGM 784-200-200/200 rank-one (zoo)": {
        "class": "DLGM",
        "kwargs": {"latent_dims": (200,), "hidden": (200, 200), "covariance": "rank_one"},
        "peer": False,
    },
    "tiny VAE 784-16-2": {
        "class": "VAE",
        "kwargs": {"latent_dim": 2, "hidden": (16,), "activation": "tanh"},
        "peer": True,
    },
}

# What each mode measures. steps: batches per timed window, per batch size. A full-mode window
# is one MNIST training epoch (50,000 images), what `fit` runs between two epoch callbacks in
# real training: Keras starts each epoch with a new data iterator (45-220 ms measured on this
# CPU), which windows of a few batches would count as if it were per-step cost (the zoo VAE on
# TensorFlow, one core: 5,000 examples/s in windows of 30 batches, 10,100 in windows of 500).
PLANS = {
    "smoke": {
        "models": ["tiny VAE 784-16-2"],
        "batches": {100: 2},
        "windows": 1,
        "sample": {"examples": 100, "windows": 1},
        "log_likelihood": {"images": 1, "k": 100, "windows": 1},
        "test_set": {"preset": "vae-mnist", "images": 2, "k": 10, "windows": 1},
        "remeasure": 0,
        "scaling": {"model": "tiny VAE 784-16-2", "batch_size": 100, "steps": 2, "windows": 1},
    },
    "quick": {
        "models": ["VAE 784-200-200-50 (zoo)"],
        "batches": {100: 100},
        "windows": 3,
        "sample": {"examples": 1000, "windows": 3},
        "log_likelihood": {"images": 2, "k": 5000, "windows": 1},
        "test_set": None,
        "remeasure": 0,
        "scaling": None,
    },
    "full": {
        "models": [
            "VAE 784-500-500-50",
            "VAE 784-200-200-50 (zoo)",
            "DLGM 784-200-200/200 rank-one (zoo)",
        ],
        "batches": {100: 500, 1000: 50},
        "windows": 3,
        "sample": {"examples": 10000, "windows": 3},
        "log_likelihood": {"images": 10, "k": 5000, "windows": 2},
        # The GPU goal's evaluation; on a CPU-only machine it is not run (16 min on 2 cores).
        "test_set": {
            "preset": "vae-mnist",
            "images": 10_000,
            "k": 5000,
            "windows": 1,
            "gpu_only": True,
        },
        "remeasure": 100,
        "scaling": {
            "model": "VAE 784-200-200-50 (zoo)",
            "batch_size": 1000,
            "steps": 50,
            "windows": 3,
        },
    },
}

# The backends the scaling table runs (one process per backend and device count).
SCALING_VARIANTS = ("tensorflow", "jax")

# The Keras variants, one subprocess each.
VARIANTS = {
    "tensorflow": {"backend": "tensorflow", "jit_compile": False},
    "tensorflow-xla": {"backend": "tensorflow", "jit_compile": True},
    "jax": {"backend": "jax", "jit_compile": "auto"},
}

# Published log-likelihoods (nats, MNIST test set) for the presets that follow a paper.
PUBLISHED = {
    "vae-mnist": (-86.76, "Burda et al. 2015, table 1: VAE, 1 stochastic layer, k = 1"),
    "dlgm-mnist": (-86.60, "Rezende et al. 2014, table 2: DLGM, rank-one q"),
    "iwae-mnist": (-82.90, "Burda et al. 2015, table 1: IWAE, 2 stochastic layers, k = 50"),
    "lvae-mnist": (-81.74, "Sønderby et al. 2016, table 1: LVAE, 5 layers, IW k = 10"),
}

# FP32 (non-tensor-core) peaks, TFLOP/s, for the physical-limit column on a GPU.
GPU_PEAK_TFLOPS = {
    "H200": 66.9,
    "H100 SXM": 66.9,
    "H100 PCIe": 51.2,
    "H100": 66.9,
    "A100": 19.5,
    "L4": 30.3,
    "V100": 15.7,
    "T4": 8.1,
}

PEER_VARIANTS = {"torch-eager": False, "torch-compile": True}
GOAL_PEER_RATIO_DEFAULT = 1.0
GOAL_PEER_RATIO_FASTEST = 1.4
GOAL_OVERHEAD = 0.10
# On the GPU machine: training at this batch against torch.compile, and L_5000 of vae-mnist
# on the whole test set within this many seconds.
GOAL_GPU_BATCH = 1000
GOAL_GPU_PEER_RATIO = 1.4
GOAL_TEST_SET_SECONDS = 10.0


# -- the parent: plan, subprocesses, report ---------------------------------------------------


def main(argv=None, prog="benchmarks/run.py"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CI's smoke run: < 3 min on 2 cores")
    mode.add_argument("--smoke", action="store_true", help="seconds: active backend, tiny model")
    parser.add_argument("--out", type=pathlib.Path, default=BENCHMARKS / "results")
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all; --smoke: active)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
    parser.add_argument(
        "--remeasure",
        type=int,
        default=None,
        help="re-measure each preset on this many test images (full mode default 100; 0: off)",
    )
    parser.add_argument("--windows", type=int, default=None, help="timed training windows")
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="Keras' compile(steps_per_execution=N) for the training windows (default: 1, "
        "Keras' own default)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="time budget of the whole run: a measurement still running when it is spent is "
        "stopped, and what was measured before it is kept (the results say so)",
    )
    parser.add_argument(
        "--report", type=pathlib.Path, help="re-derive and re-write the report of a results JSON"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(json.loads(args.worker))
    if args.report:
        write(json.loads(args.report.read_text(encoding="utf-8")), args.report)
        return 0

    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = dict(PLANS[mode_name])
    if args.remeasure is not None:
        plan["remeasure"] = args.remeasure
    if args.windows is not None:
        plan["windows"] = args.windows
    if args.steps_per_execution < 1:
        parser.error(f"--steps-per-execution must be >= 1, got {args.steps_per_execution}")
    plan["steps_per_execution"] = args.steps_per_execution
    if args.variants:
        variants = args.variants.split(",")
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            parser.error(f"--variants: unknown {unknown}; expected some of {list(VARIANTS)}")
    elif args.smoke:
        variants = [os.environ.get("KERAS_BACKEND", "tensorflow")]
    else:
        variants = list(VARIANTS)

    started = time.perf_counter()
    device = detect_device()
    if (plan.get("test_set") or {}).get("gpu_only") and not device["gpu"]:
        plan["test_set"] = None
    stem = f"{device['slug']}-{datetime.date.today().isoformat()}"
    stem += "" if mode_name == "full" else f"-{mode_name}"
    results = {
        "command": " ".join(["python benchmarks/run.py", *map(shlex.quote, argv)]),
        "mode": mode_name,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device,
        "python": platform.python_version(),
        "plan": {**plan, "batches": {str(b): s for b, s in plan["batches"].items()}},
        "load_average_start": os.getloadavg(),
        "variants": {},
        "peer": {},
        "zoo": None,
    }
    budget = Budget(started, args.max_seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stem}.json"
    for i, name in enumerate(variants):
        spec = {"kind": "keras", "variant": name, **VARIANTS[name], "plan": plan}
        spec["zoo"] = i == 0  # the likelihood table, once, by the first variant's process
        print(f"[bench] {name} ...", flush=True)
        env = {"KERAS_BACKEND": VARIANTS[name]["backend"]}
        results["variants"][name] = _run_child(spec, env, budget)
        if spec["zoo"]:
            results["zoo"] = results["variants"][name].pop("zoo", None)
        _save(results, path, started, complete=False)
    results["peer"] = _run_peer(plan, skip=args.smoke or args.no_peer, budget=budget)
    _save(results, path, started, complete=False)
    backends = [b for b in SCALING_VARIANTS if b in {VARIANTS[v]["backend"] for v in variants}]
    results["scaling"] = _run_scaling(plan, device, backends, budget)
    _save(results, path, started, complete=True)
    return 0


class Budget:
    """The run's time budget (`--max-seconds`; None: unlimited): what a child may still take."""

    def __init__(self, started: float, seconds: float | None):
        self.seconds = seconds
        self.deadline = None if seconds is None else started + seconds

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.perf_counter()

    def spent(self) -> bool:
        left = self.left()
        return left is not None and left <= 0


def _save(results: dict, path: pathlib.Path, started: float, complete: bool):
    """Writes the results so far, so that a run stopped from outside still leaves them."""
    results["load_average_end"] = os.getloadavg()
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["complete"] = complete
    write(results, path, quiet=not complete)


def write(results: dict, json_path: pathlib.Path, quiet: bool = False):
    """Derives the ratios and goals, and writes the JSON, the Markdown and the chart."""
    results["derived"] = derive(results)
    results["goals"] = goals(results)
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md_path = json_path.with_suffix(".md")
    md_path.write_text(report.markdown(results), encoding="utf-8")
    png = report.training_chart(results, json_path.with_name(f"{json_path.stem}-training.png"))
    print(f"[bench] wrote {json_path}, {md_path}" + (f", {png}" if png else ""), flush=True)
    if not quiet:
        print(report.markdown(results))


def _run_child(spec, env, budget=None):
    """Runs `spec` in a fresh interpreter with `env`; returns its JSON (or the error). A child
    still running when `budget` is spent is stopped; the measurements it had saved are kept."""
    if budget is not None and budget.spent():
        return {"error": f"not run: the --max-seconds budget ({budget.seconds:.0f} s) was spent"}
    left = None if budget is None else budget.left()
    with tempfile.TemporaryDirectory() as folder:
        output = pathlib.Path(folder) / "result.json"
        spec = {**spec, "output": str(output)}
        started = time.perf_counter()
        command = [sys.executable, str(BENCHMARKS / "run.py"), "--worker", json.dumps(spec)]
        env = {**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            seconds = round(time.perf_counter() - started, 1)
            stopped = f"stopped after {seconds} s: the --max-seconds budget ran out"
            print(f"[bench] {stopped}", file=sys.stderr, flush=True)
            if not output.is_file():
                return {"error": stopped, "seconds": seconds}
            return {**json.loads(output.read_text(encoding="utf-8")), "stopped": stopped}
        seconds = round(time.perf_counter() - started, 1)
        if process.returncode or not output.is_file():
            tail = (process.stderr or process.stdout)[-2000:]
            print(f"[bench] failed ({process.returncode}): {tail}", file=sys.stderr)
            return {"error": f"exit status {process.returncode}: {tail}", "seconds": seconds}
        result = json.loads(output.read_text(encoding="utf-8"))
        result["process_seconds"] = seconds
        return result


def _run_peer(plan, skip, budget=None):
    if skip:
        return {"status": "skipped (--smoke or --no-peer)"}
    if importlib.util.find_spec("torch") is None:
        return {"status": "not installed (pip install -e '.[bench]')"}
    print("[bench] torch peer ...", flush=True)
    result = _run_child({"kind": "torch", "plan": plan}, {}, budget)
    status = "failed" if "error" in result else result.get("stopped", "measured")
    result.setdefault("status", status)
    return result


def scaling_device_counts(device: dict) -> tuple[list[int], bool, str]:
    """The device counts the scaling table runs, whether they are virtual CPU devices, and
    what the figures mean on this machine."""
    gpus = device.get("gpu_count") or 0
    if gpus >= 2:
        counts = sorted({1, gpus} | {2**i for i in range(1, gpus.bit_length()) if 2**i <= gpus})
        return counts, False, f"{gpus} GPUs: a real scaling figure (one process, {gpus} devices)."
    if gpus == 1:
        return (
            [1],
            False,
            (
                "One GPU: no scaling figure (splitting one GPU logically measures nothing useful); "
                "the row is the single-device baseline."
            ),
        )
    return (
        [1, 2],
        True,
        (
            "No accelerator: 2 virtual CPU devices share the same cores, so this shows the "
            "data-parallel machinery's cost, not a speed-up."
        ),
    )


def _run_scaling(plan, device, backends, budget=None):
    """Training throughput against the number of devices, one process per count."""
    settings = plan.get("scaling")
    if not settings or not backends:
        return {"status": "not run in this mode"}
    counts, virtual, meaning = scaling_device_counts(device)
    runs = []
    for backend in backends:
        for devices in counts:
            print(f"[bench] scaling: {backend} on {devices} device(s) ...", flush=True)
            spec = {"kind": "scaling", "devices": devices, "virtual": virtual, **settings}
            entry = _run_child(spec, {"KERAS_BACKEND": backend}, budget)
            runs.append({"backend": backend, "devices": devices, "virtual": virtual, **entry})
    for run in runs:
        base = next(r for r in runs if r["backend"] == run["backend"] and r["devices"] == 1)
        if "examples_per_second" in run and "examples_per_second" in base:
            run["speed_up"] = run["examples_per_second"] / base["examples_per_second"]
    return {"status": "measured", "meaning": meaning, "settings": settings, "runs": runs}


def detect_device() -> dict:
    """The machine the run measures: the GPU (nvidia-smi) if there is one, else the CPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count()
    device = {"cpu": cpu, "cpu_cores": cores, "gpu": None, "gpu_count": 0}
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split("\n")
        names = [n.strip() for n in names if n.strip()]
        device["gpu"] = names[0] if names else None
        device["gpu_count"] = len(names)
    except (OSError, subprocess.SubprocessError):
        pass
    name = device["gpu"] or f"cpu-{cores}cores"
    device["name"] = device["gpu"] or f"{cpu} ({cores} cores)"
    device["slug"] = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    device["peak_tflops_fp32"] = _gpu_peak(device["gpu"])
    return device


def _gpu_peak(gpu):
    if not gpu:
        return None
    for key, peak in GPU_PEAK_TFLOPS.items():  # most specific first
        if all(word in gpu for word in key.split()):
            return peak
    return None


# -- derived figures and goals ----------------------------------------------------------------


def _training_rows(results):
    """(model, batch, variant, examples/s, flops/example) for every training measurement."""
    rows = []
    for variant, result in results["variants"].items():
        for entry in result.get("train", []):
            if "examples_per_second" in entry:
                rows.append((entry["model"], entry["batch_size"], variant, entry))
    return rows


def derive(results):
    """Ratios to the peer and to the minimal Keras VAE, and FLOP/s, per training row."""
    peer = {
        (e["model"], e["batch_size"], e["variant"]): e
        for e in results["peer"].get("train", [])
        if "examples_per_second" in e
    }
    peak = results["device"].get("peak_tflops_fp32")
    rows = []
    for model, batch, variant, entry in _training_rows(results):
        speed = entry["examples_per_second"]
        row = {
            "model": model,
            "batch_size": batch,
            "variant": variant,
            "examples_per_second": speed,
            "best_examples_per_second": entry.get("best_examples_per_second"),
        }
        for name in PEER_VARIANTS:
            if (model, batch, name) in peer:
                theirs = peer[(model, batch, name)]
                row[f"vs_{name}"] = speed / theirs["examples_per_second"]
                if theirs.get("best_examples_per_second") and row["best_examples_per_second"]:
                    best = row["best_examples_per_second"] / theirs["best_examples_per_second"]
                    row[f"best_vs_{name}"] = best
        minimal = entry.get("minimal_examples_per_second")
        if minimal:
            row["overhead"] = minimal / speed - 1.0
        row["gflops"] = speed * entry["train_flops_per_example"] / 1e9
        if peak:
            row["fraction_of_peak"] = row["gflops"] / (peak * 1e3)
        rows.append(row)
    return rows


def goals(results):
    """Each goal: met / missed / not measured, with the figures behind it."""
    rows = [r for r in results["derived"] if r["model"] in _peer_models()]
    default = _default_tensorflow_variant(results)
    out = []

    on_default = [r for r in rows if r["variant"] == default and "vs_torch-eager" in r]
    out.append(
        _goal(
            f"training throughput of the shipped VAE on the default backend ({default}) "
            f">= PyTorch eager",
            [
                (_labelled(f"{r['model']}, batch {r['batch_size']}", _best(r)), r["vs_torch-eager"])
                for r in on_default
            ],
            lambda ratio: ratio >= GOAL_PEER_RATIO_DEFAULT,
            lambda ratio: f"{ratio:.2f}x the peer",
        )
    )
    out.append(
        _goal(
            f"fastest backend >= {GOAL_PEER_RATIO_FASTEST}x PyTorch eager",
            _fastest(rows, "torch-eager"),
            lambda ratio: ratio >= GOAL_PEER_RATIO_FASTEST,
            lambda ratio: f"{ratio:.2f}x the peer",
        )
    )
    out.append(
        _goal(
            f"overhead over the minimal Keras VAE < {GOAL_OVERHEAD:.0%}",
            [
                (f"{r['model']}, batch {r['batch_size']}, {r['variant']}", r["overhead"])
                for r in rows
                if "overhead" in r
            ],
            lambda overhead: overhead < GOAL_OVERHEAD,
            lambda overhead: f"{overhead:+.1%}",
        )
    )
    gpu = results["device"].get("gpu")
    why_not = None if gpu else "no GPU in this run"
    at_batch = [r for r in rows if r["batch_size"] == GOAL_GPU_BATCH] if gpu else []
    out.append(
        _goal(
            f"on the GPU, fastest backend >= {GOAL_GPU_PEER_RATIO}x torch.compile at batch "
            f"{GOAL_GPU_BATCH}",
            _fastest(at_batch, "torch-compile"),
            lambda ratio: ratio >= GOAL_GPU_PEER_RATIO,
            lambda ratio: f"{ratio:.2f}x the peer",
            why_not,
        )
    )
    test_set = PLANS["full"]["test_set"]
    whole = [
        (f"{variant}, {e['data']}", e["seconds"])
        for variant, result in (results["variants"].items() if gpu else ())
        for e in result.get("log_likelihood", [])
        if e.get("preset") == test_set["preset"]
        and (e["images"], e["k"]) == (test_set["images"], test_set["k"])
        and "seconds" in e
    ]
    out.append(
        _goal(
            f"on the GPU, L_{test_set['k']} of {test_set['preset']} on the "
            f"{test_set['images']:,} test images in < {GOAL_TEST_SET_SECONDS:.0f} s",
            whole,
            lambda seconds: seconds < GOAL_TEST_SET_SECONDS,
            lambda seconds: f"{seconds:.1f} s",
            why_not,
        )
    )
    return out


def _fastest(rows, peer):
    """(case, ratio to `peer`) of the fastest variant for each model and batch of `rows`."""
    fastest = {}
    for r in rows:
        key, ratio = (r["model"], r["batch_size"]), r.get(f"vs_{peer}")
        if ratio is not None and (key not in fastest or ratio > fastest[key][1]):
            fastest[key] = ((r["variant"], _best(r, peer)), ratio)
    return [
        (_labelled(f"{m}, batch {b}", *notes), ratio) for (m, b), (notes, ratio) in fastest.items()
    ]


def _best(row, peer="torch-eager"):
    """The ratio of the fastest windows, a check on the medians when the machine is loaded."""
    best = row.get(f"best_vs_{peer}")
    return None if best is None else f"fastest windows {best:.2f}x"


def _labelled(case, *notes):
    """`case (note; note)`, leaving out the notes that are None."""
    notes = [n for n in notes if n]
    return f"{case} ({'; '.join(notes)})" if notes else case


def _goal(name, cases, passes, describe, why_not=None):
    if not cases:
        status = "not measured" + (f" ({why_not})" if why_not else "")
        return {"goal": name, "status": status, "cases": []}
    cases = [
        {"case": case, "value": value, "met": bool(passes(value)), "text": describe(value)}
        for case, value in cases
    ]
    met = sum(c["met"] for c in cases)
    status = "met" if met == len(cases) else "missed" if met == 0 else f"met in {met}/{len(cases)}"
    return {"goal": name, "status": status, "cases": cases}


def _peer_models():
    return {name for name, model in MODELS.items() if model["peer"]}


def _default_tensorflow_variant(results):
    """The variant matching TensorFlow's default `jit_compile` ("auto" resolved)."""
    for result in results["variants"].values():
        auto = result.get("tensorflow_auto_jit_compile")
        if auto is not None:
            return "tensorflow-xla" if auto else "tensorflow"
    return "tensorflow"


# -- the workers: one backend (or the peer) per process ---------------------------------------


def _worker(spec):
    plan = spec.get("plan", {})
    plan["batches"] = {int(b): s for b, s in plan.get("batches", {}).items()}
    output = pathlib.Path(spec["output"])

    def save(result):
        """Writes the measurements so far (whole or not at all), so that a worker stopped by
        the run's time budget leaves them behind."""
        partial = output.with_name(output.name + ".partial")
        partial.write_text(json.dumps(result), encoding="utf-8")
        partial.replace(output)

    if spec["kind"] == "scaling":
        result = _scaling_worker(spec)
    elif spec["kind"] == "torch":
        result = _torch_worker(plan, save)
    else:
        result = _keras_worker(spec, plan, save)
    save(result)
    return 0


def _binary_data(rows, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.random((rows, 784)) < 0.5).astype("float32")


def _median_rate(count, times):
    return count / statistics.median(times)


def _torch_worker(plan, save):
    from peers import torch_vae

    result = {"versions": torch_vae.versions(), "train": []}
    import torch

    result["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    for model in plan["models"]:
        if not MODELS[model]["peer"]:
            continue
        kwargs = MODELS[model]["kwargs"]
        for batch, steps in plan["batches"].items():
            for variant, compile in PEER_VARIANTS.items():
                entry = {"model": model, "batch_size": batch, "variant": variant}
                entry["load_average_before"] = os.getloadavg()
                try:
                    entry.update(
                        torch_vae.measure(
                            kwargs["latent_dim"],
                            kwargs["hidden"],
                            kwargs["activation"],
                            batch,
                            steps,
                            plan["windows"],
                            compile,
                        )
                    )
                except Exception as error:  # a failed measurement is a result, not a crash
                    entry["error"] = f"{type(error).__name__}: {error}"
                entry["load_average_after"] = os.getloadavg()
                result["train"].append(entry)
                save(result)
    return result


def _keras_worker(spec, plan, save):
    import keras

    import tfdlgm

    result = {
        "backend": keras.backend.backend(),
        "jit_compile": spec["jit_compile"],
        "steps_per_execution": plan["steps_per_execution"],
        "versions": _versions(),
        "accelerator": _accelerator(),
        "train": [],
        "sample": [],
        "log_likelihood": [],
    }
    if result["backend"] == "tensorflow":
        probe = _build(tfdlgm, "tiny VAE 784-16-2")
        probe.compile(optimizer="adam")
        result["tensorflow_auto_jit_compile"] = bool(probe.jit_compile)
    if plan.get("test_set") and spec["jit_compile"] is not True:
        # The GPU goal's evaluation first, so that a run stopped by its budget still has it.
        result["log_likelihood"].append(_time_test_set(plan["test_set"]))
        save(result)
    for name in plan["models"]:
        for batch, steps in plan["batches"].items():
            entry = {"model": name, "batch_size": batch, "steps_per_window": steps}
            entry["load_average_before"] = os.getloadavg()
            try:
                model = _build(tfdlgm, name)
                entry.update(_flops(model))
                fit = (steps, plan["windows"], spec["jit_compile"], plan["steps_per_execution"])
                models = [model]
                if MODELS[name]["class"] == "VAE":  # timed in turns with ours
                    models.append(_build_minimal(name))
                ours, *minimal = _time_fit(models, batch, *fit)
                entry.update(ours)
                if minimal:
                    entry["minimal_examples_per_second"] = minimal[0]["examples_per_second"]
                    entry["minimal_window_seconds"] = minimal[0]["window_seconds"]
            except Exception as error:
                entry["error"] = f"{type(error).__name__}: {error}"
            entry["load_average_after"] = os.getloadavg()
            result["train"].append(entry)
            save(result)
    if spec["jit_compile"] is not True:  # neither depends on fit's jit_compile
        for name in plan["models"]:
            model = _build(tfdlgm, name)
            result["sample"].append(_time_sample(model, name, plan["sample"]))
            settings = plan["log_likelihood"]
            result["log_likelihood"].append(_time_log_likelihood(model, name, settings))
            save(result)
    if spec.get("zoo"):
        result["zoo"] = _zoo_table(plan["remeasure"])
    return result


def _scaling_worker(spec):
    """`fit` examples/s at one global batch on `spec["devices"]` devices: one device without a
    block, more inside `tfdlgm.distribute.data_parallel` (the global batch split across them).
    Virtual CPU devices are made first, before the backend starts."""
    import contextlib

    import keras

    import tfdlgm

    devices = spec["devices"]
    if spec["virtual"] and devices > 1:
        tfdlgm.distribute.virtual_cpu_devices(devices)
    block = tfdlgm.distribute.data_parallel(devices) if devices > 1 else contextlib.nullcontext()
    with block as engine:
        model = _build(tfdlgm, spec["model"])
        (entry,) = _time_fit([model], spec["batch_size"], spec["steps"], spec["windows"], "auto")
        replicas = tfdlgm.distribute.num_replicas()
    return {
        "model": spec["model"],
        "batch_size": spec["batch_size"],
        "engine": "none" if engine is None else type(engine).__name__,
        "replicas": replicas,
        "accelerator": _accelerator(),
        "keras": keras.__version__,
        **entry,
    }


def _build(tfdlgm, name):
    import keras

    keras.utils.set_random_seed(0)
    model = MODELS[name]
    return getattr(tfdlgm.models, model["class"])(**model["kwargs"], seed=0)


def _build_minimal(name):
    import keras
    from peers.minimal_keras_vae import MinimalVAE

    keras.utils.set_random_seed(0)
    return MinimalVAE(**MODELS[name]["kwargs"], seed=0)


def _epoch_timer():
    """A Keras callback timing each epoch; it reads the logs, so JAX has finished the epoch."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            {key: float(value) for key, value in (logs or {}).items()}
            self.times.append(time.perf_counter() - self.start)

    return EpochTimer()


def _time_fit(models, batch_size, steps, windows, jit_compile, steps_per_execution=1):
    """Training examples/s of each of `models`: the median of `windows` epochs of `steps`
    batches after one warm-up epoch. The models take turns epoch by epoch, in an order that
    reverses every epoch (A B, B A, A B, ...), so a drift in the host's speed, or the cache one
    leaves for the next, falls on all of them alike; the timer counts each epoch only, not the
    `fit` call around it."""
    import keras

    x = _binary_data(steps * batch_size)
    timers = [_epoch_timer() for _ in models]
    for model in models:
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
    turns = list(zip(models, timers))
    for epoch in range(windows + 1):
        for model, timer in turns if epoch % 2 == 0 else turns[::-1]:
            model.fit(
                x, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[timer]
            )
    return [_fit_rates(model, timer.times, steps * batch_size) for model, timer in turns]


def _fit_rates(model, times, examples):
    windows = times[1:]
    return {
        "examples_per_second": _median_rate(examples, windows),
        "best_examples_per_second": examples / min(windows),
        "window_seconds": windows,
        "warm_up_seconds": times[0],
        "jit_compile_resolved": bool(model.jit_compile),
    }


def _time_sample(model, name, plan):
    entry = {"model": name, "examples": plan["examples"], "load_average_before": os.getloadavg()}
    try:
        model.sample(plan["examples"], seed=0)  # warm-up
        times = []
        for window in range(plan["windows"]):
            start = time.perf_counter()
            model.sample(plan["examples"], seed=window + 1)
            times.append(time.perf_counter() - start)
        entry["examples_per_second"] = _median_rate(plan["examples"], times)
        entry["window_seconds"] = times
        entry["gflops"] = entry["examples_per_second"] * _flops(model)["sample_flops"] / 1e9
    except Exception as error:
        entry["error"] = f"{type(error).__name__}: {error}"
    entry["load_average_after"] = os.getloadavg()
    return entry


def _time_log_likelihood(model, name, settings, x=None):
    """Test images/s of `model.log_likelihood` on `x` (default: random binary images)."""
    images, k = settings["images"], settings["k"]
    entry = {"model": name, "images": images, "k": k, "load_average_before": os.getloadavg()}
    try:
        x = _binary_data(images, seed=1) if x is None else x
        # Warm-up on one batch of the estimator's (100 images): JAX compiles each shape.
        model.log_likelihood(x[:100], num_samples=k, seed=0)
        times = []
        for window in range(settings["windows"]):
            start = time.perf_counter()
            model.log_likelihood(x, num_samples=k, seed=window + 1)
            times.append(time.perf_counter() - start)
        entry["images_per_second"] = _median_rate(images, times)
        entry["seconds"] = statistics.median(times)
        entry["window_seconds"] = times
        flops = _flops(model)
        per_image = k * flops["generative_flops"] + flops["recognition_flops"]
        entry["gflops"] = entry["images_per_second"] * per_image / 1e9
    except Exception as error:
        entry["error"] = f"{type(error).__name__}: {error}"
    entry["load_average_after"] = os.getloadavg()
    return entry


def _time_test_set(settings):
    """`_time_log_likelihood` for a zoo preset on the first `images` test images: the
    protocol's (fixed binarisation, seed 0) when MNIST is found, else random binary images,
    since the time does not depend on the pixels (the entry says which)."""
    from tfdlgm import zoo

    preset, images = settings["preset"], settings["images"]
    x = _test_images(images)
    data = "MNIST test images, binarised once (seed 0)"
    if x is None:
        x, data = _binary_data(images, seed=1), "random binary images (MNIST not found)"
    entry = _time_log_likelihood(zoo.load(preset, compile=False), preset, settings, x)
    return {**entry, "preset": preset, "data": data}


_RECOGNITION = ("/encoder/", "/recognition/", "/posterior")


def _flops(model):
    """Dense-layer FLOPs: 2 * in * out per example per layer forward (x3 with backward)."""
    recognition = generative = 0
    for weight in model.weights:
        if len(weight.shape) == 2:
            flops = 2 * weight.shape[0] * weight.shape[1]
            if any(part in weight.path for part in _RECOGNITION):
                recognition += flops
            else:
                generative += flops
    return {
        "train_flops_per_example": 3 * (recognition + generative),
        "recognition_flops": recognition,
        "generative_flops": generative,
        "sample_flops": generative,
    }


def _zoo_table(remeasure):
    """Every preset's recorded figures beside the published one; optionally re-measured."""
    from tfdlgm import zoo

    rows = []
    for name in zoo.list():
        preset = zoo.metadata(name)
        figures = preset["figures"]
        published, source = PUBLISHED.get(name, (None, None))
        row = {
            "preset": name,
            "class": zoo.config(name)["registered_name"].split(">")[-1],
            "epochs": preset["training"]["epochs"],
            "recorded": {
                key: figures.get(key)
                for key in ("elbo", "L_1", "L_5", "L_50", "log_likelihood", "kl", "active_units")
            },
            "log_likelihood_examples": figures.get("log_likelihood_examples"),
            "published": published,
            "published_source": source,
        }
        row["load_seconds"] = _load_seconds(zoo, name)
        if remeasure:
            row["remeasured"] = _remeasure(zoo, name, remeasure)
        rows.append(row)
    return rows


def _load_seconds(zoo, name):
    """`zoo.load(name)` wall time in this process (checksums, deserialisation, weights, the
    optimizer): the first load (it includes the backend's first compilations) and a second."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        zoo.load(name)
        times.append(round(time.perf_counter() - start, 2))
    return times


def _test_images(examples):
    """The first `examples` test images, binarised once (seed 0), or None without MNIST."""
    import numpy as np

    from tfdlgm import datasets

    try:
        datasets.load_mnist_arrays()
    except (FileNotFoundError, ValueError, OSError):
        return None
    batches = datasets.mnist("test", binarize="fixed", batch_size=examples, as_numpy=True)
    return np.asarray(next(iter(batches)))


def _remeasure(zoo, name, examples):
    from tfdlgm.evaluation import evaluate_protocol

    x = _test_images(examples)
    if x is None:
        return {"error": "MNIST not found; set TFDLGM_MNIST"}
    start = time.perf_counter()
    try:
        figures = evaluate_protocol(zoo.load(name, compile=False), x, k_examples=examples)
    except Exception as error:  # a failed re-measurement is a result, not a crash
        return {"error": f"{type(error).__name__}: {str(error)[-300:]}"}
    figures["seconds"] = round(time.perf_counter() - start, 1)
    return figures


def _versions():
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("tfdlgm", "keras", "tensorflow", "tfp-nightly", "jax", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _accelerator():
    """The device Keras runs on, as the backend names it."""
    import keras

    try:
        if keras.backend.backend() == "jax":
            import jax

            device = jax.devices()[0]
            return f"{device.platform}: {device.device_kind}"
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"gpu: {details.get('device_name', gpus[0].name)}"
        return "cpu"
    except Exception as error:  # the name is a label; never fail a run for it
        return f"unknown ({type(error).__name__})"


if __name__ == "__main__":
    sys.exit(main())
