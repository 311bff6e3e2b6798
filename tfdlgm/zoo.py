"""Pretrained presets: `list()`, `load(name_or_path)`, `card`, `config`, `metadata`, `save_preset`.

A preset is a folder (`zoo/<name>/` in the repository, shipped in the package as
`tfdlgm/presets/<name>/`) laid out as KerasHub's presets are:

- `config.json`: the serialised model alone, `{"module", "class_name", "config",
  "registered_name"}` (`registered_name`, e.g. `"tfdlgm>VAE"`, is what builds it);
- `model.weights.h5`: the weights (float32, no optimizer state);
- `card.md`: the model card (YAML front matter, what the model is, its training data and
  procedure, the command that reproduces it, its figures, the paper to cite);
- `metadata.json`: everything else, and the folder's commit point: the size and sha256 of
  each of the three files above, the versions the preset was made with, its parameter count
  and date, the images its weights saw, its training (recipe name, epochs, wall time, and the
  optimizer `load(compile=True)` compiles with), the evaluation protocol and the figures it
  measured (`figures["test_slice"]`: what `tests/test_zoo.py` checks the model against).

A bare name (`"vae-mnist"`) is a shipped preset; a path (`"./vae-mnist"`, an absolute path, a
`pathlib.Path`) is a folder, so a folder in the working directory never stands in for a
shipped preset. Preset files are untrusted input: `load` checks `metadata.json`'s schema, that
every file it lists is a plain name inside the folder, each file's size and then its sha256,
before it reads a weight; it builds the model by its registered class name
(`keras.saving.get_registered_object`) and loads the weights into it. Any failure is a
`ValueError` naming the file and the field, and no partly loaded model is returned.

```python
tfdlgm.zoo.list()                       # ['dlgm-mnist', 'iwae-mnist', 'lvae-mnist', 'vae-mnist']
model = tfdlgm.zoo.load("vae-mnist")    # compiled with the preset's optimizer
print(tfdlgm.zoo.card("vae-mnist"))
model.fit(tfdlgm.datasets.mnist("train"), epochs=1)   # fine-tune with plain Keras
```

From the shell: `tfdlgm zoo list`, `tfdlgm zoo card NAME`, and `tfdlgm eval|sample|impute NAME`
(`tfdlgm.cli`). `tools/train.py` (not shipped) trains a preset by its `recipe.json`.

Reading a preset (`list`, `card`, `config`, `metadata`) imports no Keras and no backend, so
`tfdlgm zoo list` starts fast; the functions that build or save a model import Keras.
"""

from __future__ import annotations

import builtins
import datetime
import difflib
import json
import os
import pathlib
import platform
import re
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from tfdlgm.files import TEMPORARY_PREFIX, atomic_write, sha256, write_json

if TYPE_CHECKING:
    from tfdlgm.models.base import LatentModel

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "card.md"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)  # what metadata.json lists
FORMAT_VERSION = 2
MAX_JSON_BYTES = 1 << 20  # config.json and metadata.json are read whole: 1 MiB at most
BACKUP_PREFIX = ".old-"  # an old preset folder, while `save_preset` swaps in the new one

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
_SHA256 = re.compile(r"[0-9a-f]{64}")


def presets_dir() -> pathlib.Path:
    """The folder of the shipped presets.

    `tfdlgm/presets/` in an installed wheel; in a source checkout (an editable install), the
    repository's top-level `zoo/`.
    """
    shipped = _PACKAGE_DIR / "presets"
    if shipped.is_dir():
        return shipped
    return _PACKAGE_DIR.parent / "zoo"


def list() -> builtins.list[str]:
    """The names of the shipped presets, sorted.

    Returns:
        A list of str, e.g. `['dlgm-mnist', 'iwae-mnist', 'lvae-mnist', 'vae-mnist']`.
    """
    root = presets_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if not p.name.startswith(".") and (p / METADATA_FILE).is_file()
    )


def card(name_or_path: str | os.PathLike) -> str:
    """The model card of a preset: what it is, how it was trained, its measured figures.

    Args:
        name_or_path: str or path-like, a preset name (see `list()`) or a preset folder's path.

    Returns:
        The text of the preset's `card.md`.

    Raises:
        ValueError: if there is no such preset, or its card is not what `metadata.json` lists.
    """
    folder = _resolve(name_or_path)
    _verify_files(folder, _read_metadata(folder), (CARD_FILE,))
    return (folder / CARD_FILE).read_text(encoding="utf-8")


def config(name_or_path: str | os.PathLike) -> dict:
    """The parsed `config.json` of a preset: the serialised model (`registered_name`, `config`).

    Raises:
        ValueError: if there is no such preset, or its `config.json` is not what
            `metadata.json` lists or not a serialised model.
    """
    folder = _resolve(name_or_path)
    _verify_files(folder, _read_metadata(folder), (CONFIG_FILE,))
    return _read_model_config(folder)


def metadata(name_or_path: str | os.PathLike) -> dict:
    """The parsed `metadata.json` of a preset: its files' checksums, versions, parameter count,
    date, training data and training, the evaluation protocol and the figures it measured.

    Raises:
        ValueError: if there is no such preset or its `metadata.json` is malformed.
    """
    return _read_metadata(_resolve(name_or_path))


def load(name_or_path: str | os.PathLike, compile: bool = True, objective=None) -> LatentModel:
    """Loads a preset by name, or from a folder with the preset layout.

    `metadata.json` is checked first, then every file it lists (size, then sha256), then the
    model is built by its registered class name and the weights are loaded.

    Args:
        name_or_path: str or path-like, a name from `list()` (a bare name is always a shipped
            preset) or the path of a preset folder (`"./my-vae"`, an absolute path or a
            `pathlib.Path`).
        compile: bool, compile the model with the optimizer of the preset's training
            (`metadata.json`'s `training.optimizer`) so that `fit` fine-tunes it. Defaults to
            `True`.
        objective: None, or the objective `fit` trains the loaded model on in place of the
            preset's (what `tfdlgm.objectives.get` takes), e.g. `{"name": "iwae",
            "num_samples": 10}` for importance-weighted fine-tuning; the weights are the
            same. Defaults to `None`.

    Returns:
        The model, a `tfdlgm.models.LatentModel`.

    Raises:
        ValueError: on a non-bool `compile`, an unknown name (the message lists the presets
            and the nearest one), a malformed `metadata.json` or `config.json` (it names the
            file and the field), a missing, truncated or corrupted file (it names the file),
            an unregistered class, or a config that does not match the weights.
    """
    import keras

    from tfdlgm import layers, objectives
    from tfdlgm.models.base import LatentModel

    if not isinstance(compile, bool):
        raise ValueError(f"`compile` must be a bool. Received: compile={compile!r}")
    folder = _resolve(name_or_path)
    preset = _read_metadata(folder)
    _verify_files(folder, preset, PRESET_FILES)
    model_spec = _read_model_config(folder)
    config_path = folder / CONFIG_FILE
    model_config = model_spec["config"]
    if objective is not None:
        objective = objectives.get(objective).get_config()  # its own error on a bad one
        model_config = {**model_config, "objective": objective}
    registered_name = model_spec["registered_name"]
    cls = keras.saving.get_registered_object(registered_name)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, LatentModel)):
        raise ValueError(
            f"{config_path}: `registered_name` {registered_name!r} is not a registered "
            "tfdlgm model. Import the module that defines it (registered with "
            "`keras.saving.register_keras_serializable`) or fix `registered_name`."
        )
    try:
        with layers.weights_to_load():  # no random kernels drawn only to be overwritten
            model = cls.from_config(model_config)
    except Exception as error:  # untrusted: any failure to build is the file's fault
        raise ValueError(
            f"{config_path}: `config` does not build a {cls.__name__} "
            f"({type(error).__name__}: {error})"
        ) from error
    weights_path = folder / WEIGHTS_FILE
    _check_weights_layout(model, weights_path, config_path, _describe(cls, model_config))
    try:
        model.load_weights(str(weights_path))
    except Exception as error:  # Keras raises ValueError, h5py OSError/KeyError on a bad file
        raise ValueError(
            f"The config {config_path} does not match the weights {weights_path}: the model it "
            f"describes cannot take them ({type(error).__name__}: {error})"
        ) from error
    if compile:
        optimizer = preset["training"]["optimizer"]
        try:
            optimizer = keras.optimizers.get(optimizer)
        except Exception as error:  # untrusted: Keras raises several kinds on a bad config
            raise ValueError(
                f"{folder / METADATA_FILE}: `training.optimizer` is not a Keras optimizer "
                f"({type(error).__name__}: {error}). Received: {optimizer!r}"
            ) from error
        model.compile(optimizer=optimizer)
    return model


def save_preset(
    model: LatentModel,
    folder: str | os.PathLike,
    training: dict,
    figures: dict,
    card_text: str,
    name: str | None = None,
    protocol: str = "",
    data: dict | None = None,
) -> pathlib.Path:
    """Writes a preset folder, replacing any preset there only once the new one loads.

    The new folder is written beside `folder` (`.tmp-<name>-*` in the same parent): weights,
    card, `config.json`, then `metadata.json` with their checksums; it is loaded back, then
    swapped in (the old folder is renamed `.old-<name>-*`, the new one into place, the old one
    removed). A failure at any point (a full disk, a file size limit, an exception) leaves the
    old preset as it was; leftovers of such a failure are swept by the next save of the same
    folder (a backup whose new folder never arrived is put back). The weights are saved from a
    fresh copy of the model (built from its config), so the file holds no optimizer state; they
    must be float32. A weights file already in `folder` that holds exactly these arrays is
    kept byte for byte (re-evaluating a preset leaves its weights alone).

    Args:
        model: the trained `LatentModel`.
        folder: str or path-like, the preset folder (its parent is created if needed).
        training: dict, how it was trained: at least `optimizer` (a Keras optimizer config or
            name, what `load(compile=True)` compiles with); `tools/train.py` also records
            `recipe`, `epochs`, `wall_time_minutes`, `batch_size`, `learning_rates`.
        figures: dict, the measured figures (`test_slice`: the figures on a few fixed inputs
            that a test compares the loaded model with).
        card_text: str, the markdown of `card.md`.
        name: str or None, the preset's name in `metadata.json` (a run written outside the
            zoo keeps its recipe's name). Defaults to `None`: the folder's name.
        protocol: str, how the figures were measured. Defaults to `""`.
        data: dict or None, the data the weights saw (`tools/train.py` records `dataset`,
            `split`, `examples`, `binarization`, `description`). Defaults to `None`.

    Returns:
        The folder, a `pathlib.Path`.
    """
    from tfdlgm.models.base import LatentModel

    if not isinstance(model, LatentModel):
        raise ValueError(
            f"`model` must be a tfdlgm LatentModel. Received: type {type(model).__name__}"
        )
    if not isinstance(training, dict) or "optimizer" not in training:
        keys = sorted(training) if isinstance(training, dict) else type(training).__name__
        raise ValueError(
            f"`training` must be a dict naming the `optimizer` (a Keras optimizer config). "
            f"Received: {keys}"
        )
    not_float32 = [
        w.path for w in model.weights if "float" in str(w.dtype) and w.dtype != "float32"
    ]
    if not_float32:
        raise ValueError(f"Preset weights must be float32. Received other dtypes for {not_float32}")
    folder = pathlib.Path(folder)
    if name is None:
        name = folder.name
    elif not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty str or None. Received: name={name!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _sweep(folder)
    staging = pathlib.Path(
        tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{folder.name}-", dir=folder.parent)
    )
    try:
        _write_preset(model, folder, staging, training, figures, card_text, name, protocol, data)
        load(staging, compile=False)
        _swap(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write_preset(model, old, staging, training, figures, card_text, name, protocol, data):
    """Fills the empty folder `staging` with the preset of `model` (`old`: the preset folder it
    replaces, whose weights file is kept where it holds the same arrays)."""
    import keras

    from tfdlgm import layers

    os.chmod(staging, 0o755)  # mkdtemp's 0o700 would reach the renamed folder
    with layers.weights_to_load():
        copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    weights = staging / WEIGHTS_FILE
    if (old / WEIGHTS_FILE).is_file() and not (old / WEIGHTS_FILE).is_symlink():
        shutil.copyfile(old / WEIGHTS_FILE, weights)  # kept if `_same_weights` says so
    atomic_write(weights, lambda path: copy.save_weights(str(path)), same=_same_weights)
    atomic_write(staging / CARD_FILE, lambda path: path.write_text(card_text, encoding="utf-8"))
    serialised = {
        "module": type(model).__module__,
        "class_name": type(model).__name__,
        "config": _jsonable(model.get_config()),
        "registered_name": keras.saving.get_registered_name(type(model)),
    }
    write_json(staging / CONFIG_FILE, serialised)
    preset = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": datetime.date.today().isoformat(),
        "parameters": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "versions": _versions(),
        "data": _jsonable(data or {}),
        "training": _jsonable(training),
        "protocol": protocol,
        "figures": _jsonable(figures),
        "files": {file: _file_record(staging / file) for file in PRESET_FILES},
    }
    _keep_other_files(old, staging)
    write_json(staging / METADATA_FILE, preset)  # last: the folder's commit point


def _keep_other_files(old: pathlib.Path, staging: pathlib.Path) -> None:
    """Copies what else the folder being replaced holds (a training recipe, a user's notes)
    into the new one, so that replacing a preset never deletes a file that is not part of it."""
    if not old.is_dir():
        return
    for item in old.iterdir():
        if item.name in (*PRESET_FILES, METADATA_FILE):
            continue
        if item.is_symlink():
            os.symlink(os.readlink(item), staging / item.name)
        elif item.is_dir():
            shutil.copytree(item, staging / item.name, symlinks=True)
        else:
            shutil.copy2(item, staging / item.name)


def _swap(staging: pathlib.Path, folder: pathlib.Path) -> None:
    """Moves the folder `staging` to `folder`, the old `folder` (if any) out of the way first."""
    if not folder.exists():
        os.rename(staging, folder)
        return
    backup = pathlib.Path(
        tempfile.mkdtemp(prefix=f"{BACKUP_PREFIX}{folder.name}-", dir=folder.parent)
    )
    os.rmdir(backup)  # a fresh name; rename needs it free
    os.rename(folder, backup)
    try:
        os.rename(staging, folder)
    except BaseException:
        os.rename(backup, folder)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _sweep(folder: pathlib.Path) -> None:
    """Removes what an earlier, failed save of `folder` left beside it: its staging folders,
    and its old folder's backup (put back first where the new folder never arrived)."""
    for leftover in folder.parent.glob(f"{BACKUP_PREFIX}{folder.name}-*"):
        if not folder.exists():
            os.rename(leftover, folder)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in folder.parent.glob(f"{TEMPORARY_PREFIX}{folder.name}-*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)


def _resolve(name_or_path) -> pathlib.Path:
    """The folder of a preset name or path; `ValueError` listing the presets if none.

    A path-like, or a str with a path separator, a leading `~` or `.` or `..` alone, is a
    path; any other str is the name of a shipped preset (never a folder of the working
    directory)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(
            "`name_or_path` must be a preset name or a folder path. "
            f"Received: type {type(name_or_path).__name__}"
        )
    text = os.fspath(name_or_path)
    if not isinstance(text, str):
        raise ValueError(f"`name_or_path` must be a str path. Received: {text!r}")
    separators = {"/", os.sep, os.altsep} - {None}
    is_path = (
        isinstance(name_or_path, os.PathLike)
        or any(separator in text for separator in separators)
        or text.startswith("~")
        or text in (".", "..")
    )
    if is_path:
        folder = pathlib.Path(text).expanduser()
        if not (folder / METADATA_FILE).is_file():
            raise ValueError(
                f"{folder} is not a preset folder: it has no {METADATA_FILE}. A preset folder "
                f"holds {METADATA_FILE}, {CONFIG_FILE}, {WEIGHTS_FILE} and {CARD_FILE}."
            )
        return folder
    names = list()
    if text not in names:
        nearest = difflib.get_close_matches(text, names, n=1, cutoff=0.0)
        hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
        raise ValueError(
            f"Unknown preset {text!r}.{hint} Known presets: {names} (in {presets_dir()}). "
            "Pass a preset folder's path (e.g. './my-preset') to load one from elsewhere."
        )
    return presets_dir() / text


def _read_json(path: pathlib.Path):
    """The JSON value in `path`, at most `MAX_JSON_BYTES` (checked before it is read)."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ValueError(f"{path} is not readable ({error}).") from error
    if size > MAX_JSON_BYTES:
        raise ValueError(
            f"{path} is {size:,} bytes; a preset's JSON files are at most {MAX_JSON_BYTES:,}."
        )
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(MAX_JSON_BYTES + 1).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"{path} is not a readable JSON file ({error}).") from error


def _read_metadata(folder: pathlib.Path) -> dict:
    """`metadata.json`, its schema checked: `files` lists the preset's files by plain names,
    each with an int `bytes` and a sha256 hex digest; `training.optimizer` is there."""
    path = folder / METADATA_FILE
    _check_file_name(folder, METADATA_FILE, "the file")  # not a link out of the folder
    preset = _read_json(path)
    if not isinstance(preset, dict):
        raise ValueError(
            f"{path} is not a preset's metadata: it must hold a JSON object. "
            f"Received: {type(preset).__name__}"
        )
    for key in ("files", "training", "figures"):
        if not isinstance(preset.get(key), dict):
            raise ValueError(
                f"{path}: `{key}` must be a JSON object. Received: {_short(preset.get(key))}"
            )
    files = preset["files"]
    missing = [file for file in PRESET_FILES if file not in files]
    if missing:
        raise ValueError(
            f"{path}: `files` must list {builtins.list(PRESET_FILES)} with their sizes and "
            f"sha256. Missing: {missing}"
        )
    for file, record in files.items():
        _check_file_name(folder, file)
        if not (
            isinstance(record, dict)
            and isinstance(record.get("bytes"), int)
            and not isinstance(record["bytes"], bool)
            and record["bytes"] >= 0
            and isinstance(record.get("sha256"), str)
            and _SHA256.fullmatch(record["sha256"])
        ):
            raise ValueError(
                f"{path}: `files[{file!r}]` must be {{'bytes': a non-negative int, 'sha256': "
                f"64 lowercase hex digits}}. Received: {_short(record)}"
            )
    if "optimizer" not in preset["training"]:
        raise ValueError(f"{path}: `training.optimizer` is missing (what `load` compiles with).")
    return preset


def _check_file_name(folder: pathlib.Path, file, field: str = "`files` entry") -> None:
    """Raises `ValueError` unless `file` is a plain name of a file inside `folder`."""
    path = folder / METADATA_FILE
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    if (
        not isinstance(file, str)
        or file in ("", ".", "..")
        or "\0" in file
        or any(separator in file for separator in separators)
        or os.path.isabs(file)
    ):
        raise ValueError(
            f"{path}: `files` must name files inside the folder by plain names (no '..', no "
            f"separators, no absolute paths). Received: {file!r}"
        )
    target = folder / file
    if target.is_symlink() and target.resolve().parent != folder.resolve():
        raise ValueError(
            f"{path}: {field} {file!r} is a symbolic link out of the folder "
            f"(to {target.resolve()}); a preset's files must be inside it."
        )


def _read_model_config(folder: pathlib.Path) -> dict:
    """`config.json`, its schema checked: a serialised model with a `registered_name` str and
    a `config` object."""
    path = folder / CONFIG_FILE
    spec = _read_json(path)
    if not isinstance(spec, dict):
        raise ValueError(
            f"{path} is not a serialised model: it must hold a JSON object. "
            f"Received: {type(spec).__name__}"
        )
    if not isinstance(spec.get("registered_name"), str):
        raise ValueError(
            f"{path}: `registered_name` must be a str such as 'tfdlgm>VAE'. "
            f"Received: {_short(spec.get('registered_name'))}"
        )
    if not isinstance(spec.get("config"), dict):
        raise ValueError(
            f"{path}: `config` must be a JSON object (the model's get_config()). "
            f"Received: {_short(spec.get('config'))}"
        )
    return spec


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _verify_files(folder: pathlib.Path, preset: dict, names) -> None:
    """Checks the files `names` against `metadata.json`'s records: size, then sha256."""
    for name in names:
        expected = preset["files"][name]
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path} is missing: {folder / METADATA_FILE} lists it.")
        size = path.stat().st_size
        if size != expected["bytes"]:
            problem = "is truncated" if size < expected["bytes"] else "has extra bytes"
            raise ValueError(
                f"{path} {problem}: {size} bytes, expected {expected['bytes']} "
                f"({folder / METADATA_FILE}). Restore the file (e.g. reinstall tfdlgm)."
            )
        digest = sha256(path)
        if digest != expected["sha256"]:
            raise ValueError(
                f"{path} is corrupted: its sha256 is {digest}, expected {expected['sha256']} "
                f"({folder / METADATA_FILE}). Restore the file (e.g. reinstall tfdlgm)."
            )


def _read_datasets(path: pathlib.Path, read) -> dict:
    """`{variable path: read(dataset)}` for every array in a Keras `.weights.h5` file."""
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, item: (
                found.__setitem__(name, read(item)) if isinstance(item, h5py.Dataset) else None
            )
        )
    return found


def _weight_shapes(path: pathlib.Path) -> dict:
    """`{variable path: shape}` of every array in a weights file (its data is not read)."""
    return _read_datasets(path, lambda item: item.shape)


def _weight_arrays(path: pathlib.Path) -> dict:
    """`{variable path: array}` of every array in a weights file."""
    return _read_datasets(path, lambda item: item[()])


def _same_weights(old: pathlib.Path, new: pathlib.Path) -> bool:
    """Whether two weights files hold the same variables, exactly. The random stream's state
    is left out, as in `_check_weights_layout`: it moves whenever the model samples, so a
    preset evaluated again would otherwise get a new file of the same weights."""
    from tfdlgm.models.base import _SEED_STATE

    try:
        before, after = (
            {k: v for k, v in _weight_arrays(path).items() if not k.endswith(_SEED_STATE)}
            for path in (old, new)
        )
    except OSError:  # an unreadable old file is replaced
        return False
    return before.keys() == after.keys() and all(
        before[name].dtype == after[name].dtype and np.array_equal(before[name], after[name])
        for name in before
    )


def _describe(cls, config: dict) -> str:
    """`VAE(latent_dim=50, hidden=[200, 200], ...)`: the settings that shape the weights."""
    keys = ("latent_dim", "latent_dims", "hidden", "data_dim", "covariance", "likelihood")
    settings = ", ".join(f"{key}={config[key]!r}" for key in keys if key in config)
    return f"{cls.__name__}({settings})"


def _check_weights_layout(
    model, weights_path: pathlib.Path, config_path: pathlib.Path, described: str = "the model"
) -> None:
    """Raises `ValueError` unless the file holds exactly the variables `model` would save.

    Keras' `load_weights` does not reject every mismatch (a variable of another shape may
    load silently), so the layout the config's model saves is compared with the file's.
    """
    from tfdlgm.models.base import _SEED_STATE

    try:
        found = _weight_shapes(weights_path)
    except OSError as error:
        raise ValueError(f"{weights_path} is not a readable weights file ({error}).") from error
    with tempfile.TemporaryDirectory() as scratch:
        expected_path = pathlib.Path(scratch) / WEIGHTS_FILE
        model.save_weights(str(expected_path))
        expected = _weight_shapes(expected_path)
    # The random stream's state is not part of the layout: a file may or may not hold it.
    found, expected = (
        {k: v for k, v in d.items() if not k.endswith(_SEED_STATE)} for d in (found, expected)
    )
    if found == expected:
        return
    differences = [
        f"{name}: config gives {expected.get(name, 'nothing')}, "
        f"file has {found.get(name, 'nothing')}"
        for name in sorted(set(found) | set(expected))
        if found.get(name) != expected.get(name)
    ]
    shown = "; ".join(differences[:4]) + ("; ..." if len(differences) > 4 else "")
    raise ValueError(
        f"The config {config_path} does not match the weights {weights_path}: the config "
        f"describes {described}, {_summary(expected)}; the weights file holds "
        f"{_summary(found)}. {len(differences)} variables differ ({shown}). Fix "
        f"`config` in {config_path} or restore the preset's files."
    )


def _summary(shapes: dict) -> str:
    parameters = sum(int(np.prod(shape)) for shape in shapes.values())
    return f"{len(shapes)} arrays of {parameters:,} numbers"


def _file_record(path: pathlib.Path) -> dict:
    return {"sha256": sha256(path), "bytes": path.stat().st_size}


def _jsonable(value):
    """`value` with tuples as lists and NumPy scalars as Python numbers (JSON round-trips)."""
    return json.loads(
        json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    )


def _versions() -> dict:
    import keras

    import tfdlgm

    versions = {
        "tfdlgm": tfdlgm.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for module in ("tensorflow_probability", "tensorflow", "jax", "h5py"):
        imported = sys.modules.get(module)
        if imported is not None:
            versions[module] = getattr(imported, "__version__", "unknown")
    return versions
