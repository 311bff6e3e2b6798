import json

import keras
import numpy as np
import pytest

from tfdlgm import training
from tfdlgm.models import VAE


@pytest.fixture
def binary_data(rng):
    probs = rng.uniform(0.05, 0.95, size=(1, 16))
    return (rng.uniform(size=(64, 16)) < probs).astype("float32")


def _model():
    model = VAE(latent_dim=2, hidden=(8,), data_dim=16, seed=0)
    model.compile(optimizer="adam")
    return model


def test_resume_continues_epochs_and_warm_up(binary_data, tmp_path):
    first = training.train(
        _model(), binary_data, epochs=2, checkpoint_dir=tmp_path, warm_up_epochs=4, verbose=0
    )
    assert first.epoch == [0, 1]
    assert first.history["kl_weight"] == [0.0, 0.25]
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 2
    saved = [w.copy() for w in keras.models.load_model(tmp_path / "last.keras").get_weights()]
    second = training.train(
        _model(),
        binary_data,
        epochs=4,
        checkpoint_dir=tmp_path,
        resume=True,
        warm_up_epochs=4,
        verbose=0,
    )
    assert second.epoch == [2, 3]  # epochs 3 and 4 (1-based), not a fresh start
    assert second.history["kl_weight"] == [0.5, 0.75]
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 4
    # It trained the checkpoint's model, with its optimizer state, not the fresh one passed.
    iterations = keras.ops.convert_to_numpy(second.model.optimizer.iterations)
    assert int(iterations) == 4 * 2  # 64 examples, 32 a batch
    assert any(
        not np.allclose(a, b) for a, b in zip(saved, second.model.get_weights(), strict=True)
    )
    assert not list(tmp_path.glob(".tmp-*"))


def test_resume_ignores_a_stray_temporary_file(binary_data, tmp_path):
    training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    (tmp_path / ".tmp-crashed.keras").write_bytes(b"half a zip file")
    (tmp_path / ".tmp-crashed.json").write_text('{"epoch": 9')
    history = training.train(
        _model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True, verbose=0
    )
    assert history.epoch == [1]


def test_resume_without_a_checkpoint_starts_from_the_model(binary_data, tmp_path):
    model = _model()
    history = training.train(
        model, binary_data, epochs=1, checkpoint_dir=tmp_path / "new", resume=True, verbose=0
    )
    assert history.epoch == [0] and history.model is model
    assert (tmp_path / "new" / "last.keras").is_file()


def test_bad_arguments(binary_data, tmp_path):
    with pytest.raises(ValueError, match="`resume=True` needs `checkpoint_dir`"):
        training.train(_model(), binary_data, epochs=1, resume=True)
    with pytest.raises(ValueError, match="must be compiled"):
        training.train(VAE(latent_dim=2, hidden=(8,), data_dim=16), binary_data, epochs=1)
    with pytest.raises(ValueError, match="`epochs` must be a positive int"):
        training.train(_model(), binary_data, epochs=0)
    (tmp_path / "state.json").write_text('{"epoch": 1}')
    with pytest.raises(ValueError, match="cannot be resumed"):
        training.train(_model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True)
