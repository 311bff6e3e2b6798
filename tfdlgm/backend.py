"""The one module that asks which Keras backend runs.

Everything backend-specific lives here: TensorFlow Probability's substrate for the active
backend (`tfd`, `tfb`, `linalg`), the conversion of a Keras seed into a seed TFP accepts, and
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
    import tensorflow as _tf
    import tensorflow_probability as _tfp

    linalg = _tf.linalg
elif name == "jax":
    from tensorflow_probability.substrates import jax as _tfp

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
        return _tf.cast(seed, "int32")
    return seed


def compile_model_function(model, fn):
    """Compiles `fn(x, *static)`, a function of a batch that reads (and may update) the
    variables of `model`, its seed generator's state included.

    Under JAX the model's variables become explicit inputs and outputs of a `jax.jit`-ed
    function (the way Keras' own JAX trainer runs `fit`); under TensorFlow `fn` becomes a
    `tf.function` compiled by XLA. `static` arguments (Python ints such as a number of
    samples) key one compiled function each.

    Returns:
        `run(x, *static)`, the compiled `fn`; the model's variables hold their new values after.
    """
    if name == "tensorflow":
        compiled = _tf.function(fn, jit_compile=True, reduce_retracing=True)
        return lambda x, *static: compiled(_tf.convert_to_tensor(x), *static)

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
