"""Tests for the Frey faces data set in tfdlgm.datasets: the block split, dequantisation, the
file lookup, both pipelines, and the density protocol's bounds under a Gaussian decoder."""

import math

import keras
import numpy as np
import pytest

import tfdlgm
from tfdlgm import datasets


@pytest.fixture(scope="module")
def levels(frey_path):
    return datasets.load_frey_faces_arrays(frey_path)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.FREY_ENV_VAR, raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_split_sizes_and_blocks(levels, frey_path):
    assert {split: array.shape for split, array in levels.items()} == {
        "train": (1575, 560),
        "validation": (195, 560),
        "test": (195, 560),
    }
    split_of_frame = datasets.frey_split()
    blocks = np.arange(datasets.FREY_NUM_FRAMES) // 15
    for split, remainder in (("test", 9), ("validation", 4)):
        chosen = np.unique(blocks[split_of_frame == split])
        assert np.all(chosen % 10 == remainder) and len(chosen) == 13
    with np.load(frey_path) as raw:
        frames = raw["x"].reshape(len(raw["x"]), -1)
    for split, array in levels.items():  # each split is its frames, in frame order
        np.testing.assert_array_equal(array, frames[split_of_frame == split])


def test_no_frame_in_two_splits(levels):
    seen = [bytes(row) for array in levels.values() for row in array]
    assert len(seen) == datasets.FREY_NUM_FRAMES
    index = {split: set(np.flatnonzero(datasets.frey_split() == split)) for split in levels}
    assert not (index["train"] & index["test"]) and not (index["validation"] & index["test"])


def test_fixed_dequantization_stays_in_its_bin_and_is_pinned():
    k = np.array([[0, 7, 128, 255]] * 2000, dtype=np.uint8)
    x = datasets.fixed_dequantization(k, seed=0)
    assert x.dtype == np.float32 and x.shape == k.shape
    assert np.all(x >= k / 256) and np.all(x <= (k.astype(np.float64) + 1) / 256)
    np.testing.assert_array_equal(x, datasets.fixed_dequantization(k, seed=0))
    assert not np.array_equal(x, datasets.fixed_dequantization(k, seed=1))
    u = x * 256 - k  # U(0, 1): mean 1/2, variance 1/12
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005


def test_dequantization_refuses_non_levels():
    with pytest.raises(ValueError, match="8-bit levels"):
        datasets.fixed_dequantization(np.array([0.5]), seed=0)
    with pytest.raises(ValueError, match="8-bit levels"):
        datasets.fixed_dequantization(np.array([256]), seed=0)


def test_pipelines_serve_the_protocol(levels, frey_path, as_numpy):
    test = np.concatenate(
        list(datasets.frey_faces("test", "fixed", batch_size=64, path=frey_path, as_numpy=as_numpy))
    )
    np.testing.assert_array_equal(test, datasets.fixed_dequantization(levels["test"], seed=0))
    train = datasets.frey_faces(
        "train", batch_size=1575, path=frey_path, shuffle=False, as_numpy=as_numpy
    )
    first, second = (np.concatenate(list(train)) for _ in range(2))
    k = levels["train"].astype(np.float64)
    for batch in (first, second):  # fresh u on each pass, every value in its frame's bin
        assert batch.shape == (1575, 560) and batch.dtype == np.float32
        assert np.all(batch >= k / 256) and np.all(batch <= (k + 1) / 256)
    assert not np.array_equal(first, second)
    centres = np.asarray(
        next(iter(datasets.frey_faces("validation", None, 195, path=frey_path, as_numpy=as_numpy)))
    )
    np.testing.assert_allclose(centres, (levels["validation"] + 0.5) / 256, rtol=1e-6)


def test_train_and_validation_together_are_their_frames_in_order(levels, frey_path):
    together = datasets.frey_faces(
        "train+validation", None, 2000, path=frey_path, shuffle=False, as_numpy=True
    )
    (centres,) = list(together)
    expected = np.concatenate([levels["train"], levels["validation"]])
    assert centres.shape == (1770, 560)
    np.testing.assert_allclose(centres, (expected + 0.5) / 256, rtol=1e-6)


def test_bad_arguments_name_the_argument(frey_path):
    with pytest.raises(ValueError, match="`dequantize` must be one of"):
        datasets.frey_faces("test", dequantize="once", path=frey_path)
    with pytest.raises(ValueError, match="`split` must be one of"):
        datasets.frey_faces("holdout", path=frey_path)
    with pytest.raises(ValueError, match="not both"):
        datasets.NumpyBatches(np.zeros((2, 3)), binarize="fixed", dequantize="fixed")


def test_lookup_order_and_error(tmp_path, monkeypatch, nowhere, frey_path):
    with pytest.raises(FileNotFoundError) as error:
        datasets.find_frey_faces()
    message = str(error.value)
    for place in ("`path` argument: not given", f"{datasets.FREY_ENV_VAR}: not set", "frey_faces"):
        assert place in message
    cached = tmp_path / "home" / ".keras" / "datasets" / datasets.FREY_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert datasets.find_frey_faces() == str(cached)
    monkeypatch.setenv(datasets.FREY_ENV_VAR, frey_path)
    assert datasets.find_frey_faces() == frey_path
    assert datasets.find_frey_faces(cached) == str(cached)
    with pytest.raises(ValueError, match="not a valid .npz"):
        datasets.load_frey_faces_arrays(cached)


def test_malformed_file_is_a_clear_error(tmp_path):
    path = tmp_path / "frey.npz"
    np.savez(path, x=np.zeros((10, 28, 20), np.uint8))
    with pytest.raises(ValueError, match=r"must have shape \(1965, 28, 20\)"):
        datasets.load_frey_faces_arrays(path)


def test_discrete_bound_and_bits_per_dimension():
    assert datasets.discrete_log_likelihood(0.0, 560) == pytest.approx(-560 * math.log(256))
    # A uniform density on [0, 1]^D is log p(x) = 0: the 8-bit data then costs 8 bits/dim.
    assert datasets.bits_per_dimension(datasets.discrete_log_likelihood(0.0, 560), 560) == (
        pytest.approx(8.0)
    )


def test_gaussian_bounds_are_ordered_on_frey_faces(levels):
    """ELBO <= L_5 <= L_50, and factor analysis' exact log-density bounds its own L_k."""
    keras.utils.set_random_seed(0)
    x = datasets.fixed_dequantization(levels["test"][:32], seed=0)
    vae = tfdlgm.models.VAE(latent_dim=4, hidden=(16,), data_dim=560, likelihood="gaussian")
    elbo = np.asarray(vae.elbo(x, num_samples=200, seed=0)).mean()
    l5 = np.asarray(vae.iwae_bound(x, num_samples=5, seed=0)).mean()
    l50 = np.asarray(vae.iwae_bound(x, num_samples=50, seed=0)).mean()
    assert elbo < l5 < l50
    fa = tfdlgm.models.FactorAnalysis(latent_dim=3, data_dim=560)
    exact = np.asarray(fa.exact_log_likelihood(x))
    estimate = np.asarray(fa.log_likelihood(x, num_samples=500, seed=0))
    fa_elbo = np.asarray(fa.elbo(x, num_samples=500, seed=0))
    # ELBO <= L_k <= log p(x) in expectation: over frames, to the estimates' Monte Carlo noise
    # (a few hundredths here).
    assert fa_elbo.mean() < estimate.mean() <= exact.mean() + 0.05
