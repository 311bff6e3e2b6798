"""Incomplete tables on disk: a `.csv` or `.npy` file read as a float array with NaN at its
missing entries, and its completed copy written in the same format.

```none
.csv   numbers separated by commas (UTF-8); an empty cell or NaN (any case) is missing. The
       first row is a header of column names when it holds text and no number (empty names
       allowed); a first row that mixes names and numbers is data, and its names are errors.
       Blank lines are skipped. Values are read as float64.
.npy   a 2-D float array (NumPy's `np.save`), NaN at missing entries; its dtype is kept.
```

Every table must be rectangular, finite where observed (inf is an error, not a missing
entry) and have an observed entry in every row; errors are `ValueError`s that name the file,
the row and the column. A written table keeps the input's format: its header (`.csv`), its
dtype (`.npy`), and each observed entry as the input had it (the `.csv` cell's text, the
`.npy` value's bits). Files are written atomically (`files.atomic_write`): a failed write
leaves any earlier file untouched. NumPy only: no Keras, so a bad file fails before a model
loads.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import pathlib
import pickle

import numpy as np

from tfdlgm import files

SUFFIXES = (".csv", ".npy")
_MISSING_HINT = "an empty cell or NaN marks a missing entry"


@dataclasses.dataclass
class Table:
    """A table read by `read_table`.

    Attributes:
        path: pathlib.Path, the file.
        values: `np.ndarray` `[rows, columns]`, floats (float64 from a `.csv`, the array's own
            dtype from a `.npy`), NaN at missing entries.
        header: list of str or None: a `.csv` file's column names, as written.
        cells: list of lists of str or None: a `.csv` file's cell texts, row by row.
        lines: list of int or None: the line of a `.csv` file each row of `values` was on.
        line_end: str, a `.csv` file's line ending (`"\n"` or `"\r\n"`), kept when written.
    """

    path: pathlib.Path
    values: np.ndarray
    header: list[str] | None = None
    cells: list[list[str]] | None = None
    lines: list[int] | None = None
    line_end: str = "\n"

    @property
    def missing(self) -> np.ndarray:
        """bool `[rows, columns]`: True at missing entries."""
        return np.isnan(self.values)

    def where(self, row: int, column: int | None = None) -> str:
        """A cell (or a row, with `column` None) as the user finds it in the file: the `.csv`
        line and column (from 1, with the column's name), or the `.npy` index (from 0)."""
        if self.lines is None:
            return f"{self.path}[{row}]" if column is None else f"{self.path}[{row}, {column}]"
        place = f"{self.path}, line {self.lines[row]}"
        if column is None:
            return place
        name = f" ({self.header[column].strip()!r})" if self.header else ""
        return f"{place}, column {column + 1}{name}"


def read_table(path: str | pathlib.Path) -> Table:
    """Reads a `.csv` or `.npy` table with missing entries (module docstring).

    Args:
        path: str or path, a `.csv` or `.npy` file.

    Returns:
        `Table`.

    Raises:
        ValueError: naming the file (and the row and column where there is one) for a file
            that is missing or cannot be read, another suffix, a `.npy` that is not a 2-D float
            array, a cell that is not a number, rows of different lengths, no rows, inf, or a
            row with no observed entry.
    """
    path = pathlib.Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: a table must be a .csv or .npy file")
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise ValueError(f"{path}: {what}")
    table = _read_csv(path) if path.suffix == ".csv" else _read_npy(path)
    if table.values.size == 0:
        raise ValueError(f"{path} holds no entries (shape {table.values.shape})")
    infinite = np.isinf(table.values)
    if infinite.any():
        row, column = np.argwhere(infinite)[0]
        raise ValueError(
            f"{table.where(row, column)}: {table.values[row, column]} is not finite; "
            f"observed entries must be finite numbers ({_MISSING_HINT})"
        )
    unobserved = table.missing.all(axis=1)
    if unobserved.any():
        raise ValueError(
            f"{table.where(int(np.argmax(unobserved)))}: the row has no observed entry "
            f"({int(unobserved.sum())} such rows); remove them, there is nothing to condition on"
        )
    return table


def _read_csv(path):
    try:
        # "-sig" drops the byte-order mark spreadsheets write before the first cell; newline=""
        # keeps the line endings (to write them back) and the line breaks inside quoted cells.
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not a UTF-8 text file ({error.reason} at byte {error.start})"
        ) from error
    except OSError as error:
        raise ValueError(f"{path} cannot be read: {error.strerror}") from error
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []
    try:
        for row in reader:
            if row:
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: not CSV ({error})") from error
    if not rows:
        raise ValueError(f"{path} is empty: expected rows of numbers separated by commas")
    for row, line in zip(rows, lines):
        if len(row) != len(rows[0]):
            raise ValueError(
                f"{path}, line {line}: {len(row)} cells, but line {lines[0]} has "
                f"{len(rows[0])}; every row needs a cell per column ({_MISSING_HINT})"
            )
    first = [_number(cell) for cell in rows[0]]
    header = None
    if None in first and all(value is None or np.isnan(value) for value in first):
        header, rows, lines = rows[0], rows[1:], lines[1:]
        if not rows:
            raise ValueError(f"{path} holds a header and no rows of numbers")
    line_end = "\r\n" if "\r\n" in text else "\n"
    table = Table(path, np.empty((len(rows), len(rows[0]))), header, rows, lines, line_end)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            value = _number(cell)
            if value is None:
                raise ValueError(
                    f"{table.where(i, j)}: {cell.strip()!r} is not a number ({_MISSING_HINT}"
                    + ("; a header row holds no numbers)" if i == 0 and header is None else ")")
                )
            table.values[i, j] = value
    return table


def _number(cell):
    """A cell's float: NaN for an empty cell, None for a cell that is not a number."""
    cell = cell.strip()
    if not cell:
        return np.nan
    try:
        return float(cell)
    except ValueError:
        return None


def _read_npy(path):
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as error:
        raise ValueError(f"{path} cannot be read: {error.strerror}") from error
    try:
        values = np.load(io.BytesIO(content), allow_pickle=False)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{path} is not a NumPy .npy file ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(values, np.ndarray):  # np.load reads a zip archive as an .npz
        raise ValueError(f"{path} is an .npz archive, not a .npy array; save one with np.save")
    if values.ndim != 2:
        raise ValueError(
            f"{path} holds an array of shape {values.shape}; a table is 2-D: [rows, columns]"
        )
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError(
            f"{path} holds {values.dtype} values; a table needs floats, NaN at missing "
            "entries: save x.astype('float32')"
        )
    return Table(path, values)


def output_paths(
    path: str | pathlib.Path, output: str | pathlib.Path | None = None
) -> tuple[pathlib.Path, pathlib.Path]:
    """Where the completed table of `path` and its variances go:
    `output` (default: `data.csv` -> `data.imputed.csv`) and `output` with `-variance`
    before its suffix (`data.imputed-variance.csv`)."""
    path = pathlib.Path(path)
    output = path.with_name(f"{path.stem}.imputed{path.suffix}") if output is None else output
    output = pathlib.Path(output)
    return output, output.with_name(f"{output.stem}-variance{output.suffix}")


def write_completed(path: str | pathlib.Path, table: Table, values: np.ndarray) -> None:
    """Writes `table` with its missing entries taken from `values` `[rows, columns]`, in the
    table's format; its observed entries are written as read (`.csv` text, `.npy` bits). A
    `.csv` gets each value in the shortest text that reads back as the same number of
    `values`' dtype (float32 values: about 8 digits, float64: about 17)."""
    values, missing = np.asarray(values), table.missing
    if table.cells is None:
        completed = np.where(missing, values.astype(table.values.dtype), table.values)
        _write(path, table, completed)
        return
    rows = [
        [_text(value) if gap else cell for cell, value, gap in zip(*row)]
        for row in zip(table.cells, values, missing)
    ]
    _write(path, table, rows)


def write_array(path: str | pathlib.Path, values: np.ndarray, like: Table) -> None:
    """Writes `values` `[rows, columns]` in `like`'s format: `like`'s header (`.csv`, numbers
    as `write_completed` writes them) or dtype (`.npy`)."""
    if like.cells is None:
        _write(path, like, np.asarray(values).astype(like.values.dtype))
    else:
        _write(path, like, [[_text(value) for value in row] for row in np.asarray(values)])


def _text(value):
    """A NumPy float's shortest round-trip text at its own precision: float32(0.1) is "0.1"."""
    return str(value)


def _write(path, like, content):
    """`content` (an array for a `.npy` table, rows of cell texts for a `.csv`) to `path`."""
    if like.cells is None:

        def save(temporary):
            with open(temporary, "wb") as f:  # np.save would add ".npy" to a path without it
                np.save(f, content)

        files.atomic_write(path, save)
        return
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=like.line_end)
    if like.header is not None:
        writer.writerow(like.header)
    writer.writerows(content)
    value = text.getvalue()
    files.atomic_write(
        path, lambda temporary: temporary.write_text(value, encoding="utf-8", newline="")
    )
