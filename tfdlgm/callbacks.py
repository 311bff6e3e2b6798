"""Keras callbacks for latent models: KL warm-up, per-layer diagnostics, TensorBoard (through
Keras' callback, or without TensorFlow through the `tensorboard` package alone), a guard that
stops training at a non-finite loss, and a graceful stop on SIGINT / SIGTERM."""

import contextlib
import math
import os
import signal
import sys
import threading

import keras
import numpy as np

from tfdlgm import backend, summaries, validation
from tfdlgm import images as images_module


class KLWarmUp(keras.callbacks.Callback):
    """KL warm-up (Sønderby et al. 2016, sec. 2.3; Bowman et al. 2016): the weight beta of
    the KL term grows linearly from `start` to 1 over `epochs` epochs.

    ```none
    loss = -(E_q[log p(x | z)] - beta_e KL),    beta_e = min(1, start + (1 - start) e / N)
    ```

    beta is set at the start of each epoch e (0-based) from e alone, and lives in the
    model's `kl_weight` variable, which checkpoints save. So a run resumed with
    `fit(initial_epoch=e)` continues the schedule where it stopped.

    Args:
        epochs: int, N, epochs until beta reaches 1.
        start: float in [0, 1), beta at epoch 0. Defaults to `0.0`.
    """

    def __init__(self, epochs, start=0.0):
        super().__init__()
        self.epochs = validation.check_positive_int(epochs, "epochs")
        if not 0.0 <= start < 1.0:
            raise ValueError(f"`start` must be in [0, 1). Received: start={start!r}")
        self.start = float(start)

    def beta(self, epoch):
        """beta for the 0-based `epoch`."""
        return min(1.0, self.start + (1.0 - self.start) * epoch / self.epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.kl_weight.assign(self.beta(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_weight"] = float(keras.ops.convert_to_numpy(self.model.kl_weight))


@contextlib.contextmanager
def averaged_weights(model):
    """Within the block, `model`'s trainable weights are its optimizer's exponential moving
    averages of them (an optimizer compiled with `use_ema=True`: Polyak averaging, the weights
    `fit` ends with); after it, its own again. A model whose optimizer keeps no averages (or
    has not trained yet) is left as it is.

    Keras keeps the averages in the optimizer's `_model_variables_moving_average`, paired
    with its `_trainable_variables` (as `keras.callbacks.SwapEMAWeights` reads them). The
    weights take copies: on JAX, `evaluate` donates the weights' buffers, and a buffer shared
    with an average would be gone when training next updates it."""
    optimizer = getattr(model, "optimizer", None)
    if (
        not getattr(optimizer, "use_ema", False)
        or not optimizer.built
        or not int(keras.ops.convert_to_numpy(optimizer.iterations))
    ):
        yield model
        return
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    variables = getattr(optimizer, "_trainable_variables", None)
    if averages is None or variables is None:
        raise RuntimeError(
            f"Keras {keras.__version__}'s optimizer keeps its weight averages elsewhere than "
            "`_model_variables_moving_average` / `_trainable_variables`: "
            "tfdlgm.callbacks.averaged_weights must be updated for it."
        )
    own = [keras.ops.convert_to_numpy(variable) for variable in variables]
    for variable, average in zip(variables, averages):
        variable.assign(keras.ops.convert_to_numpy(average))
    try:
        yield model
    finally:
        for variable, value in zip(variables, own):
            variable.assign(value)


class LatentDiagnostics(keras.callbacks.Callback):
    """Adds held-out diagnostics to the epoch logs every `every` epochs: active units and KL
    per latent layer, the ELBO and L_k. Place it before `keras.callbacks.TensorBoard` in the
    callback list and TensorBoard plots them (`active_units_1`, `val_kl_1`, `val_L_k`...).
    Where the optimizer averages the weights (`use_ema=True`), they are the averaged weights'
    (`averaged_weights`), the ones training ends with.

    Args:
        x: float array `[n, data_dim]`, a held-out batch.
        every: int, epochs between evaluations. Defaults to `1`.
        num_samples: int, k of the L_k bound. Defaults to `50`.
        seed: int, so that successive evaluations use the same noise. Defaults to `0`.
    """

    def __init__(self, x, every=1, num_samples=50, seed=0):
        super().__init__()
        self.x = np.asarray(x)
        self.every = validation.check_positive_int(every, "every")
        self.num_samples = validation.check_positive_int(num_samples, "num_samples")
        self.seed = validation.check_seed(seed)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        with averaged_weights(self.model) as model:
            for i, count in enumerate(model.active_units(self.x, seed=self.seed)):
                logs[f"active_units_{i + 1}"] = count
            results = model.evaluate(self.x, verbose=0, return_dict=True)
            for name, value in results.items():
                if name.startswith("kl_") or name == "elbo":
                    logs[f"val_{name}"] = value
            logs[f"val_L_{self.num_samples}"] = float(
                model.iwae_bound(self.x, self.num_samples, seed=self.seed, verbose=0).mean()
            )


class _LatentSummaries:
    """What both TensorBoard callbacks add to a latent model's run: the held-out diagnostics
    and the warm-up weight beta in the epoch logs, and the image grids (see `TensorBoard`)."""

    def _init_summaries(self, x, every, num_samples, num_images, seed):
        self.every = validation.check_positive_int(every, "every")
        self.num_images = validation.check_positive_int(num_images, "num_images")
        self.seed = validation.check_seed(seed)
        self.diagnostics = (
            None if x is None else LatentDiagnostics(x, every, num_samples, self.seed)
        )
        self._warm_up_seen = False

    def set_model(self, model):
        super().set_model(model)
        if self.diagnostics is not None:
            self.diagnostics.set_model(model)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._warm_up_seen = False

    def _add_to_logs(self, epoch, logs):
        """The diagnostics (where `fit` has not computed them already) and beta, in `logs`."""
        if self.diagnostics is not None:
            extra = {}
            self.diagnostics.on_epoch_end(epoch, extra)
            for name, value in extra.items():
                logs.setdefault(name, value)
        kl_weight = getattr(self.model, "kl_weight", None)
        if kl_weight is not None:
            beta = float(keras.ops.convert_to_numpy(kl_weight))
            self._warm_up_seen = self._warm_up_seen or beta < 1.0
            if self._warm_up_seen:
                logs.setdefault("kl_weight", beta)
        return logs

    def _image_grids(self, epoch):
        """`{name: uint8 [height, width, channels]}` due after `epoch` (none for data that
        are not square images)."""
        side = math.isqrt(self.model.data_dim)
        if (epoch + 1) % self.every or side * side != self.model.data_dim:
            return {}
        with averaged_weights(self.model) as model:  # as the diagnostics: the weights shipped
            grids = {"samples": model.sample(self.num_images, seed=self.seed, mean=True)}
            if self.diagnostics is not None:
                x = self.diagnostics.x[: self.num_images]
                grids["reconstructions"] = np.stack([x, model.reconstruct(x, seed=self.seed)])
        return {name: images_module.grid(images, (side, side)) for name, images in grids.items()}


class TensorBoard(_LatentSummaries, keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` with what a latent model's run needs to be read.

    Every `every` epochs, on the held-out batch `x`, it adds to the epoch logs (and so to the
    scalars TensorBoard plots, and to the `History`) the diagnostics of `LatentDiagnostics`:
    `active_units_l` and `val_kl_l` for each latent layer l, `val_elbo` and `val_L_k`. Values
    that `fit(validation_data=...)` already computed (`val_elbo`, `val_kl_l` on the whole
    validation set) are kept; the batch fills in the rest. For image data (`data_dim` a perfect
    square) it writes two image summaries to the `train` run: `samples`, a grid of
    `num_images` draws of E[x | z], z ~ p(z), and `reconstructions`, two rows: the first
    `num_images` held-out images above E[x | z], z ~ q(z | x). The warm-up weight beta is
    logged as `kl_weight` once it has been below 1 in this run (by `KLWarmUp`, in whatever
    order the callbacks come), so runs without warm-up show no flat line at 1. Where the
    optimizer averages the weights (`use_ema=True`), the batch's diagnostics and the images are
    the averaged weights' (`averaged_weights`, the weights `fit` ends with); with
    `keras.callbacks.SwapEMAWeights()` among the callbacks, `fit`'s own validation is too.

    Everything else (scalars, histograms, graphs, the log folder layout `log_dir/train`,
    `log_dir/validation`) is Keras' own, and the images go through its writers. Like Keras'
    callback it needs TensorFlow (for `tf.summary`), under either backend; without it,
    `StandaloneTensorBoard` writes the same scalars and images (`tfdlgm.training.train`
    picks whichever can run).

    Args:
        log_dir: str or path-like, the folder `tensorboard --logdir` reads. Defaults to
            `"logs"`.
        x: float array `[n, data_dim]` or None, the held-out batch. Without it only the
            sample grid and beta are added. Defaults to `None`.
        every: int, epochs between diagnostics and images. Defaults to `1`.
        num_samples: int, k of the `val_L_k` bound. Defaults to `50`.
        num_images: int, images per grid (reconstructions show at most this many of `x`).
            Defaults to `16`.
        seed: int, the same noise at every evaluation, so curves show the model changing.
            Defaults to `0`.
        **kwargs: the arguments of `keras.callbacks.TensorBoard` (`histogram_freq`...).

    Example:

    ```python
    model.fit(train, epochs=100, callbacks=[
        tfdlgm.callbacks.KLWarmUp(20),
        tfdlgm.callbacks.TensorBoard("logs/vae", x=x_valid[:500], every=5),
    ])
    # tensorboard --logdir logs
    ```
    """

    def __init__(
        self, log_dir="logs", x=None, every=1, num_samples=50, num_images=16, seed=0, **kwargs
    ):
        if not backend.has_tensorflow():
            raise ImportError(
                "tfdlgm.callbacks.TensorBoard writes through Keras' TensorBoard callback, which "
                "needs TensorFlow, and TensorFlow is not installed. "
                "tfdlgm.callbacks.StandaloneTensorBoard takes the same arguments and writes "
                "the same scalars and images with the `tensorboard` package alone."
            )
        super().__init__(log_dir=str(log_dir), **kwargs)
        self._init_summaries(x, every, num_samples, num_images, seed)

    def on_epoch_end(self, epoch, logs=None):
        logs = self._add_to_logs(epoch, {} if logs is None else logs)
        super().on_epoch_end(epoch, logs)
        grids = self._image_grids(epoch)
        if grids:
            with self._train_writer.as_default():
                for name, grid in grids.items():
                    self.summary.image(name, grid[None], step=epoch)
            self._train_writer.flush()


class StandaloneTensorBoard(_LatentSummaries, keras.callbacks.Callback):
    """`TensorBoard`'s scalars and images, written without TensorFlow.

    For installs with no TensorFlow (the JAX backend on the GPU machine): the `tensorboard`
    package's own event writer (`tfdlgm.summaries.SummaryWriter`) writes each epoch's logs as
    scalars, as Keras' callback does (`loss` as `epoch_loss` in the run `log_dir/train`,
    `val_loss` as `epoch_loss` in `log_dir/validation`), with the diagnostics, beta and the
    `samples` and `reconstructions` grids of `TensorBoard`. Histograms, graphs and per-batch
    scalars need TensorFlow.

    Args: those of `TensorBoard` (`log_dir`, `x`, `every`, `num_samples`, `num_images`,
    `seed`), with the same meanings and defaults; not its `**kwargs`.

    Example:

    ```python
    model.fit(train, epochs=100, callbacks=[
        tfdlgm.callbacks.StandaloneTensorBoard("logs/vae", x=x_valid[:500], every=5),
    ])
    # tensorboard --logdir logs
    ```
    """

    def __init__(self, log_dir="logs", x=None, every=1, num_samples=50, num_images=16, seed=0):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._init_summaries(x, every, num_samples, num_images, seed)
        self._writers = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._writers = {
            run: summaries.SummaryWriter(os.path.join(self.log_dir, run))
            for run in ("train", "validation")
        }

    def on_epoch_end(self, epoch, logs=None):
        logs = self._add_to_logs(epoch, {} if logs is None else logs)
        for name, value in logs.items():
            run, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            self._writers[run].scalar(f"epoch_{tag}", float(value), step=epoch)
        for name, grid in self._image_grids(epoch).items():
            self._writers["train"].image(name, grid, step=epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = None


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or weights): raised by `NonFiniteLossGuard`.

    Attributes:
        epoch: int, the 1-based epoch it happened in.
        batch: int or None, the 1-based batch (step) of that epoch; None when it was found
            at the end of the epoch (non-finite weights after the last step).
        value: float, the loss received.
    """

    def __init__(self, message, epoch, batch, value):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.value = value


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training with a `NonFiniteLossError` at the first NaN or infinite loss.

    Keras' `TerminateOnNaN` stops `fit` quietly and the run looks finished; this raises an
    error naming the epoch and batch, the value, and the usual causes. It checks the loss
    after every batch and, at the end of every epoch, the epoch's loss and the trainable
    weights (the last step of an epoch can turn the weights to NaN after a finite loss).
    Put it before any checkpointing callback (`tfdlgm.training.train` puts it first): the
    error is raised before they run, so the bad epoch is never checkpointed and the last
    checkpoint is the last good epoch.

    It is `async_safe`: on JAX (not on TensorFlow, which Keras runs batch callbacks in the
    loop for) Keras runs its per-batch check on a worker thread, so reading the loss does not
    make the training loop wait for each step to finish (the next batch is fetched and
    dispatched meanwhile). An error raised there reaches `fit` at a later batch or, at the
    latest, at the end of the epoch, before any callback's `on_epoch_end`; it still names the
    batch whose loss was not finite.

    Example:

    ```python
    model.fit(train, epochs=10, callbacks=[tfdlgm.callbacks.NonFiniteLossGuard()])
    ```
    """

    CAUSES = (
        "Usual causes: a learning rate too high (try 10x lower), or data outside the "
        "likelihood's support (non-binary values for a Bernoulli likelihood, NaN or inf in "
        "the data)."
    )

    async_safe = True

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        value = _loss(logs)
        if value is not None and not math.isfinite(value):
            self._raise(value, batch + 1, f"batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        value = _loss(logs)
        if value is not None and not math.isfinite(value):
            self._raise(value, None, "the end of the epoch")
        for weight in self.model.trainable_weights:
            if not np.isfinite(keras.ops.convert_to_numpy(weight)).all():
                self._raise(
                    float("nan"), None, f"the end of the epoch: weight {weight.path} is not finite"
                )

    def _raise(self, value, batch, where):
        epoch = self._epoch + 1
        raise NonFiniteLossError(
            f"Training stopped: the loss is {value} at epoch {epoch}, {where}; expected a "
            f"finite loss. Epoch {epoch} is not checkpointed. {self.CAUSES}",
            epoch=epoch,
            batch=batch,
            value=value,
        )


class StopOnSignal(keras.callbacks.Callback):
    """Ends `fit` at the end of the epoch in progress on SIGINT (Ctrl-C) or SIGTERM (`kill`),
    so that what follows the last epoch (checkpoints, evaluation, saving) still runs; a second
    signal stops at once, as it would without this callback.

    The handlers are installed when training begins and the previous ones put back when it
    ends (or at the second signal). Signals reach only the main thread: elsewhere the
    callback does nothing. `tfdlgm train` and `tools/train.py` use it.

    Attributes:
        received: the signal's name (`"SIGTERM"`), or None while none has come.

    Example:

    ```python
    model.fit(train, epochs=3000, callbacks=[tfdlgm.callbacks.StopOnSignal()])
    # kill -TERM <pid>: the epoch in progress ends, then fit returns
    ```
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
        self.received = None
        self._previous = {}

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            self._previous = {
                number: signal.signal(number, self._handle) for number in self.SIGNALS
            }

    def on_epoch_end(self, epoch, logs=None):
        if self.received:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self._restore()

    def _handle(self, number, frame):
        name = signal.Signals(number).name
        if self.received:  # the second: what the previous handler would have done
            self._restore()
            signal.raise_signal(number)
            return
        self.received = name
        print(
            f"\n{name}: training stops at the end of this epoch (send it again to stop now).",
            file=sys.stderr,
            flush=True,
        )

    def _restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}


def _loss(logs):
    if not logs or "loss" not in logs:
        return None
    return float(np.asarray(keras.ops.convert_to_numpy(logs["loss"])))
