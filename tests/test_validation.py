"""Bad input at every public entry point of the core: a ValueError naming the problem."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfdlgm import validation
from tfdlgm.models import VAE, FactorAnalysis


@pytest.fixture(scope="module")
def vae():
    return VAE(latent_dim=2, hidden=(8,), data_dim=6, seed=0)


GOOD = np.array([[0, 1, 0, 1, 1, 0]], "float32")

BAD_DATA = [
    (GOOD.astype("int32"), "must have a floating dtype"),
    ((GOOD * 255).astype("uint8"), r"x.astype\('float32'\) / 255"),
    (GOOD.astype(bool), "must have a floating dtype"),
    (GOOD[0], r"must have shape \[batch, 6\]"),
    (GOOD[:, :5], r"must have shape \[batch, 6\].*shape=\(1, 5\)"),
    (GOOD.reshape(1, 2, 3), r"must have shape \[batch, 6\]"),
    (np.zeros((0, 6), "float32"), "at least one example"),
    (np.where(np.eye(1, 6, 2, dtype=bool), np.nan, GOOD).astype("float32"), "must be finite.*nan"),
    (np.where(np.eye(1, 6, 2, dtype=bool), np.inf, GOOD).astype("float32"), "must be finite.*inf"),
    (GOOD * 0.5, r"binary values \(0 or 1\).*1 values outside|binary values"),
    (GOOD - 1.0, "binary values"),
    ("not an array", "must be an array of numbers"),
    (None, "must be an array of numbers"),
]


BOUNDS = ("elbo", "iwae_bound", "log_likelihood")  # NaN = missing (tests/test_missing.py)


def _calls(model):
    return {
        "elbo": lambda x: model.elbo(x),
        "iwae_bound": lambda x: model.iwae_bound(x, 3),
        "log_likelihood": lambda x: model.log_likelihood(x, 3),
        "reconstruct": lambda x: model.reconstruct(x),
        "encode": lambda x: model.encode(x),
    }


@pytest.mark.parametrize("entry", ["elbo", "iwae_bound", "log_likelihood", "reconstruct", "encode"])
@pytest.mark.parametrize("bad, message", BAD_DATA, ids=[str(i) for i in range(len(BAD_DATA))])
def test_bad_data_raises_a_clear_error(vae, entry, bad, message):
    if entry in BOUNDS and "nan" in message:
        bad = np.full_like(bad, np.nan)  # NaN marks a missing entry: a row of NaN only is bad
        message = "no observed entry|at least one observed"
    with pytest.raises(ValueError, match=message):
        _calls(vae)[entry](bad)


def test_fit_validates_array_data(vae):
    vae.compile(optimizer="adam")
    with pytest.raises(ValueError, match="binary values"):
        vae.fit(GOOD * 0.5, epochs=1, verbose=0)


def test_float64_is_accepted_as_the_models_float():
    model = VAE(latent_dim=2, hidden=(8,), data_dim=6, seed=0)
    np.testing.assert_array_equal(
        model.elbo(GOOD.astype("float64"), seed=1), model.elbo(GOOD, seed=1)
    )


def test_real_valued_models_accept_any_finite_value():
    model = FactorAnalysis(latent_dim=1, data_dim=6)
    assert np.isfinite(model.elbo(GOOD * 3.7 - 100.0)).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m: m.iwae_bound(GOOD, 0),
            r"`num_samples` must be a positive int \(>= 1\). Received: num_samples=0",
        ),
        (lambda m: m.log_likelihood(GOOD, num_samples=-5), "Received: num_samples=-5"),
        (lambda m: m.log_likelihood(GOOD, num_samples=2.5), "Received: num_samples=2.5"),
        (lambda m: m.elbo(GOOD, num_samples=True), "Received: num_samples=True"),
        (lambda m: m.elbo(GOOD, batch_size=0), "`batch_size` must be a positive int"),
        (lambda m: m.sample(-1), "Received: num_examples=-1"),
        (lambda m: m.sample(0), "Received: num_examples=0"),
        (lambda m: m.sample("3"), "Received: num_examples='3'"),
        (lambda m: m.sample(3, seed=-1), "`seed` must be None or a non-negative int"),
        (lambda m: m.elbo(GOOD, seed="x"), "`seed` must be None or a non-negative int"),
    ],
)
def test_bad_sizes_and_seeds(vae, call, message):
    with pytest.raises(ValueError, match=message):
        call(vae)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"latent_dim": 0}, r"`latent_dim` must be a positive int .*Received: latent_dim=0"),
        ({"data_dim": 0}, "`data_dim` must be a positive int"),
        ({"likelihood": "poisson"}, "`likelihood` must be one of .*Received: likelihood='poisson'"),
        ({"covariance": "full"}, "`covariance` must be one of .*Received: covariance='full'"),
        ({"objective": "wake"}, "`objective` must be one of .*Received: objective='wake'"),
        ({"objective": {"name": "iwae", "num_samples": 0}}, "`num_samples` must be a positive int"),
        ({"hidden": (8, -1)}, r"`hidden` must be a tuple of .* Received: hidden=\(8, -1\)"),
        ({"seed": -3}, "`seed` must be None or a non-negative int"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(**{"latent_dim": 2, "hidden": (8,), "data_dim": 6, **kwargs})


# -- property-based tests of the validators (hypothesis) ----------------------------------------

FAST = settings(max_examples=60, deadline=None)
finite_floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)
shapes = st.tuples(st.integers(1, 5), st.integers(1, 6))


@FAST
@given(st.integers(-(2**40), 2**40))
def test_check_positive_int_accepts_exactly_the_ints_from_1(value):
    if value >= 1:
        assert validation.check_positive_int(value, "steps") == value
        assert validation.check_positive_int(np.int64(value), "steps") == value
    else:
        with pytest.raises(
            ValueError, match=rf"`steps` must be a positive int \(>= 1\). Received: steps={value}"
        ):
            validation.check_positive_int(value, "steps")


@FAST
@given(
    st.one_of(st.booleans(), st.floats(), st.text(max_size=3), st.none(), st.just({}), st.just([1]))
)
def test_check_positive_int_rejects_every_non_int_naming_the_argument(value):
    with pytest.raises(
        ValueError, match=r"`num_chains` must be a positive int. Received: num_chains="
    ):
        validation.check_positive_int(value, "num_chains")


@FAST
@given(st.one_of(st.integers(-(2**40), 2**40), st.booleans(), st.floats(), st.none()))
def test_check_seed_accepts_none_and_non_negative_ints_only(seed):
    valid = seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0)
    if valid:
        assert validation.check_seed(seed) == seed
    else:
        with pytest.raises(
            ValueError, match="`seed` must be None or a non-negative int. Received: seed="
        ):
            validation.check_seed(seed)


@FAST
@given(hnp.arrays(st.sampled_from(["float32", "float64"]), shapes, elements=finite_floats))
def test_check_data_returns_finite_real_data_unchanged(x):
    out = validation.check_data(x, x.shape[1], "real", dtype=x.dtype.name)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, x)


@FAST
@given(hnp.arrays("float32", shapes, elements=st.sampled_from([0.0, 1.0])))
def test_check_data_returns_binary_data_unchanged(x):
    np.testing.assert_array_equal(validation.check_data(x, x.shape[1], "binary"), x)


@FAST
@given(
    hnp.arrays("float32", shapes, elements=finite_floats),
    st.sampled_from([np.nan, np.inf, -np.inf]),
    st.data(),
)
def test_check_data_rejects_any_non_finite_value(x, bad, data):
    index = (data.draw(st.integers(0, x.shape[0] - 1)), data.draw(st.integers(0, x.shape[1] - 1)))
    x[index] = bad
    for support in ("real", "binary"):
        with pytest.raises(ValueError, match=rf"`x` must be finite. Received: {bad} at index"):
            validation.check_data(x, x.shape[1], support)


@FAST
@given(
    hnp.arrays("float32", shapes, elements=st.sampled_from([0.0, 1.0])),
    finite_floats.filter(lambda v: v not in (0.0, 1.0)),
    st.data(),
)
def test_check_data_rejects_any_non_binary_value_for_binary_support(x, bad, data):
    index = (data.draw(st.integers(0, x.shape[0] - 1)), data.draw(st.integers(0, x.shape[1] - 1)))
    x[index] = bad
    with pytest.raises(ValueError, match=r"binary values \(0 or 1\).*Received: 1 values outside"):
        validation.check_data(x, x.shape[1], "binary")
    np.testing.assert_array_equal(validation.check_data(x, x.shape[1], "real"), x)


@FAST
@given(shapes, st.integers(1, 7))
def test_check_data_rejects_any_other_width(shape, data_dim):
    x = np.zeros(shape, "float32")
    if shape[1] == data_dim:
        return
    with pytest.raises(ValueError, match=rf"must have shape \[batch, {data_dim}\]"):
        validation.check_data(x, data_dim, "real")
