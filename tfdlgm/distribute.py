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

from tfdlgm import backend


@contextlib.contextmanager
def data_parallel(devices=None, multi_worker=False):
    """A block in which models are built, trained and evaluated data-parallel.

    Args:
        devices: None (every accelerator, else every CPU device), an int (the first that
            many of those) or a list of device names (`"gpu:0"`, `"/gpu:1"`...). Under JAX
            after `keras.distribution.initialize`, the devices of every process.
        multi_worker: bool, several processes train together, each on its local devices:
            TensorFlow's `MultiWorkerMirroredStrategy` over the workers `TF_CONFIG` names;
            under JAX, after `keras.distribution.initialize`, the devices of every process.
            `devices` must then be None. Defaults to `False`.

    Yields:
        The engine: `keras.distribution.DataParallel` (JAX) or
        `tf.distribute.MirroredStrategy` / `MultiWorkerMirroredStrategy` (TensorFlow).
    """
    if multi_worker:
        if devices is not None:
            raise ValueError(
                "`devices` must be None with `multi_worker=True`: each process uses its local "
                "devices (TensorFlow: TF_CONFIG names the workers; JAX: "
                f"keras.distribution.initialize names the processes). Received: devices={devices!r}"
            )
        block = backend.multi_worker_data_parallel()
    else:
        block = backend.data_parallel(_devices(devices))
    with block as engine:
        yield engine


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
    found = backend.virtual_cpu_devices(count)
    if found != count:
        raise RuntimeError(
            f"virtual_cpu_devices({count}) came too late: the {backend.name} backend already "
            f"runs with {found} CPU device(s). Call it first thing in the process (before any "
            "model is built or tensor computed), or start the process with "
            f"{backend.device_count_setting(count)}."
        )


def _devices(devices):
    available = backend.local_devices()
    if devices is None:
        return available
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"`devices` asks for {devices} devices; this process has {len(available)}: "
                f"{available}. To split one CPU, call tfdlgm.distribute.virtual_cpu_devices(N) "
                f"first, or start the process with {backend.device_count_setting('N')}."
            )
        return available[:devices]
    if isinstance(devices, (list, tuple)) and devices and all(isinstance(d, str) for d in devices):
        return list(devices)
    raise ValueError(
        "`devices` must be None, a positive int or a non-empty list of device names. "
        f"Received: devices={devices!r}"
    )
