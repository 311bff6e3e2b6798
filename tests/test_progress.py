"""Progress of long jobs: `tfdlgm.progress` and the `verbose` of the bounds and `impute`."""

import io

import numpy as np
import pytest

from tfdlgm import impute, progress
from tfdlgm.models import VAE


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_explicit_verbosity_is_kept(verbose):
    assert progress.check_verbose(verbose) == verbose


def test_auto_is_on_in_a_terminal_only(monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert progress.check_verbose("auto") == 0
    monkeypatch.setattr("sys.stdout", _Terminal())
    assert progress.check_verbose("auto") == 1


@pytest.mark.parametrize("verbose", [True, 3, -1, "yes", None, 1.5])
def test_bad_verbosity_is_refused(verbose):
    with pytest.raises(ValueError, match=r"`verbose` must be 0 .*Received: verbose="):
        progress.check_verbose(verbose)


@pytest.fixture(scope="module")
def model_and_data():
    model = VAE(latent_dim=2, hidden=(8,), data_dim=12, seed=0)
    x = (np.random.default_rng(0).uniform(size=(10, 12)) < 0.5).astype("float32")
    return model, x


BOUNDS = {
    # method, its arguments: several batches, and several chunks of samples per batch
    "elbo": lambda model, x, verbose: model.elbo(x, batch_size=4, seed=1, verbose=verbose),
    "iwae_bound": lambda model, x, verbose: model.iwae_bound(
        x, 30, batch_size=4, seed=1, verbose=verbose
    ),
    "log_likelihood": lambda model, x, verbose: model.log_likelihood(
        x, num_samples=30, batch_size=4, seed=1, verbose=verbose
    ),
}


@pytest.mark.parametrize("method", BOUNDS)
def test_bounds_show_progress_only_when_asked(method, model_and_data, capsys, monkeypatch):
    model, x = model_and_data
    bound = BOUNDS[method]
    # calls of 8 samples: several updates per batch of 4 examples in the L_k bounds
    monkeypatch.setattr("tfdlgm.models.base._ROWS_PER_CHUNK", 32)
    monkeypatch.setattr("tfdlgm.models.base._ROWS_PER_PASS", 32)
    silent = bound(model, x, 0)
    assert capsys.readouterr().out == ""
    auto = bound(model, x, "auto")  # stdout is captured, not a terminal
    assert capsys.readouterr().out == ""
    bar = bound(model, x, 1)
    shown = capsys.readouterr().out
    assert "10/10" in shown and "/example" in shown
    one_line = bound(model, x, 2)
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith("10/10 - ") and "/example" in line
    # the same seed gives the same figures whatever is shown
    np.testing.assert_array_equal(silent, auto)
    np.testing.assert_array_equal(silent, bar)
    np.testing.assert_array_equal(silent, one_line)


def test_a_bad_verbosity_is_refused_by_the_bounds(model_and_data):
    model, x = model_and_data
    with pytest.raises(ValueError, match="Received: verbose='loud'"):
        model.log_likelihood(x, num_samples=2, verbose="loud")


@pytest.mark.parametrize("method", impute.CHAINS)
def test_imputation_shows_progress_only_when_asked(method, model_and_data, capsys):
    model, x = model_and_data
    mask = impute.future_mask(x.shape, 4)
    results = {}
    for verbose in (0, 1):
        results[verbose] = model.impute(
            np.where(mask, x, np.nan), mask, method=method, steps=3, seed=2, verbose=verbose
        )
        results[verbose, "out"] = capsys.readouterr().out
    assert results[0, "out"] == ""
    assert "3/3" in results[1, "out"] and "/step" in results[1, "out"]
    np.testing.assert_array_equal(results[0].completed, results[1].completed)
    assert results[0].acceptance_rate == results[1].acceptance_rate
