"""Data parallelism on the engines Keras and TensorFlow already provide.

```python
with tfdlgm.distribute.data_parallel():        # every local GPU (else CPU); or devices=2
    model = tfdlgm.zoo.load("vae-mnist")        # build (or load) and compile inside the block
    model.fit(tfdlgm.datasets.mnist("train", batch_size=200), epochs=5)
    model.log_likelihood(x_test)                # examples split across the devices
```

Under JAX the block sets `keras.distribution.DataParallel` as Keras' distribution: variables
are replicated, every batch is split along its first axis, and a step is one SPMD program
over the global batch. So the loss is the mean over the global batch, and the noise is the
noise one device would draw for that batch (JAX's partitionable threefry), split across the
devices: no two replicas draw the same noise, and a data-parallel step equals the
single-device step.

Under TensorFlow the block is a `tf.distribute.MirroredStrategy` scope: each replica runs
the step on its part of the batch and the strategy sums the replicas' gradients. So
`LatentModel.compute_loss` divides each replica's sum of per-example losses by the global
number of examples (`backend.global_mean`), and each replica folds its index into the seeds
it draws from the model's shared random stream (`backend.tfp_seed`): replica r draws the noise
one device would draw with its seeds folded with r. Batch normalisation (the Ladder VAE)
keeps per-replica batch statistics there, as Keras' `BatchNormalization` does.

`LatentModel.elbo`, `iwae_bound` and `log_likelihood` run inside the block split across the
devices (`backend.compile_model_function`); the streaming log-mean-exp over the k samples is
unchanged, each device holding its examples' running sums.

Several hosts: see the README ("Scaling out"): JAX's `jax.distributed.initialize` then this
block on each process; TensorFlow's `MultiWorkerMirroredStrategy` with `TF_CONFIG`.

To try it on one CPU, split the CPU into virtual devices first: `virtual_cpu_devices(2)`
before anything runs on the backend (`XLA_FLAGS=--xla_force_host_platform_device_count=2`
for JAX, logical devices for TensorFlow).
"""

import contextlib
import functools
import os

import keras

from tfdlgm import backend

_JAX_HOST_DEVICES = "--xla_force_host_platform_device_count"


@contextlib.contextmanager
def data_parallel(devices=None, multi_worker=False):
    """A block in which models are built, trained and evaluated data-parallel.

    Args:
        devices: None (every accelerator, else every CPU device), an int (the first that
            many of those) or a list of device names (`"gpu:0"`, `"/gpu:1"`...). Under JAX
            after `keras.distribution.initialize`, the devices of every process.
        multi_worker: bool, TensorFlow only: a `MultiWorkerMirroredStrategy` over the
            workers `TF_CONFIG` names (each worker's local devices) instead of one process's
            `MirroredStrategy`. Defaults to `False`.

    Yields:
        The engine: `keras.distribution.DataParallel` (JAX) or
        `tf.distribute.MirroredStrategy` (TensorFlow).
    """
    if backend.name == "tensorflow" and multi_worker:
        if devices is not None:
            raise ValueError(
                "`devices` must be None with `multi_worker=True`: each worker uses its local "
                f"devices and TF_CONFIG names the workers. Received: devices={devices!r}"
            )
        engine = _multi_worker_strategy()
        with engine.scope():
            yield engine
        return
    devices = _devices(devices)
    if backend.name == "jax":
        previous = keras.distribution.distribution()
        engine = keras.distribution.DataParallel(devices=devices)
        # several processes: each feeds its own examples (NumPy batches cannot be auto-sharded)
        engine.auto_shard_dataset = False
        keras.distribution.set_distribution(engine)
        try:
            yield engine
        finally:
            keras.distribution.set_distribution(previous)
    else:
        engine = _mirrored_strategy(tuple(devices))
        with engine.scope():
            yield engine


@functools.cache
def _mirrored_strategy(devices):
    """One `MirroredStrategy` per set of devices for the process: strategies created anew
    for each block would reuse the collective ops' instance keys of earlier ones."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


@functools.cache
def _multi_worker_strategy():
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def num_replicas():
    """How many devices the active data-parallel block splits batches over (1 outside one)."""
    return backend.num_replicas()


def virtual_cpu_devices(count):
    """Splits the host CPU into `count` devices, for data parallelism on one machine.

    Call it before the backend runs anything (JAX reads `XLA_FLAGS` when it starts its CPU
    client; TensorFlow fixes its devices when its runtime starts).

    Raises:
        RuntimeError: when the backend has started already with another device count.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"`count` must be a positive int. Received: count={count!r}")
    if backend.name == "jax":
        saved = os.environ.get("XLA_FLAGS")
        flags = [f for f in (saved or "").split() if _JAX_HOST_DEVICES not in f]
        os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_JAX_HOST_DEVICES}={count}"])
        import jax

        found = len(jax.devices("cpu"))
        if found != count and saved is None:  # too late: leave the environment as it was
            del os.environ["XLA_FLAGS"]
        elif found != count:
            os.environ["XLA_FLAGS"] = saved
    else:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError:
            pass  # already initialised: the check below says whether as asked
        found = len(tf.config.list_logical_devices("CPU"))
    if found != count:
        raise RuntimeError(
            f"virtual_cpu_devices({count}) came too late: the {backend.name} backend already "
            f"runs with {found} CPU device(s). Call it first thing in the process (before any "
            "model is built or tensor computed), or start the process with "
            + (
                f"XLA_FLAGS={_JAX_HOST_DEVICES}={count}."
                if backend.name == "jax"
                else "the logical devices configured."
            )
        )


def _devices(devices):
    available = _local_devices()
    if devices is None:
        return available
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"`devices` asks for {devices} devices; this process has {len(available)}: "
                f"{available}. To split one CPU, call tfdlgm.distribute.virtual_cpu_devices(N) "
                f"first, or (JAX) set XLA_FLAGS={_JAX_HOST_DEVICES}=N."
            )
        return available[:devices]
    if isinstance(devices, (list, tuple)) and devices and all(isinstance(d, str) for d in devices):
        return list(devices)
    raise ValueError(
        "`devices` must be None, a positive int or a non-empty list of device names. "
        f"Received: devices={devices!r}"
    )


def _local_devices():
    """Every local accelerator, else every CPU device, as the engine names them."""
    if backend.name == "jax":
        return keras.distribution.list_devices()
    import tensorflow as tf

    for kind in ("GPU", "CPU"):
        found = tf.config.list_logical_devices(kind)
        if found:
            return [device.name for device in found]
    raise RuntimeError("TensorFlow lists no GPU and no CPU device.")
