"""Argument and data validation for the public entry points.

Errors say what was wrong, what was expected and what was received. Nothing is coerced
silently: the only conversion is float64 -> the model's float dtype, as Keras does.
"""

import contextlib

import keras
import numpy as np
from keras import ops

from tfdlgm.backend import is_traced
from tfdlgm.distributions import SUPPORT_BINARY


def check_positive_int(value, name):
    """Returns `value` if it is an int >= 1, else raises `ValueError` naming `name`."""
    return _check_int(value, name, 1, "a positive int")


def check_nonnegative_int(value, name):
    """Returns `value` if it is an int >= 0, else raises `ValueError` naming `name`."""
    return _check_int(value, name, 0, "a non-negative int")


def _check_int(value, name, minimum, kind):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be {kind} (>= {minimum}). Received: {name}={value!r}")
    return int(value)


def check_sizes(value, name, allow_empty=False):
    """Returns `value` as a tuple of positive ints (layer widths, latent sizes), else raises
    `ValueError` naming `name`."""
    sizes = tuple(value) if isinstance(value, (list, tuple)) else None
    if (
        sizes is None
        or (not sizes and not allow_empty)
        or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in sizes)
    ):
        empty = "" if allow_empty else "non-empty "
        raise ValueError(
            f"`{name}` must be a {empty}tuple of positive ints. Received: {name}={value!r}"
        )
    return sizes


def check_bool(value, name, allow_none=False):
    """Returns `value` if it is a bool (or None, where allowed), else raises `ValueError`
    naming `name`."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        expected = "a bool or None" if allow_none else "a bool"
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return bool(value)


def check_choice(value, name, allowed):
    """Returns `value` if it is one of `allowed` (strings, or None), else raises `ValueError`
    naming `name` and listing them."""
    if not isinstance(value, (str, type(None))) or value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}. Received: {name}={value!r}")
    return value


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


def check_data(x, data_dim, support, dtype="float32", name="x", allow_nan=False, nan_hint=""):
    """Validates a batch of data for a model with `data_dim` features and `support`.

    Args:
        x: array-like `[batch, data_dim]` of floats.
        data_dim: int, the number of features the model has.
        support: `"binary"` (values in {0, 1}) or `"real"`.
        dtype: the float dtype to return.
        name: the argument's name, for messages.
        allow_nan: bool, whether NaN marks missing entries (then every row needs at least one
            observed entry).
        nan_hint: str, appended to the message when NaN is refused (what to do instead).

    Returns:
        `np.ndarray` of `dtype`, shape `[batch, data_dim]`.

    A symbolic tensor (inside `tf.function`, `jax.jit` or an exported endpoint) has no values
    yet: its dtype, rank and feature size are checked, and it is returned cast to `dtype`.

    Raises:
        ValueError: on a non-float dtype, a wrong rank or feature size, an empty batch,
            NaN (unless allowed; then a row of NaN only) or inf, or values outside the support.
    """
    if is_traced(x):
        return _check_traced_data(x, data_dim, dtype, name)
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
        bad = tuple(np.argwhere(~finite)[0])
        hint = f" {nan_hint}" if nan_hint and np.isnan(array[bad]) else ""
        raise ValueError(
            f"`{name}` must be finite. Received: {array[bad]} at index "
            f"{tuple(int(i) for i in bad)}{hint}"
        )
    if allow_nan:
        unobserved = np.isnan(array).all(axis=1)
        if unobserved.any():
            raise ValueError(
                f"`{name}` must have at least one observed (not NaN) entry in every row. "
                f"Received: {int(unobserved.sum())} rows without one, e.g. row "
                f"{int(np.argmax(unobserved))}"
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


def _check_traced_data(x, data_dim, dtype, name):
    """`check_data` for a symbolic tensor: what its static shape and dtype tell."""
    x_dtype = keras.backend.standardize_dtype(x.dtype)
    if not x_dtype.startswith(("float", "bfloat")):
        raise ValueError(f"`{name}` must have a floating dtype. Received: dtype={x_dtype}")
    shape = tuple(x.shape)
    if len(shape) != 2 or shape[1] not in (None, data_dim):
        raise ValueError(
            f"`{name}` must have shape [batch, {data_dim}] (flatten images first). "
            f"Received: shape={shape}"
        )
    return ops.cast(x, dtype)


def check_sample_weight(weights, x, name="sample_weight"):
    """Validates per-example weights of the array data `x` (`fit(x, sample_weight=...)`).

    Returns:
        `np.ndarray` float32 `[N]`, `N = len(x)`.

    Raises:
        ValueError: where `x` is a dataset (weights go with array data), on a shape other
            than `[N]`, or on a NaN, infinite or negative weight.
    """
    if is_dataset(x):
        raise ValueError(
            f"`{name}` must be None when the data is a dataset: weights go with array data. "
            f"Received: {name} of type {type(weights).__name__} with a {type(x).__name__}"
        )
    array = to_numpy(weights, name)
    if array.shape != (len(x),) or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"`{name}` must hold one number per example, shape ({len(x)},). "
            f"Received: shape={array.shape}, dtype={array.dtype}"
        )
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"`{name}` must be finite and non-negative (it weights each example's loss). "
            f"Received: {float(array[index])} at index {index}"
        )
    return array.astype("float32", copy=False)


def check_incomplete_data(x, mask, data_dim, support, dtype="float32"):
    """Validates data with missing entries for the bounds (`LatentModel.elbo`, ...).

    Missing entries are those where `mask` is False, or, with `mask` None, those that hold
    NaN. Every row needs at least one observed entry; a row may have none missing.

    Args:
        x: float array-like `[batch, data_dim]`.
        mask: None, or a bool array-like of the shape of `x`, True where `x` is observed.
        data_dim: int, the number of features the model has.
        support: `"binary"` or `"real"`.
        dtype: the float dtype of the returned data.

    Returns:
        `np.ndarray` of `dtype`, `[batch, data_dim]`, NaN at the missing entries.

    Raises:
        ValueError: on a non-bool mask, a mask whose shape differs from `x`, NaN where the mask
            says observed, a row with no observed entry, or an `x` that `check_data` rejects.
    """
    if mask is None:
        return check_data(x, data_dim, support, dtype, "x", allow_nan=True)
    array, mask = _masked(x, mask)
    return check_data(array, data_dim, support, dtype, "x", allow_nan=True)


def _masked(x, mask):
    """`(x with NaN where mask is False, mask)` as NumPy arrays, after checking the mask's
    dtype and shape and that `x` holds no NaN where the mask is True."""
    array = to_numpy(x, "x")
    mask = to_numpy(mask, "mask")
    if mask.dtype != np.bool_:
        raise ValueError(
            "`mask` must be a bool array, True where `x` is observed and False where it is "
            f"missing (e.g. `~np.isnan(x)`). Received: mask with dtype={mask.dtype}"
        )
    if mask.shape != array.shape:
        raise ValueError(
            f"`mask` must have the shape of `x`, {array.shape}. Received: mask.shape={mask.shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        return array, mask  # check_data rejects the dtype with its hint
    nan_observed = mask & np.isnan(array)
    if nan_observed.any():
        bad = tuple(int(i) for i in np.argwhere(nan_observed)[0])
        raise ValueError(
            "`x` must not hold NaN in observed entries (NaN marks a missing entry: set `mask` "
            f"to False there). Received: NaN at index {bad}, where mask is True"
        )
    return np.where(mask, array, np.nan).astype(array.dtype, copy=False), mask


def check_missing_data(x, mask, data_dim, support, dtype="float32", require_missing=True):
    """Validates partly observed data and its mask for imputation.

    `mask` marks the observed entries (True = observed, False = missing). The values of `x` at
    missing entries are ignored: they may be NaN (the usual way to mark missing data), inf or
    anything else. Observed entries must be finite and in the likelihood's support.

    Args:
        x: float array-like `[batch, data_dim]`.
        mask: bool array-like of the shape of `x`, True where `x` is observed.
        data_dim: int, the number of features the model has.
        support: `"binary"` or `"real"`.
        dtype: the float dtype of the returned data.
        require_missing: bool, whether every row needs a missing entry (a Markov chain over
            the missing entries needs some). Defaults to `True`.

    Returns:
        `(x, data, mask)`: `x` as the caller's NumPy array (its own dtype, for copying observed
        entries bit for bit), `data` of `dtype` with missing entries set to NaN, and `mask` as
        a bool `np.ndarray`.

    Raises:
        ValueError: on a non-bool mask, a mask whose shape differs from `x`, a row with no
            missing or no observed entry, NaN in an observed entry, or an `x` that
            `check_data` rejects.
    """
    array = to_numpy(x, "x")
    mask = to_numpy(mask, "mask")
    if mask.dtype == np.bool_ and mask.shape == array.shape and mask.ndim == 2:
        for what, rows in (("missing (False)", mask.all(1)), ("observed (True)", ~mask.any(1))):
            if rows.any() and (require_missing or what.startswith("observed")):
                raise ValueError(
                    f"`mask` must have at least one {what} entry in every row. Received: "
                    f"{int(rows.sum())} rows without one, e.g. row {int(np.argmax(rows))}"
                )
    masked, mask = _masked(array, mask)
    data = check_data(masked, data_dim, support, dtype, "x", allow_nan=True)
    return array, data, mask


# What a bad batch's error carries through tf.data, which wraps it in its own error type.
_BAD_BATCH = "tfdlgm-bad-batch: "


def is_dataset(data) -> bool:
    """Whether `data` is read batch by batch: a `keras.utils.PyDataset` or a `tf.data`
    dataset (anything else `fit` takes is an array or tensor, checked whole)."""
    return isinstance(data, keras.utils.PyDataset) or _is_tf_dataset(data)


def _is_tf_dataset(data) -> bool:
    return any(
        cls.__module__.startswith("tensorflow") and cls.__name__ == "DatasetV2"
        for cls in type(data).__mro__
    )


def checked_batches(data, check, name="x"):
    """`data` with `check(images)` applied to every batch's images as it is read.

    Args:
        data: a `keras.utils.PyDataset` or a `tf.data.Dataset` whose elements are images, or
            tuples whose first item is the images.
        check: callable taking a NumPy batch of images and returning it validated (raising
            `ValueError` on bad data).
        name: the argument's name, for messages.

    Returns:
        A dataset of the same kind. A bad batch raises `ValueError` when it is read (inside
        `fit`/`evaluate`, under `bad_batches_as_value_errors`).
    """

    def checked(images):
        try:
            check(images)
        except ValueError as error:
            raise ValueError(f"{_BAD_BATCH}{error}") from None
        return images

    if isinstance(data, keras.utils.PyDataset):
        return _CheckedBatches(data, checked)

    import tensorflow as tf

    def check_element(*element):
        images = element[0]
        out = tf.numpy_function(checked, [images], images.dtype, stateful=False)
        out.set_shape(images.shape)
        return out if len(element) == 1 else (out, *element[1:])

    return data.map(check_element)


class _CheckedBatches(keras.utils.PyDataset):
    """A `PyDataset` whose batches are validated as they are read (`checked_batches`)."""

    def __init__(self, data, check):
        super().__init__(
            workers=data.workers,
            use_multiprocessing=data.use_multiprocessing,
            max_queue_size=data.max_queue_size,
        )
        self._data = data
        self._check = check

    def __len__(self):
        return len(self._data)

    @property
    def num_batches(self):
        return self._data.num_batches

    def __getitem__(self, index):
        batch = self._data[index]
        if isinstance(batch, tuple):
            return (self._check(batch[0]), *batch[1:])
        return self._check(batch)

    def on_epoch_end(self):
        self._data.on_epoch_end()


@contextlib.contextmanager
def bad_batches_as_value_errors():
    """Re-raises a bad batch that `checked_batches` found as the plain `ValueError` it is:
    `tf.data` (which also serves a `PyDataset` under TensorFlow) wraps it in its own error
    type and traceback."""
    try:
        yield
    except Exception as error:
        text = str(error)
        if _BAD_BATCH not in text:
            raise
        message = text.split(_BAD_BATCH, 1)[1].splitlines()[0].strip()
        raise ValueError(message) from None
