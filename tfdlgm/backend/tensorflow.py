"""The TensorFlow backend: `tf.function` with XLA, `tf.distribute` strategies.

Imported by `tfdlgm.backend` when `KERAS_BACKEND=tensorflow` (the default); it defines the
same names as `tfdlgm.backend.jax`.
"""

import contextlib
import functools

import tensorflow as tf
import tensorflow_probability as tfp  # noqa: F401  (the substrate tfdlgm.backend re-exports)
from keras import ops
from keras.src.random.seed_generator import draw_seed

linalg = tf.linalg

FOLD_DENSE_INPUTS = False


@contextlib.contextmanager
def variables_kept_on_failure(model):
    """Keeps `model`'s variables through a `fit` or `evaluate` that raises: TensorFlow keeps
    them in place, so there is nothing to do."""
    yield


def tfp_seed(seed_generator):
    """Draws a stateless seed that TFP's `sample(seed=...)` accepts from a Keras generator.

    Under a `tf.distribute` strategy the replicas share the generator's state, so each folds
    its replica index into the seed: one stream per replica.

    Args:
        seed_generator: `keras.random.SeedGenerator`; its state advances by one draw.

    Returns:
        A `[2]` int32 tensor.
    """
    seed = tf.cast(draw_seed(seed_generator), "int32")
    context = _replica_context()
    if context is not None:
        seed = tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
    return seed


def _replica_context():
    """The `tf.distribute` replica context when several replicas run this code, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas():
    """The number of devices a batch is split over: those of the `tf.distribute` strategy in
    scope (1 outside `distribute.data_parallel`)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def multi_worker_logs(logs):
    """`logs` (a dict of scalars) as Keras' train and test steps can reduce them.

    Under `MultiWorkerMirroredStrategy`, Keras 3.15 reduces each log across the replicas with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on a scalar: there each becomes a
    `[1]` tensor (the reduction returns the mean over replicas, a scalar). Elsewhere `logs`
    is returned as it is.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {key: ops.reshape(value, (1,)) for key, value in logs.items()}
    return logs


def global_mean(values):
    """The mean of per-example `values` `[B]` over the global batch, as the loss to minimise.

    Under a `tf.distribute` strategy each replica holds B_r of the N examples and the
    strategy sums the replicas' gradients, so each replica returns its share of the mean:

    ```none
    loss_r = sum_{n in replica r} values_n / N,    N = sum_r B_r     (all-reduced)
    ```

    On one device it is `mean(values)`.
    """
    context = _replica_context()
    if context is None:
        return ops.mean(values)
    count = context.all_reduce("sum", ops.cast(ops.shape(values)[0], values.dtype))
    return ops.sum(values) / count


def uses_xla():
    """Whether compiled model functions use XLA: where TensorFlow sees an accelerator.

    On a CPU-only machine TensorFlow's own graph runtime (oneDNN kernels) runs the bounds 2-4x
    faster than XLA:CPU (`benchmarks/likelihood_speed.py`), the rule Keras' `jit_compile="auto"`
    applies to `fit` for the same reason.
    """
    return any(device.device_type != "CPU" for device in tf.config.list_physical_devices())


def fused(fn):
    """`fn`, elementwise ops of tensors and their reductions, as one XLA kernel inside a
    compiled function (`compile_function`).

    TensorFlow's graph runtime runs each op as a pass over memory of its own: `sum_d x_d l_d -
    softplus(l_d)` over the `[S, B, D]` logits of a bound's chunk writes and reads four
    tensors of S B D values. XLA fuses them into one loop that reads the logits once
    (`benchmarks/likelihood_speed.py`). The matmuls stay outside it, on TensorFlow's oneDNN
    kernels. Called eagerly (outside a `tf.function`), `fn` runs as it is, with no compilation
    per shape.
    """
    compiled = tf.function(fn, jit_compile=True, autograph=False)

    @functools.wraps(fn)
    def run(*args):
        return compiled(*args) if tf.inside_function() else fn(*args)

    return run


def compile_function(model, fn):
    """`fn(x, *static)` as a `tf.function`, compiled by XLA where `uses_xla` (`model`'s
    variables stay in place)."""
    compiled = tf.function(fn, jit_compile=uses_xla(), reduce_retracing=True)

    def run(x, *static):
        return compiled(tf.convert_to_tensor(x), *static)

    return run


def replicas_of(model):
    """Devices `model`'s compiled functions split a batch over: those of the strategy the
    model was built under."""
    return model.distribute_strategy.num_replicas_in_sync


def run_sharded(model, compiled, x, static, batch_axis):
    """`compiled` on one shard of `x` per replica of `model`'s strategy; the outputs joined
    along `batch_axis`."""
    strategy = model.distribute_strategy
    shards = tf.split(tf.convert_to_tensor(x), strategy.num_replicas_in_sync)
    values = strategy.experimental_distribute_values_from_function(
        lambda context: shards[context.replica_id_in_sync_group]
    )
    out = strategy.run(compiled, args=(values, *static))
    return tf.concat(strategy.experimental_local_results(out), axis=batch_axis)


def local_devices():
    """Every local GPU, else every CPU device, as TensorFlow names them."""
    for kind in ("GPU", "CPU"):
        found = tf.config.list_logical_devices(kind)
        if found:
            return [device.name for device in found]
    raise RuntimeError("TensorFlow lists no GPU and no CPU device.")


@contextlib.contextmanager
def data_parallel(devices):
    """A `MirroredStrategy` scope over `devices` (device names); yields the strategy."""
    engine = _mirrored_strategy(tuple(devices))
    with engine.scope():
        yield engine


@contextlib.contextmanager
def multi_worker_data_parallel():
    """A `MultiWorkerMirroredStrategy` scope over the workers `TF_CONFIG` names (each
    worker's local devices); yields the strategy."""
    engine = _multi_worker_strategy()
    with engine.scope():
        yield engine


@functools.cache
def _mirrored_strategy(devices):
    """One `MirroredStrategy` per set of devices for the process: strategies created anew
    for each block would reuse the collective ops' instance keys of earlier ones."""
    return tf.distribute.MirroredStrategy(list(devices))


@functools.cache
def _multi_worker_strategy():
    return tf.distribute.MultiWorkerMirroredStrategy()


def virtual_cpu_devices(count):
    """Splits the host CPU into `count` logical devices; returns how many CPU devices
    TensorFlow has after (the old count where its runtime had started already)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError:
        pass  # already initialised: the count returned says whether as asked
    return len(tf.config.list_logical_devices("CPU"))


def device_count_setting(count):
    """How to start a process with `count` CPU devices, for error messages."""
    return "the logical devices configured"


def prepare_tensorflow_for_data(tf_module):
    """Nothing to do: TensorFlow computes, and its input pipeline shares its devices."""


def is_symbolic(x):
    """Whether `x` is a graph tensor (inside `tf.function`), whose values are not known yet."""
    return tf.is_symbolic_tensor(x)


def check_export_supported():
    """`LatentModel.export` works under TensorFlow: nothing to refuse."""


def add_export_endpoint(archive, endpoint, fn, signature, compiled):
    """Adds `fn` to `archive` (a `keras.export.ExportArchive`) as the `tf.function` endpoint
    `endpoint`.

    Args:
        signature: list of `(name, shape, dtype)`, one per argument of `fn`.
        compiled: bool, whether the Python method `fn` serves runs through
            `compile_model_function`; then the endpoint uses XLA where that does (`uses_xla`):
            TensorFlow's stateless random ops draw other numbers with XLA than without.
    """
    specs = [tf.TensorSpec(shape, dtype, name=arg) for arg, shape, dtype in signature]
    jit_compile = compiled and uses_xla()
    function = tf.function(fn, input_signature=specs, jit_compile=jit_compile, autograph=False)
    function.get_concrete_function()  # traced now: Keras' archive takes a called function
    archive.add_endpoint(endpoint, function)
