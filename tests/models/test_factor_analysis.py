import keras
import numpy as np
import pytest
import scipy.stats
from keras import ops

from tfdlgm.models import FactorAnalysis, base

from .fa_helpers import draw, known_factor_analysis


@pytest.fixture
def fa(rng):
    return known_factor_analysis(rng)


def test_exact_log_likelihood_matches_scipy(fa, rng):
    model, params = fa
    x = draw(params, 10, rng)
    covariance = params["w"] @ params["w"].T + np.diag(params["psi"])
    expected = scipy.stats.multivariate_normal(params["mu"], covariance).logpdf(x)
    np.testing.assert_allclose(model.exact_log_likelihood(x), expected, rtol=1e-5)


def test_exact_posterior_matches_bayes_rule(fa, rng):
    model, params = fa
    x = draw(params, 3, rng)
    w, psi, mu = params["w"], params["psi"], params["mu"]
    # joint Gaussian of (z, x): Cov(z, x) = W^T, Cov(x) = W W^T + Psi
    cov_x = w @ w.T + np.diag(psi)
    gain = w.T @ np.linalg.inv(cov_x)
    posterior = model.exact_posterior(x)
    np.testing.assert_allclose(ops.convert_to_numpy(posterior.mean()), (x - mu) @ gain.T, atol=1e-4)
    np.testing.assert_allclose(
        ops.convert_to_numpy(posterior.covariance())[0], np.eye(2) - gain @ w, atol=1e-5
    )


def test_bounds_are_ordered_elbo_le_l5_le_l50_le_log_p(fa, rng):
    model, params = fa
    x = draw(params, 300, rng)
    exact = model.exact_log_likelihood(x).mean()
    elbo = model.elbo(x, seed=1).mean()
    l5 = model.iwae_bound(x, 5, seed=2).mean()
    l50 = model.iwae_bound(x, 50, seed=3).mean()
    assert elbo < l5 < l50 <= exact + 1e-3
    assert exact - elbo > 0.01  # diagonal q: the ELBO has a real gap to close


def test_log_likelihood_with_5000_samples_is_within_005_nats_of_exact(fa, rng):
    model, params = fa
    x = draw(params, 40, rng)
    estimate = model.log_likelihood(x, num_samples=5000, batch_size=20, seed=0)
    np.testing.assert_array_less(np.abs(estimate - model.exact_log_likelihood(x)), 0.05)


def test_log_likelihood_in_many_small_chunks_stays_accurate(fa, rng, monkeypatch):
    model, params = fa
    x = draw(params, 20, rng)
    monkeypatch.setattr(base, "_ROWS_PER_PASS", 20 * 50)  # 40 passes of 50 samples,
    monkeypatch.setattr(base, "_ROWS_PER_CHUNK", 20 * 50)  # one per compiled call
    estimate = model.log_likelihood(x, num_samples=2000, batch_size=20, seed=0)
    np.testing.assert_array_less(np.abs(estimate - model.exact_log_likelihood(x)), 0.1)


def test_fit_recovers_the_marginal_covariance(rng):
    params = {
        "w": rng.normal(size=(5, 2)).astype("float32"),
        "mu": rng.normal(size=5).astype("float32"),
        "psi": rng.uniform(0.3, 1.0, size=5).astype("float32"),
    }
    x = draw(params, 10_000, rng)
    keras.utils.set_random_seed(0)  # fit's shuffling, whatever ran before in the process
    model = FactorAnalysis(latent_dim=2, data_dim=5, covariance="rank_one", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    model.fit(x, batch_size=250, epochs=60, verbose=0, shuffle=True)
    w = ops.convert_to_numpy(model.loadings)
    fitted = w @ w.T + np.diag(ops.convert_to_numpy(model.noise_variance))
    true = params["w"] @ params["w"].T + np.diag(params["psi"])
    assert np.linalg.norm(fitted - true) / np.linalg.norm(true) < 0.08
    np.testing.assert_allclose(ops.convert_to_numpy(model.mean), params["mu"], atol=0.08)
    sample_cov = np.cov(x.T)
    assert np.linalg.norm(fitted - sample_cov) / np.linalg.norm(sample_cov) < 0.05
