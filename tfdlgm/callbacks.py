"""Keras callbacks for latent models: KL warm-up, per-layer diagnostics, TensorBoard logs
(grouped scalars and image grids, with TensorFlow or without), a guard that stops training at a
non-finite loss, and a graceful stop on SIGINT / SIGTERM."""

import contextlib
import math
import os
import re
import signal
import sys
import threading

import keras
import numpy as np

from tfdlgm import images as images_module
from tfdlgm import summaries, validation


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
    """Adds held-out diagnostics to the epoch logs every `every` epochs, computed on the batch
    `x`: for each latent layer l the active units `val_active_units_l` (Burda et al.'s
    criterion, `LatentModel.active_units`) and the KL `val_kl_l`, then `val_elbo` and the
    importance-weighted bound `val_L_k`. The `val_` prefix says they are held-out figures:
    `History` keeps them, and `tfdlgm.callbacks.TensorBoard`, wherever it comes in the
    callback list, writes them to the validation run (`active_units/layer_1`, `kl/layer_1`,
    `bounds/elbo`, `bounds/L_50`...). Figures `fit(validation_data=...)` already computed on
    the whole validation set (`val_elbo`, `val_kl_l`) are kept. Where the optimizer averages
    the weights (`use_ema=True`), the diagnostics are the averaged weights'
    (`averaged_weights`), the ones training ends with.

    Keras' own `keras.callbacks.TensorBoard` writes the logs as it receives them, so it shows
    these only when it comes after this callback; `tfdlgm.callbacks.TensorBoard` waits for
    every callback to have added to the epoch's logs, and also computes them itself (`x=`).

    Args:
        x: float array `[n, data_dim]`, a held-out batch.
        every: int, epochs between evaluations. Defaults to `1`.
        num_samples: int, k of the L_k bound. Defaults to `50`.
        seed: int, so that successive evaluations use the same noise. Defaults to `0`.

    Example:

    ```python
    history = model.fit(train, epochs=100, callbacks=[LatentDiagnostics(x_valid[:500])])
    history.history["val_L_50"], history.history["val_active_units_1"]
    ```
    """

    def __init__(self, x, every=1, num_samples=50, seed=0):
        super().__init__()
        self.x = np.asarray(x)
        self.every = validation.check_positive_int(every, "every")
        self.num_samples = validation.check_positive_int(num_samples, "num_samples")
        self.seed = validation.check_seed(seed)

    def diagnostics(self, epoch):
        """`{log name: value}` due after the 0-based `epoch` (empty between evaluations)."""
        if (epoch + 1) % self.every:
            return {}
        found = {}
        with averaged_weights(self.model) as model:
            for i, count in enumerate(model.active_units(self.x, seed=self.seed)):
                found[f"val_active_units_{i + 1}"] = count
            results = model.evaluate(self.x, verbose=0, return_dict=True)
            for name, value in results.items():
                if name.startswith("kl_") or name == "elbo":
                    found[f"val_{name}"] = value
            found[f"val_L_{self.num_samples}"] = float(
                model.iwae_bound(self.x, self.num_samples, seed=self.seed, verbose=0).mean()
            )
        return found

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, value in self.diagnostics(epoch).items():
            logs.setdefault(name, value)


# TensorBoard's tag of each epoch log (its name without `val_`), grouped by what it measures:
# the dashboard shows one section per group, e.g. the KL of every layer side by side.
_TAGS = (
    (re.compile(r"loss"), "loss/total"),
    (re.compile(r"reconstruction"), "bounds/reconstruction"),
    (re.compile(r"elbo"), "bounds/elbo"),
    (re.compile(r"L_(\d+)"), r"bounds/L_\1"),
    (re.compile(r"kl_(\d+)"), r"kl/layer_\1"),
    (re.compile(r"active_units_(\d+)"), r"active_units/layer_\1"),
    (re.compile(r"learning_rate|kl_weight"), r"schedule/\g<0>"),
)


def tensorboard_tag(name: str) -> tuple[str, str]:
    """`(run, tag)` under which `TensorBoard` writes the epoch log `name`: `val_*` logs to the
    `validation` run, others to `train`; the tag is grouped (`val_kl_2` -> `("validation",
    "kl/layer_2")`, `learning_rate` -> `("train", "schedule/learning_rate")`), or the name
    itself for a log it does not know."""
    run, name = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
    for pattern, tag in _TAGS:
        match = pattern.fullmatch(name)
        if match:
            return run, match.expand(tag)
    return run, name


class TensorBoard(keras.callbacks.Callback):
    """TensorBoard logs of a latent model's training: grouped scalars and image grids.

    Every epoch's logs are written as scalars, `val_*` logs to the run `log_dir/validation`
    and the others to `log_dir/train`, under grouped tags, so that the dashboard shows one
    section per quantity (`tensorboard_tag`):

    ```none
    log (val_ dropped)            tag
    loss                          loss/total
    elbo, L_k, reconstruction     bounds/elbo, bounds/L_k, bounds/reconstruction (E_q log p(x|z))
    kl_l, active_units_l          kl/layer_l, active_units/layer_l
    learning_rate, kl_weight      schedule/learning_rate, schedule/kl_weight
    anything else                 its own name
    ```

    With a held-out batch `x` it adds, every `every` epochs, the diagnostics of
    `LatentDiagnostics` to the logs (and so to the `History`): active units and KL per layer,
    the ELBO and L_k, all in the validation run. Figures `fit(validation_data=...)` already
    computed on the whole validation set (`val_elbo`, `val_kl_l`) are kept. The learning rate
    is the optimizer's, every epoch. The warm-up weight beta is logged once it has been below
    1 in this run (by `KLWarmUp`), so runs without warm-up show no flat line at 1.

    What is written does not depend on where the callback comes in the list: the logs other
    callbacks add to an epoch after this one has run (`LatentDiagnostics`, `KLWarmUp`,
    `LearningRateScheduler`...) are written as the next epoch begins or training ends.

    For image data (`data_dim` a perfect square), every `every` epochs: `samples` in the
    train run, a grid of `num_images` draws of E[x | z], z ~ p(z), and `reconstructions` in
    the validation run, two rows: the first `num_images` images of `x` above E[x | z],
    z ~ q(z | x). Where the optimizer averages the weights (`use_ema=True`), the diagnostics
    and images are the averaged weights' (`averaged_weights`, the weights `fit` ends with).

    The records go through `tf.summary` where TensorFlow is installed and through the
    `tensorboard` package's own writer otherwise (`tfdlgm.summaries.SummaryWriter`), under
    either Keras backend; without the `tensorboard` package the constructor raises an
    `ImportError` saying so. Histograms and graphs are Keras' `keras.callbacks.TensorBoard`'s,
    which may log to another folder beside it.

    Args:
        log_dir: str or path-like, the folder `tensorboard --logdir` reads. Defaults to
            `"logs"`.
        x: float array `[n, data_dim]` or None, the held-out batch. Without it only the
            logs, the learning rate, beta and the sample grid are written. Defaults to `None`.
        every: int, epochs between diagnostics and images. Defaults to `1`.
        num_samples: int, k of the `val_L_k` bound. Defaults to `50`.
        num_images: int, images per grid (reconstructions show at most this many of `x`).
            Defaults to `16`.
        seed: int, the same noise at every evaluation, so curves show the model changing.
            Defaults to `0`.

    Example:

    ```python
    model.fit(train, epochs=100, callbacks=[
        tfdlgm.callbacks.TensorBoard("logs/vae", x=x_valid[:500], every=5),
        tfdlgm.callbacks.KLWarmUp(20),
    ])
    # tensorboard --logdir logs
    ```
    """

    RUNS = ("train", "validation")

    def __init__(self, log_dir="logs", x=None, every=1, num_samples=50, num_images=16, seed=0):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.every = validation.check_positive_int(every, "every")
        self.num_images = validation.check_positive_int(num_images, "num_images")
        self.seed = validation.check_seed(seed)
        self.diagnostics = (
            None if x is None else LatentDiagnostics(x, every, num_samples, self.seed)
        )
        summaries.check_available()  # now, rather than after the first epoch
        self._writers = {}
        self._late = None  # (epoch, that epoch's logs, the names written)
        self._warm_up_seen = False

    def set_model(self, model):
        super().set_model(model)
        if self.diagnostics is not None:
            self.diagnostics.set_model(model)

    def on_train_begin(self, logs=None):
        self._late = None
        self._warm_up_seen = False

    def on_epoch_begin(self, epoch, logs=None):
        self._write_late()

    def on_epoch_end(self, epoch, logs=None):
        self._write_late()
        logs = {} if logs is None else logs
        if self.diagnostics is not None:
            for name, value in self.diagnostics.diagnostics(epoch).items():
                logs.setdefault(name, value)
        kl_weight = getattr(self.model, "kl_weight", None)
        if kl_weight is not None:
            beta = float(keras.ops.convert_to_numpy(kl_weight))
            self._warm_up_seen = self._warm_up_seen or beta < 1.0
            if self._warm_up_seen:
                logs.setdefault("kl_weight", beta)
        rate = _learning_rate(self.model)
        self._write(epoch, logs if rate is None else {"learning_rate": rate, **logs})
        self._late = (epoch, logs, {*logs, "learning_rate"})
        for (run, name), grid in self._image_grids(epoch).items():
            self._writer(run).image(name, grid, step=epoch)
        self._flush()

    def on_train_end(self, logs=None):
        self._write_late()
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = summaries.SummaryWriter(os.path.join(self.log_dir, run))
        return self._writers[run]

    def _write(self, epoch, logs):
        for name, value in logs.items():
            try:
                value = float(value)
            except (TypeError, ValueError):  # a log that is not a number is no scalar
                continue
            run, tag = tensorboard_tag(name)
            self._writer(run).scalar(tag, value, step=epoch)

    def _write_late(self):
        """Writes what callbacks after this one added to the last epoch's logs."""
        if self._late is None:
            return
        epoch, logs, written = self._late
        self._late = None
        self._write(epoch, {name: value for name, value in logs.items() if name not in written})
        self._flush()

    def _flush(self):
        for writer in self._writers.values():
            writer.flush()

    def _image_grids(self, epoch):
        """`{(run, name): uint8 [height, width, channels]}` due after `epoch` (none for data
        that are not square images)."""
        side = math.isqrt(self.model.data_dim)
        if (epoch + 1) % self.every or side * side != self.model.data_dim:
            return {}
        with averaged_weights(self.model) as model:  # as the diagnostics: the weights shipped
            grids = {("train", "samples"): model.sample(self.num_images, seed=self.seed, mean=True)}
            if self.diagnostics is not None:
                x = self.diagnostics.x[: self.num_images]
                grids["validation", "reconstructions"] = np.stack(
                    [x, model.reconstruct(x, seed=self.seed)]
                )
        return {key: images_module.grid(value, (side, side)) for key, value in grids.items()}


def _learning_rate(model):
    """The optimizer's learning rate now (as Keras' TensorBoard reads it), or None."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        return None
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


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
