"""`tfdlgm impute MODEL --input FILE`: a user's incomplete `.csv` or `.npy` table completed,
in process through `tfdlgm.cli.main`, against factor analysis' exact Gaussian conditional; and
every bad table refused in one line before anything is written."""

# ruff: noqa: E501  (the bad-table list keeps one case per line, its message in full)

import csv
import io
import re

import keras
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
            ("" if (i + j) % 2 else "NaN")
            if missing[i, j]
            else f"{value:.4f}0"
            if j % 2
            else f"{value:.3e}"
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
    assert (
        f"survey.csv: {ROWS} rows x {D} columns, {int(missing.sum())} missing entries in {gaps} rows"
        in out
    )
    lowest = float(re.search(r"median [\d.,]+, lowest ([\d.,]+)", out).group(1).replace(",", ""))
    assert cli.FEW_EFFECTIVE_SAMPLES <= lowest <= 4000
    assert err == ""  # no warning of few effective samples
    completed = read_csv(tmp_path / "survey.imputed.csv")
    variances = read_csv(tmp_path / "survey.imputed-variance.csv")
    assert completed[0] == HEADER and variances[0] == HEADER
    assert len(completed) == len(variances) == ROWS + 1
    for written, given, gap in zip(completed[1:], cells, missing):
        assert [w for w, g in zip(written, gap) if not g] == [
            c for c, g in zip(given, gap) if not g
        ]
    mean = np.array(completed[1:], float)
    variance = np.array(variances[1:], float)
    assert (
        np.isfinite(mean).all()
        and (variance[missing] > 0).all()
        and (variance[~missing] == 0).all()
    )
    # Against p(x_m | x_o) in closed form, within 5 standard errors of the lowest effective
    # sample size (each row's is at least that).
    observed = np.where(
        missing, np.nan, np.array([[float(c or "nan") for c in row] for row in cells])
    )
    exact_mean, exact_variance = model.exact_conditional(observed)
    error = (mean - exact_mean)[missing] / np.sqrt(exact_variance[missing] / lowest)
    assert np.abs(error).max() < 5, error
    ratio = variance[missing] / exact_variance[missing]
    assert (np.abs(ratio - 1) < 5 * np.sqrt(2 / lowest)).all(), ratio


def test_rows_of_few_effective_samples_are_warned_of(fa, tmp_path, capsys):
    """A recognition model far narrower than p(z | x_o) proposes latents of which one or two
    carry the weight: the summary's lowest effective sample size is under the threshold, and
    stderr says how many rows rest on so few."""
    _, model_path, x, missing = fa
    model = keras.saving.load_model(model_path)
    model.posterior.raw_scale.bias.assign(_inverse_softplus(np.full(2, 1e-3)))
    narrow = tmp_path / "narrow.keras"
    model.save(narrow)
    table = tmp_path / "t.csv"
    write_csv(table, x, missing)
    argv = ["impute", str(narrow), "--input", str(table), "--proposal", "encoder"]
    status, out, err = run([*argv, "--num-samples", "100"], capsys)
    assert status == 0, err
    lowest = float(re.search(r"lowest ([\d.,]+)", out).group(1))
    few = re.fullmatch(
        r"tfdlgm impute: warning: (\d+) of (\d+) imputed rows have an effective sample size "
        r"under 10: .* more --num-samples raise it\n",
        err,
    )
    assert lowest < cli.FEW_EFFECTIVE_SAMPLES and few, (out, err)
    assert 1 <= int(few.group(1)) <= int(few.group(2)) == int(missing.any(1).sum())


def test_an_npy_table_keeps_its_dtype_and_its_observed_bits(fa, tmp_path, capsys):
    """A float32 .npy, completed by pseudo-Gibbs chains into -o: the complete row
    0 is copied (a chain needs a missing entry: only incomplete rows are imputed)."""
    _, model_path, x, missing = fa
    values = np.where(missing, np.nan, x).astype("float32")
    np.save(tmp_path / "table.npy", values)
    argv = [
        "impute",
        model_path,
        "--input",
        str(tmp_path / "table.npy"),
        "-o",
        str(tmp_path / "done.npy"),
    ]
    status, out, err = run(
        [*argv, "--method", "pseudo_gibbs", "--steps", "2", "--num-chains", "3"], capsys
    )
    assert status == 0, err
    assert "pseudo_gibbs, 2 steps, 3 chains\n" in out
    completed = np.load(tmp_path / "done.npy")
    variance = np.load(tmp_path / "done-variance.npy")
    assert completed.dtype == variance.dtype == np.float32
    assert completed.shape == variance.shape == (ROWS, D)
    np.testing.assert_array_equal(
        completed.view(np.uint32)[~missing], values.view(np.uint32)[~missing]
    )
    assert (
        np.isfinite(completed).all()
        and (variance[~missing] == 0).all()
        and (variance[missing] > 0).all()
    )
    np.testing.assert_array_equal(np.load(tmp_path / "table.npy"), values)  # the input untouched


def test_a_table_with_nothing_missing_is_copied_and_said(fa, tmp_path, capsys):
    _, model_path, x, _ = fa
    cells = write_csv(tmp_path / "full.csv", x, np.zeros_like(x, bool), header=None)
    status, out, err = run(["impute", model_path, "--input", str(tmp_path / "full.csv")], capsys)
    assert status == 0, err
    assert "0 missing entries in 0 rows" in out and "Nothing was missing" in out
    assert read_csv(tmp_path / "full.imputed.csv") == cells
    assert (
        np.array(read_csv(tmp_path / "full.imputed-variance.csv"), float).tolist()
        == np.zeros((ROWS, D)).tolist()
    )


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
    argv = [
        "impute",
        model_path,
        "--input",
        str(twin),
        "--overwrite",
        "-o",
        str(tmp_path / "u.csv"),
    ]
    status, _, err = run(argv, capsys)
    assert status == 1 and f"-o: {twin} is the input table; choose another -o" in err
    assert table.read_bytes() == twin.read_bytes() == given
    assert not (tmp_path / "u.csv").exists()


def _npz():
    with io.BytesIO() as f:
        np.savez(f, x=np.zeros((2, D)))
        return f.getvalue()


GOOD = b"1,2,3,4,5\n1,,3,NaN,5\n"
# (case, file name, content: bytes, an array for np.save, "folder" or None (no file), more
# arguments, exit status, what stderr says)
BAD_TABLES = [
    ("no file", "none.csv", None, [], 1, "none.csv: no such file"),
    ("a folder", "dir.csv", "folder", [], 1, "dir.csv: is a folder, not a file"),
    ("not UTF-8", "latin.csv", b"a,b\n\xe9,1\n", [], 1, r"latin.csv is not a UTF-8 text file \(invalid continuation byte at byte 4\)"),
    ("empty", "empty.csv", b"", [], 1, "empty.csv is empty: expected rows of numbers separated by commas"),
    ("a header only", "head.csv", b"a,b,c,d,e\n", [], 1, "head.csv holds a header and no rows of numbers"),
    ("a word in a cell", "word.csv", b"a,b,c,d,e\n1,2,3,4,5\n1,two,3,4,5\n", [], 1, r"word.csv, line 3, column 2 \('b'\): 'two' is not a number \(an empty cell or NaN marks a missing entry\)"),
    ("names and numbers in the first row", "mixed.csv", b"a,1,2,3,4\n1,2,3,4,5\n", [], 1, r"mixed.csv, line 1, column 1: 'a' is not a number \(.*; a header row holds no numbers\)"),
    ("rows of different lengths", "ragged.csv", b"1,2,3,4,5\n\n1,2,3,4\n", [], 1, "ragged.csv, line 3: 4 cells, but line 1 has 5; every row needs a cell per column"),
    ("inf in a .csv", "inf.csv", b"1,2,3,4,5\n1,-inf,,4,5\n", [], 1, r"inf.csv, line 2, column 2: -inf is not finite; observed entries must be finite numbers"),
    ("a row with nothing observed", "hole.csv", b"1,2,3,4,5\n,,NaN,, \n", [], 1, r"hole.csv, line 2: the row has no observed entry \(1 such rows\)"),
    ("4 columns for data_dim 5", "four.csv", b"1,2,3,4\n1,,3,4\n", [], 1, "four.csv has 4 columns; the model .*fa.keras takes data_dim=5"),
    ("a .npy of 1 dimension", "flat.npy", np.zeros(D), [], 1, r"flat.npy holds an array of shape \(5,\); a table is 2-D: \[rows, columns\]"),
    ("a .npy of ints", "ints.npy", np.zeros((2, D), "int64"), [], 1, r"ints.npy holds int64 values; a table needs floats, NaN at missing entries: save x.astype\('float32'\)"),
    ("inf in a .npy", "inf.npy", np.where(np.eye(2, D, 2, dtype=bool), np.inf, 1.0), [], 1, r"inf.npy\[0, 2\]: inf is not finite"),
    ("text named .npy", "text.npy", GOOD, [], 1, "text.npy is not a NumPy .npy file"),
    ("an .npz named .npy", "archive.npy", _npz(), [], 1, "archive.npy is an .npz archive, not a .npy array; save one with np.save"),
    ("-o of another format", "good.csv", GOOD, ["-o", "out.npy"], 2, r"-o out.npy: the output is written as the input is, so it needs the input's suffix .csv"),
    ("--num-samples not a multiple of the mixture's components", "good.csv", GOOD, ["--num-samples", "150"], 2, r"--num-samples 150: the mixture proposal draws as many samples from each of its 100 components, so it needs a multiple of 100 \(or --proposal encoder\)"),
    ("--proposal with a chain", "good.csv", GOOD, ["--method", "pseudo_gibbs", "--proposal", "encoder"], 2, "--proposal applies to --method importance only; this run does not use it"),
    ("-o in a missing folder", "good.csv", GOOD, ["-o", "no/out.csv"], 1, "-o: cannot write no/out.csv: the folder no does not exist"),
]  # fmt: skip


@pytest.mark.parametrize(
    "name, content, more, status, message",
    [case[1:] for case in BAD_TABLES],
    ids=[case[0] for case in BAD_TABLES],
)
def test_a_bad_table_is_one_line_and_writes_nothing(
    fa, tmp_path, monkeypatch, capsys, name, content, more, status, message
):
    monkeypatch.chdir(tmp_path)
    if isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    elif isinstance(content, np.ndarray):
        with open(tmp_path / name, "wb") as f:
            np.save(f, content)
    elif content == "folder":
        (tmp_path / name).mkdir()
    before = sorted(tmp_path.iterdir())
    received, out, err = run(["impute", fa[1], "--input", name, *more], capsys)
    assert received == status, err
    assert re.search(message, err), err
    assert err.startswith("tfdlgm impute: error: ") and len(err.splitlines()) == 1, err
    assert out == "" and sorted(tmp_path.iterdir()) == before


def test_read_table_names_the_header_and_keeps_the_cells(tmp_path):
    """The header rule: a first row with text and no number (an empty name allowed) is a
    header; a byte-order mark and blank lines are skipped; rows keep their file lines."""
    (tmp_path / "t.csv").write_bytes("\ufeffid,,score\r\n\r\n1, 2.50 ,\r\n4,nan,6e0\r\n".encode())
    table = tables.read_table(tmp_path / "t.csv")
    assert table.header == ["id", "", "score"] and table.lines == [3, 4]
    np.testing.assert_array_equal(table.values, [[1, 2.5, np.nan], [4, np.nan, 6]])
    assert table.cells == [["1", " 2.50 ", ""], ["4", "nan", "6e0"]]
    assert table.where(1, 2) == f"{tmp_path / 't.csv'}, line 4, column 3 ('score')"
    tables.write_completed(tmp_path / "out.csv", table, np.full((2, 3), 0.1, "float32"))
    assert (tmp_path / "out.csv").read_bytes() == b"id,,score\r\n1, 2.50 ,0.1\r\n4,0.1,6e0\r\n"
