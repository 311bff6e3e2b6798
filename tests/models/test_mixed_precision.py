"""Mixed precision: the networks compute in float16 or bfloat16, the densities and bounds in
float32 (`tfdlgm.distributions`)."""

import keras
import numpy as np
import pytest

from tfdlgm.models import DLGM, VAE


@pytest.fixture
def restore_policy():
    policy = keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_global_policy(policy)


def tiny_vae():
    return VAE(latent_dim=3, hidden=(8,), data_dim=12, seed=0)


def tiny_dlgm():
    """Two layers with the rank-one posterior."""
    return DLGM(latent_dims=(4, 3), hidden=(8,), data_dim=12, covariance="rank_one", seed=0)


@pytest.mark.parametrize(
    "build", [tiny_vae, pytest.param(tiny_dlgm, marks=pytest.mark.slow)], ids=["vae", "dlgm"]
)
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_bounds_are_float32_and_match_float32_under_mixed_precision(policy, build, restore_policy):
    x = (np.random.default_rng(0).uniform(size=(16, 12)) < 0.5).astype("float32")
    keras.mixed_precision.set_global_policy("float32")
    reference = build()
    expected = reference.iwae_bound(x, 50, seed=1, verbose=0)
    keras.mixed_precision.set_global_policy(policy)
    model = build()
    model.set_weights(reference.get_weights())
    low = policy.split("_")[1]
    assert model.decoder.dense[0].compute_dtype == low  # the networks run in low precision
    bound = model.iwae_bound(x, 50, seed=1, verbose=0)
    assert bound.dtype == np.float32
    # float16 outputs were a nat off here (0.5 nats mean) before the densities were float32
    assert np.abs(bound - expected).mean() < 0.05
    outputs = model(x)
    assert {keras.backend.standardize_dtype(v.dtype) for v in outputs.values()} == {"float32"}
    model.compile(optimizer="adam", run_eagerly=True)  # one step: no compile to wait for
    history = model.fit(x, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
