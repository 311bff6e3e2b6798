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
```

A checkpoint is the folder `checkpoint_dir` holding `epoch-NNNN.keras` (the model after
epoch NNNN with its optimizer state, the state of its random stream (a `SeedGenerator`,
which Keras does not save; `LatentModel.save_own_variables` does), and `kl_weight`, which
holds the warm-up state: `model.save`) and `state.json`
(`{"epoch": epochs completed, "model": that file's name, "bytes": its size, "sha256": its
checksum, "logs": the epoch's logs}`). Every epoch the model file is written to a temporary
`.tmp-*` file in the same folder and moved into place with `os.replace` (atomic), then
`state.json` the same way, then older `epoch-*.keras` files are removed. So a crash at any
point leaves a `state.json` that names a complete model file: at worst a stray `.tmp-*` file
or a newer `epoch-*.keras` that `state.json` does not name yet, which are never read.

One owner per folder. `train` holds `checkpoint_dir` for the whole run
(`tfdlgm.files.hold_folder`: an OS lock on its `.lock` file, released by the kernel when the
process ends, killed or not): a second run on the same folder is refused at once with
`tfdlgm.files.FolderInUseError`, naming the process that holds it. Once it owns the folder,
`train` removes the `.tmp-*` files that killed writes left there. A run that does not resume
is refused (`ValueError`) when the folder already holds a checkpoint, which it would otherwise
replace after its first epoch: pass `resume=True` to continue it, or `overwrite=True` to
delete it as the run starts. A checkpoint write that fails (a full disk, a read-only folder)
stops training with `CheckpointWriteError`, naming the file and the epoch the folder still
holds.

Resuming is the `Checkpoint` callback's, in the manner of `keras.callbacks.BackupAndRestore`:
as training begins it loads the checkpoint into the model being trained (weights, optimizer
state, random stream, warm-up weight) and `fit` continues from the checkpoint's epoch. It
reads only `state.json` (`tfdlgm.files.read_state`) and the file it names, after checking that
file's size and sha256. A `state.json` that cannot be parsed, or names a missing, truncated or
altered file, is a `ValueError` naming the file and the problem; nothing is loaded (one
checkpoint is kept, so there is no older one to fall back to). Delete the folder, or pass
`overwrite=True`, to start again.

Exact resume. A run killed mid-epoch and resumed gives bit for bit the weights of the run that
was never stopped when all of its randomness is restored: the model's random stream, the
optimizer and the warm-up state are (they are in the model file); the data's randomness must be a
function of (seed, epoch), which `tfdlgm.datasets.NumpyBatches` is (`train` calls its
`set_epoch` with the epoch it resumes at; the `tfdlgm train` command uses it). A
`tf.data.Dataset` reshuffles from a state it does not save, and arrays passed to `fit` are
shuffled by the backend's global random state, so those runs resume correctly but on other
batches than the uninterrupted run would have seen.

A NaN or infinite loss stops training with `NonFiniteLossError` (`NonFiniteLossGuard`, the
first callback), before that epoch is checkpointed.

The `fit` callbacks `train` uses, in order, for library users who call `fit` themselves:
`NonFiniteLossGuard()`, `KLWarmUp(warm_up_epochs)`, your `callbacks`,
`tfdlgm.callbacks.TensorBoard(logdir, x=...)` and `Checkpoint(checkpoint_dir, resume=...)`
(last: the state it writes keeps the logs the others added), with `data.set_epoch(epoch)`
when resuming, all inside `with tfdlgm.files.hold_folder(checkpoint_dir):` to own the folder
as `train` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import zipfile

import keras
import numpy as np

from tfdlgm import callbacks as callbacks_module
from tfdlgm import files, layers, validation
from tfdlgm.files import STATE_FILE, hold_folder, remove_temporaries, sha256
from tfdlgm.models.base import LatentModel

MODEL_FILE = "epoch-{epoch:04d}.keras"
NonFiniteLossError = callbacks_module.NonFiniteLossError
FolderInUseError = files.FolderInUseError
# Files of a checkpoint (`overwrite=True` removes them); `.lock` and `.tmp-*` are not.
CHECKPOINT_FILES = (STATE_FILE, "epoch-*.keras")
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
    initial_epoch: int = 0,
    overwrite: bool = False,
) -> keras.callbacks.History:
    """Trains a compiled `LatentModel` with `model.fit` up to epoch `epochs`.

    Args:
        model: a compiled `tfdlgm.models.LatentModel`. With `resume=True` and a checkpoint
            in `checkpoint_dir`, it must have the checkpoint's architecture and optimizer: the
            checkpoint is loaded into it (`Checkpoint`); one not compiled yet is compiled as
            the checkpoint's model was.
        train_data: what `fit` takes: an array `[N, data_dim]`, a `tf.data.Dataset` or a
            `keras.utils.PyDataset` such as `tfdlgm.datasets.mnist("train")`.
        epochs: int, the epoch to train up to (counted from the first run when resuming).
        logdir: str or path-like or None, write TensorBoard logs there with
            `tfdlgm.callbacks.TensorBoard` (diagnostics on the first `DIAGNOSTIC_EXAMPLES`
            examples of `validation_data`, when given). Defaults to `None`.
        checkpoint_dir: str or path-like or None, checkpoint there every epoch (see the module
            docstring); created if needed, and held by this run alone while it runs.
            Defaults to `None`.
        resume: bool, continue from the checkpoint in `checkpoint_dir`: its weights and
            optimizer state are loaded into `model` and training goes on from its epoch; with
            no checkpoint there yet, start from `model`. Defaults to `False`.
        validation_data: what `fit` takes as `validation_data`, or None. Defaults to `None`.
        callbacks: more Keras callbacks. Defaults to `()`.
        warm_up_epochs: int or None, KL warm-up over that many epochs (`KLWarmUp`): beta
            depends on the epoch alone, so it continues across a resume. Defaults to `None`.
        verbose: `fit`'s `verbose` (1: a progress bar per epoch). Defaults to `1`.
        initial_epoch: int, the epochs `model` was already trained for elsewhere (a zoo
            preset being fine-tuned): training runs epochs `initial_epoch + 1 .. epochs` and
            the warm-up and checkpoints count from there. A resumed checkpoint's own epoch
            count replaces it. Defaults to `0`.
        overwrite: bool, start afresh in a `checkpoint_dir` that holds a checkpoint: its
            `state.json` and `epoch-*.keras` are deleted up front, once this run owns the
            folder (so a run stopped before its first epoch leaves no checkpoint). Without
            it (and without `resume`) such a folder is refused. Defaults to `False`.

    Returns:
        The `keras.callbacks.History` of `fit`; `history.model` is `model`.

    Raises:
        ValueError: on a bad argument, `resume=True` without `checkpoint_dir`, a
            `checkpoint_dir` that holds a checkpoint with neither `resume` nor `overwrite`, or
            a checkpoint that cannot be loaded (see the module docstring).
        FolderInUseError: (`tfdlgm.files.FolderInUseError`, a `RuntimeError`) if another run
            holds `checkpoint_dir`.
        CheckpointWriteError: (an `OSError`) if a checkpoint cannot be written.
        NonFiniteLossError: (a `RuntimeError`) on a NaN or infinite loss or weight; it names
            the epoch, the batch, and the epoch the checkpoint holds.
    """
    if not isinstance(model, LatentModel):
        raise ValueError(
            "`model` must be a compiled tfdlgm LatentModel, e.g. tfdlgm.models.VAE(). "
            f"Received: type {type(model).__name__}"
        )
    if not isinstance(callbacks, (list, tuple)):
        raise ValueError(
            "`callbacks` must be a list of keras.callbacks.Callback. "
            f"Received: type {type(callbacks).__name__}"
        )
    epochs = validation.check_positive_int(epochs, "epochs")
    if warm_up_epochs is not None:
        warm_up_epochs = validation.check_positive_int(warm_up_epochs, "warm_up_epochs")
    if resume and checkpoint_dir is None:
        raise ValueError(
            "`resume=True` needs `checkpoint_dir`, the folder of the checkpoint to continue. "
            "Received: checkpoint_dir=None"
        )
    if resume and overwrite:
        raise ValueError(
            "`resume=True` continues the checkpoint and `overwrite=True` deletes it: pass one. "
            "Received: resume=True, overwrite=True"
        )
    initial_epoch = validation.check_nonnegative_int(initial_epoch, "initial_epoch")
    owner = contextlib.nullcontext() if checkpoint_dir is None else hold_folder(checkpoint_dir)
    with owner:
        found = None
        if checkpoint_dir is not None:
            remove_temporaries(checkpoint_dir)
            check_checkpoint_folder(checkpoint_dir, resume=resume, overwrite=overwrite)
            found = _checked_model_file(checkpoint_dir) if resume else None
        if found is not None:  # `Checkpoint` loads it into `model` as training begins
            model_path, initial_epoch = found
            if getattr(model, "optimizer", None) is None:
                model.compile_from_config(_model_config(model_path)["compile_config"])
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "`model` must be compiled before training, e.g. `model.compile(optimizer='adam')`."
            )
        if overwrite and checkpoint_dir is not None:
            for pattern in CHECKPOINT_FILES:  # state.json first: then no checkpoint is left
                for path in pathlib.Path(checkpoint_dir).glob(pattern):
                    path.unlink(missing_ok=True)
        extra = [callbacks_module.NonFiniteLossGuard()]
        if warm_up_epochs is not None:
            extra.append(callbacks_module.KLWarmUp(warm_up_epochs))
        extra.extend(callbacks)
        if logdir is not None:
            held_out = None if validation_data is None else _first_examples(validation_data)
            extra.append(callbacks_module.TensorBoard(logdir, x=held_out))
        if checkpoint_dir is not None:
            extra.append(Checkpoint(checkpoint_dir, resume=resume))
        if hasattr(train_data, "set_epoch"):  # NumpyBatches: draw the batches of this epoch
            train_data.set_epoch(initial_epoch)
        try:
            return model.fit(
                train_data,
                epochs=epochs,
                initial_epoch=initial_epoch,
                validation_data=validation_data,
                callbacks=extra,
                verbose=verbose,
            )
        except NonFiniteLossError as error:
            if checkpoint_dir is None:
                raise
            kept = _kept_epoch(checkpoint_dir)
            holds = (
                f"The checkpoint in {checkpoint_dir} holds epoch {kept}, the last good "
                "one: fix the cause and continue from it with resume=True (--resume)."
                if kept
                else f"No epoch completed, so {checkpoint_dir} holds no checkpoint."
            )
            raise NonFiniteLossError(
                f"{error} {holds}", epoch=error.epoch, batch=error.batch, value=error.value
            ) from error


class CheckpointWriteError(OSError):
    """A checkpoint file could not be written; the folder still holds the epoch before."""


def check_checkpoint_folder(
    checkpoint_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False
) -> int | None:
    """Checks that a run may checkpoint into `checkpoint_dir`; returns the epoch it holds.

    `train` and `Checkpoint` call it once the run owns the folder; the `tfdlgm train` command
    also calls it before loading any data, to fail at once.

    Args:
        checkpoint_dir: str or path-like, the folder (it need not exist yet).
        resume: bool, the run continues the checkpoint there. Defaults to `False`.
        overwrite: bool, the run deletes the checkpoint there. Defaults to `False`.

    Returns:
        The epochs completed of the checkpoint in `checkpoint_dir`, or None when it holds
        none (or holds a `state.json` that cannot be parsed).

    Raises:
        ValueError: if `checkpoint_dir` holds a checkpoint and neither `resume` nor
            `overwrite` is set.
    """
    folder = pathlib.Path(checkpoint_dir)
    state_path = folder / STATE_FILE
    if not state_path.exists():
        return None
    epoch = _kept_epoch(folder)
    if not (resume or overwrite):
        holds = (
            f"a checkpoint of epoch {epoch}"
            if epoch is not None
            else f"a checkpoint ({state_path} cannot be read)"
        )
        raise ValueError(
            f"{folder} already holds {holds}: pass --resume (resume=True) to continue it, "
            "--overwrite (overwrite=True) to delete it and start afresh, or choose another "
            "folder."
        )
    return epoch


def latest_checkpoint(checkpoint_dir: str | os.PathLike):
    """The checkpoint in `checkpoint_dir`: `(model, epochs completed)`, or None if it has none.

    Only `state.json` and the model file it names are read, after that file's size and sha256
    are checked; temporary `.tmp-*` files and model files `state.json` does not name are
    ignored.

    Raises:
        ValueError: if `state.json` cannot be parsed, or names a missing, truncated or altered
            model file, or that file cannot be loaded.
    """
    checked = _checked_model_file(checkpoint_dir)
    if checked is None:
        return None
    model_path, epoch = checked
    try:
        with layers.weights_to_load():  # the file holds every weight
            model = keras.models.load_model(model_path)
    except Exception as error:  # Keras, zipfile, h5py and json raise their own
        raise ValueError(
            f"The checkpoint in {model_path.parent} cannot be resumed: {model_path} does not "
            f"load ({type(error).__name__}: {error}). {_START_AGAIN.format(model_path.parent)}"
        ) from error
    return model, epoch


def checkpoint_config(checkpoint_dir: str | os.PathLike):
    """The checkpoint's model as `model.save` described it: `(config, epochs completed)`, or
    None if `checkpoint_dir` holds no checkpoint. Cheap: no weight is read.

    `config` is the model file's `config.json`: `{"class_name", "config": the model's
    `get_config()`, "compile_config": {"optimizer": ...}, ...}`.

    Raises:
        ValueError: as `latest_checkpoint` does.
    """
    checked = _checked_model_file(checkpoint_dir)
    if checked is None:
        return None
    model_path, epoch = checked
    return _model_config(model_path), epoch


_START_AGAIN = "Delete {} or pass overwrite=True (--overwrite) to start again."


def _model_config(model_path):
    """The `config.json` of the checked model file `model_path`."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"The checkpoint in {model_path.parent} cannot be resumed: {model_path} has no "
            f"model config ({type(error).__name__}: {error}). "
            + _START_AGAIN.format(model_path.parent)
        ) from error


def _kept_epoch(folder):
    """The epoch of the checkpoint in `folder`, or None if it holds none it can read."""
    try:
        state = files.read_state(folder)
    except ValueError:
        return None
    return None if state is None else state["epoch"]


def _checked_model_file(checkpoint_dir):
    """`(the model file state.json names, epochs completed)` after checking its size and
    sha256, or None without `state.json`; a `ValueError` naming the problem otherwise."""
    folder = pathlib.Path(checkpoint_dir)
    fix = _START_AGAIN.format(folder)
    try:
        state = files.read_state(folder)
    except ValueError as error:
        raise ValueError(f"The checkpoint in {folder} cannot be resumed: {error}. {fix}") from error
    if state is None:
        return None
    state_path = folder / STATE_FILE
    model_path = folder / state["model"]
    if not model_path.is_file():
        raise ValueError(
            f"The checkpoint in {folder} cannot be resumed: {state_path} names {model_path}, "
            f"which does not exist. {fix}"
        )
    size, digest = model_path.stat().st_size, sha256(model_path)
    if (size, digest) != (state["bytes"], state["sha256"]):
        raise ValueError(
            f"The checkpoint in {folder} cannot be resumed: {model_path} is truncated or "
            f"altered ({size} bytes, sha256 {digest}; {state_path} expects {state['bytes']} "
            f"bytes, sha256 {state['sha256']}). {fix}"
        )
    return model_path, state["epoch"]


class Checkpoint(keras.callbacks.Callback):
    """Checkpoints training into `folder` every epoch and, with `resume=True`, continues the
    checkpoint there as training begins, in the manner of `keras.callbacks.BackupAndRestore`.

    - `on_train_begin`: a folder that holds a checkpoint is refused (`ValueError`) unless
      `resume`; with `resume`, the checkpoint (`state.json` and the model file it names, its
      size and sha256 checked first) is loaded into the model being trained: its weights, its
      optimizer's state, its random stream and warm-up weight. `fit` then runs from the
      checkpoint's epoch on (Keras reads `model._initial_epoch`, which `BackupAndRestore` sets
      too). The model must have the checkpoint's architecture and optimizer
      (`latest_checkpoint` loads the checkpoint's own model).
    - `on_epoch_end`: writes `epoch-NNNN.keras`, then `state.json` naming it with its sha256
      and the epoch's logs, each to a temporary `.tmp-*` file then `os.replace`d, then removes
      older model files (see the module docstring). A write that fails raises
      `CheckpointWriteError` naming the file and the epoch the folder still holds.

    Put it last among the callbacks, so that `state.json` keeps the logs the others add, and
    hold the folder while `fit` runs (`with tfdlgm.files.hold_folder(folder):`), as
    `tfdlgm.training.train` does, so that no other run writes there meanwhile.

    Args:
        folder: str or path-like, created if needed.
        resume: bool, continue the checkpoint in `folder`, if any. Defaults to `False`.

    Example:

    ```python
    with tfdlgm.files.hold_folder("checkpoints/vae"):
        model.fit(train, epochs=100, callbacks=[Checkpoint("checkpoints/vae", resume=True)])
    ```
    """

    def __init__(self, folder, resume=False):
        super().__init__()
        self.folder = pathlib.Path(folder)
        self.resume = validation.check_bool(resume, "resume")

    def on_train_begin(self, logs=None):
        check_checkpoint_folder(self.folder, resume=self.resume)
        found = _checked_model_file(self.folder) if self.resume else None
        if found is None:
            return
        model_path, epoch = found
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(model_path)
        except Exception as error:  # Keras, zipfile and h5py raise their own
            raise ValueError(
                f"The checkpoint in {self.folder} cannot be resumed into this model: "
                f"{model_path} does not load into it ({type(error).__name__}: {error}). "
                "Resume with the checkpoint's architecture and optimizer "
                "(tfdlgm.training.latest_checkpoint loads its model), or delete "
                f"{self.folder} or pass overwrite=True (--overwrite) to start again."
            ) from error
        self.model._initial_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        model_path = self.folder / MODEL_FILE.format(epoch=epoch + 1)
        target = model_path
        try:
            files.atomic_write(model_path, lambda path: self.model.save(path))
            target = self.folder / STATE_FILE
            files.write_state(self.folder, epoch + 1, model_path, logs)
        except Exception as error:  # OSError mostly; Keras, zipfile and h5py raise their own
            kept = _kept_epoch(self.folder)
            holds = (
                f"{self.folder} still holds the checkpoint of epoch {kept}: fix the "
                "cause, then continue from it with resume=True (--resume)."
                if kept
                else f"{self.folder} holds no checkpoint yet: fix the cause and start again."
            )
            raise CheckpointWriteError(
                f"Could not write the checkpoint of epoch {epoch + 1}: writing {target} failed "
                f"({type(error).__name__}: {error}). {holds}"
            ) from error
        for old in self.folder.glob("epoch-*.keras"):
            if old != model_path:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None  # a later `fit` starts where it is told


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
