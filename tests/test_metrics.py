import keras
import numpy as np
import pytest

from tfdlgm.metrics import MeanTerms


def test_mean_terms_match_one_keras_mean_per_term():
    rng = np.random.default_rng(0)
    batches = [{"elbo": rng.normal(size=n), "kl_1": rng.gamma(2.0, size=n)} for n in (7, 3, 11)]
    terms = MeanTerms(("elbo", "kl_1"))
    means = {name: keras.metrics.Mean() for name in ("elbo", "kl_1")}
    for batch in batches:
        terms.update_state(batch)
        for name, mean in means.items():
            mean.update_state(batch[name])
    result = terms.result()
    assert list(result) == ["elbo", "kl_1"]
    for name, mean in means.items():
        expected = np.concatenate([batch[name] for batch in batches]).mean()
        np.testing.assert_allclose(float(result[name]), float(mean.result()), rtol=1e-6)
        np.testing.assert_allclose(float(result[name]), expected, rtol=1e-5)
    terms.reset_state()
    assert all(float(value) == 0.0 for value in terms.result().values())


def test_mean_terms_hold_two_variables_however_many_terms():
    terms = MeanTerms(tuple(f"kl_{i}" for i in range(5)))
    assert [tuple(v.shape) for v in terms.variables] == [(5,), ()]


def test_mean_terms_round_trip_their_config():
    terms = MeanTerms(("elbo", "reconstruction"), name="running")
    clone = MeanTerms.from_config(terms.get_config())
    assert clone.names == ("elbo", "reconstruction") and clone.name == "running"


@pytest.mark.parametrize("names", [(), ("elbo", "elbo")])
def test_mean_terms_refuse_empty_or_repeated_names(names):
    with pytest.raises(ValueError, match="distinct and non-empty"):
        MeanTerms(names)
