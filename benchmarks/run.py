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

The suite is three modules: this one orchestrates (the plan of each mode, one subprocess per
Keras variant, the peer and the scaling runs, the time budget, the report files);
`benchmarks/workers.py` holds the measured jobs, one per process, and says what each
measures; `benchmarks/goals.py` derives the ratios and judges the goals; `benchmarks/report.py`
writes the Markdown and the chart.

Each Keras variant runs in its own subprocess with `KERAS_BACKEND` set: TensorFlow with
`jit_compile=False`, TensorFlow with `jit_compile=True` (XLA), and JAX (jit-compiled, as Keras
always does on JAX); the PyTorch peer (`benchmarks/peers/torch_vae.py`, eager and
`torch.compile`) runs in one more, and each data-parallel scaling run in one of its own. They
measure training, sampling and log-likelihood throughput, achieved GFLOP/s, data-parallel
scaling and the likelihood table (`workers.py`); the goals are judged on those figures
(`goals.py`).

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
import subprocess
import sys
import tempfile
import time

BENCHMARKS = pathlib.Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:  # `tfdlgm bench` runs this file with runpy
    sys.path.insert(0, str(BENCHMARKS))

import goals  # noqa: E402  (benchmarks/goals.py, after the path is set)
import report  # noqa: E402  (benchmarks/report.py)

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
        "test_set": {**goals.GPU_TEST_SET, "windows": 1, "gpu_only": True},
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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
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
    results["derived"] = goals.derive(results)
    results["goals"] = goals.goals(results)
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
        command = [sys.executable, str(BENCHMARKS / "workers.py"), json.dumps(spec)]
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


if __name__ == "__main__":
    sys.exit(main())
