import keras
import numpy as np
import pytest
import scipy.stats
from keras import ops

from tfdlgm import objectives
from tfdlgm.layers import batch_norm_layers, freeze_batch_norm, normalises_by_batch
from tfdlgm.models import VAE, FactorAnalysis, LadderVAE

from .gradients import value_and_grad_function
from .models.dlgm_helpers import linear_gaussian_dlgm, small_dlgm
from .models.fa_helpers import draw, known_factor_analysis

RECOGNITION = ("recognition", "posterior")


def gradient_function(model, loss_fn):
    """`seed -> {variable path: d loss_fn() / d variable}`, the model's random stream started
    at `[seed, 0]` (compiled once under JAX)."""
    variables = model.trainable_variables
    state = model.seed_generator.state
    dtype = ops.convert_to_numpy(state).dtype

    def fn(*values):
        mapping = [*zip(variables, values[:-1], strict=True), (state, values[-1])]
        with keras.StatelessScope(state_mapping=mapping):
            return loss_fn()

    value_and_grad = value_and_grad_function(fn, len(variables))
    values = [ops.convert_to_numpy(v) for v in variables]

    def gradients(seed):
        _, grads = value_and_grad(*values, np.array([seed, 0], dtype=dtype))
        return {v.path.split("/", 1)[1]: g for v, g in zip(variables, grads, strict=True)}

    return gradients


def mean_loss(model, x, training=False):
    return lambda: ops.mean(model(x, training=training)["loss"])


def recognition_gradient(gradients, seed):
    return np.concatenate(
        [g.ravel() for path, g in gradients(seed).items() if any(n in path for n in RECOGNITION)]
    )


# -- registry and arguments ------------------------------------------------------------------


def test_new_objectives_are_registered_and_round_trip_their_config():
    assert isinstance(objectives.get("wake_sleep"), objectives.WakeSleep)
    config = {"name": "score_function", "num_samples": 3, "control_variate": False, "decay": 0.5}
    objective = objectives.get(config)
    assert isinstance(objective, objectives.ScoreFunction)
    assert objective.get_config() == config
    with pytest.raises(ValueError, match="wake_sleep.*score_function.*Received: objective='x'"):
        objectives.get("x")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"decay": 1.0}, r"`decay`.*Received: decay=1.0"),
        ({"control_variate": "yes"}, r"`control_variate`.*Received: control_variate='yes'"),
        ({"num_samples": 0}, r"`num_samples`.*Received: num_samples=0"),
    ],
)
def test_score_function_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        objectives.ScoreFunction(**kwargs)


def test_a_score_function_with_a_baseline_belongs_to_one_model():
    objective = objectives.ScoreFunction()
    small_dlgm(objective=objective)
    with pytest.raises(ValueError, match="cannot be shared"):
        small_dlgm(objective=objective)


# -- the model methods the objectives use ----------------------------------------------------


def test_joint_and_posterior_log_prob_and_dreams_match_factor_analysis(rng):
    model, params = known_factor_analysis(rng)
    x = draw(params, 6, rng)
    z = rng.normal(size=(4, 6, 2)).astype("float32")  # [S, B, K]
    joint = ops.convert_to_numpy(model.joint_log_prob(x, [z]))
    expected = scipy.stats.norm(z @ params["w"].T + params["mu"], np.sqrt(params["psi"]))
    expected = expected.logpdf(x).sum(-1) + scipy.stats.norm().logpdf(z).sum(-1)
    np.testing.assert_allclose(joint, expected, rtol=1e-5)
    (posterior,) = model.encode(x)
    mean, stddev = (ops.convert_to_numpy(t) for t in (posterior.mean(), posterior.stddev()))
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.posterior_log_prob(x, [z])),
        scipy.stats.norm(mean, stddev).logpdf(z).sum(-1),
        rtol=1e-5,
    )
    (latents,), dreams = model.dream(4000, keras.random.SeedGenerator(0))
    assert latents.shape == (4000, 2)
    covariance = params["w"] @ params["w"].T + np.diag(params["psi"])
    dreams = ops.convert_to_numpy(dreams)
    assert np.linalg.norm(np.cov(dreams.T) - covariance) / np.linalg.norm(covariance) < 0.06


# -- score function --------------------------------------------------------------------------


def test_gradient_variance_reparameterised_lt_score_with_baseline_lt_score():
    """Same model, batch and random streams; the gradient of each estimator with respect to
    the recognition weights, over 20 draws."""
    variances = {}
    for name, objective in [
        ("reparameterised", "elbo"),
        ("score_with_baseline", {"name": "score_function"}),
        ("score", {"name": "score_function", "control_variate": False}),
    ]:
        model, _, params = linear_gaussian_dlgm(np.random.default_rng(0), objective=objective)
        x = draw(params, 100, np.random.default_rng(1))
        if name == "score_with_baseline":  # where the running mean of f settles: E[f] = ELBO
            model.objective.baseline.assign(model.elbo(x, num_samples=10, seed=0).mean())
        gradients = gradient_function(model, mean_loss(model, x))
        grads = np.stack([recognition_gradient(gradients, seed) for seed in range(20)])
        variances[name] = grads.var(axis=0).sum()
    assert (
        2 * variances["reparameterised"] < variances["score_with_baseline"] < variances["score"] / 2
    ), variances


def test_score_function_gradient_is_unbiased():
    """With many samples the score-function surrogate's gradient equals the reparameterised
    one (both estimate grad ELBO), for recognition and generative weights alike."""
    grads = {}
    for name in ("elbo", "score_function"):
        model, _, params = linear_gaussian_dlgm(
            np.random.default_rng(0), objective={"name": name, "num_samples": 20_000}
        )
        x = draw(params, 10, np.random.default_rng(1))
        loc = model.posteriors[0].loc.bias
        loc.assign(ops.convert_to_numpy(loc) + 1.0)  # away from the optimum: a large gradient
        if name == "score_function":
            model.objective.baseline.assign(model.elbo(x, num_samples=10, seed=0).mean())
        grads[name] = gradient_function(model, mean_loss(model, x))(0)
    for path, reparameterised in grads["elbo"].items():
        error = np.linalg.norm(grads["score_function"][path] - reparameterised)
        assert error < 0.1 * np.linalg.norm(reparameterised), (path, error)


def test_score_function_fit_improves_the_elbo_and_tracks_a_running_baseline(binary_data):
    keras.utils.set_random_seed(0)
    model = small_dlgm(objective={"name": "score_function", "num_samples": 4})
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    before = model.evaluate(binary_data, batch_size=256, verbose=0, return_dict=True)["elbo"]
    model.fit(binary_data, batch_size=32, epochs=4, verbose=0)
    baseline = float(ops.convert_to_numpy(model.objective.baseline))
    after = model.evaluate(binary_data, batch_size=256, verbose=0, return_dict=True)["elbo"]
    assert after > before + 1.0
    assert float(ops.convert_to_numpy(model.objective.baseline_steps)) == 4 * 256 / 32
    assert abs(baseline - after) < 1.5  # the running mean of f lags the improving ELBO
    assert float(ops.convert_to_numpy(model.objective.baseline)) == baseline  # not in evaluate


# -- wake-sleep ------------------------------------------------------------------------------


def test_wake_phase_touches_generative_and_sleep_phase_recognition_weights_only(binary_data):
    model = small_dlgm(hidden=(), objective="wake_sleep")
    objective = model.objective
    x = binary_data[:32]

    def wake():
        return ops.mean(objective.wake_loss(model.infer(x, 2, model.seed_generator), x, model))

    def sleep():
        return ops.mean(objective.sleep_loss(model, 32))

    for loss, touched in ((wake, False), (sleep, True)):
        for path, grad in gradient_function(model, loss)(0).items():
            is_recognition = any(name in path for name in RECOGNITION)
            assert np.any(grad != 0) == (is_recognition == touched), path


def test_wake_sleep_fit_increases_the_log_likelihood(binary_data):
    keras.utils.set_random_seed(0)
    model = small_dlgm(latent_dims=(3,), objective="wake_sleep")
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    before = model.log_likelihood(binary_data[:64], num_samples=50, seed=0).mean()
    model.fit(binary_data, batch_size=32, epochs=5, verbose=0)
    after = model.log_likelihood(binary_data[:64], num_samples=50, seed=0).mean()
    assert after > before + 1.0


# -- doubly reparameterised gradients (DReG) -------------------------------------------------


def iwae_factor_analysis(gradient, shift):
    """The known factor analysis model on L_50 with `gradient`, q's mean moved by `shift`,
    and 10 examples drawn from it."""
    rng = np.random.default_rng(0)
    _, params = known_factor_analysis(rng)
    model = FactorAnalysis(
        latent_dim=2,
        data_dim=5,
        seed=0,
        objective={"name": "iwae", "num_samples": 50, "gradient": gradient},
    )
    model.set_parameters(params["w"], params["mu"], params["psi"])
    loc = model.posterior.loc.bias
    loc.assign(ops.convert_to_numpy(loc) + shift)
    return model, draw(params, 10, np.random.default_rng(1))


def gradient_draws(model, x, calls, copies, training=False):
    """`{variable path: [calls, ...]}`: at seeds 0 .. calls - 1, the gradient of the mean loss
    over `copies` copies of `x`, each a mean of `copies` independent draws of the gradient
    on `x` (one call each, as the backends are slow to call)."""
    gradients = gradient_function(model, mean_loss(model, np.tile(x, (copies, 1)), training))
    draws = [gradients(seed) for seed in range(calls)]
    return {path: np.stack([d[path] for d in draws]) for path in draws[0]}


def assert_same_mean(draws, reference, atol=0.0):
    """Each element's mean within 4 standard errors of the difference (+ `atol`)."""
    for path, expected in reference.items():
        difference = draws[path] - expected
        standard_error = difference.std(axis=0, ddof=1) / np.sqrt(len(difference))
        assert np.all(np.abs(difference.mean(axis=0)) <= 4 * standard_error + atol), path


@pytest.fixture(scope="module")
def factor_analysis_draws():
    """Gradient draws of both estimators on the same noise, q's mean 0.5 off the posterior's:
    16 calls of 4 copies of the batch, i.e. 64 draws each."""
    return {
        gradient: gradient_draws(*iwae_factor_analysis(gradient, shift=0.5), calls=16, copies=4)
        for gradient in objectives.GRADIENTS
    }


def test_iwae_gradient_option_round_trips_and_rejects_unknown_values():
    config = {"name": "iwae", "num_samples": 50, "gradient": "dreg"}
    objective = objectives.get(config)
    assert objective.gradient == "dreg" and objective.get_config() == config
    assert objectives.get("iwae").get_config() == {"name": "iwae", "num_samples": 5}
    model = FactorAnalysis(latent_dim=2, data_dim=5, objective=config)
    assert FactorAnalysis.from_config(model.get_config()).objective.get_config() == config
    with pytest.raises(ValueError, match=r"`gradient` must be one of \('standard', 'dreg'\)"):
        objectives.get({"name": "iwae", "gradient": "DReG"})


def test_dreg_expected_gradient_equals_the_iwae_gradient_on_factor_analysis(
    factor_analysis_draws,
):
    """Same noise for both: the generative gradient is the same draw by draw; the recognition
    gradient differs draw by draw but not in its mean over 64 draws. Weights w~ in place of
    w~^2 (Roeder et al.'s estimator, biased for L_k) miss here by over 20 standard errors."""
    standard, dreg = factor_analysis_draws["standard"], factor_analysis_draws["dreg"]
    for path in standard:
        if "observation" in path:  # generative: sum_s w~_s grad log p(x, z_s) for both
            np.testing.assert_allclose(dreg[path], standard[path], atol=1e-5, err_msg=path)
    bias = dreg["posterior/loc/bias"]  # far from 0, so that the comparison means something
    assert np.all(np.abs(bias.mean(axis=0)) > 4 * bias.std(axis=0, ddof=1) / np.sqrt(len(bias)))
    assert_same_mean(dreg, standard)


def test_dreg_lowers_the_variance_of_the_inference_network_gradient_at_k_50(
    factor_analysis_draws,
):
    variances = {
        gradient: sum(g.var(axis=0).sum() for path, g in draws.items() if "posterior" in path)
        for gradient, draws in factor_analysis_draws.items()
    }
    assert variances["dreg"] < variances["standard"] / 10, variances


def with_moving_statistics(model, rng):
    """`model` with every batch normalisation's moving mean and variance, scale and offset
    drawn away from their starts (0, 1, 1, 0), so that frozen they are not the identity."""
    for layer in batch_norm_layers(model):
        size = layer.moving_mean.shape
        layer.moving_mean.assign(rng.normal(size=size).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=size).astype("float32"))
        layer.gamma.assign(rng.uniform(0.5, 2.0, size=size).astype("float32"))
        layer.beta.assign(rng.normal(size=size).astype("float32"))
    return model


@pytest.mark.slow
@pytest.mark.parametrize(
    "ladder, batch_norm",
    [(True, False), (False, False), (True, True)],
    ids=["ladder", "hierarchical", "ladder-frozen-batch-norm"],
)
def test_dreg_is_unbiased_for_a_hierarchical_q_and_weights_shared_with_p(ladder, batch_norm):
    """The ladder's q(z_1 | z_2, x) merges with p(z_1 | z_2) (top-down weights in both p and
    q); the two-layer IWAE's q(z_2 | z_1) reads z_1: every weight's mean gradient over 1,024
    draws as the standard estimator's. With batch normalisation frozen (`freeze_batch_norm`,
    moving statistics away from the identity), in training mode too."""
    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    draws, weights = {}, None
    for gradient in objectives.GRADIENTS:
        model = LadderVAE(
            latent_dims=(2, 2),
            hidden=(4, 4),
            layers_per_block=1,
            ladder=ladder,
            batch_norm=batch_norm,
            activation="tanh",
            likelihood="gaussian",
            data_dim=4,
            seed=0,
            objective={"name": "iwae", "num_samples": 10, "gradient": gradient},
        )
        if batch_norm:
            assert freeze_batch_norm(with_moving_statistics(model, np.random.default_rng(2))) == 4
        weights = weights or model.get_weights()
        model.set_weights(weights)
        draws[gradient] = gradient_draws(model, x, calls=64, copies=16, training=batch_norm)
    assert_same_mean(draws["dreg"], draws["standard"], atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda objective: small_dlgm(objective=objective),
        lambda objective: VAE(latent_dim=2, hidden=(8,), data_dim=20, seed=0, objective=objective),
        lambda objective: LadderVAE(
            latent_dims=(3, 2),
            hidden=(8, 4),
            batch_norm=False,
            data_dim=20,
            seed=0,
            objective=objective,
        ),
    ],
    ids=["dlgm", "vae", "lvae"],
)
def test_dreg_trains_every_model_and_reports_the_bound_as_its_loss(make, binary_data):
    model = make({"name": "iwae", "num_samples": 4, "gradient": "dreg"})
    x = binary_data[:32]
    standard = make({"name": "iwae", "num_samples": 4})
    standard.set_weights(model.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(x)["loss"]),
        ops.convert_to_numpy(standard(x)["loss"]),
        rtol=1e-5,
    )  # the same seed, so the same samples: the value is -L_k either way
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    before = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)["loss"]
    model.fit(x, batch_size=16, epochs=2, verbose=0)
    assert model.evaluate(x, batch_size=32, verbose=0, return_dict=True)["loss"] < before


def test_dreg_refuses_batch_statistics_and_trains_with_them_frozen(binary_data):
    """In training batch statistics couple a batch's samples: refused, with the way out in the
    message; frozen, DReG trains the model and leaves the frozen statistics as they were."""
    model = LadderVAE(
        latent_dims=(3, 2),
        hidden=(8, 4),
        data_dim=20,
        seed=0,
        objective={"name": "iwae", "num_samples": 4, "gradient": "dreg"},
    )
    x = binary_data[:32]
    with pytest.raises(ValueError, match=r"couples the samples.*freeze_batch_norm\(model\)"):
        model(x[:8], training=True)
    model(x[:8])  # at inference the moving statistics are used: no coupling, no refusal
    with_moving_statistics(model, np.random.default_rng(0))
    frozen = {
        layer.path: [ops.convert_to_numpy(w) for w in layer.weights]
        for layer in batch_norm_layers(model)
    }
    assert freeze_batch_norm(model) == 8 and not normalises_by_batch(model)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    before = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)["loss"]
    model.fit(x, batch_size=16, epochs=2, verbose=0)
    assert model.evaluate(x, batch_size=32, verbose=0, return_dict=True)["loss"] < before
    for layer in batch_norm_layers(model):
        for kept, weight in zip(frozen[layer.path], layer.weights, strict=True):
            np.testing.assert_array_equal(ops.convert_to_numpy(weight), kept, err_msg=weight.path)
