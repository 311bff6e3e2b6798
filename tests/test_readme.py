"""The README's examples run as written.

Every ```python block of README.md runs on its own, in a fresh namespace and a temporary
working directory, so a block that needs an import or a variable must say so itself. Before a
block runs, `SIZES` shrinks its sizes (epochs, samples, examples) so that the whole file takes
about a minute per backend on 2 CPU cores; nothing else of a block is changed. Each entry of
`SIZES` must match somewhere in the README, so the table and the README cannot drift apart
unnoticed. Output shown in the README is fenced ```text, never ```python.

`blocks(language, section)` extracts the blocks of one language under one `## ` heading, so a
test of the "Command line" section's ```bash blocks can be added beside these.
"""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

# (text in the README, what runs instead): the only changes made to a block before it runs.
SIZES = (
    ("epochs=5)", "epochs=1, steps_per_epoch=2)"),
    ("epochs=2000,", "epochs=1, steps_per_epoch=2,"),
    ("return_dict=True)", "return_dict=True, steps=2)"),
    ('"test", binarize="fixed", batch_size=1000', '"test", binarize="fixed", batch_size=20'),
    ('"test", binarize="fixed", batch_size=100)', '"test", binarize="fixed", batch_size=8)'),
    ("num_samples=5000)", "num_samples=10)"),
    ("num_samples=5000,", "num_samples=10,"),
    ("num_samples=50)", "num_samples=5)"),
    ("[:1000]", "[:20]"),
    ("steps=100,", "steps=2,"),
)

_HEADING = re.compile(r"^## (.*)$", re.MULTILINE)
_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(language, section=None):
    """The fenced blocks of `language` in README.md, as `(section, number, line, code)`.

    `section` (a `## ` heading's text) keeps only that section's blocks; `number` counts the
    blocks of `language` within their section, from 1; `line` is the README line of the code's
    first line.
    """
    text = README.read_text(encoding="utf-8")
    headings = [(m.start(), m.group(1).strip()) for m in _HEADING.finditer(text)]
    found, counts = [], {}
    for match in _FENCE.finditer(text):
        heading = next((h for start, h in reversed(headings) if start < match.start()), "")
        if match.group(1) != language or section not in (None, heading):
            continue
        counts[heading] = counts.get(heading, 0) + 1
        line = text.count("\n", 0, match.start(2)) + 1
        found.append((heading, counts[heading], line, match.group(2)))
    if section is not None and not found:
        raise AssertionError(f"README.md has no ```{language} block under '## {section}'")
    return found


def shrink(code):
    """`code` with every `SIZES` substitution applied."""
    for text, replacement in SIZES:
        code = code.replace(text, replacement)
    return code


PYTHON = blocks("python")


def test_every_size_substitution_matches_the_readme():
    code = "".join(block for *_, block in PYTHON)
    stale = [text for text, _ in SIZES if text not in code]
    assert not stale, (
        f"SIZES in {__file__} rewrites text that no ```python block of README.md holds any "
        f"more: {stale}. Update the table to the README's new sizes."
    )


def test_the_readme_has_python_examples():
    assert {section for section, *_ in PYTHON} >= {"Quick start", "Missing data and prediction"}


@pytest.mark.parametrize(
    ("line", "code"),
    [pytest.param(line, code, id=f"{section}-{number}") for section, number, line, code in PYTHON],
)
def test_python_block_runs(line, code, tmp_path, monkeypatch):
    """The block, shrunk, runs in a fresh namespace; a traceback names README.md's lines."""
    monkeypatch.chdir(tmp_path)
    source = "\n" * (line - 1) + shrink(code)
    exec(compile(source, str(README), "exec"), {"__name__": "__readme__"})
