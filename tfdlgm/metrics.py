"""The running means a latent model reports while it trains and evaluates."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfdlgm")
class MeanTerms(keras.metrics.Metric):
    """Running means of several per-example terms, held in one vector and one count.

    ```none
    total_t += sum_n values_t[n],    count += B,    result_t = total_t / count
    ```

    The same figures as one `keras.metrics.Mean` per term, for a fraction of the state: two
    variables however many terms (the ELBO, the reconstruction and a KL per latent layer),
    updated by one reduction. In a compiled train step each variable costs its own small
    kernels and copies, which on a CPU are a measurable part of a small model's step
    (`benchmarks/step_cost.py`). `result()` is a dict, which Keras spreads into the logs.

    Args:
        names: tuple of str, the terms, in the order `update_state` stacks them.
        name: str, the metric's name. Defaults to `"terms"`.
        dtype: the variables' dtype. Defaults to Keras' float type.
    """

    def __init__(self, names, name="terms", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.names = tuple(names)
        if not self.names or len(set(self.names)) != len(self.names):
            raise ValueError(f"`names` must be distinct and non-empty. Received: names={names!r}")
        self.total = self.add_variable(
            shape=(len(self.names),), initializer="zeros", dtype=self.dtype, name="total"
        )
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="count"
        )

    def update_state(self, values):
        """Adds a batch: `values` maps every name to its per-example tensor `[B]`."""
        stacked = ops.stack([ops.cast(values[name], self.dtype) for name in self.names], axis=-1)
        self.total.assign_add(ops.sum(stacked, axis=0))
        self.count.assign_add(ops.cast(ops.shape(stacked)[0], self.dtype))

    def result(self):
        means = ops.divide_no_nan(self.total, self.count)
        return {name: means[i] for i, name in enumerate(self.names)}

    def get_config(self):
        return {"names": list(self.names), **super().get_config()}
