import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

from tfdlgm import training
from tfdlgm.callbacks import (
    KLWarmUp,
    LatentDiagnostics,
    StopOnSignal,
    TensorBoard,
    averaged_weights,
    tensorboard_tag,
)
from tfdlgm.models import VAE, LadderVAE


@pytest.fixture
def binary_data(rng):
    probs = rng.uniform(0.05, 0.95, size=(1, 20))
    return (rng.uniform(size=(128, 20)) < probs).astype("float32")


def _summaries(logdir, plugin):
    """`{run/tag: [value per step]}` of one plugin's summaries, read back with TensorBoard's
    own reader; a value is the NumPy array of the summary's tensor."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    found = {}
    for run in ("train", "validation"):
        if not (logdir / run).is_dir():  # a run with nothing to log has no folder
            continue
        acc = event_accumulator.EventAccumulator(str(logdir / run), size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            if acc.SummaryMetadata(tag).plugin_data.plugin_name == plugin:
                found[f"{run}/{tag}"] = [
                    tensor_util.make_ndarray(event.tensor_proto) for event in acc.Tensors(tag)
                ]
    return found


def _scalars(logdir):
    """Every scalar in the event files, read back with TensorBoard's own reader."""
    return {
        tag: [float(value) for value in values]
        for tag, values in _summaries(logdir, "scalars").items()
    }


def test_held_out_diagnostics_reach_keras_tensorboard_s_validation_run(binary_data, tmp_path):
    pytest.importorskip("tensorflow")  # Keras' TensorBoard callback writes with tf.summary
    model = LadderVAE(latent_dims=(4, 2), hidden=(16, 8), data_dim=20, seed=0)
    model.compile(optimizer="adam")
    model.fit(
        binary_data,
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[
            LatentDiagnostics(binary_data[:64], num_samples=5),  # before: Keras' writes at once
            keras.callbacks.TensorBoard(tmp_path),
        ],
    )
    scalars = _scalars(tmp_path)
    for tag in ("active_units_1", "active_units_2", "kl_1", "kl_2", "elbo", "L_5"):
        assert len(scalars[f"validation/epoch_{tag}"]) == 2, tag
    assert all(0 <= n <= 4 for n in scalars["validation/epoch_active_units_1"])
    assert not any("active_units" in tag for tag in scalars if tag.startswith("train/"))


def test_log_names_map_to_grouped_tags_and_runs():
    assert tensorboard_tag("loss") == ("train", "loss/total")
    assert tensorboard_tag("val_loss") == ("validation", "loss/total")
    assert tensorboard_tag("reconstruction") == ("train", "bounds/reconstruction")
    assert tensorboard_tag("val_L_50") == ("validation", "bounds/L_50")
    assert tensorboard_tag("val_elbo") == ("validation", "bounds/elbo")
    assert tensorboard_tag("kl_12") == ("train", "kl/layer_12")
    assert tensorboard_tag("val_active_units_3") == ("validation", "active_units/layer_3")
    assert tensorboard_tag("learning_rate") == ("train", "schedule/learning_rate")
    assert tensorboard_tag("kl_weight") == ("train", "schedule/kl_weight")
    assert tensorboard_tag("wall_seconds") == ("train", "wall_seconds")
    assert tensorboard_tag("kl_weights") == ("train", "kl_weights")  # whole names only


def test_active_units_follow_burdas_criterion(binary_data):
    model = LadderVAE(latent_dims=(4, 2), hidden=(16, 8), data_dim=20, seed=0)
    # A posterior mean that ignores x has no active unit: zero the bottom-up mean weights.
    for gaussian in model.bottom_up_gaussians:
        gaussian.loc.kernel.assign(np.zeros(gaussian.loc.kernel.shape, "float32"))
    assert model.active_units(binary_data)[1] == 0
    assert model.active_units(binary_data, threshold=0.0) == [4, 0]


def _averaging_vae():
    """A small VAE whose optimizer keeps an exponential moving average of its weights."""
    model = VAE(latent_dim=3, hidden=(8,), data_dim=20, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9))
    return model


def _values(variables):
    return [keras.ops.convert_to_numpy(variable) for variable in variables]


def test_averaged_weights_swap_the_averages_in_for_the_block_only(binary_data):
    model = _averaging_vae()
    model.fit(binary_data, batch_size=64, epochs=2, verbose=0)
    for variable in model.trainable_variables:  # weights that are not their averages
        variable.assign(keras.ops.convert_to_numpy(variable) + 1.0)
    own = _values(model.trainable_variables)
    averages = _values(model.optimizer._model_variables_moving_average)
    assert any(not np.allclose(a, b) for a, b in zip(own, averages))
    with averaged_weights(model) as swapped:
        assert swapped is model
        for inside, average in zip(_values(model.trainable_variables), averages):
            np.testing.assert_array_equal(inside, average)
    for after, before in zip(_values(model.trainable_variables), own):
        np.testing.assert_array_equal(after, before)


def _trained_without_averages(data):
    model = VAE(latent_dim=3, hidden=(8,), data_dim=20, seed=0)
    model.compile(optimizer="adam")
    model.fit(data, batch_size=64, epochs=1, verbose=0)
    return model


def _averaging_before_any_step(data):
    model = _averaging_vae()
    model.elbo(data[:2])  # builds the model
    model.optimizer.build(model.trainable_variables)  # averages of zeros
    return model


@pytest.mark.parametrize("make", [_trained_without_averages, _averaging_before_any_step])
def test_averaged_weights_leave_a_model_without_averages_alone(make, binary_data):
    model = make(binary_data)
    own = _values(model.trainable_variables)
    with averaged_weights(model):
        for inside, before in zip(_values(model.trainable_variables), own):
            np.testing.assert_array_equal(inside, before)


def test_averaged_weights_name_a_keras_that_keeps_the_averages_elsewhere(binary_data):
    model = _averaging_vae()
    model.fit(binary_data, batch_size=64, epochs=1, verbose=0)
    del model.optimizer._model_variables_moving_average  # as if Keras renamed it
    with pytest.raises(RuntimeError, match="_model_variables_moving_average"):
        with averaged_weights(model):
            pass


def test_diagnostics_of_an_averaging_optimizer_are_the_averaged_weights(binary_data):
    model = _averaging_vae()
    history = model.fit(
        binary_data,
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[LatentDiagnostics(binary_data[:64], num_samples=5, seed=3)],
    )
    # `fit` ends with the averages as the weights: those the last diagnostics evaluated.
    final = float(model.iwae_bound(binary_data[:64], 5, seed=3).mean())
    assert history.history["val_L_5"][-1] == pytest.approx(final, rel=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`epochs` must be a positive int"):
        KLWarmUp(0)
    with pytest.raises(ValueError, match=r"`start` must be in \[0, 1\)"):
        KLWarmUp(3, start=1.0)
    with pytest.raises(ValueError, match="`every` must be a positive int"):
        LatentDiagnostics(np.zeros((2, 3)), every=0)


def _train_with_tensorboard(data, logdir, epochs=2, warm_up=True, **kwargs):
    model = VAE(latent_dim=3, hidden=(8,), data_dim=16, seed=0)  # 4 x 4 "images"
    model.compile(optimizer="adam")
    history = model.fit(
        data,
        batch_size=64,
        epochs=epochs,
        verbose=0,
        callbacks=[TensorBoard(logdir, x=data[:32], num_samples=5, num_images=4, **kwargs)]
        + [KLWarmUp(4)] * warm_up,
    )
    return model, history


def test_tensorboard_writes_diagnostics_images_and_beta(tensorboard_writer, binary_data, tmp_path):
    from PIL import Image

    model, history = _train_with_tensorboard(binary_data[:, :16], tmp_path, epochs=3, every=2)
    scalars = _scalars(tmp_path)
    # KLWarmUp comes after TensorBoard: beta is still logged.
    assert scalars["train/schedule/kl_weight"] == [0.0, 0.25, 0.5]
    assert scalars["train/bounds/elbo"] == pytest.approx(history.history["elbo"])
    assert len(scalars["train/kl/layer_1"]) == 3
    assert scalars["train/loss/total"] == pytest.approx(history.history["loss"])
    assert scalars["train/schedule/learning_rate"] == pytest.approx([1e-3] * 3)
    # Diagnostics every 2 epochs: only after the 2nd (step 1), all in the validation run.
    for tag in ("kl/layer_1", "bounds/elbo", "bounds/L_5", "active_units/layer_1"):
        assert len(scalars[f"validation/{tag}"]) == 1, tag
    assert 0 <= scalars["validation/active_units/layer_1"][0] <= 3
    assert history.history["val_L_5"] == pytest.approx(scalars["validation/bounds/L_5"])
    # The ELBO of the batch agrees with the model's own estimate (same model, same batch).
    assert scalars["validation/bounds/elbo"][0] < 0
    assert scalars["validation/bounds/L_5"][0] >= scalars["validation/bounds/elbo"][0] - 1.0
    images = _summaries(tmp_path, "images")
    assert set(images) == {"train/samples", "validation/reconstructions"}
    for tag, expected in (("train/samples", (14, 14)), ("validation/reconstructions", (14, 26))):
        (summary,) = images[tag]  # one step: epoch 2
        width, height, png = int(summary[0]), int(summary[1]), summary[2]  # image plugin layout
        picture = Image.open(io.BytesIO(png))
        assert (height, width) == expected == picture.size[::-1], tag


@pytest.mark.parametrize("first", [True, False], ids=["tensorboard first", "tensorboard last"])
def test_what_tensorboard_writes_does_not_depend_on_callback_order(first, binary_data, tmp_path):
    """Logs the other callbacks add (diagnostics, beta, the scheduled rate) are written
    once each, at their epoch, wherever TensorBoard comes in the list."""
    model = LadderVAE(latent_dims=(4, 2), hidden=(16, 8), data_dim=20, seed=0)
    model.compile(optimizer="adam")
    others = [
        LatentDiagnostics(binary_data[:32], num_samples=3),
        KLWarmUp(2),
        keras.callbacks.LearningRateScheduler(lambda epoch: 1e-3 / (epoch + 1)),
    ]
    board = TensorBoard(tmp_path)
    model.fit(
        binary_data,
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[board, *others] if first else [*others, board],
    )
    scalars = _scalars(tmp_path)
    assert scalars["train/schedule/kl_weight"] == [0.0, 0.5]
    assert scalars["train/schedule/learning_rate"] == pytest.approx([1e-3, 5e-4])
    expected = {
        f"validation/{tag}"
        for tag in ("kl/layer_1", "kl/layer_2", "bounds/elbo", "bounds/L_3")
        + ("active_units/layer_1", "active_units/layer_2")
    }
    assert {tag for tag in scalars if tag.startswith("validation/")} == expected
    assert all(len(values) == 2 for values in scalars.values()), scalars
    assert not _summaries(tmp_path, "images")  # 20 features: not square images


def test_tensorboard_leaves_beta_out_without_warm_up(binary_data, tmp_path):
    _train_with_tensorboard(binary_data[:, :16], tmp_path, warm_up=False)
    scalars = _scalars(tmp_path)
    assert "train/schedule/kl_weight" not in scalars
    assert len(scalars["validation/bounds/L_5"]) == 2


def test_tensorboard_keeps_fits_validation_figures(binary_data, tmp_path):
    """`fit(validation_data=...)` computes val_elbo on all of it; the batch must not replace it."""
    model = VAE(latent_dim=2, hidden=(8,), data_dim=20, seed=0)  # 20 features: no images
    model.compile(optimizer="adam")
    callback = TensorBoard(tmp_path, x=binary_data[:4], num_samples=3)
    callback.set_model(model)
    callback.on_train_begin()
    logs = {"loss": 20.0, "val_elbo": 123.0}
    callback.on_epoch_end(0, logs)
    callback.on_train_end()
    assert logs["val_elbo"] == 123.0
    assert {"val_L_3", "val_kl_1", "val_active_units_1"} <= set(logs)
    assert "kl_weight" not in logs
    assert _scalars(tmp_path)["validation/bounds/elbo"] == [123.0]
    assert not _summaries(tmp_path, "images")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_tensorboard_serves_the_logs(tensorboard_writer, binary_data, tmp_path):
    """The real `tensorboard --logdir` serves the runs, scalars and images we wrote."""
    _train_with_tensorboard(binary_data[:, :16], tmp_path)
    binary = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--logdir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    base = f"http://127.0.0.1:{port}/data"
    try:
        deadline, scalars = time.monotonic() + 30, {}
        while time.monotonic() < deadline:
            try:
                scalars = _get_json(f"{base}/plugin/scalars/tags")
                if {"train", "validation"} <= set(scalars):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert server.poll() is None, "tensorboard exited"
            time.sleep(0.5)
        assert {"train", "validation"} <= set(_get_json(f"{base}/runs"))
        assert {"schedule/kl_weight", "bounds/elbo", "kl/layer_1"} <= set(scalars["train"])
        assert {"bounds/L_5", "kl/layer_1", "active_units/layer_1"} <= set(scalars["validation"])
        images = _get_json(f"{base}/plugin/images/tags")
        assert "samples" in images["train"] and "reconstructions" in images["validation"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_train_logs_to_tensorboard_with_either_writer(tensorboard_writer, binary_data, tmp_path):
    model = VAE(latent_dim=2, hidden=(8,), data_dim=20, seed=0)
    model.compile(optimizer="adam")
    history = training.train(model, binary_data, epochs=2, logdir=tmp_path, verbose=0)
    assert _scalars(tmp_path)["train/bounds/elbo"] == pytest.approx(history.history["elbo"])


def test_without_the_tensorboard_package_the_callback_says_so(monkeypatch, tmp_path):
    for name in {"tensorboard", *(n for n in sys.modules if n.startswith("tensorboard."))}:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails
    with pytest.raises(ImportError, match="needs the `tensorboard` package"):
        TensorBoard(tmp_path)
    assert not list(tmp_path.iterdir())


class _SignalAt(keras.callbacks.Callback):
    """Sends `number` to this process after batch `batch` of epoch `epoch`, `times` times."""

    def __init__(self, number, epoch, batch=0, times=1):
        super().__init__()
        self.number, self.at, self.times = number, (epoch, batch), times

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.number)


def _small_vae():
    model = VAE(latent_dim=2, hidden=(8,), data_dim=20, seed=0)
    model.compile(optimizer="adam")
    return model


def test_stop_on_signal_ends_fit_after_the_epoch_in_progress(binary_data):
    before = signal.getsignal(signal.SIGTERM)
    stop = StopOnSignal()
    history = _small_vae().fit(
        binary_data,
        batch_size=32,
        epochs=6,
        verbose=0,
        callbacks=[_SignalAt(signal.SIGTERM, epoch=1, batch=0), stop],
    )
    assert history.epoch == [0, 1]  # epoch 1 ran to its end: all 4 of its batches
    assert stop.received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_signal_stops_at_once_with_the_previous_handler(binary_data):
    class Interrupted(Exception):
        pass

    def previous(number, frame):
        raise Interrupted(number)

    before = signal.signal(signal.SIGINT, previous)
    try:
        with pytest.raises(Interrupted):
            _small_vae().fit(
                binary_data,
                batch_size=32,
                epochs=6,
                verbose=0,
                callbacks=[_SignalAt(signal.SIGINT, epoch=1, times=2), StopOnSignal()],
            )
        assert signal.getsignal(signal.SIGINT) is previous
    finally:
        signal.signal(signal.SIGINT, before)
