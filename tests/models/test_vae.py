import keras
import numpy as np
import pytest

import tfdlgm
from tfdlgm.models import VAE


@pytest.fixture
def binary_data(rng):
    probs = rng.uniform(0.05, 0.95, size=(1, 20))
    return (rng.uniform(size=(256, 20)) < probs).astype("float32")


def small_vae(**kwargs):
    return VAE(**{"latent_dim": 3, "hidden": (16,), "data_dim": 20, "seed": 0, **kwargs})


@pytest.mark.parametrize("covariance", ["diagonal", "rank_one"])
@pytest.mark.parametrize("objective", ["elbo", {"name": "iwae", "num_samples": 4}])
def test_fit_improves_the_elbo_and_evaluate_reports_every_term(binary_data, covariance, objective):
    model = small_vae(covariance=covariance, objective=objective)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    before = model.elbo(binary_data, seed=0).mean()
    model.fit(binary_data, batch_size=32, epochs=8, verbose=0)
    after = model.elbo(binary_data, seed=0).mean()
    assert after > before + 1.0
    results = model.evaluate(binary_data, batch_size=64, verbose=0, return_dict=True)
    assert set(results) == {"loss", "elbo", "reconstruction", "kl_1"}
    np.testing.assert_allclose(
        results["elbo"], results["reconstruction"] - results["kl_1"], rtol=1e-4
    )
    assert results["kl_1"] > 0


def test_trained_bounds_are_ordered(binary_data):
    model = small_vae()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(binary_data, batch_size=32, epochs=5, verbose=0)
    l1 = model.iwae_bound(binary_data, 1, seed=1).mean()
    l5 = model.iwae_bound(binary_data, 5, seed=2).mean()
    l50 = model.iwae_bound(binary_data, 50, seed=3).mean()
    assert l1 < l5 < l50
    np.testing.assert_allclose(
        model.elbo(binary_data, num_samples=200, seed=4).mean(), l1, atol=0.1
    )


def test_mean_samples_are_the_bernoulli_probabilities():
    """`sample(mean=True)`: the decoder's means, probabilities strictly inside (0, 1) (shapes,
    binary samples and seeding are in test_harness.py)."""
    means = small_vae().sample(7, seed=0, mean=True)
    assert means.shape == (7, 20) and np.all((means > 0) & (means < 1))


def test_gaussian_likelihood_accepts_real_data(rng):
    x = rng.normal(size=(64, 20)).astype("float32")
    model = small_vae(likelihood="gaussian")
    model.compile(optimizer="adam")
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(model.log_likelihood(x[:4], num_samples=20)).all()


def test_one_epoch_on_mnist_lowers_the_loss(mnist_path):
    train = tfdlgm.datasets.mnist("train", batch_size=100, seed=0, path=mnist_path)
    model = VAE(latent_dim=50, hidden=(200, 200), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))

    class FirstBatches(keras.callbacks.Callback):
        losses = []

        def on_train_batch_end(self, batch, logs=None):
            if batch < 10:
                self.losses.append(logs["loss"])

    history = model.fit(train, epochs=1, verbose=0, callbacks=[FirstBatches()])
    first = np.mean(FirstBatches.losses)
    assert first > 400  # an untrained decoder: about 784 log 2 = 543 nats
    assert history.history["loss"][0] < first
    validation = tfdlgm.datasets.mnist("validation", batch_size=500, path=mnist_path)
    results = model.evaluate(validation, verbose=0, return_dict=True)
    assert results["loss"] < 200  # one epoch of Kingma & Welling's set-up: about 185 nats
