"""The measured jobs of the benchmark suite, one per process: a Keras variant, the PyTorch
peer, or one data-parallel scaling run.

`benchmarks/run.py` starts each in a fresh interpreter, with `KERAS_BACKEND` set, as

```bash
python benchmarks/workers.py SPEC    # SPEC: JSON, e.g. {"kind": "keras", "variant": "jax", ...}
```

where `kind` is `keras`, `torch` or `scaling` and `run.py` builds the rest of the spec from
its plan (`run.PLANS`); the job writes its measurements to the spec's `output` file as it goes, so
that a job stopped by the run's time budget leaves what it had measured.

What it measures. Each Keras variant runs in a process of its own with `KERAS_BACKEND` set:
TensorFlow with `jit_compile=False`, TensorFlow with `jit_compile=True` (XLA), and JAX
(jit-compiled, as Keras always does on JAX); the PyTorch peer (`benchmarks/peers/torch_vae.py`,
eager and `torch.compile`) runs in one more. Every figure is the median of repeated timed
windows after a warm-up window (compilation excluded), with every window's time and
`os.getloadavg()` recorded beside it:

* training examples/s: `model.fit` on in-memory binary data (`shuffle=False`, Adam 1e-3), one
  window = one epoch of `steps` batches (in full mode one MNIST epoch, 50,000 images, so the
  per-epoch cost counts as much as in real training; see `run.PLANS`), for the VAE 784-500-500-50
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

"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import sys
import time

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

# Published log-likelihoods (nats, MNIST test set) for the presets that follow a paper.
PUBLISHED = {
    "vae-mnist": (-86.76, "Burda et al. 2015, table 1: VAE, 1 stochastic layer, k = 1"),
    "dlgm-mnist": (-86.60, "Rezende et al. 2014, table 2: DLGM, rank-one q"),
    "iwae-mnist": (-82.90, "Burda et al. 2015, table 1: IWAE, 2 stochastic layers, k = 50"),
    "lvae-mnist": (-81.74, "Sønderby et al. 2016, table 1: LVAE, 5 layers, IW k = 10"),
}

PEER_VARIANTS = {"torch-eager": False, "torch-compile": True}


def main(argv=None):
    """Runs the job `argv[0]` (a JSON spec from `run.py`) and writes its result to the spec's
    `output` file."""
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
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


def binary_data(rows, seed=0):
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
        probe = build(tfdlgm, "tiny VAE 784-16-2")
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
                model = build(tfdlgm, name)
                entry.update(_flops(model))
                fit = (steps, plan["windows"], spec["jit_compile"], plan["steps_per_execution"])
                models = [model]
                if MODELS[name]["class"] == "VAE":  # timed in turns with ours
                    models.append(build_minimal(name))
                ours, *minimal = time_fit(models, batch, *fit)
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
            model = build(tfdlgm, name)
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
        model = build(tfdlgm, spec["model"])
        (entry,) = time_fit([model], spec["batch_size"], spec["steps"], spec["windows"], "auto")
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


def build(tfdlgm, name):
    import keras

    keras.utils.set_random_seed(0)
    model = MODELS[name]
    return getattr(tfdlgm.models, model["class"])(**model["kwargs"], seed=0)


def build_minimal(name):
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


def time_fit(models, batch_size, steps, windows, jit_compile, steps_per_execution=1):
    """Training examples/s of each of `models`: the median of `windows` epochs of `steps`
    batches after one warm-up epoch. The models take turns epoch by epoch, in an order that
    reverses every epoch (A B, B A, A B, ...), so a drift in the host's speed, or the cache one
    leaves for the next, falls on all of them alike; the timer counts each epoch only, not the
    `fit` call around it."""
    import keras

    x = binary_data(steps * batch_size)
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
        x = binary_data(images, seed=1) if x is None else x
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
        x, data = binary_data(images, seed=1), "random binary images (MNIST not found)"
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
