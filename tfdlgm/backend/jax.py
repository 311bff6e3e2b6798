"""The JAX backend: `jax.jit` over the model's variables, `keras.distribution.DataParallel`.

Imported by `tfdlgm.backend` when `KERAS_BACKEND=jax`; it defines the same names as
`tfdlgm.backend.tensorflow`, and imports nothing of TensorFlow, so the package runs where
TensorFlow is not installed.
"""

import contextlib
import os
import warnings

import jax
import keras
from keras import ops
from keras.src.random.seed_generator import draw_seed
from tensorflow_probability.substrates import jax as tfp

from tfdlgm.startup import XLA_CPU_FIX, xla_cpu_fix_applies

_HOST_DEVICES = "--xla_force_host_platform_device_count"


def _warn_if_xla_cpu_fix_missed():
    """Warns where `XLA_CPU_FIX` applies but JAX started before `import tfdlgm` could set it
    (`tfdlgm.startup.avoid_xla_cpu_miscompile`)."""
    if XLA_CPU_FIX in os.environ.get("XLA_FLAGS", "") or not xla_cpu_fix_applies():
        return
    warnings.warn(
        "JAX started before tfdlgm was imported, so tfdlgm could not set "
        f"XLA_FLAGS={XLA_CPU_FIX}: XLA:CPU in jaxlib 0.10 miscompiles a reduction broadcast "
        "back over a batch (the rank-one posterior's sample, among others) under jit. Import "
        "tfdlgm before using JAX, or set XLA_FLAGS yourself.",
        RuntimeWarning,
        stacklevel=4,
    )


_warn_if_xla_cpu_fix_missed()

linalg = tfp.tf2jax.linalg

FOLD_DENSE_INPUTS = True


@contextlib.contextmanager
def variables_kept_on_failure(model):
    """Keeps `model`'s variables through a `fit` or `evaluate` that raises.

    Keras moves the variables' values into the loop's own state as the first step begins
    and puts them back at the end; an error in between (a bad batch) leaves every variable
    empty, or holding buffers a step has consumed, and the model unusable. After an error
    this puts back the state of the last step that ran (Keras' `jax_state_sync`), or, where
    none ran, the values from before: immutable JAX arrays not yet given to a step, so
    holding references to them costs no copy.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:  # its variables exist from here on
        optimizer.build(model.trainable_variables)
    variables = [
        *model.variables,
        *getattr(model.optimizer, "variables", []),
        *model.metrics_variables,
    ]
    saved = [(variable, variable._value) for variable in variables]
    try:
        yield
    except BaseException:
        if getattr(model, "_jax_state", None) is not None:  # steps ran: their latest state
            model.jax_state_sync()
            model._jax_state = None
        for variable, value in saved:  # no step ran: the values are those before
            if variable._value is None:
                variable._value = value
        raise


def tfp_seed(seed_generator):
    """Draws a JAX PRNG key that TFP's `sample(seed=...)` accepts from a Keras generator.

    A data-parallel step is one program over the global batch, so one stream serves every
    device.

    Args:
        seed_generator: `keras.random.SeedGenerator`; its state advances by one draw.
    """
    return draw_seed(seed_generator)


def num_replicas():
    """The number of devices a batch is split over: those of Keras' distribution (1 outside
    `distribute.data_parallel`)."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    return distribution.device_mesh.shape[distribution.device_mesh.axis_names.index("batch")]


def multi_worker_logs(logs):
    """`logs` as they are: one program over the global batch reduces them already."""
    return logs


def global_mean(values):
    """The mean of per-example `values` `[B]` over the global batch, as the loss to minimise:
    `mean(values)`, also data-parallel (one program over the global batch)."""
    return ops.mean(values)


def fused(fn):
    """`fn` as it is: JAX compiles every model function whole with XLA, which fuses its
    elementwise ops and reductions already."""
    return fn


def compile_function(model, fn):
    """`fn(x, *static)` as a `jax.jit`-ed pure function of `model`'s variables; the
    non-trainable ones (the seed generator's state among them) are assigned after each call."""
    cache = {}

    def jitted(static):
        def pure(trainable, non_trainable, x):
            mapping = list(zip(model.trainable_variables, trainable))
            mapping += list(zip(model.non_trainable_variables, non_trainable))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                out = fn(x, *static)
            return out, [scope.get_current_value(v) for v in model.non_trainable_variables]

        return jax.jit(pure)

    def run(x, *static):
        if static not in cache:
            cache[static] = jitted(static)
        out, non_trainable = cache[static](
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            x,
        )
        for variable, value in zip(model.non_trainable_variables, non_trainable):
            variable.assign(value)
        return out

    return run


def replicas_of(model):
    """Devices `model`'s compiled functions split a batch over: those of Keras' active
    distribution."""
    return num_replicas()


def run_sharded(model, compiled, x, static, batch_axis):
    """`compiled` on `x` placed across the devices by Keras' data layout: one program."""
    layout = keras.distribution.distribution().get_data_layout(x.shape)
    return compiled(keras.distribution.distribute_tensor(x, layout), *static)


def local_devices():
    """Every accelerator, else every CPU device, as Keras names them; after
    `keras.distribution.initialize`, those of every process."""
    return keras.distribution.list_devices()


@contextlib.contextmanager
def data_parallel(devices):
    """`keras.distribution.DataParallel` over `devices` as Keras' distribution; yields it."""
    previous = keras.distribution.distribution()
    engine = keras.distribution.DataParallel(devices=devices)
    # several processes: each feeds its own examples (NumPy batches cannot be auto-sharded)
    engine.auto_shard_dataset = False
    keras.distribution.set_distribution(engine)
    try:
        yield engine
    finally:
        keras.distribution.set_distribution(previous)


def multi_worker_data_parallel():
    """`data_parallel` over the devices of every process (after
    `keras.distribution.initialize`); each process feeds its own examples."""
    return data_parallel(local_devices())


def virtual_cpu_devices(count):
    """Asks XLA for `count` host devices; returns how many CPU devices JAX has after (the
    old count, and `XLA_FLAGS` as it was, where its CPU client had started already)."""
    saved = os.environ.get("XLA_FLAGS")
    flags = [f for f in (saved or "").split() if _HOST_DEVICES not in f]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_HOST_DEVICES}={count}"])
    found = len(jax.devices("cpu"))
    if found != count and saved is None:  # too late: leave the environment as it was
        del os.environ["XLA_FLAGS"]
    elif found != count:
        os.environ["XLA_FLAGS"] = saved
    return found


def device_count_setting(count):
    """How to start a process with `count` CPU devices, for error messages."""
    return f"XLA_FLAGS={_HOST_DEVICES}={count}"


def prepare_tensorflow_for_data(tf):
    """`tf.data` only feeds JAX here: keeps TensorFlow off the accelerators."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow's devices were already initialised.
        pass


def is_symbolic(x):
    """Whether `x` is a JAX tracer (inside `jax.jit`), whose values are not known yet."""
    return isinstance(x, jax.core.Tracer)


def check_export_supported():
    """Raises `ValueError`: `LatentModel.export`'s SavedModel needs the TensorFlow backend.

    Under JAX Keras converts an endpoint with `jax2tf` and a symbolic batch dimension, which
    TensorFlow Probability's JAX substrate does not take (its shapes must be integers). The
    weights are the same on every backend: load the model under TensorFlow to export it.
    """
    raise ValueError(
        "`export` needs the TensorFlow backend: under JAX, Keras converts the endpoints "
        "with jax2tf and a symbolic batch size, which TensorFlow Probability's JAX "
        "substrate cannot take. The weights are the same on every backend: save the "
        "model (`model.save('m.keras')`), then load and export it with "
        "KERAS_BACKEND=tensorflow (`tfdlgm --backend tensorflow export m.keras DIR`). "
        "Received: KERAS_BACKEND='jax'"
    )


def add_export_endpoint(archive, endpoint, fn, signature, compiled):
    """Not available under JAX (`check_export_supported`)."""
    check_export_supported()
