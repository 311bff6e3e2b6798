"""The training loop the `tfdlgm` command and scripts share: plain `fit`, checkpoints, resume.

```python
model = tfdlgm.models.VAE(latent_dim=50)
model.compile(optimizer="adam")
history = tfdlgm.training.train(
    model, tfdlgm.datasets.mnist("train"), epochs=100, logdir="logs/vae",
    checkpoint_dir="checkpoints/vae", warm_up_epochs=20,
)
# later, or after a crash: the same call with resume=True runs the epochs not yet done
history = tfdlgm.training.train(model, data, epochs=100, checkpoint_dir="checkpoints/vae",
                                resume=True, warm_up_epochs=20)
model = history.model          # the loaded model when resuming
```

A checkpoint is the folder `checkpoint_dir` holding `last.keras` (the model with its
optimizer state, its random stream and `kl_weight`: `model.save`) and `state.json`
(`{"epoch": epochs completed, "logs": that epoch's logs}`). Both are written every epoch to a
temporary file `.tmp-*` in the same folder, then moved into place with `os.replace`, which is
atomic: a crash leaves the previous checkpoint whole and at worst a stray `.tmp-*` file,
which is never read. `state.json` is written after `last.keras`, so it never claims an epoch
the model file does not hold (a crash between the two repeats one epoch on resume).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile

import keras
import numpy as np

from tfdlgm import callbacks as callbacks_module
from tfdlgm import validation

MODEL_FILE = "last.keras"
STATE_FILE = "state.json"
# Held-out examples `TensorBoard` computes its diagnostics and reconstructions on.
DIAGNOSTIC_EXAMPLES = 500


def train(
    model: keras.Model,
    train_data,
    epochs: int,
    logdir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    validation_data=None,
    callbacks=(),
    warm_up_epochs: int | None = None,
    verbose: int | str = 1,
) -> keras.callbacks.History:
    """Trains a compiled `LatentModel` with `model.fit` up to epoch `epochs`.

    Args:
        model: a compiled `tfdlgm.models.LatentModel`. With `resume=True` and a checkpoint
            in `checkpoint_dir`, the checkpoint's model is trained instead.
        train_data: what `fit` takes: an array `[N, data_dim]`, a `tf.data.Dataset` or a
            `keras.utils.PyDataset` such as `tfdlgm.datasets.mnist("train")`.
        epochs: int, the epoch to train up to (counted from the first run when resuming).
        logdir: str or path-like or None, write TensorBoard logs there with
            `tfdlgm.callbacks.TensorBoard` (diagnostics on the first
            `DIAGNOSTIC_EXAMPLES` examples of `validation_data`, when given). Defaults to
            `None`.
        checkpoint_dir: str or path-like or None, checkpoint there every epoch (see the module
            docstring). Defaults to `None`.
        resume: bool, continue from the checkpoint in `checkpoint_dir` with
            `fit(initial_epoch=...)`; with no checkpoint there yet, start from `model`.
            Defaults to `False`.
        validation_data: what `fit` takes as `validation_data`, or None. Defaults to `None`.
        callbacks: more Keras callbacks. Defaults to `()`.
        warm_up_epochs: int or None, KL warm-up over that many epochs (`KLWarmUp`): beta
            depends on the epoch alone, so it continues across a resume. Defaults to `None`.
        verbose: `fit`'s `verbose` (1: a progress bar per epoch). Defaults to `1`.

    Returns:
        The `keras.callbacks.History` of `fit`; `history.model` is the model trained.

    Raises:
        ValueError: on a bad argument, `resume=True` without `checkpoint_dir`, or a checkpoint
            that cannot be loaded.
    """
    epochs = validation.check_positive_int(epochs, "epochs")
    if warm_up_epochs is not None:
        warm_up_epochs = validation.check_positive_int(warm_up_epochs, "warm_up_epochs")
    if resume and checkpoint_dir is None:
        raise ValueError(
            "`resume=True` needs `checkpoint_dir`, the folder of the checkpoint to continue. "
            "Received: checkpoint_dir=None"
        )
    initial_epoch = 0
    if resume:
        checkpoint = latest_checkpoint(checkpoint_dir)
        if checkpoint is not None:
            model, initial_epoch = checkpoint
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            "`model` must be compiled before training, e.g. `model.compile(optimizer='adam')`."
        )
    extra = list(callbacks)
    if warm_up_epochs is not None:
        extra.insert(0, callbacks_module.KLWarmUp(warm_up_epochs))
    if logdir is not None:
        held_out = None if validation_data is None else _first_examples(validation_data)
        extra.append(callbacks_module.TensorBoard(logdir, x=held_out))
    if checkpoint_dir is not None:
        extra.append(Checkpoint(checkpoint_dir))
    return model.fit(
        train_data,
        epochs=epochs,
        initial_epoch=initial_epoch,
        validation_data=validation_data,
        callbacks=extra,
        verbose=verbose,
    )


def latest_checkpoint(checkpoint_dir: str | os.PathLike):
    """The last complete checkpoint in `checkpoint_dir`: `(model, epochs completed)`, or None.

    Only `last.keras` and `state.json` are read; temporary `.tmp-*` files are ignored.

    Raises:
        ValueError: if `state.json` exists but it or `last.keras` cannot be read.
    """
    folder = pathlib.Path(checkpoint_dir)
    state_path, model_path = folder / STATE_FILE, folder / MODEL_FILE
    if not state_path.is_file():
        return None
    try:
        epoch = json.loads(state_path.read_text(encoding="utf-8"))["epoch"]
        model = keras.models.load_model(model_path)
    except Exception as error:  # JSON, missing key, missing or unreadable model file
        raise ValueError(
            f"The checkpoint in {folder} cannot be resumed ({type(error).__name__}: {error}). "
            f"Remove {state_path} to start again."
        ) from error
    return model, int(epoch)


class Checkpoint(keras.callbacks.Callback):
    """Writes `last.keras` then `state.json` into `folder` at the end of every epoch, each to
    a temporary `.tmp-*` file then `os.replace`d (see the module docstring).

    Args:
        folder: str or path-like, created if needed.
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = pathlib.Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.folder / MODEL_FILE, lambda path: self.model.save(path))
        state = {"epoch": epoch + 1, "logs": {k: _float(v) for k, v in (logs or {}).items()}}
        text = json.dumps(state, indent=2) + "\n"
        _atomic_write(self.folder / STATE_FILE, lambda path: path.write_text(text, "utf-8"))


def _atomic_write(path: pathlib.Path, write) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(handle)
    temporary = pathlib.Path(temporary)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _float(value):
    try:
        return float(np.asarray(keras.ops.convert_to_numpy(value)))
    except (TypeError, ValueError):
        return str(value)


def _first_examples(data, count=DIAGNOSTIC_EXAMPLES):
    """Up to `count` examples of an array, a `PyDataset` or a `tf.data.Dataset`, as NumPy."""
    if isinstance(data, tuple):
        data = data[0]
    if isinstance(data, np.ndarray):
        return data[:count]
    if isinstance(data, keras.utils.PyDataset):
        batches = (data[i] for i in range(len(data)))
    else:
        batches = iter(data)
    out, seen = [], 0
    for batch in batches:
        batch = np.asarray(batch[0] if isinstance(batch, tuple) else batch)
        out.append(batch)
        seen += len(batch)
        if seen >= count:
            break
    return np.concatenate(out)[:count]
