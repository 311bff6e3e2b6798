import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats
from keras import ops

from tfdlgm import backend
from tfdlgm.backend import tfd
from tfdlgm.distributions import (
    BernoulliObservation,
    DiagonalGaussian,
    GaussianObservation,
    LogitBernoulli,
    RankOneGaussian,
    RankOnePrecisionNormal,
    diagonal_normal,
    observation_layer,
    posterior_layer,
    standard_normal,
)

from .gradients import value_and_grad


def _np(x):
    return ops.convert_to_numpy(x)


def _seed(seed):
    return backend.tfp_seed(keras.random.SeedGenerator(seed))


@pytest.fixture
def rank_one(rng):
    k = 5
    loc = rng.normal(size=k).astype("float32")
    d = rng.uniform(0.5, 2.0, size=k).astype("float32")
    u = rng.normal(size=k).astype("float32")
    covariance = np.linalg.inv(np.diag(d).astype("float64") + np.outer(u, u))
    return RankOnePrecisionNormal(loc, d, u), loc, d, u, covariance


def test_rank_one_sample_covariance_matches_inverse_precision(rank_one):
    dist, loc, _, _, covariance = rank_one
    draws = _np(dist.sample(100_000, seed=_seed(0))).astype("float64")
    np.testing.assert_allclose(draws.mean(0), loc, atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), covariance, atol=0.02)


def test_rank_one_log_det_and_log_prob_match_dense_numpy(rank_one, rng):
    dist, loc, d, u, covariance = rank_one
    # log det C = log eta - log det D  (Rezende et al. eq. 16)
    eta = 1.0 / (u @ (u / d) + 1.0)
    log_det_c = np.log(eta) - np.log(d).sum()
    np.testing.assert_allclose(log_det_c, np.linalg.slogdet(covariance)[1], rtol=1e-5)
    np.testing.assert_allclose(2.0 * _np(dist.scale.log_abs_determinant()), log_det_c, rtol=1e-5)
    x = rng.normal(size=(7, 5)).astype("float32")
    expected = scipy.stats.multivariate_normal(loc, covariance).logpdf(x)
    np.testing.assert_allclose(_np(dist.log_prob(x)), expected, rtol=1e-5)
    np.testing.assert_allclose(_np(dist.covariance()), covariance, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_np(dist.covariance_diag()), np.diag(covariance), rtol=1e-5)
    entropy = 0.5 * (5 * (1 + np.log(2 * np.pi)) + np.linalg.slogdet(covariance)[1])
    np.testing.assert_allclose(_np(dist.entropy()), entropy, rtol=1e-5)


def test_rank_one_is_linear_in_k_no_k_by_k_matrix():
    # Structurally: R is a diagonal plus a [K, 1] x [1, K] update, never a dense K x K.
    k = 200_000  # a dense K x K float32 matrix would need 160 GB
    dist = RankOnePrecisionNormal(
        np.zeros((2, k), "float32"), np.ones((2, k), "float32"), np.full((2, k), 0.01, "float32")
    )
    assert isinstance(dist.scale, backend.linalg.LinearOperatorLowRankUpdate)
    assert tuple(dist.scale.u.shape) == (2, k, 1)
    assert tuple(dist.scale.v.shape) == (2, k, 1)
    z = dist.sample(3, seed=_seed(1))
    assert tuple(z.shape) == (3, 2, k)
    assert np.isfinite(_np(dist.log_prob(z))).all()
    assert np.isfinite(_np(tfd.kl_divergence(dist, standard_normal(k)))).all()


def test_rank_one_with_zero_factor_is_the_diagonal_gaussian(rng):
    d = rng.uniform(0.5, 2.0, size=4).astype("float32")
    x = rng.normal(size=(3, 4)).astype("float32")
    dist = RankOnePrecisionNormal(np.zeros(4, "float32"), d, np.zeros(4, "float32"))
    np.testing.assert_allclose(
        _np(dist.log_prob(x)),
        _np(diagonal_normal(np.zeros(4, "float32"), d**-0.5).log_prob(x)),
        rtol=1e-6,
    )


def test_rank_one_layer_starts_near_diagonal_with_a_factor_that_can_grow(rng):
    # q depends on u only through u u^T, so every gradient with respect to u vanishes at u = 0:
    # a zero factor would never be learnt, a small one is.
    h = rng.normal(size=(256, 16)).astype("float32")
    q = RankOneGaussian(8)(h)
    loc, d, u = (_np(t) for t in (q.loc, q.precision_diag, q.precision_factor))
    s = np.sum(u * u / d, axis=-1)  # u^T D^-1 u: 0 for a diagonal q
    assert 0.0 < np.median(s) < 0.5
    eps = _seed(5)

    def kl_plus_second_moment(u_):
        q_ = RankOnePrecisionNormal(loc, d, u_)
        moment = ops.mean(ops.sum(ops.square(q_.sample(4, seed=eps)), axis=-1))
        return ops.sum(q_.kl_divergence(standard_normal(8))) + moment

    _, (grad,) = value_and_grad(kl_plus_second_moment, [u])
    _, (grad_at_zero,) = value_and_grad(kl_plus_second_moment, [np.zeros_like(u)])
    assert np.abs(grad).max() > 1e-3
    np.testing.assert_array_equal(grad_at_zero, np.zeros_like(u))


@pytest.mark.parametrize("prior_kind", ["standard", "general_diagonal"])
def test_rank_one_kl_matches_closed_form_and_tfp_brute_force(rank_one, rng, prior_kind):
    dist, loc, _, _, covariance = rank_one
    if prior_kind == "standard":
        m, s = np.zeros(5, "float32"), np.ones(5, "float32")
    else:
        m, s = rng.normal(size=5).astype("float32"), rng.uniform(0.5, 2, size=5).astype("float32")
    kl = _np(tfd.kl_divergence(dist, diagonal_normal(m, s)))
    inv_s = np.diag(1.0 / s**2)
    expected = 0.5 * (
        np.trace(inv_s @ covariance)
        + (m - loc) @ inv_s @ (m - loc)
        - 5
        + 2 * np.log(s).sum()
        - np.linalg.slogdet(covariance)[1]
    )
    np.testing.assert_allclose(kl, expected, rtol=1e-5)


def test_rank_one_kl_to_a_non_gaussian_is_not_claimed(rank_one):
    dist = rank_one[0]
    other = tfd.Independent(tfd.Laplace(np.zeros(5, "float32"), np.ones(5, "float32")), 1)
    with pytest.raises(NotImplementedError, match="diagonal Gaussian"):
        tfd.kl_divergence(dist, other)


def test_reparameterised_gradient_of_a_quadratic_matches_closed_form(rng):
    # f(z) = sum_k a_k z_k^2;  E_q f = sum_k a_k (mu_k^2 + sigma_k^2)
    # d/dmu = 2 a mu,  d/dsigma = 2 a sigma
    a = rng.uniform(0.5, 2.0, size=3).astype("float32")
    mu = rng.normal(size=3).astype("float32")
    sigma = rng.uniform(0.5, 1.5, size=3).astype("float32")
    seed = _seed(3)

    def expected_f(mu_, sigma_):
        z = diagonal_normal(mu_, sigma_).sample(200_000, seed=seed)
        return ops.mean(ops.sum(a * z**2, axis=-1))

    value, (g_mu, g_sigma) = value_and_grad(expected_f, [mu, sigma])
    np.testing.assert_allclose(value, np.sum(a * (mu**2 + sigma**2)), rtol=0.02)
    np.testing.assert_allclose(g_mu, 2 * a * mu, atol=0.03)
    np.testing.assert_allclose(g_sigma, 2 * a * sigma, rtol=0.03)


def test_rank_one_sampling_is_reparameterised(rank_one):
    _, loc, d, u, _ = rank_one
    seed = _seed(4)

    def mean_first_coordinate(loc_):
        return ops.mean(RankOnePrecisionNormal(loc_, d, u).sample(1000, seed=seed)[:, 0])

    _, (grad,) = value_and_grad(mean_first_coordinate, [loc])
    np.testing.assert_allclose(grad, np.eye(5)[0], atol=1e-5)


@pytest.mark.parametrize(
    "layer, cls",
    [
        (DiagonalGaussian(3), "Independent"),
        (RankOneGaussian(3), "RankOnePrecisionNormal"),
        (BernoulliObservation(3), "IndependentLogitBernoulli"),
        (GaussianObservation(3), "Independent"),
        (GaussianObservation(3, scale="per_example"), "Independent"),
    ],
    ids=["diagonal", "rank_one", "bernoulli", "gaussian", "gaussian_per_example"],
)
def test_layers_return_tfp_distributions_and_round_trip_their_config(layer, cls, rng):
    h = rng.normal(size=(4, 6)).astype("float32")
    dist = layer(h)
    assert type(dist).__name__ == cls
    assert tuple(dist.batch_shape) == (4,) and tuple(dist.event_shape) == (3,)
    assert tuple(dist.sample(seed=_seed(0)).shape) == (4, 3)
    clone = type(layer).from_config(layer.get_config())
    clone.build((None, 6))
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_np(clone(h).mean()), _np(dist.mean()), rtol=1e-6)


def test_bernoulli_observation_log_prob_is_binary_cross_entropy(rng):
    layer = BernoulliObservation(4)
    h = rng.normal(size=(2, 3)).astype("float32")
    x = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], "float32")
    dist = layer(h)
    p = _np(dist.mean())
    expected = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1)
    np.testing.assert_allclose(_np(dist.log_prob(x)), expected, rtol=1e-5)


def test_logit_bernoulli_agrees_with_tfp_bernoulli_from_saturated_to_even_logits():
    logits = np.array([-60.0, -20.0, -3.0, -1e-3, 0.0, 0.5, 4.0, 20.0, 60.0], "float32")
    ours, theirs = LogitBernoulli(logits=logits), tfd.Bernoulli(logits=logits)
    for x in (np.zeros_like(logits), np.ones_like(logits)):
        np.testing.assert_allclose(
            _np(ours.log_prob(x)), _np(theirs.log_prob(x)), rtol=1e-6, atol=1e-5
        )
    expected = np.log(scipy.special.expit(logits[3:7]))  # log sigmoid(l), x = 1
    np.testing.assert_allclose(_np(ours.log_prob(np.ones_like(logits)))[3:7], expected, atol=1e-6)
    np.testing.assert_allclose(_np(ours.mean()), _np(theirs.mean()))
    draws = _np(ours.sample(4000, seed=_seed(3)))
    assert set(np.unique(draws)) <= {0, 1}
    np.testing.assert_allclose(draws.mean(0), scipy.special.expit(logits), atol=0.03)


def test_factories_reject_unknown_names():
    with pytest.raises(
        ValueError, match="`covariance` must be one of .*Received: covariance='full'"
    ):
        posterior_layer("full", 3)
    with pytest.raises(
        ValueError, match="`likelihood` must be one of .*Received: likelihood='poisson'"
    ):
        observation_layer("poisson", 3)
    with pytest.raises(ValueError, match="`units` must be a positive int"):
        DiagonalGaussian(0)
    with pytest.raises(ValueError, match="`scale` must be one of"):
        GaussianObservation(3, scale="global")


@pytest.mark.parametrize("kind", ["diagonal", "rank_one"])
def test_analytic_kl_matches_its_monte_carlo_estimate(rank_one, kind):
    dist = rank_one[0]
    if kind == "diagonal":
        dist = diagonal_normal(dist.loc, np.sqrt(_np(dist.covariance_diag())))
    prior = standard_normal(5)
    z = dist.sample(200_000, seed=_seed(11))
    monte_carlo = _np(dist.log_prob(z) - prior.log_prob(z))
    standard_error = monte_carlo.std() / np.sqrt(len(monte_carlo))
    np.testing.assert_allclose(
        _np(tfd.kl_divergence(dist, prior)), monte_carlo.mean(), atol=4 * standard_error
    )
