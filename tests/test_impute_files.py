"""`tfdlgm impute MODEL --input FILE`: a user's incomplete `.csv` or `.npy` table completed,
in process through `tfdlgm.cli.main`, against factor analysis' exact Gaussian conditional; and
every bad table refused in one line before anything is written."""

# ruff: noqa: E501  (the bad-table list keeps one case per line, its message in full)

import csv
import re

import numpy as np
import pytest

from tfdlgm import cli, tables
from tfdlgm.models.factor_analysis import _inverse_softplus

from .models.fa_helpers import draw, known_factor_analysis

ROWS, D = 12, 5
HEADER = ["age", "height", "weight", "income", "score"]


@pytest.fixture(scope="module")
def fa(tmp_path_factory):
    """Known FA (D=5, K=2) with a broad q(z | x) (as tests/test_missing.py), saved as .keras,
    and an incomplete table drawn from it: 40% missing, row 0 complete, no row empty."""
    rng = np.random.default_rng(0)
    model, params = known_factor_analysis(rng, data_dim=D, latent_dim=2)
    model.posterior.raw_scale.bias.assign(_inverse_softplus(np.ones(2)))
    path = tmp_path_factory.mktemp("fa") / "fa.keras"
    model.save(path)
    x = draw(params, ROWS, rng).astype("float64")
    missing = rng.uniform(size=x.shape) < 0.4
    missing[0] = False
    missing[np.arange(ROWS), rng.integers(0, D, ROWS)] = False
    return model, str(path), x, missing


def run(argv, capsys):
    """`tfdlgm ARGV` in this process: (exit status, stdout, stderr)."""
    try:
        status = cli.main(argv)
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def write_csv(path, x, missing, header=HEADER):
    """`x` as CSV text with its own formats (trailing zeros, exponents), missing entries as
    empty cells or NaN in turn; returns the cells as written."""
    cells = [
        [
            ("" if (i + j) % 2 else "NaN") if missing[i, j] else f"{value:.4f}0" if j % 2 else f"{value:.3e}"
            for j, value in enumerate(row)
        ]
        for i, row in enumerate(x)
    ]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(cells)
    return cells


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_a_csv_with_a_header_is_completed_to_the_exact_conditional(fa, tmp_path, capsys):
    model, model_path, x, missing = fa
    table = tmp_path / "survey.csv"
    cells = write_csv(table, x, missing)
    status, out, err = run(
        ["impute", model_path, "--input", str(table), "--num-samples", "4000"], capsys
    )
    assert status == 0, err
    gaps = int(missing.any(1).sum())
    assert f"survey.csv: {ROWS} rows x {D} columns, {int(missing.sum())} missing entries in {gaps} rows" in out
    lowest = float(re.search(r"median [\d.,]+, lowest ([\d.,]+)", out).group(1).replace(",", ""))
    assert 1 <= lowest <= 4000
    completed = read_csv(tmp_path / "survey.imputed.csv")
    variances = read_csv(tmp_path / "survey.imputed-variance.csv")
    assert completed[0] == HEADER and variances[0] == HEADER
    assert len(completed) == len(variances) == ROWS + 1
    for written, given, gap in zip(completed[1:], cells, missing):
        assert [w for w, g in zip(written, gap) if not g] == [c for c, g in zip(given, gap) if not g]
    mean = np.array(completed[1:], float)
    variance = np.array(variances[1:], float)
    assert np.isfinite(mean).all() and (variance[missing] > 0).all() and (variance[~missing] == 0).all()
    # Against p(x_m | x_o) in closed form, within 5 standard errors of the lowest effective
    # sample size (each row's is at least that).
    observed = np.where(missing, np.nan, np.array([[float(c or "nan") for c in row] for row in cells]))
    exact_mean, exact_variance = model.exact_conditional(observed)
    error = (mean - exact_mean)[missing] / np.sqrt(exact_variance[missing] / lowest)
    assert np.abs(error).max() < 5, error
    ratio = variance[missing] / exact_variance[missing]
    assert (np.abs(ratio - 1) < 5 * np.sqrt(2 / lowest)).all(), ratio


def test_an_npy_table_keeps_its_dtype_and_its_observed_bits(fa, tmp_path, capsys):
    """A float32 .npy, completed by pseudo-Gibbs chains into -o: the complete row
    0 is copied (a chain needs a missing entry: only incomplete rows are imputed)."""
    _, model_path, x, missing = fa
    values = np.where(missing, np.nan, x).astype("float32")
    np.save(tmp_path / "table.npy", values)
    argv = ["impute", model_path, "--input", str(tmp_path / "table.npy"), "-o", str(tmp_path / "done.npy")]
    status, out, err = run([*argv, "--method", "pseudo_gibbs", "--steps", "2", "--num-chains", "3"], capsys)
    assert status == 0, err
    assert "pseudo_gibbs, 2 steps, 3 chains\n" in out
    completed = np.load(tmp_path / "done.npy")
    variance = np.load(tmp_path / "done-variance.npy")
    assert completed.dtype == variance.dtype == np.float32
    assert completed.shape == variance.shape == (ROWS, D)
    np.testing.assert_array_equal(completed.view(np.uint32)[~missing], values.view(np.uint32)[~missing])
    assert np.isfinite(completed).all() and (variance[~missing] == 0).all() and (variance[missing] > 0).all()
    np.testing.assert_array_equal(np.load(tmp_path / "table.npy"), values)  # the input untouched


def test_a_table_with_nothing_missing_is_copied_and_said(fa, tmp_path, capsys):
    _, model_path, x, _ = fa
    cells = write_csv(tmp_path / "full.csv", x, np.zeros_like(x, bool), header=None)
    status, out, err = run(["impute", model_path, "--input", str(tmp_path / "full.csv")], capsys)
    assert status == 0, err
    assert "0 missing entries in 0 rows" in out and "Nothing was missing" in out
    assert read_csv(tmp_path / "full.imputed.csv") == cells
    assert np.array(read_csv(tmp_path / "full.imputed-variance.csv"), float).tolist() == np.zeros((ROWS, D)).tolist()


def test_outputs_are_never_replaced_without_overwrite_and_the_input_never(fa, tmp_path, capsys):
    _, model_path, x, _ = fa
    table = tmp_path / "t.csv"
    write_csv(table, x, np.zeros_like(x, bool))  # complete: no imputation to wait for
    given = table.read_bytes()
    argv = ["impute", model_path, "--input", str(table)]
    assert run(argv, capsys)[0] == 0
    output = tmp_path / "t.imputed.csv"
    output.write_text("mine")
    status, out, err = run(argv, capsys)
    assert (status, out) == (1, "")
    assert err == f"tfdlgm impute: error: output: {output} exists; pass --overwrite to replace it\n"
    assert output.read_text() == "mine"
    assert run([*argv, "--overwrite"], capsys)[0] == 0
    assert output.read_bytes() == given
    status, _, err = run([*argv, "--overwrite", "-o", str(table)], capsys)
    assert status == 1 and f"-o: {table} is the input table; choose another -o" in err
    # -o u.csv writes its variances to u-variance.csv: the input there is refused too.
    twin = tmp_path / "u-variance.csv"
    twin.write_bytes(given)
    argv = ["impute", model_path, "--input", str(twin), "--overwrite", "-o", str(tmp_path / "u.csv")]
    status, _, err = run(argv, capsys)
    assert status == 1 and f"-o: {twin} is the input table; choose another -o" in err
    assert table.read_bytes() == twin.read_bytes() == given
    assert not (tmp_path / "u.csv").exists()
