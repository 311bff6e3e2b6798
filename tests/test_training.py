import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest

from tfdlgm import callbacks, files, training
from tfdlgm.models import VAE

KILLABLE_TRAIN = pathlib.Path(__file__).parent / "workers" / "killable_train.py"


@pytest.fixture
def binary_data(rng):
    probs = rng.uniform(0.05, 0.95, size=(1, 16))
    return (rng.uniform(size=(64, 16)) < probs).astype("float32")


def _model():
    model = VAE(latent_dim=2, hidden=(8,), data_dim=16, seed=0)
    model.compile(optimizer="adam")
    return model


def test_resume_continues_epochs_and_warm_up(binary_data, tmp_path):
    first = training.train(
        _model(), binary_data, epochs=2, checkpoint_dir=tmp_path, warm_up_epochs=4, verbose=0
    )
    assert first.epoch == [0, 1]
    assert first.history["kl_weight"] == [0.0, 0.25]
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 2
    assert (tmp_path / "epoch-0002.keras").is_file()
    saved = [w.copy() for w in training.latest_checkpoint(tmp_path)[0].get_weights()]
    second = training.train(
        _model(),
        binary_data,
        epochs=4,
        checkpoint_dir=tmp_path,
        resume=True,
        warm_up_epochs=4,
        verbose=0,
    )
    assert second.epoch == [2, 3]  # epochs 3 and 4 (1-based), not a fresh start
    assert second.history["kl_weight"] == [0.5, 0.75]
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 4
    assert [p.name for p in tmp_path.glob("*.keras")] == ["epoch-0004.keras"]
    # It trained the checkpoint's model, with its optimizer state, not the fresh one passed.
    iterations = keras.ops.convert_to_numpy(second.model.optimizer.iterations)
    assert int(iterations) == 4 * 2  # 64 examples, 32 a batch
    assert any(
        not np.allclose(a, b) for a, b in zip(saved, second.model.get_weights(), strict=True)
    )
    assert not list(tmp_path.glob(".tmp-*"))


def test_the_checkpoint_callback_resumes_a_plain_fit_as_training_begins(binary_data, tmp_path):
    """`Checkpoint` in `fit` itself, as `keras.callbacks.BackupAndRestore`: it refuses a
    folder holding a checkpoint without `resume`, and with it loads the checkpoint into the
    model being trained and continues from its epoch."""
    first = _model()
    first.fit(
        binary_data, batch_size=32, epochs=1, verbose=0, callbacks=[training.Checkpoint(tmp_path)]
    )
    saved = _values(first)
    model = _model()
    with pytest.raises(ValueError, match="already holds a checkpoint of epoch 1"):
        model.fit(binary_data, epochs=2, verbose=0, callbacks=[training.Checkpoint(tmp_path)])

    class Look(keras.callbacks.Callback):  # the model as the first epoch begins
        def on_epoch_begin(self, epoch, logs=None):
            self.seen = self.seen if hasattr(self, "seen") else _values(self.model)

    look = Look()
    checkpoint = training.Checkpoint(tmp_path, resume=True)
    history = model.fit(
        binary_data, batch_size=32, epochs=2, verbose=0, callbacks=[look, checkpoint]
    )
    assert history.epoch == [1]
    assert len(look.seen) == len(saved)
    for seen, value in zip(look.seen, saved):  # weights, kl_weight, random stream, Adam's
        np.testing.assert_array_equal(seen, value)
    assert model._initial_epoch is None  # a later fit starts where it is told
    other = VAE(latent_dim=3, hidden=(8,), data_dim=16, seed=0)  # not the checkpoint's model
    other.compile(optimizer="adam")
    with pytest.raises(ValueError, match="cannot be resumed into this model"):
        other.fit(binary_data, epochs=3, verbose=0, callbacks=[training.Checkpoint(tmp_path, True)])


def test_initial_epoch_continues_a_model_trained_elsewhere(binary_data, tmp_path):
    """A preset trained for 2 epochs and fine-tuned to 4: epochs, warm-up and checkpoint
    count from 2; a checkpoint's own count replaces `initial_epoch` on resume."""
    history = training.train(
        _model(),
        binary_data,
        epochs=4,
        checkpoint_dir=tmp_path,
        warm_up_epochs=4,
        initial_epoch=2,
        verbose=0,
    )
    assert history.epoch == [2, 3]
    assert history.history["kl_weight"] == [0.5, 0.75]
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 4
    resumed = training.train(
        _model(), binary_data, epochs=5, checkpoint_dir=tmp_path, resume=True, initial_epoch=2
    )
    assert resumed.epoch == [4]


def test_resume_ignores_a_stray_temporary_file(binary_data, tmp_path):
    training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    (tmp_path / ".tmp-crashed.keras").write_bytes(b"half a zip file")
    (tmp_path / ".tmp-crashed.json").write_text('{"epoch": 9')
    history = training.train(
        _model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True, verbose=0
    )
    assert history.epoch == [1]


def test_resume_without_a_checkpoint_starts_from_the_model(binary_data, tmp_path):
    model = _model()
    history = training.train(
        model, binary_data, epochs=1, checkpoint_dir=tmp_path / "new", resume=True, verbose=0
    )
    assert history.epoch == [0] and history.model is model
    assert (tmp_path / "new" / "epoch-0001.keras").is_file()


def test_a_folder_holding_a_checkpoint_is_refused_without_resume_or_overwrite(
    binary_data, tmp_path
):
    training.train(_model(), binary_data, epochs=2, checkpoint_dir=tmp_path, verbose=0)
    before = (tmp_path / "state.json").read_text()
    for kwargs in ({}, {"resume": False, "initial_epoch": 1}):
        with pytest.raises(ValueError) as raised:
            training.train(
                _model(), binary_data, epochs=3, checkpoint_dir=tmp_path, verbose=0, **kwargs
            )
        assert str(raised.value) == (
            f"{tmp_path} already holds a checkpoint of epoch 2: pass --resume (resume=True) "
            "to continue it, --overwrite (overwrite=True) to delete it and start afresh, or "
            "choose another folder."
        )
    assert (tmp_path / "state.json").read_text() == before
    assert [p.name for p in tmp_path.glob("*.keras")] == ["epoch-0002.keras"]
    with pytest.raises(ValueError, match="pass one"):
        training.train(
            _model(), binary_data, epochs=3, checkpoint_dir=tmp_path, resume=True, overwrite=True
        )
    (tmp_path / "state.json").write_text("{")  # a state that cannot be read is refused too
    with pytest.raises(ValueError, match=r"holds a checkpoint \(.*state.json cannot be read\)"):
        training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)


def test_overwrite_deletes_the_checkpoint_and_starts_afresh(binary_data, tmp_path):
    training.train(_model(), binary_data, epochs=2, checkpoint_dir=tmp_path, verbose=0)

    class Look(keras.callbacks.Callback):  # what the folder holds as the new run starts
        def on_train_begin(self, logs=None):
            self.files = sorted(p.name for p in tmp_path.iterdir())

    look = Look()
    history = training.train(
        _model(),
        binary_data,
        epochs=1,
        checkpoint_dir=tmp_path,
        overwrite=True,
        callbacks=[look],
        verbose=0,
    )
    assert look.files == [".lock"]  # deleted up front
    assert history.epoch == [0]
    assert int(keras.ops.convert_to_numpy(history.model.optimizer.iterations)) == 2
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 1
    assert [p.name for p in tmp_path.glob("*.keras")] == ["epoch-0001.keras"]


def _failing_writes(monkeypatch, name):
    """Makes the checkpoint's writes of the file `name` fail as on a full disk."""
    write = files.atomic_write

    def atomic_write(path, *args, **kwargs):
        if pathlib.Path(path).name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, *args, **kwargs)

    monkeypatch.setattr(files, "atomic_write", atomic_write)


@pytest.mark.parametrize("name", ["epoch-0002.keras", "state.json"])
def test_a_failed_checkpoint_write_names_the_file_and_the_epoch_kept(
    binary_data, tmp_path, monkeypatch, name
):
    training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    _failing_writes(monkeypatch, name)
    with pytest.raises(training.CheckpointWriteError) as raised:
        training.train(
            _model(), binary_data, epochs=3, checkpoint_dir=tmp_path, resume=True, verbose=0
        )
    message = str(raised.value)
    assert isinstance(raised.value, OSError)
    assert message.startswith(
        f"Could not write the checkpoint of epoch 2: writing {tmp_path / name} failed "
        "(OSError: [Errno 28] No space left on device"
    ), message
    assert message.endswith(
        f"{tmp_path} still holds the checkpoint of epoch 1: fix the cause, then continue from "
        "it with resume=True (--resume)."
    ), message
    monkeypatch.undo()
    history = training.train(
        _model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True, verbose=0
    )
    assert history.epoch == [1]  # epoch 1 resumed
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 2


def test_a_failed_first_checkpoint_write_says_there_is_none(binary_data, tmp_path, monkeypatch):
    _failing_writes(monkeypatch, "epoch-0001.keras")
    with pytest.raises(training.CheckpointWriteError, match="holds no checkpoint yet"):
        training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)


# Resumes the checkpoint in argv[1] on the data in argv[2] with files limited to argv[3] bytes
# (RLIMIT_FSIZE: a larger write fails with EFBIG, as on a full disk; Python ignores SIGXFSZ).
_LIMITED_FILES = """
import resource, sys
import numpy as np
from tfdlgm import training
folder, data, limit = sys.argv[1], np.load(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
model = training.latest_checkpoint(folder)[0]
try:
    training.train(model, data, epochs=3, checkpoint_dir=folder, resume=True, verbose=0)
except training.CheckpointWriteError as error:
    print(error)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
def test_a_checkpoint_write_the_file_system_refuses_keeps_the_last_epoch(binary_data, tmp_path):
    training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    state = (tmp_path / "state.json").read_text()
    np.save(tmp_path.parent / "data.npy", binary_data)
    limit = json.loads(state)["bytes"] // 2  # too small for the model file of epoch 2
    process = subprocess.run(
        [sys.executable, "-c", _LIMITED_FILES, str(tmp_path), str(tmp_path.parent / "data.npy"),
         str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    message = process.stdout.strip().splitlines()[-1]
    assert message.startswith(
        f"Could not write the checkpoint of epoch 2: writing {tmp_path / 'epoch-0002.keras'} "
        "failed ("
    ), message
    assert message.endswith(
        f"{tmp_path} still holds the checkpoint of epoch 1: fix the cause, then continue from "
        "it with resume=True (--resume)."
    ), message
    assert (tmp_path / "state.json").read_text() == state
    assert not list(tmp_path.glob(".tmp-*"))
    history = training.train(
        _model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True, verbose=0
    )
    assert history.epoch == [1]


def test_bad_arguments(binary_data, tmp_path):
    with pytest.raises(ValueError, match="`resume=True` needs `checkpoint_dir`"):
        training.train(_model(), binary_data, epochs=1, resume=True)
    with pytest.raises(ValueError, match="must be compiled"):
        training.train(VAE(latent_dim=2, hidden=(8,), data_dim=16), binary_data, epochs=1)
    with pytest.raises(ValueError, match="`epochs` must be a positive int"):
        training.train(_model(), binary_data, epochs=0)
    with pytest.raises(ValueError, match="`initial_epoch` must be a non-negative int"):
        training.train(_model(), binary_data, epochs=2, initial_epoch=-1)
    (tmp_path / "state.json").write_text('{"epoch": 1}')
    with pytest.raises(ValueError, match="cannot be resumed.*is not a checkpoint state"):
        training.train(_model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True)


def _values(model):
    """The values of the model's variables and its optimizer's, in order."""
    return [keras.ops.convert_to_numpy(v) for v in model.variables + model.optimizer.variables]


def _variables(model):
    """Every variable a resumed run depends on: weights, kl_weight, the seed state, Adam's."""
    named = {v.path: keras.ops.convert_to_numpy(v) for v in model.variables}
    named.update(
        {f"optimizer/{v.path}": keras.ops.convert_to_numpy(v) for v in model.optimizer.variables}
    )
    return named


def test_a_checkpoint_restores_the_random_stream_and_the_optimizer(binary_data, tmp_path):
    history = training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    model = history.model
    restored, epoch = training.latest_checkpoint(tmp_path)
    assert epoch == 1
    state = [v for v in restored.variables if "seed_generator_state" in v.path]
    assert len(state) == 1  # the model's SeedGenerator state is a saved model variable
    before, after = _variables(model), _variables(restored)
    assert sorted(before) == sorted(after)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    fresh = keras.ops.convert_to_numpy(_model().seed_generator.state)
    assert not np.array_equal(keras.ops.convert_to_numpy(state[0]), fresh)  # it advanced


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.write_bytes(f.read_bytes()[:500]), r"is truncated or altered \(500 bytes"),
        (lambda f: f.write_bytes(b"x" + f.read_bytes()[1:]), "is truncated or altered"),
        (lambda f: f.unlink(), r"names .*epoch-0001.keras, which does not exist"),
    ],
    ids=["truncated", "flipped byte", "missing"],
)
def test_a_damaged_checkpoint_is_never_loaded(binary_data, tmp_path, damage, message):
    training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    damage(tmp_path / "epoch-0001.keras")
    with pytest.raises(ValueError, match=message):
        training.train(_model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True)


def test_a_model_file_newer_than_state_json_is_ignored(binary_data, tmp_path):
    # A crash after the model file of epoch 2 was moved into place, before state.json was.
    training.train(_model(), binary_data, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    (tmp_path / "epoch-0002.keras").write_bytes(b"half of epoch 2")
    model, epoch = training.latest_checkpoint(tmp_path)
    assert epoch == 1
    history = training.train(
        _model(), binary_data, epochs=2, checkpoint_dir=tmp_path, resume=True, verbose=0
    )
    assert history.epoch == [1]
    assert [p.name for p in tmp_path.glob("*.keras")] == ["epoch-0002.keras"]


class _PoisonAt(keras.callbacks.Callback):
    """Sets the first kernel to NaN at the start of epoch `epoch` (0-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            weight = self.model.trainable_weights[0]
            weight.assign(keras.ops.full(weight.shape, float("nan")))


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(binary_data, tmp_path):
    with pytest.raises(training.NonFiniteLossError) as raised:
        training.train(
            _model(),
            binary_data,
            epochs=4,
            checkpoint_dir=tmp_path,
            callbacks=[_PoisonAt(2)],
            verbose=0,
        )
    error = raised.value
    assert isinstance(error, RuntimeError) and (error.epoch, error.batch) == (3, 1)
    message = str(error)
    for words in (
        "the loss is nan at epoch 3, batch 1",
        "Epoch 3 is not checkpointed",
        "learning rate too high",
        "outside the likelihood's support",
        f"The checkpoint in {tmp_path} holds epoch 2, the last good one",
    ):
        assert words in message, message
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 2
    model, epoch = training.latest_checkpoint(tmp_path)
    assert epoch == 2
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)
    assert np.isfinite(model.elbo(binary_data, seed=0)).all()


def test_nan_weights_after_the_last_step_are_caught_before_the_checkpoint(binary_data):
    class PoisonLastStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:  # the last of 2 batches: the loss was finite, the weights are not
                weight = self.model.trainable_weights[0]
                weight.assign(keras.ops.full(weight.shape, float("nan")))

    model = _model()
    guard = callbacks.NonFiniteLossGuard()
    with pytest.raises(callbacks.NonFiniteLossError, match=r"at epoch 1, the end of the epoch"):
        model.fit(
            binary_data, batch_size=32, epochs=2, callbacks=[PoisonLastStep(), guard], verbose=0
        )


def test_the_guard_checks_each_batch_off_the_training_loop(binary_data):
    # async_safe: on JAX Keras runs the per-batch check on a worker thread, so fit does not
    # wait for each step's loss before dispatching the next (on TensorFlow, which Keras marks
    # not thread-safe, every batch callback runs in the loop).
    if keras.backend.backend() == "tensorflow":
        pytest.skip("Keras runs TensorFlow's batch callbacks on the training thread")
    threads = set()

    class Guard(callbacks.NonFiniteLossGuard):
        def on_train_batch_end(self, batch, logs=None):
            threads.add(threading.current_thread())
            super().on_train_batch_end(batch, logs)

    _model().fit(binary_data, batch_size=32, epochs=1, callbacks=[Guard()], verbose=0)
    assert threads and threading.main_thread() not in threads


def test_a_huge_learning_rate_is_reported_by_the_command_line(mnist_path, tmp_path, capsys):
    from tfdlgm import cli

    status = cli.main(
        [
            "train", "--model", "vae", "--latent-dims", "2", "--hidden", "8",
            "--train-examples", "200", "--batch-size", "100", "--validation-examples", "0",
            "--epochs", "3", "--learning-rate", "1e30", "--checkpoint-dir", str(tmp_path),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("tfdlgm train: error: Training stopped: the loss is "), err
    assert "learning rate too high" in err and len(err.strip().splitlines()) == 1


def _train_arguments(checkpoint_dir, *extra, model=True):
    """`tfdlgm train` on a tiny VAE: 256 MNIST images, 4 batches an epoch, 2 epochs (without
    the flags that describe the model when `model` is False: a resumed run's)."""
    model_flags = ["--model", "vae", "--latent-dims", "2", "--hidden", "16", "--seed", "3"]
    return [
        "train", *(model_flags if model else []),
        "--train-examples", "256", "--batch-size", "64", "--validation-examples", "0",
        "--epochs", "2", "--warm-up", "2", "--checkpoint-dir", str(checkpoint_dir), *extra,
    ]  # fmt: skip


def test_a_failed_checkpoint_write_is_reported_on_its_own_line(
    mnist_path, tmp_path, monkeypatch, capsys
):
    from tfdlgm import cli

    _failing_writes(monkeypatch, "epoch-0002.keras")
    assert cli.main(_train_arguments(tmp_path)) == 1
    out, err = capsys.readouterr()
    assert out.endswith("\n")  # the progress bar's line is ended before the error
    assert err.startswith(
        "tfdlgm train: error: Could not write the checkpoint of epoch 2: writing "
        f"{tmp_path / 'epoch-0002.keras'} failed"
    ), err
    assert err.strip().endswith(
        f"{tmp_path} still holds the checkpoint of epoch 1: fix the cause, then continue from "
        "it with resume=True (--resume)."
    )
    assert len(err.strip().splitlines()) == 1


def _cli_process(marker, hang_at, arguments):
    """`tfdlgm train ARGUMENTS` in a new process (see workers/killable_train.py for `hang_at`)."""
    return subprocess.Popen(
        [sys.executable, str(KILLABLE_TRAIN), str(marker), hang_at, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(
    mnist_path, tmp_path, monkeypatch, capsys
):
    """A `tfdlgm train` process is killed (SIGKILL) in the middle of epoch 2, after its 2nd of 4
    batches, with epoch 1 checkpointed; `tfdlgm train --resume` (here in process, to save an
    interpreter start, and without the flags that describe the model, `--seed` included:
    they come from the checkpoint) finishes it. Its final state is bit for bit that of an
    identical process that was never stopped, on the backend the tests run on: weights,
    `kl_weight` (warm-up), the model's random stream, Adam's moments and iteration count. Exact
    because every random draw of a resumed epoch is restored or recomputed from (seed, epoch):
    the model's `SeedGenerator` state is saved with it, and `NumpyBatches` (dynamic
    binarisation, shuffling) is set to the epoch it resumes at. While the killed process
    trains, it owns its folder: a second run there is refused, naming it."""
    from tfdlgm import cli

    monkeypatch.setenv("TFDLGM_MNIST", mnist_path)
    whole_dir, killed_dir, marker = tmp_path / "whole", tmp_path / "killed", tmp_path / "marker"
    whole = _cli_process(
        marker, "-", _train_arguments(whole_dir, "--output", str(tmp_path / "whole.keras"))
    )
    killed = _cli_process(marker, "1,1", _train_arguments(killed_dir))
    deadline = time.monotonic() + 240
    while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), killed.communicate()[0][-3000:]
    # While it trains, the process owns its folder: a second run is refused, naming it.
    assert cli.main(_train_arguments(killed_dir, "--resume")) == 1
    assert f"is in use by another run (pid {killed.pid} on " in capsys.readouterr().err
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((killed_dir / "state.json").read_text())["epoch"] == 1  # mid epoch 2
    resumed_file = str(tmp_path / "resumed.keras")
    # Resumed without the flags that describe the model: the checkpoint's are used, --seed too.
    resumed_arguments = _train_arguments(
        killed_dir, "--resume", "--output", resumed_file, model=False
    )
    assert cli.main(resumed_arguments) == 0
    output = whole.communicate(timeout=240)[0]
    assert whole.returncode == 0, output[-3000:]
    whole_model = keras.models.load_model(tmp_path / "whole.keras")
    resumed_model = keras.models.load_model(resumed_file)
    expected, received = _variables(whole_model), _variables(resumed_model)
    assert sorted(expected) == sorted(received)
    assert int(received["optimizer/adam/iteration"]) == 2 * 4
    for name, value in expected.items():
        np.testing.assert_array_equal(received[name], value, err_msg=name)
