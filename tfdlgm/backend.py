"""The one module that asks which Keras backend runs.

Everything backend-specific lives here: TensorFlow Probability's substrate for the active
backend (`tfd`, `tfb`, `linalg`), the conversion of a Keras seed into a seed TFP accepts (one
stream per replica under `tf.distribute`), compiled and device-sharded model functions, the
global-batch mean of a data-parallel loss, and the few numerical helpers `keras.ops` lacks.
Model code imports from here and stays backend-agnostic; `tfdlgm.distribute` picks each
backend's data-parallel engine.

Supported backends: TensorFlow (the default) and JAX. Under JAX nothing here imports
TensorFlow, so the package runs where TensorFlow is not installed.
"""

import contextlib
import importlib.util
import math
import os
import warnings

import keras
from keras import ops

from tfdlgm.startup import XLA_CPU_FIX, xla_cpu_fix_applies

SUPPORTED_BACKENDS = ("tensorflow", "jax")


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
        stacklevel=3,
    )


name = keras.backend.backend()

if name == "tensorflow":
    import tensorflow as _tf
    import tensorflow_probability as _tfp

    linalg = _tf.linalg
elif name == "jax":
    from tensorflow_probability.substrates import jax as _tfp

    _warn_if_xla_cpu_fix_missed()

    linalg = _tfp.tf2jax.linalg
else:
    raise ImportError(
        f"tfdlgm supports the Keras backends {', '.join(SUPPORTED_BACKENDS)}. "
        f"Received: KERAS_BACKEND={name!r}. Set the environment variable KERAS_BACKEND to one "
        "of the supported backends before importing keras."
    )

tfp = _tfp
tfd = _tfp.distributions
tfb = _tfp.bijectors

# `tfdlgm.layers.Dense` folds `[S, B, H]` inputs into matrices around its matmul where that
# pays: on JAX (XLA:CPU otherwise copies both operands of the kernel gradient transposed).
FOLD_DENSE_INPUTS = name == "jax"


@contextlib.contextmanager
def variables_kept_on_failure(model):
    """Keeps `model`'s variables through a `fit` or `evaluate` that raises.

    Under JAX, Keras moves the variables' values into the loop's own state as the first step
    begins and puts them back at the end; an error in between (a bad batch) leaves every
    variable empty, or holding buffers a step has consumed, and the model unusable. After an
    error this puts back the state of the last step that ran (Keras' `jax_state_sync`), or,
    where none ran, the values from before: immutable JAX arrays not yet given to a step, so
    holding references to them costs no copy. Other backends keep their variables in place;
    there this does nothing.
    """
    if name != "jax":
        yield
        return
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


def has_tensorflow():
    """Whether TensorFlow is installed (it may be, and `tf.data` usable, under JAX too)."""
    return importlib.util.find_spec("tensorflow") is not None


def tfp_seed(seed_generator):
    """Draws a stateless seed that TFP's `sample(seed=...)` accepts from a Keras generator.

    Args:
        seed_generator: `keras.random.SeedGenerator`; its state advances by one draw.

    Returns:
        A `[2]` int32 tensor (TensorFlow) or a JAX PRNG key (JAX).
    """
    from keras.src.random.seed_generator import draw_seed

    seed = draw_seed(seed_generator)
    if name == "tensorflow":
        seed = _tf.cast(seed, "int32")
        context = _replica_context()
        if context is not None:  # replicas share the generator's state: one stream each
            seed = _tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
        return seed
    return seed


class SeedStream(keras.random.SeedGenerator):
    """The seeds `keras.random.SeedGenerator(seed)` draws, `[seed, 0], [seed, 1], ...`, from a
    `seed` that may be a tensor, and with no state variable.

    A traced function (an exported endpoint) takes the seed as an input and draws what the
    model's own methods draw for that seed: they start the model's stream at
    `SeedGenerator(seed)`'s state `[seed, 0]` (`LatentModel._seeded`), and each draw adds
    `[0, 1]`. The draws are counted as the function is traced.
    """

    def __init__(self, seed):  # no SeedGenerator.__init__: it would create the variable
        self._seed = seed
        self._draws = 0

    def next(self, ordered=True):
        from keras.src.backend import random_seed_dtype

        dtype = random_seed_dtype()
        seed = ops.stack([ops.cast(self._seed, dtype), ops.cast(self._draws, dtype)])
        self._draws += 1
        return seed


def is_traced(x):
    """Whether `x` is a symbolic tensor: a Keras input, a `tf.function`'s graph tensor or a
    JAX tracer, whose values are not known yet."""
    if keras.backend.is_keras_tensor(x):
        return True
    if name == "tensorflow":
        return _tf.is_symbolic_tensor(x)
    import jax

    return isinstance(x, jax.core.Tracer)


def check_export_supported():
    """Raises `ValueError` where this backend cannot write `LatentModel.export`'s SavedModel.

    Under JAX Keras converts an endpoint with `jax2tf` and a symbolic batch dimension, which
    TensorFlow Probability's JAX substrate does not take (its shapes must be integers). The
    weights are the same on every backend: load the model under TensorFlow to export it.
    """
    if name != "tensorflow":
        raise ValueError(
            "`export` needs the TensorFlow backend: under JAX, Keras converts the endpoints "
            "with jax2tf and a symbolic batch size, which TensorFlow Probability's JAX "
            "substrate cannot take. The weights are the same on every backend: save the "
            "model (`model.save('m.keras')`), then load and export it with "
            "KERAS_BACKEND=tensorflow (`tfdlgm --backend tensorflow export m.keras DIR`). "
            "Received: "
            f"KERAS_BACKEND={name!r}"
        )


def add_export_endpoint(archive, endpoint, fn, signature, jit_compile):
    """Adds `fn` to `archive` (a `keras.export.ExportArchive`) as the `tf.function` endpoint
    `endpoint` (TensorFlow only: `check_export_supported`).

    Args:
        signature: list of `(name, shape, dtype)`, one per argument of `fn`.
        jit_compile: bool, compile the endpoint with XLA, as the Python method it serves is
            (`compile_model_function`): TensorFlow's stateless random ops draw other numbers
            with XLA than without.
    """
    specs = [_tf.TensorSpec(shape, dtype, name=arg) for arg, shape, dtype in signature]
    function = _tf.function(fn, input_signature=specs, jit_compile=jit_compile, autograph=False)
    function.get_concrete_function()  # traced now: Keras' archive takes a called function
    archive.add_endpoint(endpoint, function)


def _replica_context():
    """The `tf.distribute` replica context when several replicas run this code, else None.

    Under JAX a data-parallel step is one program over the global batch: always None.
    """
    if name != "tensorflow":
        return None
    context = _tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas():
    """The number of devices a batch is split over: those of Keras' distribution (JAX) or of
    the `tf.distribute` strategy in scope (TensorFlow); 1 outside `distribute.data_parallel`."""
    if name == "tensorflow":
        return _tf.distribute.get_strategy().num_replicas_in_sync
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    return distribution.device_mesh.shape[distribution.device_mesh.axis_names.index("batch")]


def multi_worker_logs(logs):
    """`logs` (a dict of scalars) as Keras' train and test steps can reduce them.

    Under TensorFlow's `MultiWorkerMirroredStrategy`, Keras 3.15 reduces each log across the
    replicas with `strategy.reduce("MEAN", value, axis=0)`, which fails on a scalar: there
    each becomes a `[1]` tensor (the reduction returns the mean over replicas, a scalar).
    Elsewhere `logs` is returned as it is.
    """
    if name == "tensorflow" and isinstance(
        _tf.distribute.get_strategy(), _tf.distribute.MultiWorkerMirroredStrategy
    ):
        return {key: ops.reshape(value, (1,)) for key, value in logs.items()}
    return logs


def global_mean(values):
    """The mean of per-example `values` `[B]` over the global batch, as the loss to minimise.

    Under a `tf.distribute` strategy each replica holds B_r of the N examples and the
    strategy sums the replicas' gradients, so each replica returns its share of the mean:

    ```none
    loss_r = sum_{n in replica r} values_n / N,    N = sum_r B_r     (all-reduced)
    ```

    Elsewhere (one device, or JAX's data parallelism, one program over the global batch) it
    is `mean(values)`.
    """
    context = _replica_context()
    if context is None:
        return ops.mean(values)
    count = context.all_reduce("sum", ops.cast(ops.shape(values)[0], values.dtype))
    return ops.sum(values) / count


def compile_model_function(model, fn, batch_axis=0):
    """Compiles `fn(x, *static)`, a function of a batch that reads (and may update) the
    variables of `model`, its seed generator's state included.

    Under JAX the model's variables become explicit inputs and outputs of a `jax.jit`-ed
    function (the way Keras' own JAX trainer runs `fit`); under TensorFlow `fn` becomes a
    `tf.function` compiled by XLA. `static` arguments (Python ints such as a number of
    samples) key one compiled function each.

    Inside `tfdlgm.distribute.data_parallel` the examples are split across the devices: the
    batch is padded with copies of its last row to a multiple of the device count (the
    padding's outputs are dropped), then placed by Keras' data layout (JAX) or run by
    `strategy.run` on one shard per replica (TensorFlow).

    Args:
        batch_axis: the axis of `fn`'s output that indexes the examples of `x`.

    Returns:
        `run(x, *static)`, the compiled `fn`; the model's variables hold their new values after.
    """
    compiled = _compile_tensorflow(fn) if name == "tensorflow" else _compile_jax(model, fn)

    def run(x, *static):
        replicas = _replicas_of(model)
        if replicas == 1:
            return compiled(x, *static)
        rows = x.shape[0]
        padding = -rows % replicas
        if padding:
            x = ops.concatenate([x, ops.repeat(x[-1:], padding, axis=0)], axis=0)
        if name == "tensorflow":
            out = _run_per_replica(model.distribute_strategy, compiled, x, static, batch_axis)
        else:
            distribution = keras.distribution.distribution()
            layout = distribution.get_data_layout(x.shape)
            out = compiled(keras.distribution.distribute_tensor(x, layout), *static)
        return out if not padding else ops.take(out, ops.arange(rows), axis=batch_axis)

    return run


def _replicas_of(model):
    """Devices `model`'s compiled functions split a batch over: those of the strategy the
    model was built under (TensorFlow), of Keras' active distribution (JAX)."""
    if name == "tensorflow":
        return model.distribute_strategy.num_replicas_in_sync
    return num_replicas()


def _run_per_replica(strategy, compiled, x, static, batch_axis):
    """`compiled` on one shard of `x` per replica of `strategy`; the outputs joined."""
    shards = _tf.split(_tf.convert_to_tensor(x), strategy.num_replicas_in_sync)
    values = strategy.experimental_distribute_values_from_function(
        lambda context: shards[context.replica_id_in_sync_group]
    )
    out = strategy.run(compiled, args=(values, *static))
    return _tf.concat(strategy.experimental_local_results(out), axis=batch_axis)


def _compile_tensorflow(fn):
    compiled = _tf.function(fn, jit_compile=True, reduce_retracing=True)

    def run(x, *static):
        return compiled(_tf.convert_to_tensor(x), *static)

    return run


def _compile_jax(model, fn):
    import jax

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


def log_mean_exp(values, axis=0):
    """Numerically stable `log(mean(exp(values), axis))`.

    ```none
    log_mean_exp(a) = logsumexp(a) - log(n)
    ```
    """
    n = ops.shape(values)[axis]
    return ops.logsumexp(values, axis=axis) - math.log(n)


class StreamingLogMeanExp:
    """`log_mean_exp` over axis 0 of values that arrive in chunks.

    Memory holds one running `logsumexp` per example, whatever the total number of samples:

    ```none
    S_j = logaddexp(S_{j-1}, logsumexp(chunk_j, axis=0)),   result = S_J - log(sum_j n_j)
    ```

    Example:

    ```python
    acc = StreamingLogMeanExp()
    for chunk in chunks:          # each [n_j, batch]
        acc.update(chunk)
    acc.result()                  # [batch], equal to log_mean_exp(concat(chunks), axis=0)
    ```
    """

    def __init__(self):
        self._logsumexp = None
        self.count = 0

    def update(self, chunk):
        chunk_logsumexp = ops.logsumexp(chunk, axis=0)
        if self._logsumexp is None:
            self._logsumexp = chunk_logsumexp
        else:
            self._logsumexp = ops.logaddexp(self._logsumexp, chunk_logsumexp)
        self.count += int(ops.shape(chunk)[0])

    def result(self):
        if self._logsumexp is None:
            raise ValueError("StreamingLogMeanExp.result() called before any update().")
        return self._logsumexp - math.log(self.count)
