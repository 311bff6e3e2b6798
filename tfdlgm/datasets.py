"""MNIST as the deep latent Gaussian model literature uses it: 50k/10k/10k, binarised.

The evaluation protocol (docs/architecture.md): the first 50,000 rows of MNIST's training set are
the training split, its last 10,000 rows the validation split, and MNIST's 10,000 test images
the test split; `"train+validation"` serves the training and validation rows together (all
60,000), for a final fit once every choice has been made on the validation split. Pixels are grey
levels `x = intensity / 255` in [0, 1], flattened to 784. A
binary image is a Bernoulli draw from the grey levels:

```none
v_ij = 1[u_ij < x_ij],   u_ij ~ Uniform(0, 1)   so   v_ij ~ Bernoulli(x_ij)
```

where `x_ij` is the grey level of pixel `j` of image `i`. *Dynamic* binarisation draws fresh
`u` on every pass over the data (each epoch sees new binary images); *fixed* binarisation draws
`u` once from a seed (the protocol binarises the test set once, with a fixed seed).

`mnist()` returns a `tf.data.Dataset` where TensorFlow can be imported, and otherwise (or with
`as_numpy=True`) a `NumpyBatches` (`keras.utils.PyDataset`) with the same split, binarisation
and seeding semantics; Keras' `fit` takes either. Nothing here imports TensorFlow at import
time, so the module works under `KERAS_BACKEND=jax` with no TensorFlow installed.

The file is found by `find_mnist()`: the `path` argument, then the environment variable
`TFDLGM_MNIST`, then the Keras cache (`$KERAS_HOME/datasets/mnist.npz`, by default
`~/.keras/datasets/mnist.npz`), then the download `keras.datasets.mnist.load_data()` performs.

Frey faces (`frey_faces()`, Kingma & Welling's continuous data set): 1,965 frames of 28 x 20
8-bit grey levels, split in blocks of 15 consecutive frames (test: blocks b % 10 == 9, 195
frames; validation: b % 10 == 4, 195; train: the other 1,575), so that near-identical
neighbouring frames do not straddle two splits. A continuous model is fitted to the frames by
*uniform dequantisation* (Theis, van den Oord & Bethge 2016):

```none
x = (k + u) / 256,   u ~ Uniform(0, 1)^D,   k in {0, ..., 255}^D the 8-bit levels
log P(k) >= E_u[log p(x)] - D log 256
```

so a continuous density's log p(x), less D log 256, is a lower bound on the log-likelihood of
the 8-bit data (`discrete_log_likelihood`, `bits_per_dimension`). Training draws fresh `u` on
every pass (`dequantize="dynamic"`); the test set is dequantised once with a fixed seed.
The file is found by `find_frey_faces()`: the `path` argument, `TFDLGM_FREY_FACES`, the Keras
cache (`$KERAS_HOME/datasets/frey_faces.npz`); Keras has no download of it.
"""

from __future__ import annotations

import functools
import math
import os
import zipfile
import zlib
from typing import TYPE_CHECKING

import keras
import numpy as np

from tfdlgm import backend, validation

if TYPE_CHECKING:  # Annotations only: TensorFlow is imported when a tf.data pipeline is built.
    import tensorflow as tf

# "train+validation": the training and validation rows together, for a final fit once every
# choice has been made on the validation split (docs/architecture.md).
SPLITS = ("train", "validation", "test", "train+validation")
TRAINING_SPLITS = ("train", "train+validation")
BINARIZATIONS = ("dynamic", "fixed", None)
DEQUANTIZATIONS = ("dynamic", "fixed", None)
ENV_VAR = "TFDLGM_MNIST"
NUM_PIXELS = 28 * 28
NUM_TRAIN = 50_000

FREY_ENV_VAR = "TFDLGM_FREY_FACES"
FREY_FILE = "frey_faces.npz"
FREY_IMAGE_SHAPE = (28, 20)
FREY_NUM_FRAMES = 1965
# The Frey split: blocks of 15 consecutive frames (neighbouring frames are near-duplicates);
# block b is test where b % 10 == 9, validation where b % 10 == 4, train otherwise.
FREY_BLOCK = 15
FREY_SPLIT_OF_BLOCK = {9: "test", 4: "validation"}
# 8-bit data: 256 levels, dequantised as x = (level + u) / 256.
LEVELS = 256

# What `keras.datasets.mnist.load_data()` downloads, and the layout every mnist.npz must have.
_KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_KERAS_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_EXPECTED_ARRAYS = {"x_train": (60_000, 28, 28), "x_test": (10_000, 28, 28)}
_LAYOUT = (
    "Expected the layout of keras.datasets.mnist: arrays x_train (60000, 28, 28) uint8 and "
    "x_test (10000, 28, 28) uint8."
)
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)

# Independent NumPy random streams, as `SeedSequence(seed, spawn_key=(epoch, stream, ...))`.
_SHUFFLE_STREAM = 0
_BITS_STREAM = 1


def find_mnist(path: str | os.PathLike | None = None) -> str:
    """Finds the MNIST file (`mnist.npz`, the layout of `keras.datasets.mnist`).

    Looks, in order, at: (1) `path`, (2) the environment variable `TFDLGM_MNIST`, (3) the Keras
    cache `$KERAS_HOME/datasets/mnist.npz` (`~/.keras/datasets/mnist.npz` when `KERAS_HOME` is
    not set), (4) the download `keras.datasets.mnist.load_data()` performs, into that cache.
    A `path` or `TFDLGM_MNIST` that names no file is an error; the search does not go on
    past it.

    Args:
        path: str or path-like, the file to use. Defaults to `None` (search).

    Returns:
        The absolute path of the file found, as a str.

    Raises:
        FileNotFoundError: if `path` or `TFDLGM_MNIST` names no file, or if every place failed
            (the message lists each place and why).

    Example:

    ```python
    tfdlgm.datasets.find_mnist()              # e.g. '/home/me/.keras/datasets/mnist.npz'
    tfdlgm.datasets.find_mnist("data/mnist.npz")
    ```
    """
    return _find_file("MNIST", "mnist.npz", ENV_VAR, path, download=_download)


def find_frey_faces(path: str | os.PathLike | None = None) -> str:
    """Finds the Frey faces file (`frey_faces.npz`: key `x`, (1965, 28, 20) uint8).

    Looks, in order, at: (1) `path`, (2) the environment variable `TFDLGM_FREY_FACES`, (3) the
    Keras cache `$KERAS_HOME/datasets/frey_faces.npz`. There is no download: Keras ships no
    copy of this data set, so a file must be put in one of those places.

    Args:
        path: str or path-like, the file to use. Defaults to `None` (search).

    Returns:
        The absolute path of the file found, as a str.

    Raises:
        FileNotFoundError: if `path` or `TFDLGM_FREY_FACES` names no file, or if no place
            holds one (the message lists each place and why).
    """
    return _find_file("Frey faces", FREY_FILE, FREY_ENV_VAR, path, download=None)


def _find_file(title, filename, env_var, path, download):
    """The lookup every data set shares: argument, environment variable, Keras cache, then
    `download()` (where the data set has one); a `FileNotFoundError` listing every place."""
    fix = f"Set the environment variable {env_var}=/path/to/{filename} or pass path=."
    if path is not None:
        return _existing_file(
            title,
            path,
            "`path` argument",
            f"Pass the path of an existing {filename}, or leave `path` out to search {env_var} "
            "and the Keras cache.",
        )
    from_env = os.environ.get(env_var)
    if from_env:
        return _existing_file(
            title,
            from_env,
            f"environment variable {env_var}",
            f"Set {env_var} to an existing {filename}, or unset it to search the Keras cache.",
        )
    looked = ["the `path` argument: not given", f"the environment variable {env_var}: not set"]
    cache = _keras_cache_path(filename)
    if os.path.isfile(cache):
        return os.path.abspath(cache)
    looked.append(f"the Keras cache {cache}: no such file")
    if download is not None:
        try:
            downloaded = download()
        except Exception as error:  # Any failure of the download means "not found here".
            looked.append(
                f"the download of keras.datasets.mnist from {_KERAS_ORIGIN}: failed "
                f"({type(error).__name__}: {error})"
            )
        else:
            if downloaded is not None and os.path.isfile(downloaded):
                return os.path.abspath(os.fspath(downloaded))
            looked.append(
                f"the download of keras.datasets.mnist from {_KERAS_ORIGIN}: "
                f"gave {downloaded!r}, which is not a file"
            )
    places = "\n".join(f"  {number}. {place}" for number, place in enumerate(looked, start=1))
    raise FileNotFoundError(f"{title} ({filename}) was not found. Looked at:\n{places}\n{fix}")


def load_mnist_arrays(path: str | os.PathLike | None = None) -> dict:
    """Loads the MNIST splits as grey levels in [0, 1].

    The file is read and checked once per file (and modification time); later calls return
    the same arrays, which are read-only (`array.copy()` gives a writable one).

    Args:
        path: str or path-like, the `mnist.npz` file. Defaults to `None` (`find_mnist()`
            searches `TFDLGM_MNIST`, the Keras cache, then the download).

    Returns:
        A dict with keys `"train"` (50000, 784), `"validation"` (10000, 784) and `"test"`
        (10000, 784): float32 arrays equal to the uint8 intensities / 255. Train is the first
        50,000 rows of `x_train`, validation its last 10,000, test is `x_test`.

    Raises:
        FileNotFoundError: if no file is found (see `find_mnist`).
        ValueError: if the file is not a valid `.npz`, or lacks `x_train` or `x_test`, or one
            of them has the wrong shape or dtype.

    Example:

    ```python
    arrays = tfdlgm.datasets.load_mnist_arrays()
    arrays["validation"].shape        # (10000, 784)
    ```
    """
    resolved = find_mnist(path)
    stat = os.stat(resolved)
    return dict(_load_splits(os.path.realpath(resolved), stat.st_mtime_ns, stat.st_size))


def fixed_binarization(x, seed: int) -> np.ndarray:
    """Binarises grey levels once, with a fixed seed: `v = 1[u < x]`, `u ~ Uniform(0, 1)`.

    The uniforms come from `numpy.random.Generator(PCG64(seed))` (float32), whose stream NumPy
    keeps stable, so the bits are the same on every run and machine for a given `seed`.

    Args:
        x: array-like of grey levels in [0, 1], any shape.
        seed: int >= 0, the seed of the draw.

    Returns:
        A float32 array of the shape of `x`, holding 0. and 1., with `mean(v) ~= x`.

    Raises:
        ValueError: if `seed` is not a non-negative int, or `x` holds values outside [0, 1].

    Example:

    ```python
    bits = tfdlgm.datasets.fixed_binarization(np.full((2, 3), 0.5), seed=0)
    bits.dtype, set(np.unique(bits))   # (dtype('float32'), {0.0, 1.0})
    ```
    """
    validation.check_nonnegative_int(seed, "seed")
    x = np.asarray(x)
    outside = ~((x >= 0) & (x <= 1))
    if np.any(outside):
        raise ValueError(
            "`x` must hold grey levels in [0, 1] (intensities / 255). Received: x with "
            f"{int(outside.sum())} values outside [0, 1], e.g. {x[outside].flat[0].item()!r}."
        )
    uniforms = np.random.Generator(np.random.PCG64(int(seed))).random(x.shape, dtype=np.float32)
    return (uniforms < x).astype(np.float32)


def mnist(
    split: str = "train",
    binarize: str | None = "dynamic",
    batch_size: int = 100,
    seed: int = 0,
    path: str | os.PathLike | None = None,
    shuffle: bool | None = None,
    drop_remainder: bool = False,
    as_numpy: bool = False,
) -> tf.data.Dataset | NumpyBatches:
    """MNIST batches for training and evaluation, by the evaluation protocol.

    Batches hold images only (no labels): float32 arrays of shape `(batch, 784)`. With
    `binarize="dynamic"` every pass over the data draws new binary images `v ~ Bernoulli(x)`
    from the grey levels `x`; the sequence of passes is the same for the same `seed`. Shuffling
    is seeded too and draws a new order on each pass.

    Where TensorFlow can be imported (under either backend) and `as_numpy` is False, the
    result is a `tf.data.Dataset`: each iteration over it is a pass. Its random streams come
    from `seed` and TensorFlow's global seed (`keras.utils.set_random_seed` sets it), so set
    that the same too when comparing runs. Otherwise the result is a `NumpyBatches`
    (`keras.utils.PyDataset`): a pass ends with `on_epoch_end()`, which `fit` calls, or with a
    full Python iteration over it. Both draw their bits from `seed`, but not the same bits.

    Args:
        split: str, one of `"train"` (50,000 images), `"validation"` (10,000), `"test"`
            (10,000) or `"train+validation"` (all 60,000 of MNIST's training images, the
            training rows first). Defaults to `"train"`.
        binarize: str or None: `"dynamic"` (a new draw on every pass), `"fixed"` (one draw,
            `fixed_binarization(x, seed)`), or `None` (grey levels in [0, 1]). Defaults to
            `"dynamic"`.
        batch_size: int >= 1, images per batch. Defaults to `100`.
        seed: int >= 0, seeds the binarisation and the shuffling. Defaults to `0`.
        path: str or path-like, the `mnist.npz` file. Defaults to `None` (see `find_mnist`).
        shuffle: bool or None, whether to shuffle on each pass. Defaults to `None`: True for
            `"train"` and `"train+validation"`, False otherwise.
        drop_remainder: bool, whether to drop a last batch smaller than `batch_size`.
            Defaults to `False`.
        as_numpy: bool, return `NumpyBatches` even where TensorFlow is available. Defaults to
            `False`.

    Returns:
        A `tf.data.Dataset` of float32 `(batch, 784)` tensors, or a `NumpyBatches` of float32
        `(batch, 784)` NumPy arrays whose `len()` is the number of batches.

    Raises:
        ValueError: if an argument is invalid, or the file is malformed (see
            `load_mnist_arrays`).
        FileNotFoundError: if no MNIST file is found (see `find_mnist`).

    Example:

    ```python
    train = tfdlgm.datasets.mnist("train", batch_size=200)
    test = tfdlgm.datasets.mnist("test", binarize="fixed", seed=0, batch_size=500)
    model.fit(train, epochs=10)
    ```
    """
    return _split_dataset(
        lambda: _split_rows(load_mnist_arrays(path), split),
        split,
        batch_size,
        seed,
        shuffle,
        drop_remainder,
        as_numpy,
        binarize=binarize,
    )


def load_frey_faces_arrays(path: str | os.PathLike | None = None) -> dict:
    """Loads the Frey faces splits as 8-bit levels.

    The file is read and checked once per file (and modification time); later calls return
    the same arrays, which are read-only.

    Args:
        path: str or path-like, the `frey_faces.npz` file. Defaults to `None`
            (`find_frey_faces()` searches `TFDLGM_FREY_FACES` and the Keras cache).

    Returns:
        A dict with keys `"train"` (1575, 560), `"validation"` (195, 560) and `"test"`
        (195, 560): uint8 arrays of the levels 0..255 of each frame, row-major 28 x 20, in
        frame order, split by blocks of 15 frames (see the module docstring).

    Raises:
        FileNotFoundError: if no file is found (see `find_frey_faces`).
        ValueError: if the file is not a valid `.npz`, or lacks `x`, or `x` is not
            (1965, 28, 20) uint8.
    """
    resolved = find_frey_faces(path)
    stat = os.stat(resolved)
    return dict(_load_frey_splits(os.path.realpath(resolved), stat.st_mtime_ns, stat.st_size))


def frey_split(num_frames: int = FREY_NUM_FRAMES) -> np.ndarray:
    """The split of each frame, `"train"`, `"validation"` or `"test"`, by its block of 15.

    Returns:
        A str array `[num_frames]`: frame i is in block b = i // 15, which is test where
        b % 10 == 9, validation where b % 10 == 4, train otherwise.
    """
    blocks = np.arange(num_frames) // FREY_BLOCK
    return np.array([FREY_SPLIT_OF_BLOCK.get(int(b) % 10, "train") for b in blocks])


def fixed_dequantization(levels, seed: int) -> np.ndarray:
    """Dequantises 8-bit levels once, with a fixed seed: `x = (k + u) / 256`, `u ~ U(0, 1)`.

    The uniforms come from `numpy.random.Generator(PCG64(seed))` (float32), as in
    `fixed_binarization`, so the test set's values are the same on every run and machine.

    Args:
        levels: array-like of integer levels in 0..255, any shape.
        seed: int >= 0, the seed of the draw.

    Returns:
        A float32 array of the shape of `levels`, with values in [0, 1].

    Raises:
        ValueError: if `seed` is not a non-negative int, or `levels` holds values that are not
            integers in 0..255.
    """
    validation.check_nonnegative_int(seed, "seed")
    levels = _check_levels(levels)
    uniforms = np.random.Generator(np.random.PCG64(int(seed))).random(
        levels.shape, dtype=np.float32
    )
    return _dequantize(levels, uniforms)


def discrete_log_likelihood(log_density, num_dims: int):
    """The bound on the 8-bit data's log-likelihood that a dequantised density gives.

    ```none
    log P(k) >= log p(x) - D log 256      (x = (k + u) / 256, Theis et al. 2016)
    ```

    Args:
        log_density: float or array, log p(x) in nats of a model of the dequantised data.
        num_dims: int, D, the dimensions per example (560 for Frey faces).

    Returns:
        The bound, in nats per example, of the shape of `log_density`.
    """
    return np.asarray(log_density, dtype=np.float64) - num_dims * math.log(LEVELS)


def bits_per_dimension(log_likelihood, num_dims: int):
    """`-log P / (D log 2)`: a log-likelihood in nats per example as bits per dimension."""
    return -np.asarray(log_likelihood, dtype=np.float64) / (num_dims * math.log(2))


def frey_faces(
    split: str = "train",
    dequantize: str | None = "dynamic",
    batch_size: int = 100,
    seed: int = 0,
    path: str | os.PathLike | None = None,
    shuffle: bool | None = None,
    drop_remainder: bool = False,
    as_numpy: bool = False,
) -> tf.data.Dataset | NumpyBatches:
    """Frey faces batches: continuous data for a Gaussian decoder, by the density protocol.

    Batches hold frames only: float32 arrays `(batch, 560)` (row-major 28 x 20) of dequantised
    levels `x = (k + u) / 256` in [0, 1] (module docstring). The same pipelines as `mnist()`:
    a `tf.data.Dataset` where TensorFlow can be imported, else a `NumpyBatches`.

    Args:
        split: str, `"train"` (1,575 frames), `"validation"` (195), `"test"` (195) or
            `"train+validation"` (1,770, the training frames first). Defaults to `"train"`.
        dequantize: str or None: `"dynamic"` (new `u` on every pass), `"fixed"` (one draw,
            `fixed_dequantization(k, seed)`; the protocol's test set, seed 0), or `None`
            (the bins' centres, `(k + 0.5) / 256`). Defaults to `"dynamic"`.
        batch_size: int >= 1, frames per batch. Defaults to `100`.
        seed: int >= 0, seeds the dequantisation and the shuffling. Defaults to `0`.
        path: str or path-like, the `frey_faces.npz` file. Defaults to `None` (see
            `find_frey_faces`).
        shuffle: bool or None, whether to shuffle on each pass. Defaults to `None`: True for
            `"train"` and `"train+validation"`, False otherwise.
        drop_remainder: bool, whether to drop a last batch smaller than `batch_size`.
            Defaults to `False`.
        as_numpy: bool, return `NumpyBatches` even where TensorFlow is available. Defaults to
            `False`.

    Returns:
        A `tf.data.Dataset` or a `NumpyBatches` of float32 `(batch, 560)` batches.

    Raises:
        ValueError: if an argument is invalid, or the file is malformed.
        FileNotFoundError: if no file is found (see `find_frey_faces`).

    Example:

    ```python
    train = tfdlgm.datasets.frey_faces("train", batch_size=100)
    test = next(iter(tfdlgm.datasets.frey_faces("test", dequantize="fixed", batch_size=195)))
    model = tfdlgm.models.VAE(latent_dim=10, data_dim=560, likelihood="gaussian")
    ```
    """

    def levels():
        k = _split_rows(load_frey_faces_arrays(path), split).astype(np.float32)
        return k if dequantize is not None else (k + np.float32(0.5)) / np.float32(LEVELS)

    return _split_dataset(
        levels, split, batch_size, seed, shuffle, drop_remainder, as_numpy, dequantize=dequantize
    )


def _split_dataset(
    load, split, batch_size, seed, shuffle, drop_remainder, as_numpy, binarize=None, dequantize=None
):
    """The batches of one split, as `mnist()` and `frey_faces()` serve them: the arguments
    checked, then `load()` (the split's rows) read, shuffled by default for training."""
    validation.check_choice(split, "split", SPLITS)
    _check_dataset_args(binarize, batch_size, seed, drop_remainder, dequantize)
    validation.check_bool(shuffle, "shuffle", allow_none=True)
    validation.check_bool(as_numpy, "as_numpy")
    if shuffle is None:
        shuffle = split in TRAINING_SPLITS
    return _make_dataset(
        load(),
        binarize=binarize,
        batch_size=batch_size,
        seed=seed,
        shuffle=shuffle,
        drop_remainder=drop_remainder,
        as_numpy=as_numpy,
        dequantize=dequantize,
    )


def _split_rows(arrays, split):
    """The rows of `split` among the arrays of `load_mnist_arrays` (or the Frey faces'):
    `"train+validation"` is the training rows, then the validation rows."""
    if split == "train+validation":
        return np.concatenate([arrays["train"], arrays["validation"]])
    return arrays[split]


class NumpyBatches(keras.utils.PyDataset):
    """Batches of (binarised) images as NumPy arrays: a `keras.utils.PyDataset`.

    What `mnist()` returns where TensorFlow is absent or `as_numpy=True`. Batch `index` of pass
    `epoch` is a function of `(seed, epoch, index)` only, so batches may be read in any order
    and from several workers. The pass advances with `on_epoch_end()`, which Keras' `fit`
    calls after each epoch, and after a full Python iteration (`for batch in ds`), so each
    iteration over it, like one over a `tf.data.Dataset`, is a new pass. (`fit(shuffle=True)`,
    Keras' default, also reorders the batches with Python's `random`; pass `shuffle=False` to
    `fit` to keep the order this dataset draws.)

    ```none
    order_e = permutation(n; SeedSequence(seed, spawn_key=(e, 0)))   if shuffle
    u ~ Uniform(0, 1; SeedSequence(seed, spawn_key=(e, 1, index)))
    v = 1[u < x]          (binarize)      or      v = (x + u) / 256      (dequantize)
    ```

    Args:
        x: array-like `(n, d)` of grey levels in [0, 1] (or of 8-bit levels 0..255 with
            `dequantize`).
        batch_size: int >= 1, rows per batch. Defaults to `100`.
        binarize: `"dynamic"`, `"fixed"` or `None`, as in `mnist()`. Defaults to `"dynamic"`.
        seed: int >= 0. Defaults to `0`.
        shuffle: bool, whether to shuffle the rows on each pass. Defaults to `False`.
        drop_remainder: bool, whether to drop a last batch smaller than `batch_size`.
            Defaults to `False`.
        dequantize: `"dynamic"`, `"fixed"` or `None`, as in `frey_faces()`; needs
            `binarize=None`. Defaults to `None`.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of `PyDataset`.

    Example:

    ```python
    ds = NumpyBatches(np.full((10, 784), 0.5, "float32"), batch_size=4)
    len(ds), ds[2].shape              # (3, (2, 784))
    ```
    """

    def __init__(
        self,
        x,
        batch_size: int = 100,
        binarize: str | None = "dynamic",
        seed: int = 0,
        shuffle: bool = False,
        drop_remainder: bool = False,
        dequantize: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_dataset_args(binarize, batch_size, seed, drop_remainder, dequantize)
        validation.check_bool(shuffle, "shuffle")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"`x` must be a 2-D array (n, d). Received: x.shape={x.shape}")
        self._x = _fixed_draw(x, binarize, dequantize, seed)
        self._draw = _DRAWS[binarize, dequantize]
        self._batch_size = int(batch_size)
        self._seed = int(seed)
        self._shuffle = shuffle
        self._drop_remainder = drop_remainder
        self._epoch = 0
        self._order = self._epoch_order()

    @property
    def epoch(self) -> int:
        """The number of passes completed (`on_epoch_end` calls); it seeds the current pass."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Makes the current pass pass number `epoch` (0-based): its order and bits are those
        an uninterrupted run draws then. `tfdlgm.training.train` calls it when resuming, so
        a resumed run sees the batches the run that was never stopped saw."""
        self._epoch = validation.check_nonnegative_int(epoch, "epoch")
        self._order = self._epoch_order()

    def __len__(self) -> int:
        num_rows = self._x.shape[0]
        if self._drop_remainder:
            return num_rows // self._batch_size
        return math.ceil(num_rows / self._batch_size)

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} is out of range: there are {len(self)} batches.")
        start = index * self._batch_size
        batch = self._x[self._order[start : start + self._batch_size]]
        if self._draw is None:
            return batch
        sequence = np.random.SeedSequence(self._seed, spawn_key=(self._epoch, _BITS_STREAM, index))
        uniforms = np.random.Generator(np.random.PCG64(sequence)).random(
            batch.shape, dtype=np.float32
        )
        return self._draw(batch, uniforms).astype(np.float32)

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]
        self.on_epoch_end()

    def on_epoch_end(self):
        """Starts the next pass: new bits (dynamic binarisation) and a new order (shuffle)."""
        self._epoch += 1
        self._order = self._epoch_order()

    def _epoch_order(self):
        num_rows = self._x.shape[0]
        if not self._shuffle:
            return np.arange(num_rows)
        sequence = np.random.SeedSequence(self._seed, spawn_key=(self._epoch, _SHUFFLE_STREAM))
        return np.random.Generator(np.random.PCG64(sequence)).permutation(num_rows)


def _make_dataset(
    x,
    binarize="dynamic",
    batch_size=100,
    seed=0,
    shuffle=False,
    drop_remainder=False,
    as_numpy=False,
    dequantize=None,
):
    """Batches of the rows of `x` (`(n, d)`) as `mnist()` and `frey_faces()` make them."""
    tf = None if as_numpy else backend.tensorflow_for_data()
    if tf is None:
        return NumpyBatches(
            x,
            batch_size=batch_size,
            binarize=binarize,
            seed=seed,
            shuffle=shuffle,
            drop_remainder=drop_remainder,
            dequantize=dequantize,
        )
    return _tf_dataset(tf, x, binarize, batch_size, seed, shuffle, drop_remainder, dequantize)


def _tf_dataset(tf, x, binarize, batch_size, seed, shuffle, drop_remainder, dequantize=None):
    """The `tf.data` pipeline: shuffled row indices -> batches -> gather -> random draw."""
    _check_dataset_args(binarize, batch_size, seed, drop_remainder, dequantize)
    x = _fixed_draw(np.asarray(x, dtype=np.float32), binarize, dequantize, seed)
    draw = _DRAWS[binarize, dequantize]
    shuffle_seed, bits_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    with tf.device("/CPU:0"):
        images = tf.constant(x)
    rows = tf.data.Dataset.range(x.shape[0])
    if shuffle:
        rows = rows.shuffle(x.shape[0], seed=shuffle_seed, reshuffle_each_iteration=True)
    rows = rows.batch(batch_size, drop_remainder=drop_remainder)
    if draw is None:
        batches = rows.map(
            lambda index: tf.gather(images, index), num_parallel_calls=tf.data.AUTOTUNE
        )
        return batches.prefetch(tf.data.AUTOTUNE)

    def noisy(index, pair_seed):
        values = tf.gather(images, index)
        uniforms = tf.random.stateless_uniform(tf.shape(values), seed=pair_seed, dtype=tf.float32)
        return tf.cast(draw(values, uniforms), tf.float32)

    # One stateless seed pair per batch; a new sequence of pairs on every iteration (pass).
    seeds = tf.data.Dataset.random(seed=bits_seed, rerandomize_each_iteration=True).batch(2)
    batches = tf.data.Dataset.zip((rows, seeds)).map(noisy, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def _binarize(grey, uniforms):
    return uniforms < grey


def _dequantize(levels, uniforms):
    return (levels + uniforms) / LEVELS


# The per-pass draw of each (binarize, dequantize) setting: None where a batch is served as is.
_DRAWS = {
    ("dynamic", None): _binarize,
    (None, "dynamic"): _dequantize,
    ("fixed", None): None,
    (None, "fixed"): None,
    (None, None): None,
}


def _fixed_draw(x, binarize, dequantize, seed):
    """`x` as the batches serve it: drawn once where the setting is "fixed"."""
    if binarize == "fixed":
        return fixed_binarization(x, seed)
    if dequantize == "fixed":
        return fixed_dequantization(x, seed)
    if dequantize == "dynamic":
        _check_levels(x)
    return x


def _check_levels(levels):
    levels = np.asarray(levels)
    bad = ~((levels >= 0) & (levels <= LEVELS - 1) & (np.floor(levels) == levels))
    if np.any(bad):
        raise ValueError(
            f"Dequantisation needs 8-bit levels, integers in 0..{LEVELS - 1}. Received: "
            f"{int(bad.sum())} other values, e.g. {levels[bad].flat[0].item()!r}."
        )
    return levels.astype(np.float32)


def _download():
    """Downloads MNIST into the Keras cache as `keras.datasets.mnist.load_data()` does.

    Returns:
        The path of the downloaded (or already cached) `mnist.npz`.
    """
    return keras.utils.get_file(fname="mnist.npz", origin=_KERAS_ORIGIN, file_hash=_KERAS_SHA256)


def _keras_cache_path(filename):
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "datasets", filename)


def _existing_file(title, path, source, fix):
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(path):
        reason = "is a directory" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"The {title} file {path} (from the {source}) {reason}. {fix}")
    return path


@functools.lru_cache(maxsize=2)
def _load_splits(path, mtime_ns, size):
    """The splits of the file at `path` (mtime and size key the cache), read once."""
    del mtime_ns, size
    arrays = _read_mnist_npz(path)
    x_train = arrays["x_train"].reshape(-1, NUM_PIXELS)
    raw = {
        "train": x_train[:NUM_TRAIN],
        "validation": x_train[NUM_TRAIN:],
        "test": arrays["x_test"].reshape(-1, NUM_PIXELS),
    }
    splits = {}
    for split, intensities in raw.items():
        grey = intensities.astype(np.float32) / np.float32(255)
        grey.flags.writeable = False
        splits[split] = grey
    return splits


@functools.lru_cache(maxsize=2)
def _load_frey_splits(path, mtime_ns, size):
    """The Frey splits of the file at `path` (mtime and size key the cache), read once."""
    del mtime_ns, size
    shape = (FREY_NUM_FRAMES, *FREY_IMAGE_SHAPE)
    frames = _read_npz(
        path,
        {"x": shape},
        "Frey faces",
        f"Expected an array x {shape} uint8 (the frames in their original order).",
    )["x"].reshape(FREY_NUM_FRAMES, -1)
    split_of_frame = frey_split()
    splits = {}
    for split in ("train", "validation", "test"):  # "train+validation" joins two of them
        levels = frames[split_of_frame == split]
        levels.flags.writeable = False
        splits[split] = levels
    return splits


def _read_mnist_npz(path):
    return _read_npz(path, _EXPECTED_ARRAYS, "MNIST", _LAYOUT)


def _read_npz(path, expected_arrays, title, layout):
    """The uint8 arrays `expected_arrays` ({name: shape}) of an `.npz` file, checked."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a valid .npz file (it is not a zip archive). {layout}")
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as error:
        raise ValueError(f"{path} is not a valid .npz file ({error}). {layout}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a valid .npz file (it holds no named arrays). {layout}")
    arrays = {}
    with archive:
        for name, shape in expected_arrays.items():
            if name not in archive.files:
                raise ValueError(
                    f"The {title} file {path} has no array `{name}`. {layout} "
                    f"Received: arrays {sorted(archive.files)}."
                )
            try:
                array = archive[name]
            except _READ_ERRORS as error:
                raise ValueError(
                    f"Array `{name}` of the {title} file {path} cannot be read ({error})."
                ) from error
            if array.shape != shape or array.dtype != np.uint8:
                raise ValueError(
                    f"Array `{name}` of the {title} file {path} must have shape {shape} and "
                    f"dtype uint8. Received: shape={array.shape}, dtype={array.dtype}."
                )
            arrays[name] = array
    return arrays


def _check_dataset_args(binarize, batch_size, seed, drop_remainder, dequantize=None):
    validation.check_choice(binarize, "binarize", BINARIZATIONS)
    validation.check_choice(dequantize, "dequantize", DEQUANTIZATIONS)
    if binarize is not None and dequantize is not None:
        raise ValueError(
            "Pass `binarize` (binary data) or `dequantize` (8-bit data), not both. "
            f"Received: binarize={binarize!r}, dequantize={dequantize!r}"
        )
    validation.check_positive_int(batch_size, "batch_size")
    validation.check_nonnegative_int(seed, "seed")
    validation.check_bool(drop_remainder, "drop_remainder")
