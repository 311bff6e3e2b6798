"""Shared test fixtures. Tests run under whichever KERAS_BACKEND is set (tensorflow or jax)."""

import os
import pathlib

import numpy as np
import pytest

SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"

# The data is found the way CI finds it: TFDLGM_MNIST if set, else the checkout's sibling
# shared/data/mnist.npz. It goes into the environment (not only into a fixture) so that the
# commands the tests start in subprocesses find it too, as they would in a user's shell.
if not os.environ.get("TFDLGM_MNIST") and SHARED_MNIST.is_file():
    os.environ["TFDLGM_MNIST"] = str(SHARED_MNIST)


@pytest.fixture(scope="session")
def mnist_path():
    """Path to the MNIST file: TFDLGM_MNIST if set, else ../shared/data/mnist.npz."""
    path = os.environ.get("TFDLGM_MNIST") or str(SHARED_MNIST)
    if not os.path.exists(path):
        pytest.fail(f"MNIST not found at {path}; set TFDLGM_MNIST to the mnist.npz file")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def binary_data(rng):
    probs = rng.uniform(0.05, 0.95, size=(1, 20))
    return (rng.uniform(size=(256, 20)) < probs).astype("float32")
