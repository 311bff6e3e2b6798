"""tfdlgm.evaluation: the protocols' test sets and the figures a report and a preset quote."""

import math

import numpy as np
import pytest

import tfdlgm
from tests.models.fa_helpers import draw, known_factor_analysis
from tfdlgm import datasets, evaluation


def test_the_protocol_test_sets_are_drawn_once_with_fixed_seeds(mnist_path, frey_path):
    test = evaluation.protocol_test_set(mnist_path)
    assert test.shape == (10_000, 784) and set(np.unique(test)) == {0.0, 1.0}
    grey = datasets.load_mnist_arrays(mnist_path)
    np.testing.assert_array_equal(test, datasets.fixed_binarization(grey["test"], seed=0))
    validation = evaluation.protocol_test_set(mnist_path, split="validation")
    np.testing.assert_array_equal(
        validation, datasets.fixed_binarization(grey["validation"], seed=1)
    )
    frey = evaluation.protocol_test_set(frey_path, dataset="frey_faces")
    levels = datasets.load_frey_faces_arrays(frey_path)["test"]
    np.testing.assert_array_equal(frey, datasets.fixed_dequantization(levels, seed=0))
    with pytest.raises(ValueError, match="`dataset` must be one of"):
        evaluation.protocol_test_set(dataset="cifar")
    with pytest.raises(ValueError, match="`split` must be 'test' or 'validation'"):
        evaluation.protocol_test_set(split="train")


def test_the_protocol_figures_are_ordered_bounds_of_the_exact_likelihood(rng):
    """On factor analysis, whose log p(x) is exact: ELBO <= L_1 ~ ELBO <= L_5 <= L_50 <= L_k
    <= log p(x), each figure under the name reports quote."""
    model, params = known_factor_analysis(rng, data_dim=6, latent_dim=2)
    x = draw(params, 200, rng)
    figures = evaluation.evaluate_protocol(model, x, k=500, k_examples=100)
    assert sorted(figures) == sorted(
        ["examples", "k_examples", "elbo", "L_1", "L_5", "L_50", "L_500", "kl", "active_units"]
    )
    assert figures["examples"] == 200 and figures["k_examples"] == 100
    assert abs(figures["L_1"] - figures["elbo"]) < 0.5  # equal in expectation; one draw each
    assert figures["elbo"] < figures["L_5"] < figures["L_50"]
    exact = float(np.mean(model.exact_log_likelihood(x[:100])))
    assert figures["L_500"] <= exact + 0.01 and figures["L_500"] > exact - 0.05
    assert figures["active_units"] == [2] and len(figures["kl"]) == 1


def test_a_preset_records_its_figures_under_the_metadata_names(monkeypatch):
    """`evaluate_preset` on fa-frey (k cut to 60 here): `log_likelihood`, the exact figure, and
    the 8-bit bound and bits per dimension of the exact figure."""
    monkeypatch.setattr(evaluation, "LOG_LIKELIHOOD_SAMPLES", 60)
    model = tfdlgm.zoo.load("fa-frey", compile=False)
    figures = evaluation.evaluate_preset(model, ll_examples=20, dataset="frey_faces")
    assert figures["log_likelihood_examples"] == 20 and "L_50" in figures
    recorded = tfdlgm.zoo.metadata("fa-frey")["figures"]
    assert figures["exact_log_likelihood"] == pytest.approx(recorded["exact_log_likelihood"])
    bound = figures["exact_log_likelihood"] - 560 * math.log(256)
    assert figures["log_likelihood_8bit"] == pytest.approx(bound)
    assert figures["bits_per_dim"] == pytest.approx(-bound / (560 * math.log(2)))
    assert figures["test_slice"]["examples"].startswith("first 100 of tfdlgm.datasets.frey_faces")
    assert "frey_faces" in evaluation.protocol_text(20, "frey_faces")
