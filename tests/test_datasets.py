"""Tests for tfdlgm.datasets: the split, binarisation, file lookup and checks, both pipelines.

"numpy" is the `NumpyBatches` (PyDataset) pipeline, "tf" the `tf.data` one (skipped where
TensorFlow is not installed). Both run under either Keras backend.
"""

import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfdlgm import datasets

# 0.5 binarised with seed 0 by PCG64's float32 stream: pins the bits across runs and machines.
GOLDEN_BITS_SEED_0 = [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def arrays(mnist_path):
    return datasets.load_mnist_arrays(mnist_path)


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    """A well-formed mnist.npz of zeros, but for one white pixel in x_test[0]."""
    path = tmp_path_factory.mktemp("fake") / "mnist.npz"
    x_test = np.zeros((10000, 28, 28), np.uint8)
    x_test[0, 0, 0] = 255
    np.savez_compressed(path, x_train=np.zeros((60000, 28, 28), np.uint8), x_test=x_test)
    return str(path)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No MNIST anywhere: no TFDLGM_MNIST, an empty HOME, no KERAS_HOME, an offline download.

    Returns the list of download attempts.
    """
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    attempts = []

    def offline():
        attempts.append("download")
        raise OSError("no network in tests")

    monkeypatch.setattr(datasets, "_download", offline)
    return attempts


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


def _one_pass(dataset):
    return [np.asarray(batch) for batch in dataset]


def _assert_binary(batch):
    assert batch.dtype == np.float32
    assert np.isin(batch, [0.0, 1.0]).all()


def _as_uint8(x):
    return np.rint(x * 255).astype(np.uint8)


# The split.


def test_splits_are_the_protocol_rows(arrays, mnist_path):
    with np.load(mnist_path) as raw:
        x_train = raw["x_train"].reshape(-1, 784)
        x_test = raw["x_test"].reshape(-1, 784)
    expected = {
        "train": x_train[:50000],
        "validation": x_train[50000:],
        "test": x_test,
    }
    assert sorted(arrays) == ["test", "train", "validation"]
    for split, intensities in expected.items():
        x = arrays[split]
        assert x.shape == (len(intensities), 784) == ({"train": 50000}.get(split, 10000), 784)
        assert x.dtype == np.float32
        assert x.min() == 0.0 and x.max() == 1.0
        assert np.array_equal(x, intensities.astype(np.float32) / np.float32(255))


def test_splits_share_no_row(arrays):
    rows = {split: {row.tobytes() for row in _as_uint8(x)} for split, x in arrays.items()}
    assert {split: len(r) for split, r in rows.items()} == {
        "train": 50000,
        "validation": 10000,
        "test": 10000,
    }
    assert not rows["train"] & rows["validation"]
    assert not rows["train"] & rows["test"]
    assert not rows["validation"] & rows["test"]


def test_arrays_are_loaded_once_and_read_only(arrays, mnist_path):
    again = datasets.load_mnist_arrays(mnist_path)
    assert again is not arrays
    for split in arrays:
        assert again[split] is arrays[split]
        assert not arrays[split].flags.writeable


def test_train_and_validation_together_are_all_60000_training_images_shuffled(
    arrays, mnist_path, as_numpy
):
    ordered = datasets.mnist(
        "train+validation",
        binarize=None,
        batch_size=30_000,
        path=mnist_path,
        shuffle=False,
        as_numpy=as_numpy,
    )
    x = np.concatenate([np.asarray(batch) for batch in ordered])
    np.testing.assert_array_equal(x, np.concatenate([arrays["train"], arrays["validation"]]))
    shuffled = datasets.mnist(
        "train+validation", binarize=None, batch_size=30_000, path=mnist_path, as_numpy=as_numpy
    )
    first = np.asarray(next(iter(shuffled)))
    assert first.shape == (30_000, 784) and not np.array_equal(first, x[:30_000])


def test_mnist_serves_the_split(arrays, mnist_path, as_numpy):
    for split in ("validation", "test"):
        ds = datasets.mnist(
            split, binarize=None, batch_size=4000, path=mnist_path, as_numpy=as_numpy
        )
        batches = _one_pass(ds)
        assert [len(b) for b in batches] == [4000, 4000, 2000]
        np.testing.assert_array_equal(np.concatenate(batches), arrays[split])
    train = datasets.mnist(
        "train", binarize=None, batch_size=500, path=mnist_path, as_numpy=as_numpy
    )
    first = np.asarray(next(iter(train)))
    assert first.shape == (500, 784)
    assert not np.array_equal(first, arrays["train"][:500]), "train must shuffle by default"
    assert set(map(bytes, _as_uint8(first))) <= set(map(bytes, _as_uint8(arrays["train"])))


def test_mnist_returns_the_pipeline_asked_for(mnist_path, as_numpy):
    ds = datasets.mnist("validation", batch_size=100, path=mnist_path, as_numpy=as_numpy)
    if as_numpy:
        assert isinstance(ds, datasets.NumpyBatches)
        assert isinstance(ds, keras.utils.PyDataset)
        assert len(ds) == 100
    else:
        import tensorflow as tf

        assert isinstance(ds, tf.data.Dataset)
        assert ds.element_spec == tf.TensorSpec((None, 784), tf.float32)
        dropped = datasets.mnist(
            "validation", batch_size=300, drop_remainder=True, path=mnist_path
        ).element_spec
        assert dropped == tf.TensorSpec((300, 784), tf.float32)


# Dynamic binarisation.


def test_dynamic_passes_differ_and_are_binary(arrays, mnist_path, as_numpy):
    grey = arrays["validation"]
    ds = datasets.mnist("validation", batch_size=2500, seed=0, path=mnist_path, as_numpy=as_numpy)
    first, second = np.concatenate(_one_pass(ds)), np.concatenate(_one_pass(ds))
    for bits in (first, second):
        assert bits.shape == (10000, 784)
        _assert_binary(bits)
        assert (bits[grey == 0] == 0).all() and (bits[grey == 1] == 1).all()
    grey_pixels = (grey > 0) & (grey < 1)
    assert (first != second)[grey_pixels].mean() > 0.1


def test_dynamic_mean_matches_grey_level(arrays, as_numpy):
    grey = arrays["validation"][:8]
    ds = datasets._make_dataset(grey, "dynamic", batch_size=8, seed=0, as_numpy=as_numpy)
    passes = 200
    mean = np.mean([_one_pass(ds)[0] for _ in range(passes)], axis=0)
    std = np.sqrt(grey * (1 - grey) / passes)
    # Pixels away from 0 and 1 are near-normal: each within 5 standard deviations.
    middle = (grey > 0.1) & (grey < 0.9)
    assert middle.sum() > 300
    assert (np.abs(mean - grey)[middle] <= 5 * std[middle]).all()
    # All pixels together: the total count of ones, as a z-score.
    z = (mean.sum() - grey.sum()) / np.sqrt(np.sum(grey * (1 - grey)) / passes)
    assert abs(z) < 5
    assert (mean[grey == 0] == 0).all() and (mean[grey == 1] == 1).all()


def test_dynamic_same_seed_same_passes(arrays, as_numpy):
    grey = arrays["validation"][:50]

    def two_passes(seed):
        ds = datasets._make_dataset(
            grey, "dynamic", batch_size=16, seed=seed, shuffle=True, as_numpy=as_numpy
        )
        return [np.concatenate(_one_pass(ds)) for _ in range(2)]

    first, second = two_passes(seed=3)
    again_first, again_second = two_passes(seed=3)
    np.testing.assert_array_equal(first, again_first)
    np.testing.assert_array_equal(second, again_second)
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, two_passes(seed=4)[0])


def test_shuffle_is_a_new_permutation_each_pass(as_numpy):
    num_rows = 40
    x = np.repeat(np.arange(num_rows, dtype=np.float32)[:, None] / num_rows, 3, axis=1)

    def orders(shuffle):
        ds = datasets._make_dataset(
            x, None, batch_size=16, seed=0, shuffle=shuffle, as_numpy=as_numpy
        )
        return [np.rint(np.concatenate(_one_pass(ds))[:, 0] * num_rows) for _ in range(2)]

    first, second = orders(shuffle=True)
    for order in (first, second):
        np.testing.assert_array_equal(np.sort(order), np.arange(num_rows))
        assert not np.array_equal(order, np.arange(num_rows))
    assert not np.array_equal(first, second)
    for order in orders(shuffle=False):
        np.testing.assert_array_equal(order, np.arange(num_rows))


def test_batch_sizes_and_drop_remainder(as_numpy):
    x = np.full((10, 5), 0.5, np.float32)
    for drop_remainder, sizes in ((False, [4, 4, 2]), (True, [4, 4])):
        ds = datasets._make_dataset(
            x, "dynamic", batch_size=4, drop_remainder=drop_remainder, as_numpy=as_numpy
        )
        batches = _one_pass(ds)
        assert [b.shape for b in batches] == [(n, 5) for n in sizes]
        for batch in batches:
            _assert_binary(batch)
        if as_numpy:
            assert len(ds) == len(sizes)


def test_numpy_batches_epochs():
    ds = datasets.NumpyBatches(np.full((10, 784), 0.5, np.float32), batch_size=4, seed=1)
    assert len(ds) == 3 and ds.epoch == 0
    np.testing.assert_array_equal(ds[1], ds[1])  # A batch is a function of (seed, epoch, index).
    for index in (-1, 3):
        with pytest.raises(IndexError, match="3 batches"):
            ds[index]
    before = ds[0]
    next(iter(ds))  # A partial pass does not end the epoch.
    assert ds.epoch == 0
    np.testing.assert_array_equal(ds[0], before)
    ds.on_epoch_end()
    assert ds.epoch == 1
    assert not np.array_equal(ds[0], before)
    _one_pass(ds)  # A full pass does.
    assert ds.epoch == 2


class _DenseAutoencoder(keras.Model):
    """x -> sigmoid(Dense(x)), trained on x alone (its loss needs no targets)."""

    def __init__(self):
        super().__init__(name="dense_autoencoder")
        self.dense = keras.layers.Dense(784, activation="sigmoid")

    def call(self, x):
        return self.dense(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return keras.ops.mean(keras.ops.square(y_pred - x))


def test_fit_takes_the_dataset(arrays, as_numpy):
    ds = datasets._make_dataset(arrays["validation"][:64], batch_size=16, as_numpy=as_numpy)
    model = _DenseAutoencoder()
    model.compile(optimizer="sgd")
    # shuffle=False: the dataset shuffles itself; Keras would only reorder its batches.
    history = model.fit(ds, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()
    if as_numpy:
        assert ds.epoch >= 2  # fit calls on_epoch_end after every epoch: a new draw each.


# Fixed binarisation.


def test_fixed_binarization_is_reproducible(arrays):
    grey = arrays["validation"][:1000]
    bits = datasets.fixed_binarization(grey, seed=0)
    assert bits.shape == grey.shape
    _assert_binary(bits)
    np.testing.assert_array_equal(bits, datasets.fixed_binarization(grey, seed=0))
    assert not np.array_equal(bits, datasets.fixed_binarization(grey, seed=1))
    assert (bits[grey == 0] == 0).all() and (bits[grey == 1] == 1).all()
    z = (bits.sum() - grey.sum()) / np.sqrt(np.sum(grey * (1 - grey)))
    assert abs(z) < 5


def test_fixed_binarization_golden_bits():
    bits = datasets.fixed_binarization(np.full(16, 0.5, np.float32), seed=0)
    np.testing.assert_array_equal(bits, GOLDEN_BITS_SEED_0)


def test_mnist_fixed_is_one_draw(arrays, mnist_path, as_numpy):
    ds = datasets.mnist(
        "test", binarize="fixed", seed=0, batch_size=5000, path=mnist_path, as_numpy=as_numpy
    )
    expected = datasets.fixed_binarization(arrays["test"], seed=0)
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate(_one_pass(ds)), expected)


@pytest.mark.parametrize(
    "x, seed, match",
    [
        (np.array([0.5, 1.5]), 0, r"\[0, 1\].*1.5"),
        (np.array([np.nan]), 0, r"\[0, 1\].*nan"),
        (np.array([255], np.uint8), 0, r"\[0, 1\].*255"),
        (np.array([0.5]), 1.0, r"`seed` must be a non-negative int. Received: seed=1.0"),
        (np.array([0.5]), -1, r"Received: seed=-1"),
    ],
)
def test_fixed_binarization_rejects(x, seed, match):
    with pytest.raises(ValueError, match=match):
        datasets.fixed_binarization(x, seed)


# Finding the file.


def test_find_explicit_path_first(tmp_path, monkeypatch, nowhere):
    explicit = _touch(tmp_path / "explicit" / "mnist.npz")
    monkeypatch.setenv(datasets.ENV_VAR, _touch(tmp_path / "env" / "mnist.npz"))
    _touch(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz")
    assert datasets.find_mnist(explicit) == explicit
    assert datasets.find_mnist(tmp_path / "explicit" / "mnist.npz") == explicit
    assert nowhere == []


def test_find_env_var_second(tmp_path, monkeypatch, nowhere):
    from_env = _touch(tmp_path / "env" / "mnist.npz")
    monkeypatch.setenv(datasets.ENV_VAR, from_env)
    _touch(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz")
    assert datasets.find_mnist() == from_env
    assert nowhere == []


def test_find_keras_cache_in_home(tmp_path, nowhere):
    cached = _touch(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz")
    assert datasets.find_mnist() == cached
    assert nowhere == []


def test_find_keras_cache_in_keras_home(tmp_path, monkeypatch, nowhere):
    _touch(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz")
    cached = _touch(tmp_path / "keras_home" / "datasets" / "mnist.npz")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    assert datasets.find_mnist() == cached
    assert nowhere == []


def test_find_downloads_last(tmp_path, monkeypatch, nowhere):
    downloaded = _touch(tmp_path / "downloads" / "mnist.npz")
    attempts = []
    monkeypatch.setattr(datasets, "_download", lambda: attempts.append(1) or downloaded)
    assert datasets.find_mnist() == downloaded
    assert attempts == [1]


def test_find_lists_every_place_it_looked(tmp_path, nowhere):
    with pytest.raises(FileNotFoundError) as error:
        datasets.find_mnist()
    message = str(error.value)
    for place in (
        "`path` argument: not given",
        f"{datasets.ENV_VAR}: not set",
        str(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz"),
        "keras.datasets.mnist",
        "no network in tests",
        f"Set the environment variable {datasets.ENV_VAR}=",
        "pass path=",
    ):
        assert place in message
    assert nowhere == ["download"]


def test_find_explicit_missing_path_is_an_error(tmp_path, monkeypatch, nowhere):
    monkeypatch.setenv(datasets.ENV_VAR, _touch(tmp_path / "env" / "mnist.npz"))
    _touch(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz")
    missing = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match=f"{missing} \\(from the `path` argument\\)"):
        datasets.find_mnist(missing)
    with pytest.raises(FileNotFoundError, match="is a directory"):
        datasets.find_mnist(tmp_path)
    assert nowhere == []


def test_find_env_var_missing_file_is_an_error(tmp_path, monkeypatch, nowhere):
    _touch(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz")
    missing = str(tmp_path / "missing.npz")
    monkeypatch.setenv(datasets.ENV_VAR, missing)
    with pytest.raises(FileNotFoundError, match=f"{missing} \\(from the environment variable"):
        datasets.find_mnist()
    assert nowhere == []


def test_load_reads_the_file_found(fake_mnist, monkeypatch, nowhere):
    monkeypatch.setenv(datasets.ENV_VAR, fake_mnist)
    test = datasets.load_mnist_arrays()["test"]
    assert test[0, 0] == 1.0 and test.sum() == 1.0
    ds = datasets.mnist("test", binarize=None, batch_size=10, as_numpy=True)
    assert ds[0][0, 0] == 1.0


# Malformed files.


def _save(path, **arrays):
    np.savez_compressed(path, **arrays)
    return str(path)


def test_not_an_npz_file(tmp_path, mnist_path):
    text = tmp_path / "text.npz"
    text.write_text("not an npz file")
    npy = tmp_path / "array.npz"
    with open(npy, "wb") as file:
        np.save(file, np.zeros(3))
    truncated = tmp_path / "truncated.npz"
    with open(mnist_path, "rb") as file:
        truncated.write_bytes(file.read(1000))
    for path in (text, npy, truncated):
        with pytest.raises(ValueError, match=f"{path} is not a valid .npz file"):
            datasets.load_mnist_arrays(path)


def test_missing_array(tmp_path):
    path = _save(tmp_path / "mnist.npz", y_train=np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=f"{path} has no array `x_train`.*Received: arrays"):
        datasets.load_mnist_arrays(path)
    path = _save(
        tmp_path / "no_test.npz",
        x_train=np.zeros((60000, 28, 28), np.uint8),
        y_test=np.zeros(3, np.uint8),
    )
    with pytest.raises(ValueError, match=r"has no array `x_test`.*\(10000, 28, 28\) uint8"):
        datasets.mnist("test", path=path)


@pytest.mark.parametrize(
    "x_train, x_test, received",
    [
        (np.zeros((100, 28, 28), np.uint8), None, r"`x_train`.*shape=\(100, 28, 28\), dtype=uint8"),
        (None, np.zeros((10000, 784), np.uint8), r"`x_test`.*shape=\(10000, 784\), dtype=uint8"),
        (
            np.zeros((60000, 28, 28), np.int8),
            None,
            r"`x_train`.*shape=\(60000, 28, 28\), dtype=int8",
        ),
        (None, np.zeros((10000, 28, 28), np.float32), r"`x_test`.*dtype=float32"),
    ],
    ids=["train-shape", "test-shape", "train-dtype", "test-dtype"],
)
def test_wrong_shape_or_dtype(tmp_path, x_train, x_test, received):
    x_train = np.zeros((60000, 28, 28), np.uint8) if x_train is None else x_train
    x_test = np.zeros((10000, 28, 28), np.uint8) if x_test is None else x_test
    path = _save(tmp_path / "mnist.npz", x_train=x_train, x_test=x_test)
    expected_shape = (
        r"\(60000, 28, 28\)" if received.startswith("`x_train`") else r"\(10000, 28, 28\)"
    )
    with pytest.raises(ValueError) as error:
        datasets.load_mnist_arrays(path)
    message = str(error.value)
    assert path in message
    assert re.search(f"must have shape {expected_shape} and dtype uint8", message)
    assert re.search(received, message)


# Arguments.


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"split": "training"},
            "`split` must be one of ('train', 'validation', 'test', 'train+validation'). "
            "Received: split='training'",
        ),
        ({"split": None}, "Received: split=None"),
        (
            {"binarize": "stochastic"},
            "`binarize` must be one of ('dynamic', 'fixed', None). Received: binarize='stochastic'",
        ),
        ({"binarize": True}, "Received: binarize=True"),
        ({"batch_size": 0}, "must be a positive int (>= 1). Received: batch_size=0"),
        ({"batch_size": 2.5}, "Received: batch_size=2.5"),
        ({"batch_size": True}, "Received: batch_size=True"),
        ({"seed": 1.5}, "`seed` must be a non-negative int. Received: seed=1.5"),
        ({"seed": "0"}, "Received: seed='0'"),
        ({"seed": -1}, "Received: seed=-1"),
        ({"shuffle": "yes"}, "`shuffle` must be a bool or None. Received: shuffle='yes'"),
        (
            {"drop_remainder": None},
            "`drop_remainder` must be a bool. Received: drop_remainder=None",
        ),
        ({"as_numpy": 1}, "`as_numpy` must be a bool. Received: as_numpy=1"),
    ],
)
def test_mnist_rejects_bad_arguments(kwargs, message, nowhere):
    with pytest.raises(ValueError) as error:
        datasets.mnist(**kwargs)
    assert message in str(error.value)
    assert nowhere == []  # Arguments are checked before any file is looked for.


def test_numpy_batches_rejects_bad_arguments():
    with pytest.raises(
        ValueError, match=r"`x` must be a 2-D array \(n, d\). Received: x.shape=\(3,\)"
    ):
        datasets.NumpyBatches(np.zeros(3))
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        datasets.NumpyBatches(np.zeros((3, 2)), batch_size=0)


# Without TensorFlow.


def test_falls_back_to_numpy_when_tensorflow_cannot_be_imported(mnist_path, monkeypatch):
    # Installed as far as find_spec can tell, but `import tensorflow` raises ImportError.
    monkeypatch.setattr(datasets.backend, "has_tensorflow", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    ds = datasets.mnist("validation", batch_size=100, path=mnist_path)
    assert isinstance(ds, datasets.NumpyBatches)
    batch = next(iter(ds))
    assert batch.shape == (100, 784)
    _assert_binary(batch)


def test_imports_and_serves_under_jax_without_tensorflow(mnist_path):
    pytest.importorskip("jax")
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import tfdlgm.datasets as d\n"
        f"ds = d.mnist('validation', batch_size=500, path={mnist_path!r})\n"
        "batch = next(iter(ds))\n"
        "print(type(ds).__name__, batch.shape, batch.dtype, sorted(set(batch.ravel().tolist())))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=pathlib.Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "NumpyBatches (500, 784) float32 [0.0, 1.0]"
