import keras
import numpy as np
import pytest
import scipy.stats
from keras import ops

from tfdlgm import objectives

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


def mean_loss(model, x):
    return lambda: ops.mean(model(x)["loss"])


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
