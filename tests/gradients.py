"""Gradients of a scalar function of NumPy parameters, on whichever backend runs (tests only)."""

import keras
import numpy as np


def value_and_grad(fn, params):
    """Returns (fn(*params), [d fn / d p for p in params]) as NumPy, on the active backend.

    A parameter `fn` does not depend on (e.g. behind a stop-gradient) gets zeros on both.
    """
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
    grads = tape.gradient(value, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return value.numpy(), [g.numpy() for g in grads]


def model_gradients(model, x, scalar_fns):
    """Gradients w.r.t. `model.trainable_variables` of each `fn(model(x, training=True))`,
    all from one forward pass (the same noise), as lists of NumPy arrays."""
    if keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def make(fn):
            def scalar(params):
                outputs, _ = model.stateless_call(params, non_trainable, x, training=True)
                return fn(outputs)

            return scalar

        return [[np.asarray(g) for g in jax.grad(make(fn))(trainable)] for fn in scalar_fns]
    import tensorflow as tf

    with tf.GradientTape(persistent=True) as tape:
        outputs = model(x, training=True)
        values = [fn(outputs) for fn in scalar_fns]
    return [
        [
            np.zeros(v.shape) if g is None else g.numpy()
            for g, v in zip(
                tape.gradient(value, model.trainable_variables), model.trainable_variables
            )
        ]
        for value in values
    ]


def value_and_grad_function(fn, num_params):
    """`f(*params, *args) -> (value, [d fn / d p for p in params])` for `fn(*params, *args)`,
    the trailing `args` not differentiated. Under JAX it is traced and compiled once
    (`jax.jit`), so calling it many times (e.g. over seeds) is cheap; under TensorFlow it runs
    eagerly with `value_and_grad`."""
    if keras.backend.backend() == "jax":
        import jax

        compiled = jax.jit(jax.value_and_grad(fn, argnums=tuple(range(num_params))))

        def call(*values):
            value, grads = compiled(*values)
            return np.asarray(value), [np.asarray(g) for g in grads]

        return call

    def call(*values):
        params, args = values[:num_params], values[num_params:]
        return value_and_grad(lambda *p: fn(*p, *args), list(params))

    return call
