"""FactorAnalysis.fit_em: maximum likelihood by EM, checked against closed forms."""

import numpy as np
import pytest

from tests.models.fa_helpers import draw, known_factor_analysis
from tfdlgm.models import FactorAnalysis


@pytest.fixture
def data(rng):
    truth, params = known_factor_analysis(rng, data_dim=6, latent_dim=2)
    return truth, draw(params, 4000, rng)


def test_em_reaches_the_maximum_likelihood(data):
    truth, x = data
    model = FactorAnalysis(latent_dim=2, data_dim=6)
    history = model.fit_em(x)
    assert np.all(np.diff(history) > -1e-9)  # EM never lowers the likelihood
    fitted = model.exact_log_likelihood(x).mean()
    assert fitted == pytest.approx(history[-1], abs=1e-3)  # the float64 figure, in float32
    # The MLE fits its own data at least as well as the parameters that drew it, and not by
    # much more (3 + 2 * 6 + 6 - 1 free parameters, 4000 examples).
    true_fit = truth.exact_log_likelihood(x).mean()
    assert true_fit - 1e-4 <= fitted < true_fit + 0.01
    # The model's covariance W W^T + Psi matches the data's.
    w, psi = np.asarray(model.loadings), np.asarray(model.noise_variance)
    np.testing.assert_allclose(w @ w.T + np.diag(psi), np.cov(x.T, bias=True), atol=0.05)


def test_em_sets_q_to_the_exact_posterior_mean(data):
    _, x = data
    model = FactorAnalysis(latent_dim=2, data_dim=6)
    model.fit_em(x)
    exact = model.exact_posterior(x[:100])
    q = model.encode(x[:100])[0]
    np.testing.assert_allclose(np.asarray(q.mean()), np.asarray(exact.mean()), atol=1e-4)
    exact_variance = np.diagonal(np.asarray(exact.covariance()), axis1=-2, axis2=-1)
    np.testing.assert_allclose(np.asarray(q.variance()), exact_variance, rtol=1e-3)
    # ELBO <= L_k <= log p(x) (to Monte Carlo noise: q is nearly exact, so the gaps are
    # thousandths), and L_k is close to log p(x) with the exact posterior's mean.
    elbo = np.asarray(model.elbo(x[:200], num_samples=100, seed=0)).mean()
    l_500 = np.asarray(model.log_likelihood(x[:200], num_samples=500, seed=0)).mean()
    exact_ll = model.exact_log_likelihood(x[:200]).mean()
    assert elbo < l_500 + 0.005 and l_500 <= exact_ll + 0.005
    assert l_500 > exact_ll - 0.05


def test_bad_parameters_are_refused():
    model = FactorAnalysis(latent_dim=2, data_dim=3)
    with pytest.raises(ValueError, match="must have shapes"):
        model.set_parameters(np.zeros((3, 3)), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="must exceed min_scale"):
        model.set_parameters(np.zeros((3, 2)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="max_iterations"):
        model.fit_em(np.zeros((10, 3), "float32"), max_iterations=0)
