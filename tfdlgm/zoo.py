"""Pretrained presets: `list()`, `load(name_or_path)`, `card(name)`, and `save_preset`.

A preset is a folder (`zoo/<name>/` in the repository, shipped in the package as
`tfdlgm/presets/<name>/`) holding:

- `config.json`: the model's registered class name and its `get_config()`, the training recipe
  (command, epochs, batch size, optimizer, wall time, device), the evaluation protocol and the
  measured figures, the size and sha256 of every other file in the folder, and the versions it
  was made with;
- `model.weights.h5`: the weights (float32, no optimizer state);
- `card.md`: what the model is, the paper it follows, how it was trained, the figures.

`load` checks every file's size and sha256 against `config.json` before it reads a weight,
builds the model by its registered class name (`keras.saving.get_registered_object`) and
loads the weights into it; any failure is a `ValueError` naming the file and the problem, and
no partly loaded model is returned. A folder with the same layout loads by its path.

```python
tfdlgm.zoo.list()                       # ['vae-mnist']
model = tfdlgm.zoo.load("vae-mnist")    # compiled with the recipe's optimizer
print(tfdlgm.zoo.card("vae-mnist"))
model.fit(tfdlgm.datasets.mnist("train"), epochs=1)   # fine-tune with plain Keras
```

From the shell: `tfdlgm zoo list`, `tfdlgm zoo card NAME`, and `tfdlgm eval|sample|impute NAME`
(`tfdlgm.cli`).
"""

from __future__ import annotations

import builtins
import datetime
import difflib
import json
import os
import pathlib
import platform
import sys
import tempfile

import keras
import numpy as np

from tfdlgm import layers, objectives
from tfdlgm.files import atomic_write, sha256
from tfdlgm.models.base import _SEED_STATE, LatentModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "card.md"
FORMAT_VERSION = 1

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent


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
        A list of str, e.g. `['vae-mnist']`.
    """
    root = presets_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def card(name: str) -> str:
    """The markdown card of a preset: what it is, how it was trained, its measured figures.

    Args:
        name: str, a preset name (see `list()`) or a preset folder's path.

    Returns:
        The text of the preset's `card.md`.

    Raises:
        ValueError: if there is no such preset.
    """
    folder = _resolve(name)
    return (folder / CARD_FILE).read_text(encoding="utf-8")


def config(name_or_path: str | os.PathLike) -> dict:
    """The parsed `config.json` of a preset (recipe, figures, checksums, versions)."""
    return _read_config(_resolve(name_or_path))


def load(name_or_path: str | os.PathLike, compile: bool = True, objective=None) -> LatentModel:
    """Loads a preset by name, or from a folder with the preset layout.

    Every file listed in `config.json` is checked (size, then sha256) before the model is
    built by its registered class name and the weights are loaded.

    Args:
        name_or_path: str or path-like, a name from `list()` or the path of a preset folder.
        compile: bool, compile the model with the recipe's optimizer so that `fit`
            fine-tunes it. Defaults to `True`.
        objective: None, or the objective `fit` trains the loaded model on in place of the
            preset's (what `tfdlgm.objectives.get` takes), e.g. `{"name": "iwae",
            "num_samples": 10}` for importance-weighted fine-tuning; the weights are the
            same. Defaults to `None`.

    Returns:
        The model, a `tfdlgm.models.LatentModel`.

    Raises:
        ValueError: on an unknown name (the message lists the presets and the nearest one),
            a missing, truncated or corrupted file (it names the file), an unregistered class,
            or a config that does not match the weights.
    """
    folder = _resolve(name_or_path)
    preset = _read_config(folder)
    config_path = folder / CONFIG_FILE
    _verify_files(folder, preset)
    model_spec = preset["model"]
    if objective is not None:
        objective = objectives.get(objective).get_config()  # its own error on a bad one
        model_spec = {**model_spec, "config": {**model_spec["config"], "objective": objective}}
    cls = keras.saving.get_registered_object(model_spec["class_name"])
    if cls is None or not (isinstance(cls, type) and issubclass(cls, LatentModel)):
        raise ValueError(
            f"{config_path}: model class {model_spec['class_name']!r} is not a registered "
            "tfdlgm model. Import the module that defines it (registered with "
            "`keras.saving.register_keras_serializable`) or fix `model.class_name`."
        )
    try:
        with layers.weights_to_load():  # no random kernels drawn only to be overwritten
            model = cls.from_config(model_spec["config"])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{config_path}: `model.config` does not build a {cls.__name__}: {error}"
        ) from error
    weights_path = folder / WEIGHTS_FILE
    _check_weights_layout(model, weights_path, config_path, _describe(cls, model_spec["config"]))
    try:
        model.load_weights(str(weights_path))
    except Exception as error:  # Keras raises ValueError, h5py OSError/KeyError on a bad file
        raise ValueError(
            f"The config {config_path} does not match the weights {weights_path}: the model it "
            f"describes cannot take them ({type(error).__name__}: {error})"
        ) from error
    if compile:
        model.compile(optimizer=keras.optimizers.get(preset["recipe"]["optimizer"]))
    return model


def save_preset(
    model: LatentModel,
    folder: str | os.PathLike,
    recipe: dict,
    figures: dict,
    card_text: str,
    name: str | None = None,
) -> pathlib.Path:
    """Writes a preset folder: weights, card, then `config.json` with their checksums.

    The weights are saved from a fresh copy of the model (built from its config), so the file
    holds no optimizer state; they must be float32. A weights file already in `folder` that
    holds exactly these arrays is kept byte for byte (re-evaluating a preset leaves its
    weights alone). Each file is written to a temporary name
    then moved into place, `config.json` last, and the folder is loaded back to check it.

    Args:
        model: the trained `LatentModel`.
        folder: str or path-like, the preset folder (created if needed).
        recipe: dict, how it was trained: at least `optimizer` (a Keras optimizer config or
            name, what `load(compile=True)` compiles with), and `command`, `epochs`,
            `batch_size`, `wall_time_minutes`, `device`.
        figures: dict, the measured figures and the protocol that gave them.
        card_text: str, the markdown of `card.md`.
        name: str or None, the preset's name in `config.json` (a run written outside the zoo
            keeps its recipe's name, so it can be copied in or trained on from there).
            Defaults to `None`: the folder's name.

    Returns:
        The folder, a `pathlib.Path`.
    """
    if not isinstance(model, LatentModel):
        raise ValueError(
            f"`model` must be a tfdlgm LatentModel. Received: type {type(model).__name__}"
        )
    if "optimizer" not in recipe:
        raise ValueError(
            "`recipe` must name the `optimizer` (a Keras optimizer config). "
            f"Received keys: {sorted(recipe)}"
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
    folder.mkdir(parents=True, exist_ok=True)
    class_name = keras.saving.get_registered_name(type(model))
    with layers.weights_to_load():
        copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    atomic_write(
        folder / WEIGHTS_FILE, lambda path: copy.save_weights(str(path)), same=_same_weights
    )
    atomic_write(folder / CARD_FILE, lambda path: path.write_text(card_text, encoding="utf-8"))
    preset = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "model": {"class_name": class_name, "config": _jsonable(model.get_config())},
        "parameters": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "recipe": _jsonable(recipe),
        "figures": _jsonable(figures),
        "files": {name: _file_record(folder / name) for name in (WEIGHTS_FILE, CARD_FILE)},
        "versions": _versions(),
        "created": datetime.date.today().isoformat(),
    }
    text = json.dumps(preset, indent=2) + "\n"
    atomic_write(folder / CONFIG_FILE, lambda path: path.write_text(text, encoding="utf-8"))
    load(folder, compile=False)
    return folder


def _resolve(name_or_path) -> pathlib.Path:
    """The folder of a preset name or path; `ValueError` listing the presets if none."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(
            "`name_or_path` must be a preset name or a folder path. "
            f"Received: type {type(name_or_path).__name__}"
        )
    text = os.fspath(name_or_path)
    is_path = isinstance(name_or_path, os.PathLike) or os.sep in text or os.path.isdir(text)
    if is_path:
        folder = pathlib.Path(text).expanduser()
        if not (folder / CONFIG_FILE).is_file():
            raise ValueError(
                f"{folder} is not a preset folder: it has no {CONFIG_FILE}. A preset folder "
                f"holds {CONFIG_FILE}, {WEIGHTS_FILE} and {CARD_FILE}."
            )
        return folder
    names = list()
    if text not in names:
        nearest = difflib.get_close_matches(text, names, n=1, cutoff=0.0)
        hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
        raise ValueError(
            f"Unknown preset {text!r}.{hint} Known presets: {names} (in {presets_dir()}). "
            "Pass a preset folder's path to load one from elsewhere."
        )
    return presets_dir() / text


def _read_config(folder: pathlib.Path) -> dict:
    path = folder / CONFIG_FILE
    try:
        preset = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable JSON preset config ({error}).") from error
    keys = ("model", "recipe", "figures", "files")
    missing = [key for key in keys if key not in preset] if isinstance(preset, dict) else keys
    if missing:
        raise ValueError(f"{path} is not a preset config: it lacks the keys {missing}.")
    if not {WEIGHTS_FILE, CARD_FILE} <= set(preset["files"]):
        raise ValueError(
            f"{path}: `files` must list {WEIGHTS_FILE} and {CARD_FILE} with their sha256. "
            f"Received: {sorted(preset['files'])}"
        )
    return preset


def _verify_files(folder: pathlib.Path, preset: dict) -> None:
    for name, expected in preset["files"].items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path} is missing: {folder / CONFIG_FILE} lists it.")
        size = path.stat().st_size
        if size != expected["bytes"]:
            problem = "is truncated" if size < expected["bytes"] else "has extra bytes"
            raise ValueError(
                f"{path} {problem}: {size} bytes, expected {expected['bytes']} "
                f"({folder / CONFIG_FILE}). Restore the file (e.g. reinstall tfdlgm)."
            )
        digest = sha256(path)
        if digest != expected["sha256"]:
            raise ValueError(
                f"{path} is corrupted: its sha256 is {digest}, expected {expected['sha256']} "
                f"({folder / CONFIG_FILE}). Restore the file (e.g. reinstall tfdlgm)."
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
        f"`model.config` in {config_path} or restore the preset's files."
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
