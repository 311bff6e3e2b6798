"""Data-parallel training and evaluation (`tfdlgm.distribute`) on 2 virtual CPU devices.

The device count is fixed when a backend starts, so the checks run in new processes:
`workers/distribute_worker.py` (one process, 2 devices) and `workers/multihost_worker.py` (two
processes on loopback), each under the backend this session runs.
"""

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfdlgm

WORKERS = pathlib.Path(__file__).parent / "workers"
BACKEND = keras.backend.backend()


def _run(script, *args, timeout=600):
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, str(WORKERS / script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_devices():
    return _result(_run("distribute_worker.py"))


MODELS = [
    "vae",
    "vae-iwae",
    "vae-score-function",
    "dlgm-wake-sleep",
    "dlgm",
    "factor-analysis",
    "hierarchical-vae",
    "ladder-vae",
]


def test_the_worker_ran_every_model_on_two_devices(two_devices):
    assert two_devices["backend"] == BACKEND
    assert two_devices["devices"] == 2
    for name in MODELS:
        assert two_devices[name]["replicas"] == 2, name
        expected = "DataParallel" if BACKEND == "jax" else "MirroredStrategy"
        assert two_devices[name]["engine"] == expected


@pytest.mark.parametrize("name", MODELS)
def test_a_data_parallel_step_is_the_single_device_step(two_devices, name):
    """Same global batch, same noise: the same parameters after one SGD step (float32)."""
    result = two_devices[name]
    assert result["weights_moved"] > 1e-3  # the step did something
    assert result["step_max_abs_difference"] < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_replicas_draw_different_noise(two_devices, name):
    """One example repeated over the global batch: each replica's half gets its own noise."""
    elbo = np.array(two_devices[name]["repeated_example_elbo"])
    first, second = np.split(elbo, 2)
    assert np.all(np.abs(first - second) > 1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_sharded_log_likelihood_is_the_single_device_value(two_devices, name):
    result = two_devices[name]
    assert result["log_likelihood_max_abs_difference"] < 1e-4
    assert result["odd_batch_shape"] == [7]  # padded to the devices, padding dropped
    assert result["odd_batch_finite"]


def _free_ports(count):
    """A base port whose next `count` ports are free on loopback now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for offset in range(count):
                with socket.socket() as s:
                    s.bind(("localhost", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no free loopback ports")


def test_two_processes_train_one_model_together():
    port = _free_ports(2)
    processes = [_run("multihost_worker.py", i, port) for i in range(2)]
    try:
        results = [_result(p, timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert [r["process"] for r in results] == [0, 1]
    for r in results:
        assert r["replicas"] == 2
        assert np.all(np.isfinite(r["loss"]))
        assert r["loss"][1] < r["loss"][0]
    assert results[0]["weights_sum"] == pytest.approx(results[1]["weights_sum"], abs=1e-5)
    assert results[0]["weights_norm"] == pytest.approx(results[1]["weights_norm"], abs=1e-5)


def test_outside_a_block_there_is_one_replica():
    assert tfdlgm.distribute.num_replicas() == 1


@pytest.mark.parametrize("devices", [0, -1, 99, True, "cpu:0", [], [0], 1.5])
def test_bad_devices_are_named(devices):
    with pytest.raises(ValueError, match="`devices`"):
        with tfdlgm.distribute.data_parallel(devices):
            pass


def test_devices_with_multi_worker_are_refused():
    with pytest.raises(ValueError, match=r"`devices` must be None with `multi_worker=True`.*=2"):
        with tfdlgm.distribute.data_parallel(2, multi_worker=True):
            pass


def test_virtual_devices_after_the_backend_started_is_a_clear_error():
    keras.ops.convert_to_numpy(keras.ops.ones(2))  # the backend runs
    with pytest.raises(RuntimeError, match="came too late"):
        tfdlgm.distribute.virtual_cpu_devices(3)


@pytest.mark.parametrize("count", [0, -2, True, 2.0])
def test_virtual_devices_count_must_be_positive_int(count):
    with pytest.raises(ValueError, match="`count`"):
        tfdlgm.distribute.virtual_cpu_devices(count)


def test_one_device_block_trains_like_no_block():
    """`data_parallel(1)`: the engine is in place and nothing changes."""
    x = (np.random.default_rng(0).uniform(size=(16, 6)) < 0.5).astype("float32")

    def step(block):
        with block:
            keras.utils.set_random_seed(0)
            model = tfdlgm.models.VAE(latent_dim=2, hidden=(4,), data_dim=6, seed=0)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)
            return [np.asarray(w) for w in model.trainable_weights]

    for a, b in zip(step(contextlib.nullcontext()), step(tfdlgm.distribute.data_parallel(1))):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_eval_devices_option(mnist_path):
    """`tfdlgm eval --devices 2`: the one-device table on 2 devices (JAX: 2 virtual CPUs);
    where the process has one device, an error naming `devices`."""
    command = [sys.executable, "-m", "tfdlgm.cli", "eval", "vae-mnist", "--examples", "20"]
    command += ["--k", "10"]
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "TFDLGM_MNIST": str(mnist_path)}
    one = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    if BACKEND == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    two = subprocess.run(
        [*command, "--devices", "2"], env=env, capture_output=True, text=True, timeout=300
    )
    if BACKEND == "jax":
        assert two.returncode == 0, two.stderr[-2000:]
        assert two.stdout == one.stdout
    else:
        assert two.returncode == 1
        assert "`devices` asks for 2 devices" in two.stderr


def test_train_devices_option(tmp_path, mnist_path):
    """`tfdlgm train --devices 2` trains and saves a model (JAX: 2 virtual CPUs); where the
    process has one device, an error naming `devices`."""
    output = tmp_path / "tiny.keras"
    command = [sys.executable, "-m", "tfdlgm.cli", "train", "--model", "vae", "--hidden", "8"]
    command += ["--latent-dims", "2", "--train-examples", "200", "--epochs", "1"]
    command += ["--batch-size", "50", "--devices", "2", "--output", str(output)]
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "TFDLGM_MNIST": str(mnist_path)}
    if BACKEND == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if BACKEND == "jax":
        assert run.returncode == 0, run.stderr[-2000:]
        model = keras.saving.load_model(output)
        assert model.latent_dims == (2,)
        assert np.isfinite(model.elbo(np.zeros((3, 784), "float32"))).all()
    else:
        assert run.returncode == 1
        assert "`devices` asks for 2 devices" in run.stderr
        assert not output.exists()
