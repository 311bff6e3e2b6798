"""The `.keras` round trip every model must survive: same class, same config, same outputs."""

import keras
import numpy as np


def assert_keras_round_trip(model, path, data, seed=5):
    """Saves `model` to `path` (a `.keras` file), loads it back and checks that the loaded
    model is of the same class with the same config, and gives the same ELBO on `data` and
    the same samples under one seed. Returns the loaded model for model-specific checks."""
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.elbo(data, seed=seed), model.elbo(data, seed=seed))
    np.testing.assert_array_equal(loaded.sample(5, seed=seed), model.sample(5, seed=seed))
    return loaded
