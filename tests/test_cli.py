"""The `tfdlgm` command, driven in subprocesses.

Starting Python with TensorFlow costs ~5 s, so the file starts few processes: the console
script itself for training, one real failure and the JAX smoke test, and a driver process that
calls `tfdlgm.cli.main(argv)` for many command lines in turn (catching `SystemExit` as the
shell would see it). The tests run under the TensorFlow backend only, except the JAX smoke
test, which runs under both.
"""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from tfdlgm import cli, zoo

Image = pytest.importorskip("PIL.Image")

ON_JAX = os.environ.get("KERAS_BACKEND") == "jax"
tensorflow_only = pytest.mark.skipif(
    ON_JAX, reason="the CLI is tested under TensorFlow; test_jax_smoke covers --backend jax"
)
TIMEOUT = 600

_CONSOLE_SCRIPT = shutil.which("tfdlgm", path=os.path.dirname(sys.executable))
COMMAND = [_CONSOLE_SCRIPT] if _CONSOLE_SCRIPT else [sys.executable, "-m", "tfdlgm.cli"]

# Runs `main(argv)` for each argv of the JSON list argv[1]; prints the results as JSON.
_DRIVER = """
import contextlib, io, json, sys, traceback
from tfdlgm.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        except BaseException:
            code = "traceback"
            traceback.print_exc(file=err)
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def env(mnist_path):
    return {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TFDLGM_MNIST": mnist_path,
    }


def _run(args, env, cwd):
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=TIMEOUT
    )


def _drive(argvs, env, cwd):
    """`[{"code", "stdout", "stderr"}]`, one per command line, from one process."""
    process = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(argvs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=TIMEOUT,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.splitlines()[-1])


def _error_lines(stderr):
    """stderr without TensorFlow's start-up chatter (printed before its logging starts)."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("I0000", "W0000", "WARNING: All log messages"))
    ]


def _grid_size(rows, columns, side=28, padding=2, scale=2):
    """(width, height) in pixels of a `save_grid` PNG."""
    return (
        (columns * (side + padding) + padding) * scale,
        (rows * (side + padding) + padding) * scale,
    )


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory):
    """A tiny VAE trained by `tfdlgm train`: `(folder, completed process)`."""
    folder = tmp_path_factory.mktemp("cli")
    process = _run(
        [
            "train",
            "--model", "vae",
            "--train-examples", "500",
            "--epochs", "1",
            "--hidden", "16",
            "--latent-dims", "2",
            "--warm-up", "2",
            "--validation-examples", "100",
            "--logdir", "logs",
            "--checkpoint-dir", "checkpoints",
            "--output", "model.keras",
        ],
        env,
        folder,
    )  # fmt: skip
    return folder, process


@tensorflow_only
def test_train_writes_model_checkpoint_and_logs(trained):
    folder, process = trained
    assert process.returncode == 0, process.stderr[-3000:]
    assert "VAE (" in process.stdout and "backend tensorflow" in process.stdout
    assert "5/5" in process.stdout and "elbo:" in process.stdout  # the progress bar: 5 steps
    assert "Model written to model.keras" in process.stdout
    assert (folder / "model.keras").is_file()
    assert json.loads((folder / "checkpoints" / "state.json").read_text())["epoch"] == 1
    assert (folder / "checkpoints" / "epoch-0001.keras").is_file()
    for run in ("train", "validation"):
        assert list((folder / "logs" / run).glob("events.out.tfevents.*")), run


@tensorflow_only
def test_eval_sample_impute_zoo_and_help(trained, env):
    folder, _ = trained
    presets = zoo.list()
    verbs = ["zoo", "zoo list", "zoo card", "train", "eval", "sample", "impute", "bench"]
    results = _drive(
        [
            ["eval", "model.keras", "--k", "10", "--examples", "20"],
            ["sample", "model.keras", "-n", "16", "-o", "samples.png"],
            ["sample", "model.keras", "-n", "5", "--draws", "--seed", "3", "-o", "draws.png"],
            ["impute", "model.keras", "--examples", "4", "--steps", "2", "-o", "bottom.png"],
            [
                "impute", "model.keras", "--mask", "random:0.5", "--method",
                "metropolis_within_gibbs", "--examples", "3", "--steps", "2", "-o", "random.png",
            ],
            ["zoo", "list"],
            ["zoo", "card", presets[0]] if presets else ["zoo", "list"],
            *([*verb.split(), "--help"] for verb in verbs),
            ["--help"],
        ],
        env,
        folder,
    )  # fmt: skip
    evaluation, samples, draws, bottom, random, listing, card, *helps = results
    for result in results:
        assert result["code"] == 0, result

    table = dict(
        (line[:16].strip(), line[16:].split()) for line in evaluation["stdout"].splitlines()[2:]
    )
    assert list(table) == ["ELBO", "L_1", "L_5", "L_10", "L_50", "KL layer 1"]
    bounds = [float(table[name][0]) for name in ("ELBO", "L_1", "L_5", "L_10", "L_50")]
    assert all(-784 * math.log(2) * 2 < b < 0 for b in bounds), bounds
    assert bounds[4] > bounds[0] - 1.0  # L_50 >= ELBO, up to Monte Carlo noise
    assert float(table["KL layer 1"][0]) >= 0 and table["KL layer 1"][-1] in ("0/2", "1/2", "2/2")

    assert Image.open(folder / "samples.png").size == _grid_size(4, 4)
    assert Image.open(folder / "draws.png").size == _grid_size(2, 3)
    assert Image.open(folder / "bottom.png").size == _grid_size(3, 4)  # original, masked, done
    assert Image.open(folder / "random.png").size == _grid_size(3, 3)
    assert Image.open(folder / "bottom.png").mode == "RGB"  # missing pixels drawn in colour
    assert "acceptance rate" in random["stdout"]
    assert "rows: original, masked, completed" in bottom["stdout"]
    assert "16 samples written to samples.png" in samples["stdout"]

    assert [line.split()[0] for line in listing["stdout"].splitlines()] == presets
    if presets:
        assert card["stdout"].strip() == zoo.card(presets[0]).strip()
    for verb, result in zip([*verbs, ""], helps, strict=True):
        assert f"usage: tfdlgm {verb}".strip() in result["stdout"], verb


@tensorflow_only
def test_bad_input_fails_with_one_line_and_exit_status(trained, env):
    folder, _ = trained
    (folder / "notes.keras").write_text("not a model")
    Image.new("L", (4, 4)).save(folder / "picture.png")
    cases = [  # (argv, exit status, what stderr says)
        (["train", "--model", "gan", "--epochs", "1"], 2, "invalid choice: 'gan' (choose from"),
        (["train", "--model", "vae", "--epochs", "0"], 2, "must be a positive int, got '0'"),
        (["train", "--model", "vae", "--epochs", "1", "--hidden", "8,x"], 2, "separated by"),
        (["train", "--model", "vae", "--epochs", "1", "--latent-dims", "2,3"], 2, "one latent"),
        (["train", "--model", "fa", "--epochs", "1", "--hidden", "8"], 2, "does not apply"),
        (["train", "--model", "vae", "--epochs", "1", "--covariance", "full"], 2, "covariance"),
        (["train", "--model", "vae", "--epochs", "1", "--resume"], 2, "needs --checkpoint-dir"),
        (["train", "--model", "vae", "--epochs", "1", "--output", "m.h5"], 2, ".keras file"),
        (["--backend", "torch", "zoo", "list"], 2, "invalid choice: 'torch'"),
        (["eval", "model.keras", "--examples", "many"], 2, "must be a positive int"),
        (["impute", "model.keras", "--mask", "left-half", "-o", "x.png"], 2, "bottom-half or"),
        (["impute", "model.keras", "--mask", "random:1.5", "-o", "x.png"], 2, "0 < P < 1"),
        (["impute", "model.keras", "--method", "gibbs", "-o", "x.png"], 2, "invalid choice"),
        (["eval", "missing.keras"], 1, "missing.keras: no such file"),
        (["eval", "missing/preset"], 1, "no such file or folder"),
        (["sample", "no-such-preset", "-o", "x.png"], 1, "Known presets: ["),
        (["sample", "notes.keras", "-o", "x.png"], 1, "notes.keras is not a model file"),
        (["sample", "picture.png", "-o", "x.png"], 1, "picture.png is not a model file"),
        (["sample", "model.keras", "-o", "no/folder/x.png"], 1, "does not exist"),
        (["zoo"], 2, "usage: tfdlgm zoo"),
    ]
    results = _drive([argv for argv, _, _ in cases], env, folder)
    for (argv, status, message), result in zip(cases, results, strict=True):
        assert result["code"] == status, (argv, result)
        assert message in result["stderr"], (argv, result["stderr"])
        assert "Traceback" not in result["stderr"], argv
        if status == 1:
            assert len(_error_lines(result["stderr"])) == 1, (argv, result["stderr"])
            assert result["stderr"].startswith(f"tfdlgm {argv[0]}: error: "), argv
    assert not (folder / "x.png").exists()

    # The same through the real console script: status and stderr as the shell sees them.
    process = _run(["eval", "model.keras.missing.keras"], env, folder)
    assert process.returncode == 1
    assert _error_lines(process.stderr) == [
        "tfdlgm eval: error: model.keras.missing.keras: no such file"
    ]
    assert process.stdout == ""


def test_jax_smoke(env, tmp_path):
    """`--backend jax` trains under JAX, also when Keras started under TensorFlow."""
    pytest.importorskip("jax")
    process = _run(
        [
            "--backend", "jax",
            "train",
            "--model", "vae",
            "--train-examples", "200",
            "--epochs", "1",
            "--hidden", "8",
            "--latent-dims", "2",
            "--validation-examples", "0",
            "--output", "jax.keras",
        ],
        env,
        tmp_path,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    assert "backend jax" in process.stdout
    assert (tmp_path / "jax.keras").is_file()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["bench", "--quick", "--out", "d"], (["bench"], ["--quick", "--out", "d"])),
        (
            ["--backend", "jax", "bench", "--", "--smoke"],
            (["--backend", "jax", "bench"], ["--smoke"]),
        ),
        (["train", "bench", "--epochs", "1"], (["train", "bench", "--epochs", "1"], None)),
        (["--backend", "bench"], (["--backend", "bench"], None)),
    ],
)
def test_bench_arguments_reach_the_suite_untouched(argv, expected):
    assert cli._split_bench(argv) == expected
