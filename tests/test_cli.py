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
import time

import pytest

from tfdlgm import cli, training, zoo

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
    """stderr's lines that are not blank."""
    return [line for line in stderr.splitlines() if line.strip()]


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
            [
                "impute", "model.keras", "--examples", "4", "--num-samples", "200",
                "-o", "bottom.png",
            ],
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
    assert "importance sampling, 200 samples from the mixture proposal" in bottom["stdout"]
    assert "16 samples written to samples.png" in samples["stdout"]

    rows = listing["stdout"].splitlines()
    assert [line.split()[0] for line in rows] == presets
    # In columns: every figure and every parameter count ends where the others do.
    assert len({line.index("L_5000") for line in rows if "L_5000" in line}) == 1, rows
    assert len({line.index(" parameters") for line in rows}) == 1, rows
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
        (["train", "--model", "gan", "--epochs", "1"], 2, "--model: Unknown model 'gan'"),
        (["train", "--model", "vae", "--epochs", "0"], 2, "must be a positive int, got '0'"),
        (["train", "--model", "vae", "--epochs", "1", "--hidden", "8,x"], 2, "separated by"),
        (["train", "--model", "vae", "--epochs", "1", "--latent-dims", "2,3"], 2, "one latent"),
        (["train", "--model", "fa", "--epochs", "1", "--hidden", "8"], 2, "does not apply"),
        (["train", "--model", "vae", "--epochs", "1", "--covariance", "full"], 2, "covariance"),
        (["train", "--model", "vae", "--epochs", "1", "--resume"], 2, "needs --checkpoint-dir"),
        (["train", "--model", "vae", "--epochs", "1", "--output", "m.h5"], 2, ".keras file"),
        (["--backend", "torch", "zoo", "list"], 2, "invalid choice: 'torch'"),
        (["eval", "model.keras", "--examples", "many"], 2, "must be a positive int"),
        (["impute", "model.keras", "--mask", "left-half", "-o", "x.png"], 2, "top-half or"),
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

    # The same through the real console script, TF_CPP_MIN_LOG_LEVEL unset: status and stderr
    # as the shell sees them, without TensorFlow's start-up log lines.
    default_logging = {k: v for k, v in env.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = _run(["eval", "model.keras.missing.keras"], default_logging, folder)
    assert process.returncode == 1
    assert process.stderr.splitlines() == [
        "tfdlgm eval: error: model.keras.missing.keras: no such file"
    ]
    assert process.stdout == ""


# After `--help`, `zoo list` and `zoo card`: which backend modules the process imported.
_STARTUP = """
import contextlib, io, os, sys
from tfdlgm import cli, zoo
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        cli.main(["--help"])
    except SystemExit:
        pass
    cli.main(["zoo", "list"])
    for name in zoo.list()[:1]:
        cli.main(["zoo", "card", name])
    cli.main(["zoo", "card", "no-such-preset"])
heavy = ("tensorflow", "jax", "keras", "tensorflow_probability")
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
print(os.environ["TF_CPP_MIN_LOG_LEVEL"])
"""


def test_help_and_the_zoo_verbs_import_no_backend():
    """`tfdlgm --help`, `zoo list` and `zoo card` start no Keras, TensorFlow or JAX; the
    command sets TF_CPP_MIN_LOG_LEVEL (for the verbs that start TensorFlow) unless set."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.run(
        [sys.executable, "-c", _STARTUP], capture_output=True, text=True, env=env, timeout=TIMEOUT
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.splitlines() == ["[]", cli.TF_LOG_LEVEL]


def test_the_user_s_tensorflow_log_level_is_kept(monkeypatch, capsys):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert cli.main(["zoo", "list"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert cli.main(["zoo", "list"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == cli.TF_LOG_LEVEL


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_tensorflow_s_start_up_log_lines_below_the_level_are_held_back(level, capfd):
    """What C++ writes to file descriptor 2 while Keras starts (absl's lines, before absl's
    logging is set up) is filtered by TF_CPP_MIN_LOG_LEVEL's severity; anything else is kept."""
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796654748.669655   25839 port.cc:153] oneDNN custom operations are on.",
        "W0000 00:00:1796654748.670600   25839 stub.cc:31] a warning",
        "E0000 00:00:1796654754.881385   25839 cuda_platform.cc:52] failed call to cuInit",
        "/site-packages/keras/x.py:3: UserWarning: a Python warning",
        "Image 3 is 1.5 wide",
    ]
    severity = [1, 0, 1, 2, None, None]  # None: not an absl line
    with cli._absl_lines_held_back(level):
        os.write(2, "\n".join(lines).encode() + b"\n")
    kept = [line for line, s in zip(lines, severity, strict=True) if s is None or s >= level]
    assert capfd.readouterr().err.splitlines() == kept


def test_a_model_saved_by_tfdlgm_loads_with_plain_keras_after_import_tfdlgm(tmp_path):
    """`import tfdlgm` imports no Keras, yet `keras.saving.load_model` finds the model
    classes: they are registered as soon as Keras is imported (`tfdlgm.startup`)."""
    from tfdlgm.models import VAE

    VAE(latent_dim=2, hidden=(4,), data_dim=6, seed=0).save(tmp_path / "m.keras")
    code = (
        "import sys, tfdlgm; assert 'keras' not in sys.modules; import keras; "
        f"print(type(keras.saving.load_model({str(tmp_path / 'm.keras')!r})).__name__)"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.split() == ["VAE"]


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


def test_a_missing_output_folder_fails_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    status = cli.main(["train", "--model", "vae", "--epochs", "1", "--output", "missing/m.keras"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert status == 1 and elapsed < 1, (status, elapsed)
    assert err == (
        "tfdlgm train: error: --output: cannot write missing/m.keras: the folder missing "
        "does not exist; create it or choose another\n"
    )


def _output_cases(bad):
    """`[(argv, what stderr says)]`: every verb that writes, each path it writes at `bad`
    (a dict of the paths to try: `file` for a file path, `folder` for a folder path)."""
    train = ["train", "--model", "vae", "--epochs", "1"]
    cases = []
    for path, message in bad["file"]:
        cases += [
            ([*train, "--output", f"{path}.keras"], message),
            (["sample", "no-such-model.keras", "-o", f"{path}.png"], message),
            (["impute", "no-such-model.keras", "-o", f"{path}.png"], message),
        ]
    for path, message in bad["folder"]:
        cases += [
            ([*train, "--logdir", path], message),
            ([*train, "--checkpoint-dir", path], message),
        ]
    return cases


@tensorflow_only
def test_every_output_path_is_checked_before_any_work(env, tmp_path):
    """A missing parent, a file where a folder is meant and a folder where a file is meant, for
    every path each verb writes: one line, exit status 1, before the model is even loaded (the
    model named does not exist) and before anything is created."""
    (tmp_path / "notes").write_text("a file")
    for name in ("folder.keras", "folder.png"):
        (tmp_path / name).mkdir()
    bad = {
        "file": [
            ("missing/x", "the folder missing does not exist"),
            ("notes/x", "the folder notes is a file, not a folder"),
            ("folder", "it is a folder, expected a file name"),
        ],
        "folder": [
            ("notes", "it is a file, expected a folder"),
            ("notes/sub/run", "notes is a file, so the folder cannot be created"),
        ],
    }
    cases = _output_cases(bad)
    before = sorted(tmp_path.iterdir())
    results = _drive([argv for argv, _ in cases], env, tmp_path)
    for (argv, message), result in zip(cases, results, strict=True):
        assert result["code"] == 1, (argv, result)
        error = f"tfdlgm {argv[0]}: error: {argv[-2]}: cannot write "
        assert result["stderr"].startswith(error), (argv, result["stderr"])
        assert message in result["stderr"], (argv, result["stderr"])
        assert len(_error_lines(result["stderr"])) == 1, (argv, result["stderr"])
        assert result["stdout"] == "", argv
    assert sorted(tmp_path.iterdir()) == before


@tensorflow_only
@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders"
)
def test_a_read_only_folder_is_refused_before_any_work(env, tmp_path):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    for suffix in (".keras", ".png"):
        (tmp_path / f"old{suffix}").write_text("a read-only file")
        (tmp_path / f"old{suffix}").chmod(0o444)
    read_only.chmod(0o555)
    try:
        bad = {
            "file": [
                ("read-only/x", "the folder read-only is not writable"),
                ("old", "the file is read-only"),
            ],
            "folder": [
                ("read-only", "the folder read-only is not writable"),
                ("read-only/run", "the folder read-only is not writable"),
            ],
        }
        cases = _output_cases(bad)
        results = _drive([argv for argv, _ in cases], env, tmp_path)
    finally:
        read_only.chmod(0o755)
    for (argv, message), result in zip(cases, results, strict=True):
        assert result["code"] == 1, (argv, result)
        assert message in result["stderr"], (argv, result["stderr"])
        assert len(_error_lines(result["stderr"])) == 1, (argv, result["stderr"])


@tensorflow_only
def test_resume_checks_the_model_flags_against_the_checkpoint(trained, env, tmp_path):
    """--resume takes the checkpoint's model: the model flags given must agree with it; the
    training flags given apply to the resumed run (said on stderr); a folder that holds a
    checkpoint is refused without --resume or --overwrite."""
    folder, _ = trained
    for name in ("resume", "overwrite"):
        shutil.copytree(folder / "checkpoints", tmp_path / name)
    state = (tmp_path / "resume" / "state.json").read_text()
    small = ["--train-examples", "500", "--validation-examples", "0"]
    cases = [  # (argv, exit status, what stderr says)
        (
            ["train", "--model", "fa", "--epochs", "2", "--resume", "--checkpoint-dir", "resume"],
            2,
            "tfdlgm train: error: --resume: the checkpoint in resume (epoch 1) holds another "
            "model than these flags say: --model fa (the checkpoint's: vae). Omit them",
        ),
        (
            [
                "train", "--model", "vae", "--latent-dims", "2", "--hidden", "8,8", "--seed",
                "1", "--objective", "iwae", "--epochs", "2", "--resume", "--checkpoint-dir",
                "resume",
            ],
            2,
            "--hidden 8,8 (the checkpoint's: 16), --objective iwae (the checkpoint's: elbo), "
            "--seed 1 (the checkpoint's: 0).",
        ),
        (
            ["train", "--model", "vae", "--epochs", "2", "--checkpoint-dir", "resume"],
            1,
            "resume already holds a checkpoint of epoch 1: pass --resume",
        ),
        (["train", "--epochs", "2"], 2, "the following arguments are required: --model"),
        (
            ["train", "--epochs", "2", "--resume", "--checkpoint-dir", "empty"],
            2,
            "--model is required: --resume found no checkpoint in empty",
        ),
        (
            ["train", "--model", "vae", "--epochs", "2", "--resume", "--overwrite",
             "--checkpoint-dir", "resume"],
            2,
            "--resume continues the checkpoint and --overwrite deletes it: pass one",
        ),
        (
            ["train", "--epochs", "2", "--resume", "--checkpoint-dir", "resume",
             "--learning-rate", "1e-4", "--batch-size", "250", *small],
            0,
            "tfdlgm train: resuming resume at epoch 1 with --batch-size 250, --learning-rate "
            "0.0001 (the checkpoint's optimizer had 0.001)\n",
        ),
        (
            ["train", "--model", "vae", "--hidden", "8", "--latent-dims", "3", "--epochs", "1",
             "--overwrite", "--checkpoint-dir", "overwrite", *small],
            0,
            "",
        ),
    ]  # fmt: skip
    results = _drive([argv for argv, _, _ in cases], env, tmp_path)
    for (argv, status, message), result in zip(cases, results, strict=True):
        assert result["code"] == status, (argv, result)
        assert message in result["stderr"], (argv, result["stderr"])
        if status:
            assert len(_error_lines(result["stderr"])) == 1, (argv, result["stderr"])
    assert (tmp_path / "resume" / "state.json").read_text() != state  # resumed by the 7th
    resumed, overwritten = results[-2:]
    assert "VAE (" in resumed["stdout"] and "resumed at epoch 1" in resumed["stdout"]
    model, epoch = training.latest_checkpoint(tmp_path / "resume")
    assert epoch == 2
    assert int(model.optimizer.iterations.numpy()) == 5 + 2  # 500 images: 100, then 250 a batch
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-4)
    model, epoch = training.latest_checkpoint(tmp_path / "overwrite")
    assert epoch == 1 and model.hidden == (8,) and model.latent_dim == 3
    assert int(model.optimizer.iterations.numpy()) == 5
