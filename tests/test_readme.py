"""The README's examples run as written.

Every ```python block of README.md runs on its own, in a fresh namespace and a temporary
working directory, so a block that needs an import or a variable must say so itself. Before a
block runs, `SIZES` shrinks its sizes (epochs, samples, examples) so that the whole file takes
about a minute per backend on 2 CPU cores; nothing else of a block is changed. Each entry of
`SIZES` must match somewhere in the README, so the table and the README cannot drift apart
unnoticed. Output shown in the README is fenced ```text, never ```python.

The commands of the "Command line" section run too (`test_the_command_line_section_runs`), in
one process through `tfdlgm.cli.main`, with `CLI_SIZES` shrinking them the same way; a command
that starts a server (`tensorboard`) is checked for being one and not run.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

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
    ("epochs=100, batch_size=100", "epochs=1, batch_size=100"),
    ("num_samples=1000)", "num_samples=10)"),
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


# The same for the "Command line" section's commands (after joining continued lines).
CLI_SIZES = (
    ("--epochs 100 --batch-size 100", "--epochs 1 --batch-size 100 --train-examples 200"),
    ("--epochs 200 --batch-size 100", "--epochs 2 --batch-size 100 --train-examples 200"),
    ("--train-examples 500", "--train-examples 100"),
    ("--k 5000 --examples 100", "--k 10 --examples 4"),
    ("-n 64", "-n 4"),
    ("--examples 8", "--examples 2"),
)
SERVERS = ("tensorboard",)  # commands that start a server: not run
# Runs `main(argv)` for each argv of the JSON list argv[1]; prints the exit codes as JSON.
_DRIVER = """
import json, sys
from tfdlgm.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as exit:
        codes.append(exit.code)
print(json.dumps(codes))
"""


def commands(section="Command line"):
    """The shell commands of a section's ```bash blocks: continued lines joined, comments cut."""
    found = []
    for *_, code in blocks("bash", section):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append(" ".join(line.split()))
    return found


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND") == "jax",
    reason="the command line is tested under TensorFlow (tests/test_cli.py::test_jax_smoke)",
)
def test_the_command_line_section_runs(tmp_path):
    lines = commands()
    joined = "\n".join(lines)
    stale = [text for text, _ in CLI_SIZES if text not in joined]
    assert not stale, f"CLI_SIZES rewrites text the README's commands no longer hold: {stale}"
    argvs = []
    for line in lines:
        for text, replacement in CLI_SIZES:
            line = line.replace(text, replacement)
        words = line.split()
        if words[0] in SERVERS:
            continue
        assert words[0] == "tfdlgm", f"a README command that is not tfdlgm's: {line}"
        argvs.append(words[1:])
    assert len(argvs) >= 8
    process = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(argvs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    codes = json.loads(process.stdout.splitlines()[-1])
    failed = [" ".join(argv) for argv, code in zip(argvs, codes) if code not in (0, None)]
    assert not failed, f"README commands that failed: {failed}\n{process.stderr[-3000:]}"
    for written in ("vae.keras", "tiny.keras", "samples.png", "completed.png"):
        assert (tmp_path / written).is_file(), written
    state = json.loads((tmp_path / "checkpoints" / "vae" / "state.json").read_text())
    assert state["epoch"] == 2  # the second command resumed the first's checkpoint
