"""Incomplete data end to end, against factor analysis' closed forms: the bounds of the observed
entries, importance-sampling imputation and training on data with missing entries (MIWAE)."""

import keras
import numpy as np
import pytest

from tfdlgm import objectives
from tfdlgm.models import DLGM, VAE, FactorAnalysis, LadderVAE
from tfdlgm.models.factor_analysis import _inverse_softplus

from .models.fa_helpers import draw, known_factor_analysis

ROWS = 20


def mcar(x, rng, missing=0.3):
    """A mask with `missing` of the entries missing completely at random, one entry of every
    row kept observed."""
    mask = rng.uniform(size=x.shape) >= missing
    mask[np.arange(len(x)), rng.integers(0, x.shape[1], len(x))] = True
    return mask


@pytest.fixture(scope="module")
def fa_incomplete():
    """Known FA (D=5, K=2) whose q(z | x) has the exact posterior's mean map at complete data
    and unit scales: fed zero-filled data it is a broad proposal for p(z | x_o)."""
    rng = np.random.default_rng(0)
    model, params = known_factor_analysis(rng, data_dim=5, latent_dim=2)
    model.posterior.raw_scale.bias.assign(_inverse_softplus(np.ones(2)))
    x = draw(params, ROWS, rng)
    return model, params, x, mcar(x, rng, missing=0.4)


def test_masked_l_5000_matches_the_exact_marginal_of_the_observed_entries(fa_incomplete):
    model, _, x, mask = fa_incomplete
    exact = model.exact_log_likelihood(x, mask)
    bounds = np.stack([model.iwae_bound(x, 5000, seed=s, verbose=0, mask=mask) for s in range(3)])
    error = bounds - exact  # [3, ROWS]
    assert np.abs(error).max() < 0.1, error
    # The bound's bias is below its Monte Carlo error: mean error within 4 standard errors.
    standard_error = bounds.std(0, ddof=1).mean() / np.sqrt(error.size)
    assert abs(error.mean()) < 4 * standard_error + 0.01, (error.mean(), standard_error)
    elbo = model.elbo(x, num_samples=100, seed=0, verbose=0, mask=mask)
    assert (elbo < exact).all() and elbo.mean() < bounds.mean() - 0.1


def test_nan_marks_missing_entries_like_the_mask(fa_incomplete):
    model, _, x, mask = fa_incomplete
    with_nan = np.where(mask, x, np.nan).astype("float32")
    np.testing.assert_array_equal(
        model.iwae_bound(with_nan, 10, seed=0, verbose=0),
        model.iwae_bound(x, 10, seed=0, verbose=0, mask=mask),
    )
    np.testing.assert_array_equal(
        model.log_likelihood(with_nan, 10, seed=0, verbose=0),
        model.iwae_bound(with_nan, 10, seed=0, verbose=0),
    )
    np.testing.assert_allclose(
        model.exact_log_likelihood(with_nan), model.exact_log_likelihood(x, mask)
    )
    # A complete mask is the complete-data bound.
    complete = np.ones_like(mask)
    np.testing.assert_allclose(
        model.elbo(x, seed=0, verbose=0, mask=complete), model.elbo(x, seed=0, verbose=0), rtol=1e-6
    )


@pytest.mark.parametrize(
    "proposal",
    [{"proposal": "encoder"}, {"proposal": "mixture", "num_components": 4, "steps": 2}],
    ids=["encoder", "mixture"],
)
def test_importance_imputation_matches_the_exact_gaussian_conditional(fa_incomplete, proposal):
    model, _, x, mask = fa_incomplete
    with_nan = np.where(mask, x, np.nan).astype("float32")
    result = model.impute(
        with_nan,
        mask,
        method="importance",
        num_samples=20000,
        num_chains=3,
        seed=0,
        verbose=0,
        **proposal,
    )
    mean, variance = model.exact_conditional(x, mask)
    ess = result.effective_sample_size
    assert ess.shape == (ROWS,) and (ess >= 1).all() and (ess <= 20000).all()
    missing = ~mask
    rows = np.nonzero(missing)[0]
    # Each estimate within 5 standard errors of its effective sample size.
    mean_z = (result.mean[missing] - mean[missing]) / np.sqrt(variance[missing] / ess[rows])
    assert np.abs(mean_z).max() < 5, mean_z
    ratio = result.variance[missing] / variance[missing]
    assert (np.abs(ratio - 1) < 5 * np.sqrt(2 / ess[rows])).all(), ratio
    assert result.method == "importance" and result.acceptance_rate is None
    assert result.samples.shape == (3, ROWS, 5) and np.isfinite(result.samples).all()
    np.testing.assert_array_equal(result.completed, result.samples[0])
    for values in (result.mean, *result.samples):
        np.testing.assert_array_equal(values[mask], x[mask])
    assert (result.variance[mask] == 0).all()


def test_importance_draws_follow_the_exact_conditional():
    """Sampling importance resampling: 20 draws of each of 200 copies of one example."""
    rng = np.random.default_rng(1)
    model, _ = known_factor_analysis(rng, data_dim=5, latent_dim=2)
    model.posterior.raw_scale.bias.assign(_inverse_softplus(np.ones(2)))
    x = np.tile(np.array([[0.5, -1.0, 0.2, np.nan, np.nan]], "float32"), (200, 1))
    mask = ~np.isnan(x)
    result = model.impute(
        x, mask, method="importance", num_samples=2000, num_chains=20, seed=3, verbose=0
    )
    mean, variance = model.exact_conditional(x[:1], mask[:1])
    draws = result.samples[:, :, 3:].reshape(-1, 2).astype("float64")  # 4000 draws
    # Draws of one copy share its K samples: the mean's error is dominated by the copies'
    # K-sample estimates, 200 independent ones.
    se = np.sqrt(variance[0, 3:] / 200)
    assert (np.abs(draws.mean(0) - mean[0, 3:]) < 5 * se).all()
    np.testing.assert_allclose(draws.var(0), variance[0, 3:], rtol=0.15)


@pytest.mark.parametrize(
    "make",
    [
        lambda: VAE(latent_dim=2, hidden=(4,), data_dim=6, likelihood="gaussian", seed=0),
        lambda: DLGM(latent_dims=(3, 2), hidden=(4,), data_dim=6, likelihood="gaussian", seed=0),
        lambda: LadderVAE(
            latent_dims=(3, 2), hidden=(4, 4), data_dim=6, likelihood="gaussian", seed=0
        ),
    ],
    ids=["vae", "dlgm", "lvae"],
)
def test_every_model_bounds_incomplete_data(make):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype("float32")
    with_nan = np.where(mcar(x, rng, missing=0.5), x, np.nan).astype("float32")
    model = make()
    elbo = model.elbo(with_nan, num_samples=4, seed=0, verbose=0)
    bound = model.iwae_bound(with_nan, 50, seed=0, verbose=0)
    assert np.isfinite(elbo).all() and elbo.mean() < bound.mean()


def test_the_mixture_proposal_agrees_with_the_encoder_on_a_two_layer_model():
    """Both proposals estimate the same E[x_m | x_o]: within Monte Carlo error of each other.
    The two-layer IWAE's q(z_1 | x) q(z_2 | z_1) is scored through `posterior_log_prob`."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype("float32")
    mask = mcar(x, rng, missing=0.5)
    with_nan = np.where(mask, x, np.nan).astype("float32")
    model = LadderVAE(
        latent_dims=(3, 2), hidden=(4, 4), data_dim=6, likelihood="gaussian", ladder=False, seed=0
    )
    results = [
        model.impute(
            with_nan, mask, method="importance", num_samples=2000, seed=0, verbose=0, **options
        )
        for options in ({"proposal": "encoder"}, {"num_components": 4, "steps": 2})
    ]
    missing = ~mask
    rows = np.nonzero(missing)[0]
    error = np.sqrt(sum(r.variance[missing] / r.effective_sample_size[rows] for r in results))
    difference = results[0].mean[missing] - results[1].mean[missing]
    assert np.abs(difference / error).max() < 5, difference / error
    assert (results[1].variance[missing] > 0).all()
    np.testing.assert_array_equal(results[1].mean[mask], x[mask])


def test_a_vae_imputes_by_importance_and_trains_on_incomplete_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype("float32")
    mask = mcar(x, rng, missing=0.5)
    with_nan = np.where(mask, x, np.nan).astype("float32")
    model = VAE(
        latent_dim=2,
        hidden=(4,),
        data_dim=6,
        likelihood="gaussian",
        objective={"name": "miwae", "num_samples": 3},
        seed=0,
    )
    result = model.impute(
        with_nan, mask, method="importance", proposal="encoder", num_samples=64, seed=0, verbose=0
    )
    assert np.isfinite(result.mean).all() and (result.variance[~mask] > 0).all()
    model.compile(optimizer="adam")
    history = model.fit(with_nan, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def miwae_fit(epochs, num_examples, seed=0):
    """FA trained with MIWAE on FA data with 30% missing completely at random, and FA fit by EM
    on the complete data; both return their exact log-likelihood of the complete data."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    _, params = known_factor_analysis(rng, data_dim=5, latent_dim=2)
    x = draw(params, num_examples, rng)
    with_nan = np.where(mcar(x, rng), x, np.nan).astype("float32")
    em = FactorAnalysis(latent_dim=2, data_dim=5, seed=0)
    em.fit_em(x)
    model = FactorAnalysis(
        latent_dim=2, data_dim=5, seed=0, objective={"name": "miwae", "num_samples": 10}
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    history = model.fit(with_nan, batch_size=500, epochs=epochs, verbose=0)
    return model, em, x, with_nan, history


@pytest.mark.slow
def test_miwae_on_30_percent_missing_recovers_the_complete_data_maximum_likelihood():
    model, em, x, with_nan, _ = miwae_fit(epochs=50, num_examples=2000)
    # 2000 examples: the two fits differ by the sampling noise of their estimates, ~0.01 nats.
    gap = em.exact_log_likelihood(x).mean() - model.exact_log_likelihood(x).mean()
    assert 0 <= gap < 0.05, gap
    gap_observed = (
        em.exact_log_likelihood(with_nan).mean() - model.exact_log_likelihood(with_nan).mean()
    )
    assert gap_observed < 0.03, gap_observed


def test_miwae_fit_raises_the_exact_likelihood_of_the_observed_entries():
    model, em, x, with_nan, history = miwae_fit(epochs=3, num_examples=1000)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    # Six steps raise the observed entries' exact log-likelihood well above an untrained FA's
    # (-10 to -12 nats per example), towards the complete-data fit's (about -5.7).
    keras.utils.set_random_seed(0)
    untrained = (
        FactorAnalysis(latent_dim=2, data_dim=5, seed=0).exact_log_likelihood(with_nan).mean()
    )
    trained = model.exact_log_likelihood(with_nan).mean()
    assert trained > untrained + 1.5 and trained < em.exact_log_likelihood(with_nan).mean()


def test_nan_data_with_an_objective_that_needs_complete_data_is_refused():
    model = VAE(latent_dim=2, hidden=(4,), data_dim=3, likelihood="gaussian", seed=0)
    model.compile(optimizer="adam")
    x = np.array([[0.0, np.nan, 1.0], [1.0, 2.0, 3.0]], "float32")
    with pytest.raises(
        ValueError,
        match=r"nan at index \(0, 1\).*'elbo' needs complete data.*'miwae'",
    ):
        model.fit(x, epochs=1, verbose=0)


def test_miwae_is_registered_and_round_trips():
    objective = objectives.get({"name": "miwae", "num_samples": 20})
    assert isinstance(objective, objectives.MIWAE) and objective.accepts_missing
    assert objectives.get(objective.get_config()).get_config() == {
        "name": "miwae",
        "num_samples": 20,
    }
    model = VAE(latent_dim=2, hidden=(), data_dim=3, likelihood="gaussian", objective="miwae")
    assert VAE.from_config(model.get_config()).objective.get_config() == {
        "name": "miwae",
        "num_samples": 5,
    }


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m, x: m.elbo(x, mask=np.ones((2, 3), "float32")),
            "`mask` must be a bool array.*dtype=float32",
        ),
        (
            lambda m, x: m.iwae_bound(x, 2, mask=np.ones((2, 2), bool)),
            r"`mask` must have the shape of `x`, \(2, 3\). Received: mask.shape=\(2, 2\)",
        ),
        (
            lambda m, x: m.elbo(x, mask=np.array([[True] * 3, [False] * 3])),
            "at least one observed.*1 rows without one, e.g. row 1",
        ),
        (
            lambda m, x: m.log_likelihood(np.where([[True] * 3, [False] * 3], x, np.nan), 2),
            "at least one observed.*e.g. row 1",
        ),
        (
            lambda m, x: m.elbo(
                np.where([[True, False, True], [True] * 3], x, np.nan), mask=np.ones((2, 3), bool)
            ),
            r"must not hold NaN in observed entries.*\(0, 1\)",
        ),
        (
            lambda m, x: m.elbo(np.where([[True, False, True], [True] * 3], x, np.inf)),
            "`x` must be finite. Received: inf",
        ),
        (
            lambda m, x: m.impute(x, np.ones((2, 3), bool), proposal="encoder", steps=3),
            "`steps` is for proposal='mixture'.*Received: steps=3",
        ),
        (
            lambda m, x: m.impute(x, np.eye(2, 3, dtype=bool), "pseudo_gibbs", num_samples=3),
            "`num_samples` is for method='importance'",
        ),
        (
            lambda m, x: m.impute(x, np.eye(2, 3, dtype=bool), proposal="prior"),
            r"`proposal` must be one of \('mixture', 'encoder'\). Received: proposal='prior'",
        ),
        (
            lambda m, x: m.impute(
                x, np.eye(2, 3, dtype=bool), proposal="encoder", num_components=4
            ),
            "`num_components` is for proposal='mixture'.*Received: num_components=4",
        ),
        (
            lambda m, x: m.impute(x, np.eye(2, 3, dtype=bool), num_components=1),
            "`num_components` must be at least 2.*Received: num_components=1",
        ),
        (
            lambda m, x: m.impute(x, np.eye(2, 3, dtype=bool), num_components=3),
            "`num_samples` must be a multiple of `num_components`.*num_samples=1000, "
            "num_components=3",
        ),
        (
            lambda m, x: m.impute(x, np.eye(2, 3, dtype=bool), "pseudo_gibbs", proposal="mixture"),
            "`proposal` is for method='importance'",
        ),
        (
            lambda m, x: m.impute(x, np.eye(2, 3, dtype=bool), return_chain=True),
            "`return_chain` is for the Markov chains",
        ),
        (
            lambda m, x: m.impute(x, np.eye(2, 3, dtype=bool), method="importance", num_samples=0),
            "`num_samples` must be a positive int",
        ),
    ],
    ids=[
        "mask float",
        "mask shape",
        "row unobserved",
        "row all NaN",
        "NaN where observed",
        "inf",
        "encoder steps",
        "chain num_samples",
        "proposal unknown",
        "encoder num_components",
        "one component",
        "samples not a multiple",
        "chain proposal",
        "importance return_chain",
        "importance k 0",
    ],
)
def test_bad_incomplete_data_is_a_clear_error(call, message):
    model = VAE(latent_dim=2, hidden=(), data_dim=3, likelihood="gaussian", seed=0)
    x = np.arange(6, dtype="float32").reshape(2, 3)
    with pytest.raises(ValueError, match=message):
        call(model, x)
