"""Gradients of a scalar function of NumPy parameters, on whichever backend runs (tests only)."""

import keras
import numpy as np


def value_and_grad(fn, params):
    """Returns (fn(*params), [d fn / d p for p in params]) as NumPy, on the active backend."""
    if keras.backend.backend() == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(params))))(
            *[jax.numpy.asarray(p) for p in params]
        )
        return np.asarray(value), [np.asarray(g) for g in grads]
    import tensorflow as tf

    variables = [tf.Variable(p) for p in params]
    with tf.GradientTape() as tape:
        value = fn(*variables)
    return value.numpy(), [g.numpy() for g in tape.gradient(value, variables)]
