"""Deterministic building blocks shared by the models."""

import keras


@keras.saving.register_keras_serializable(package="tfdlgm")
class MLP(keras.layers.Layer):
    """A stack of dense layers: `h <- activation(norm(W h + b))` for each width in `units`.

    Args:
        units: tuple of positive ints, the width of each layer; `()` is the identity.
        activation: str, a Keras activation name. Defaults to `"tanh"`.
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
        self.dense = [keras.layers.Dense(u, name=f"dense_{i}") for i, u in enumerate(units)]
        self.norms = (
            [keras.layers.BatchNormalization(name=f"norm_{i}") for i in range(len(units))]
            if self.batch_norm
            else []
        )
        self.activation_fn = keras.activations.get(activation)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, dense in enumerate(self.dense):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if self.batch_norm:
                self.norms[i].build(shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units[-1],) if self.units else tuple(input_shape)

    def call(self, inputs, training=False):
        h = inputs
        for i, dense in enumerate(self.dense):
            h = dense(h)
            if self.batch_norm:
                h = self.norms[i](h, training=training)
            h = self.activation_fn(h)
        return h

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
        }
