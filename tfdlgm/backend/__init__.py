"""The one package that asks which Keras backend runs.

Everything backend-specific lives here, one module per backend as in Keras
(`keras/src/backend/`): `tfdlgm.backend.tensorflow` and `tfdlgm.backend.jax` define the same
names, and this module imports the active backend's and re-exports them beside the helpers
every backend shares. What they provide: TensorFlow Probability's substrate for the backend
(`tfd`, `tfb`, `linalg`), the conversion of a Keras seed into a seed TFP accepts (one stream
per replica under `tf.distribute`), compiled and device-sharded model functions, the
global-batch mean of a data-parallel loss, each backend's data-parallel engine (used by
`tfdlgm.distribute`), TensorFlow for a `tf.data` input pipeline where it is installed, and
the few numerical helpers `keras.ops` lacks. Model code imports from here and stays
backend-agnostic.

Supported backends: TensorFlow (the default) and JAX. Under JAX nothing here imports
TensorFlow, so the package runs where TensorFlow is not installed.
"""

import importlib.util
import math

import keras
from keras import ops

SUPPORTED_BACKENDS = ("tensorflow", "jax")

name = keras.backend.backend()

if name == "tensorflow":
    from tfdlgm.backend import tensorflow as _active
elif name == "jax":
    from tfdlgm.backend import jax as _active
else:
    raise ImportError(
        f"tfdlgm supports the Keras backends {', '.join(SUPPORTED_BACKENDS)}. "
        f"Received: KERAS_BACKEND={name!r}. Set the environment variable KERAS_BACKEND to one "
        "of the supported backends before importing keras."
    )

tfp = _active.tfp
tfd = tfp.distributions
tfb = tfp.bijectors
linalg = _active.linalg

# `tfdlgm.layers.Dense` folds `[S, B, H]` inputs into matrices around its matmul where that
# pays (JAX: XLA:CPU otherwise copies both operands of the kernel gradient transposed).
FOLD_DENSE_INPUTS = _active.FOLD_DENSE_INPUTS

variables_kept_on_failure = _active.variables_kept_on_failure
fused = _active.fused
tfp_seed = _active.tfp_seed
num_replicas = _active.num_replicas
multi_worker_logs = _active.multi_worker_logs
global_mean = _active.global_mean
local_devices = _active.local_devices
data_parallel = _active.data_parallel
multi_worker_data_parallel = _active.multi_worker_data_parallel
virtual_cpu_devices = _active.virtual_cpu_devices
device_count_setting = _active.device_count_setting
check_export_supported = _active.check_export_supported
add_export_endpoint = _active.add_export_endpoint


class SeedStream(keras.random.SeedGenerator):
    """The seeds a `keras.random.SeedGenerator` draws, from a state held as a tensor, with no
    state variable: `[seed, 0], [seed, 1], ...` from `SeedStream(seed)` (`seed` may be a
    tensor), `state, state + [0, 1], ...` from `SeedStream(state=state)`.

    A traced function (an exported endpoint) takes the seed as an input and draws what the
    model's own methods draw for that seed: they start the model's stream at
    `SeedGenerator(seed)`'s state `[seed, 0]` (`LatentModel._seeded`), and each draw adds
    `[0, 1]`. A compiled loop carries `value`, the state after the draws so far, from one
    iteration to the next (`LatentModel._logsumexp_of_log_weights`), so its iterations draw
    what the same passes called one by one would.
    """

    def __init__(self, seed=None, state=None):  # no SeedGenerator.__init__: no variable
        from keras.src.backend import random_seed_dtype

        self._dtype = random_seed_dtype()
        if state is None:
            state = ops.stack([ops.cast(seed, self._dtype), ops.cast(0, self._dtype)])
        self.value = ops.cast(state, self._dtype)

    def next(self, ordered=True):
        seed = self.value
        self.value = seed + ops.convert_to_tensor([0, 1], dtype=self._dtype)
        return seed


def is_traced(x):
    """Whether `x` is a symbolic tensor: a Keras input, a `tf.function`'s graph tensor or a
    JAX tracer, whose values are not known yet."""
    return keras.backend.is_keras_tensor(x) or _active.is_symbolic(x)


def has_tensorflow():
    """Whether TensorFlow is installed (it may be, and `tf.data` usable, under JAX too)."""
    return importlib.util.find_spec("tensorflow") is not None


def tensorflow_for_data():
    """TensorFlow's module for a `tf.data` input pipeline, or None where it is not installed
    or cannot be imported. Where another backend computes, TensorFlow is kept off the
    accelerators (it only feeds batches)."""
    if not has_tensorflow():
        return None
    try:
        import tensorflow as tf
    except ImportError:
        return None
    _active.prepare_tensorflow_for_data(tf)
    return tf


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
        batch_axis: the axis of `fn`'s output that indexes the examples of `x`, or None
            for a function whose batch is not split (it runs as one program, on the model's
            devices); its output may then be any structure of tensors (TFP distributions
            included).

    Returns:
        `run(x, *static)`, the compiled `fn`; the model's variables hold their new values after.
    """
    compiled = _active.compile_function(model, fn)

    def run(x, *static):
        replicas = _active.replicas_of(model)
        if replicas == 1 or batch_axis is None:
            return compiled(x, *static)
        rows = x.shape[0]
        padding = -rows % replicas
        if padding:
            x = ops.concatenate([x, ops.repeat(x[-1:], padding, axis=0)], axis=0)
        out = _active.run_sharded(model, compiled, x, static, batch_axis)
        return out if not padding else ops.take(out, ops.arange(rows), axis=batch_axis)

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
        self.update_logsumexp(ops.logsumexp(chunk, axis=0), int(ops.shape(chunk)[0]))

    def update_logsumexp(self, logsumexp, count):
        """Adds `count` values per example given by their `logsumexp` over axis 0, `[batch]`."""
        if self._logsumexp is None:
            self._logsumexp = logsumexp
        else:
            self._logsumexp = ops.logaddexp(self._logsumexp, logsumexp)
        self.count += count

    def result(self):
        if self._logsumexp is None:
            raise ValueError("StreamingLogMeanExp.result() called before any update().")
        return self._logsumexp - math.log(self.count)
