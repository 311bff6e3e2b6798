"""`LatentModel` and Keras' own arguments: `compile`'s loss and metrics, `sample_weight`."""

import keras
import numpy as np
import pytest

from tfdlgm.models import VAE


def tiny_vae():
    return VAE(latent_dim=2, hidden=(8,), data_dim=12, seed=0)


def binary(n):
    return (np.random.default_rng(0).uniform(size=(n, 12)) < 0.5).astype("float32")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("loss", "mse"),
        ("loss", keras.losses.BinaryCrossentropy()),
        ("loss_weights", [1.0]),
        ("metrics", ["mae"]),
        ("weighted_metrics", ["mae"]),
    ],
)
def test_compile_refuses_a_keras_loss_or_metric(name, value):
    model = tiny_vae()
    with pytest.raises(
        ValueError, match=rf"`{name}` must be None: .*objective=.*Received: {name}="
    ):
        model.compile(optimizer="adam", **{name: value})
    assert not model.compiled


def test_compile_passes_keras_arguments_and_survives_a_round_trip(tmp_path):
    model = tiny_vae()
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
    model.fit(binary(8), batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.compiled
    assert isinstance(loaded.optimizer, keras.optimizers.SGD)
    assert float(loaded.optimizer.learning_rate) == 0.5


def test_sample_weight_weights_each_examples_loss():
    model = tiny_vae()
    x = binary(6)
    outputs = model(x)
    per_example = keras.ops.convert_to_numpy(outputs["loss"])
    weights = np.array([0.0, 1.0, 2.0, 0.5, 0.0, 3.0], "float32")
    loss = model.compute_loss(x, y_pred=outputs, sample_weight=weights)
    # Keras' reduction: sum_n w_n loss_n / B
    np.testing.assert_allclose(float(loss), np.mean(weights * per_example), rtol=1e-6)
    np.testing.assert_allclose(
        float(model.compute_loss(x, y_pred=outputs)), per_example.mean(), rtol=1e-6
    )


def test_fit_and_evaluate_use_sample_weight():
    model = tiny_vae()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x = binary(8)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    logs = model.fit(x, sample_weight=np.zeros(8, "float32"), batch_size=4, epochs=1, verbose=0)
    assert logs.history["loss"] == [0.0]
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)  # zero weight: zero gradient
    assert model.evaluate(x, sample_weight=np.zeros(8), verbose=0, return_dict=True)["loss"] == 0
    model.fit(x, sample_weight=np.ones(8, "float32"), batch_size=4, epochs=1, verbose=0)
    moved = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert any(not np.array_equal(old, new) for old, new in zip(after, moved, strict=True))
