"""Argument and data validation for the public entry points.

Errors say what was wrong, what was expected and what was received. Nothing is coerced
silently: the only conversion is float64 -> the model's float dtype, as Keras does.
"""

import numpy as np
from keras import ops

from tfdlgm.distributions import SUPPORT_BINARY


def check_positive_int(value, name):
    """Returns `value` if it is an int >= 1, else raises `ValueError` naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int (>= 1). Received: {name}={value!r}")
    return int(value)


def check_seed(seed):
    """`None` or a non-negative int."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be None or a non-negative int. Received: seed={seed!r}")
    return int(seed)


def to_numpy(x, name="x"):
    """NumPy view of an array-like or backend tensor; a clear error for anything else."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (str, bytes, dict, set)) or x is None:
        raise ValueError(f"`{name}` must be an array of numbers. Received: type {type(x).__name__}")
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception as error:  # the backend's own conversion error is not informative
        raise ValueError(
            f"`{name}` must be an array of numbers. Received: type {type(x).__name__}"
        ) from error


def check_data(x, data_dim, support, dtype="float32", name="x", allow_nan=False):
    """Validates a batch of data for a model with `data_dim` features and `support`.

    Args:
        x: array-like `[batch, data_dim]` of floats.
        data_dim: int, the number of features the model has.
        support: `"binary"` (values in {0, 1}) or `"real"`.
        dtype: the float dtype to return.
        name: the argument's name, for messages.
        allow_nan: bool, whether NaN marks entries to ignore (imputation's missing values).

    Returns:
        `np.ndarray` of `dtype`, shape `[batch, data_dim]`.

    Raises:
        ValueError: on a non-float dtype, a wrong rank or feature size, an empty batch,
            NaN or inf, or values outside the support.
    """
    array = to_numpy(x, name)
    if not np.issubdtype(array.dtype, np.floating):
        hint = " (for images: x.astype('float32') / 255)" if array.dtype == np.uint8 else ""
        raise ValueError(
            f"`{name}` must have a floating dtype{hint}. Received: dtype={array.dtype}"
        )
    if array.ndim != 2 or array.shape[1] != data_dim:
        raise ValueError(
            f"`{name}` must have shape [batch, {data_dim}] (flatten images first). "
            f"Received: shape={array.shape}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one example. Received: shape={array.shape}")
    finite = np.isfinite(array) | (np.isnan(array) if allow_nan else False)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise ValueError(
            f"`{name}` must be finite. Received: {array[tuple(bad)]} at index {tuple(bad)}"
        )
    if support == SUPPORT_BINARY:
        values = array[~np.isnan(array)] if allow_nan else array
        outside = (values != 0) & (values != 1)
        if outside.any():
            raise ValueError(
                f"`{name}` must hold binary values (0 or 1) for a Bernoulli likelihood. "
                f"Received: {int(outside.sum())} values outside {{0, 1}}, e.g. "
                f"{values[outside][0]!r}. Binarise the data (tfdlgm.datasets.mnist does) or "
                "use likelihood='gaussian'."
            )
    return array.astype(dtype, copy=False)
