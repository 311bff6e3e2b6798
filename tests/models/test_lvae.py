import keras
import numpy as np
import pytest
from keras import ops

import tfdlgm
from tfdlgm.callbacks import KLWarmUp
from tfdlgm.distributions import diagonal_normal, precision_weighted_merge
from tfdlgm.models.lvae import LadderVAE

from ..gradients import model_gradients


@pytest.fixture
def binary_data(rng):
    probs = rng.uniform(0.05, 0.95, size=(1, 20))
    return (rng.uniform(size=(128, 20)) < probs).astype("float32")


def small_lvae(**kwargs):
    return LadderVAE(
        **{"latent_dims": (4, 3, 2), "hidden": (16, 12, 8), "data_dim": 20, "seed": 0, **kwargs}
    )


def test_merge_matches_numpy_and_is_the_normalised_product(rng):
    mu_hat, mu_p = rng.normal(size=(2, 6, 3)).astype("float32")
    s_hat, s_p = rng.uniform(0.3, 2.0, size=(2, 6, 3)).astype("float32")
    q = precision_weighted_merge(diagonal_normal(mu_hat, s_hat), diagonal_normal(mu_p, s_p))
    variance = 1.0 / (s_hat**-2 + s_p**-2)
    np.testing.assert_allclose(ops.convert_to_numpy(q.variance()), variance, rtol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(q.mean()), (mu_hat / s_hat**2 + mu_p / s_p**2) * variance, rtol=1e-5
    )
    # N(z; q) = N(z; hat) N(z; p) / N(mu_hat; mu_p, s_hat^2 + s_p^2), for any z
    z = rng.normal(size=(6, 3)).astype("float32")
    log_normaliser = diagonal_normal(mu_p, np.sqrt(s_hat**2 + s_p**2)).log_prob(mu_hat)
    product = (
        diagonal_normal(mu_hat, s_hat).log_prob(z)
        + diagonal_normal(mu_p, s_p).log_prob(z)
        - log_normaliser
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(q.log_prob(z)), ops.convert_to_numpy(product), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("ladder", [True, False], ids=["ladder", "hierarchical"])
def test_trains_evaluates_per_layer_and_bounds_are_ordered(binary_data, ladder):
    model = small_lvae(ladder=ladder)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(binary_data, batch_size=32, epochs=8, verbose=0, callbacks=[KLWarmUp(3)])
    results = model.evaluate(binary_data, batch_size=64, verbose=0, return_dict=True)
    assert {"kl_1", "kl_2", "kl_3"} <= set(results) and "kl_4" not in results
    kls = sum(results[f"kl_{i}"] for i in (1, 2, 3))
    np.testing.assert_allclose(results["elbo"], results["reconstruction"] - kls, rtol=1e-4)
    l1 = model.iwae_bound(binary_data, 1, batch_size=128, seed=1).mean()
    l5 = model.iwae_bound(binary_data, 5, batch_size=128, seed=2).mean()
    l25 = model.iwae_bound(binary_data, 25, batch_size=128, seed=3).mean()
    assert l1 < l5 < l25
    assert len(model.active_units(binary_data)) == 3
    samples = model.sample(5, seed=0)
    assert samples.shape == (5, 20) and set(np.unique(samples)) <= {0.0, 1.0}


def test_with_beta_zero_the_kl_contributes_no_gradient(binary_data):
    model = small_lvae()
    model.kl_weight.assign(0.0)
    x = binary_data[:32]
    loss, reconstruction, elbo = model_gradients(
        model,
        x,
        [
            lambda out: ops.mean(out["loss"]),
            lambda out: -ops.mean(out["reconstruction"]),
            lambda out: -ops.mean(out["elbo"]),
        ],
    )
    for g_loss, g_rec in zip(loss, reconstruction):
        np.testing.assert_allclose(g_loss, g_rec, rtol=1e-5, atol=1e-7)
    assert max(np.abs(a - b).max() for a, b in zip(loss, elbo)) > 1e-3  # the KL has gradient


def test_warm_up_schedule_per_epoch_and_across_save_and_resume(binary_data, tmp_path):
    warm_up = KLWarmUp(epochs=4)
    assert [warm_up.beta(e) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert KLWarmUp(epochs=2, start=0.5).beta(1) == 0.75

    model = small_lvae()
    model.compile(optimizer="adam")
    first = model.fit(binary_data, batch_size=128, epochs=2, verbose=0, callbacks=[warm_up])
    assert first.history["kl_weight"] == [0.0, 0.25]
    model.save(tmp_path / "checkpoint.keras")
    resumed = keras.models.load_model(tmp_path / "checkpoint.keras")
    assert float(ops.convert_to_numpy(resumed.kl_weight)) == 0.25  # saved with the weights
    resumed.compile(optimizer="adam")
    second = resumed.fit(
        binary_data, batch_size=128, initial_epoch=2, epochs=5, verbose=0, callbacks=[KLWarmUp(4)]
    )
    assert second.history["kl_weight"] == [0.5, 0.75, 1.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden": (16, 12)}, r"`hidden` must give one width per stochastic layer"),
        ({"latent_dims": ()}, r"`latent_dims` must be a non-empty tuple"),
        ({"hidden": (16, 12, 0)}, r"`hidden` must be a non-empty tuple of positive ints"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_lvae(**kwargs)


def test_cpu_smoke_run_on_mnist(mnist_path):
    train = tfdlgm.datasets.mnist("validation", batch_size=250, seed=0, path=mnist_path)
    model = LadderVAE(latent_dims=(16, 8, 4), hidden=(128, 64, 32), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    history = model.fit(train, epochs=2, verbose=0, callbacks=[KLWarmUp(1, start=0.5)])
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    assert history.history["elbo"][-1] > history.history["elbo"][0]
    assert -200 < history.history["elbo"][-1] < -100


@pytest.mark.parametrize("ladder", [True, False], ids=["ladder", "hierarchical"])
def test_densities_at_given_latents_agree_with_the_trace(binary_data, ladder):
    model = small_lvae(ladder=ladder)
    x = binary_data[:16]
    trace = model.infer(x, 3, keras.random.SeedGenerator(0))
    latents = [layer.sample for layer in trace.latents]
    expected_q = sum(layer.posterior.log_prob(layer.sample) for layer in trace.latents)
    expected_p = trace.likelihood.log_prob(x) + sum(
        layer.prior.log_prob(layer.sample) for layer in trace.latents
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.posterior_log_prob(x, latents)),
        ops.convert_to_numpy(expected_q),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.joint_log_prob(x, latents)),
        ops.convert_to_numpy(expected_p),
        rtol=1e-5,
    )
    dreams, dreamt_x = model.dream(4, keras.random.SeedGenerator(1))
    assert [tuple(z.shape) for z in dreams] == [(4, 4), (4, 3), (4, 2)]
    assert tuple(dreamt_x.shape) == (4, 20)


def test_metropolis_within_gibbs_imputation_runs_on_the_ladder(binary_data):
    model = small_lvae()
    mask = np.ones_like(binary_data[:4], dtype=bool)
    mask[:, 10:] = False
    result = model.impute(
        binary_data[:4], mask, method="metropolis_within_gibbs", steps=5, num_chains=2, seed=0
    )
    np.testing.assert_array_equal(result.completed[mask], binary_data[:4][mask])
    assert 0.0 < result.acceptance_rate <= 1.0
