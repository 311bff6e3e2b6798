"""Deterministic building blocks shared by the models."""

import contextlib
import threading

import keras
import numpy as np
from keras import ops

from tfdlgm.backend import FOLD_DENSE_INPUTS

# Activations by the name the papers use where Keras' default differs.
_ACTIVATIONS = {"leaky_relu": lambda x: ops.leaky_relu(x, negative_slope=0.1)}


class _LoadingState(threading.local):
    active = False  # inside `weights_to_load`, in this thread


_weights_to_load = _LoadingState()


@contextlib.contextmanager
def weights_to_load():
    """Within the block (in this thread), `Dense` layers built start their kernels at zero
    instead of drawing them from their initializers: for a model whose weights are loaded next
    (`tfdlgm.zoo.load`, a `.keras` file or checkpoint), whose draws would be thrown away.
    Under JAX each kernel shape compiles a random program of its own: lvae-mnist's 34 took
    5.4 s of a 6.3 s `zoo.load` on one core of the 2-core CPU (0.8 s without them; the whole
    load took 8.1 s on the H200), and its checkpoint's `keras.models.load_model` 6.7 s (1.5 s
    without)."""
    outer, _weights_to_load.active = _weights_to_load.active, True
    try:
        yield
    finally:
        _weights_to_load.active = outer


def _zeros(shape, dtype=None):
    """A kernel's start inside `weights_to_load`: NumPy zeros, which compile nothing."""
    return np.zeros(shape, dtype=keras.backend.standardize_dtype(dtype))


@keras.saving.register_keras_serializable(package="tfdlgm")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` that folds every leading axis into one around its matmul on JAX.

    The models run their networks on `[S, B, H]` tensors (S samples of a batch of B). For such
    an input `y = x W + b` is the same map on the folded `[S B, H]` matrix, reshaped back to
    `[S, B, units]` (two free reshapes). What changes is the gradient: the kernel's,
    `dL/dW = x^T dL/dy`, contracts over two axes on `[S, B, H]` tensors, which XLA:CPU
    computes by first writing transposed copies of `x` and `dL/dy`, and over one on matrices,
    which the matmul reads in place. Measured alternately in one process on the 2-core CPU
    (`benchmarks/step_cost.py`'s compiled JAX train step): for the zoo VAE 784-200-200-50
    the fold takes the step's bytes accessed from 1.40e8 to 1.30e8 at batch 1000 (the minimal
    Keras VAE's: 1.29e8) and makes it 1.13x faster at batch 100 and 1.08x at batch 1000; the
    zoo DLGM's step 1.07x at batch 100. On TensorFlow, with XLA or without, the same fold made
    `fit` 0.6-1.9% slower (five alternating pairs), so it folds on JAX only.

    Inside `weights_to_load` its kernel starts at zero instead of being drawn.
    """

    def build(self, input_shape):
        if not _weights_to_load.active:
            return super().build(input_shape)
        drawn, self.kernel_initializer = self.kernel_initializer, _zeros
        try:
            super().build(input_shape)
        finally:
            self.kernel_initializer = drawn

    def call(self, inputs, training=None):
        if not FOLD_DENSE_INPUTS or len(inputs.shape) <= 2:
            return super().call(inputs, training=training)
        leading = ops.shape(inputs)[:-1]
        outputs = super().call(ops.reshape(inputs, (-1, inputs.shape[-1])), training=training)
        return ops.reshape(outputs, (*leading, self.units))


@keras.saving.register_keras_serializable(package="tfdlgm")
class MLP(keras.layers.Layer):
    """A stack of dense layers: `h <- activation(norm(W h + b))` for each width in `units`.

    Args:
        units: tuple of positive ints, the width of each layer; `()` is the identity.
        activation: str, a Keras activation name; `"leaky_relu"` has slope 0.1 (Sønderby
            et al. 2016; Keras' own default is 0.2). Defaults to `"tanh"`.
        batch_norm: bool, batch normalisation before each activation (Sønderby et al.
            2016). Defaults to `False`.

    Call arguments:
        inputs: float tensor `[..., H_in]`.
        training: bool, batch statistics (training) or moving averages (inference).
    """

    def __init__(self, units, activation="tanh", batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        units = tuple(units)
        if not all(isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in units):
            raise ValueError(f"`units` must be a tuple of positive ints. Received: units={units!r}")
        self.units = units
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.dense = [Dense(u, name=f"dense_{i}") for i, u in enumerate(units)]
        self.norms = (
            [keras.layers.BatchNormalization(name=f"norm_{i}") for i in range(len(units))]
            if self.batch_norm
            else []
        )
        self.activation_fn = _ACTIVATIONS.get(activation) or keras.activations.get(activation)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, dense in enumerate(self.dense):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if self.batch_norm:
                self.norms[i].build((None, dense.units))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units[-1],) if self.units else tuple(input_shape)

    def call(self, inputs, training=False):
        h = inputs
        for i, dense in enumerate(self.dense):
            h = dense(h)
            if self.batch_norm:
                # Statistics over every leading axis: [batch, H] and [samples, batch, H] alike.
                flat = self.norms[i](ops.reshape(h, (-1, dense.units)), training=training)
                h = ops.reshape(flat, ops.shape(h))
            h = self.activation_fn(h)
        return h

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
        }


def batch_norm_layers(model):
    """Every `keras.layers.BatchNormalization` inside `model` (any layer), in build order."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def normalises_by_batch(model):
    """True if `model` normalises by batch statistics in training: a batch normalisation in
    it is trainable (not frozen by `freeze_batch_norm`), so in `fit` each example's output
    depends on the other examples of its batch."""
    return any(layer.trainable for layer in batch_norm_layers(model))


def freeze_batch_norm(model):
    """Freezes every batch normalisation in `model`: in training, as at inference, it
    normalises by its moving mean and variance, which stay as they are.

    ```none
    frozen:  BN(h) = gamma (h - m) / sqrt(v + eps) + beta,  m, v, gamma, beta held fixed
    ```

    Keras' own freezing (`trainable = False` on each `BatchNormalization`), so the scale and
    offset stop training too; the layers around them train on. Each example's output then
    depends on its own input alone, which DReG's gradient needs (`tfdlgm.objectives.
    ImportanceWeighted`): a Ladder VAE trained on the ELBO with batch statistics fine-tunes
    with DReG once its statistics are frozen. Freeze before `compile` (the optimizer keeps
    state for the trainable weights it was compiled with). The setting is not saved with the
    model (at inference batch normalisation reads the moving statistics anyway): freeze
    again after loading to fine-tune on.

    Args:
        model: a Keras model or layer.

    Returns:
        int, the number of batch normalisation layers frozen.
    """
    layers = batch_norm_layers(model)
    for layer in layers:
        layer.trainable = False
    return len(layers)
