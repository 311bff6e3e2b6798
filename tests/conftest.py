"""Shared test fixtures. Tests run under whichever KERAS_BACKEND is set (tensorflow or jax)."""

import os
import pathlib

import numpy as np
import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_MNIST = SHARED_DATA / "mnist.npz"
SHARED_FREY = SHARED_DATA / "frey_faces.npz"

# The data is found the way CI finds it: TFDLGM_MNIST (TFDLGM_FREY_FACES) if set, else the
# checkout's sibling shared/data/. It goes into the environment (not only into a fixture) so
# that the commands the tests start in subprocesses find it too, as they would in a user's shell.
for variable, shared in (("TFDLGM_MNIST", SHARED_MNIST), ("TFDLGM_FREY_FACES", SHARED_FREY)):
    if not os.environ.get(variable) and shared.is_file():
        os.environ[variable] = str(shared)


def _data_file(variable, shared):
    """The data file the tests use: `variable` if set, else the checkout's sibling `shared`."""
    path = os.environ.get(variable) or str(shared)
    if not os.path.exists(path):
        pytest.fail(f"{shared.name} not found at {path}; set {variable} to the file")
    return path


@pytest.fixture(scope="session")
def mnist_path():
    """Path to the MNIST file: TFDLGM_MNIST if set, else ../shared/data/mnist.npz."""
    return _data_file("TFDLGM_MNIST", SHARED_MNIST)


@pytest.fixture(scope="session")
def frey_path():
    """Path to the Frey faces file: TFDLGM_FREY_FACES if set, else ../shared/data/."""
    return _data_file("TFDLGM_FREY_FACES", SHARED_FREY)


@pytest.fixture(params=["numpy", "tf"])
def as_numpy(request):
    """`as_numpy` for the data pipeline under test: `NumpyBatches` ("numpy") or `tf.data`
    ("tf", skipped where TensorFlow is not installed)."""
    if request.param == "tf":
        pytest.importorskip("tensorflow")
        return False
    return True


@pytest.fixture(params=["tf.summary", "standalone"])
def tensorboard_writer(request, monkeypatch):
    """Each way TensorBoard logs are written (`tfdlgm.summaries.SummaryWriter`): through
    `tf.summary` (TensorFlow installed; the `tensorboard` package's own writer is then never
    used) or, as without TensorFlow, through the `tensorboard` package's writer."""
    from tensorboard.summary.writer import event_file_writer

    if request.param == "tf.summary":
        pytest.importorskip("tensorflow")

        def refuse(*args, **kwargs):
            raise AssertionError("TensorFlow is installed: the records go through tf.summary")

        monkeypatch.setattr(event_file_writer, "EventFileWriter", refuse)
    else:
        from tfdlgm import backend

        monkeypatch.setattr(backend, "has_tensorflow", lambda: False)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def binary_data(rng):
    probs = rng.uniform(0.05, 0.95, size=(1, 20))
    return (rng.uniform(size=(256, 20)) < probs).astype("float32")
