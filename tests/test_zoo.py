"""The zoo: shipped presets load, match their checksums and reproduce their recorded figures;
preset folders are untrusted input; `save_preset` replaces a folder atomically; the training
tool (`tools/train.py`) follows each preset's `recipe.json`."""

import builtins
import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import time
import types

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfdlgm
from tfdlgm import evaluation, zoo

PRESETS = zoo.list()
# The data set of each preset, as `tfdlgm.evaluation` names it, from what its metadata records.
DATASET_KEYS = {"MNIST": "mnist", "Frey faces": "frey_faces"}
# The images of a data set's training split(s): the split the weights saw last.
TRAINING_EXAMPLES = {
    ("mnist", "train"): 50_000,
    ("mnist", "train+validation"): 60_000,
    ("frey_faces", "train"): 1_575,
    ("frey_faces", "train+validation"): 1_770,
}
ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_TOOL = ROOT / "tools" / "train.py"
SHIPPED_FILES = ["card.md", "config.json", "metadata.json", "model.weights.h5"]
MACHINE_NARRATIVE = re.compile(r"/work|/tmp|taskset|session|--max-minutes|\$OUT")


@pytest.fixture(scope="module")
def vae():
    return zoo.load("vae-mnist")


def _dataset(name):
    return DATASET_KEYS[zoo.metadata(name)["data"]["dataset"]]


@functools.lru_cache(maxsize=2)
def _test_slice(dataset):
    """The first 100 test examples of a protocol's test set (the presets' `test_slice`)."""
    return evaluation.protocol_test_set(dataset=dataset)[:100]


@pytest.fixture(scope="module")
def test_slice(mnist_path):
    """The first 100 MNIST test images, binarised once with seed 0."""
    return _test_slice("mnist")


@pytest.fixture
def preset_copy(tmp_path):
    folder = tmp_path / "vae-copy"
    shutil.copytree(zoo.presets_dir() / "vae-mnist", folder)
    return folder


def _rewrite(folder, file_name, value):
    """Writes `value` (JSON, or bytes as they are) to `folder/file_name` and, for a file other
    than metadata.json, its new size and sha256 into metadata.json, so that the checksums pass
    and the file's content is what is checked."""
    path = folder / file_name
    path.write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())
    if file_name != "metadata.json":
        metadata = json.loads((folder / "metadata.json").read_text())
        data = path.read_bytes()
        metadata["files"][file_name] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
        (folder / "metadata.json").write_text(json.dumps(metadata))


def test_the_zoo_ships_its_presets():
    assert PRESETS == [
        "dlgm-frey",
        "dlgm-mnist",
        "fa-frey",
        "iwae-mnist",
        "lvae-mnist",
        "vae-frey",
        "vae-mnist",
    ]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_a_model_config_weights_a_card_and_metadata_listing_them(name):
    folder = zoo.presets_dir() / name
    metadata = json.loads((folder / "metadata.json").read_text())
    assert sorted(metadata["files"]) == ["card.md", "config.json", "model.weights.h5"]
    shipped = sorted(p.name for p in folder.iterdir() if p.name != "recipe.json")
    assert shipped == SHIPPED_FILES
    for file_name, record in metadata["files"].items():
        data = (folder / file_name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert len(data) == record["bytes"]
    assert (folder / "model.weights.h5").stat().st_size < 10_000_000
    config = zoo.config(name)  # the serialised model alone
    assert sorted(config) == ["class_name", "config", "module", "registered_name"]
    assert (
        keras.saving.get_registered_object(config["registered_name"]).__name__
        == (config["class_name"])
    )
    training = metadata["training"]
    assert training["recipe"] == name and training["epochs"] > 0
    for key in ("batch_size", "optimizer", "learning_rates", "wall_time_minutes"):
        assert key in training
    examples = TRAINING_EXAMPLES[_dataset(name), metadata["data"]["split"]]
    assert metadata["parameters"] > 0 and metadata["data"]["examples"] == examples
    for file_name in ("card.md", "config.json", "metadata.json", "recipe.json"):
        if not (folder / file_name).is_file():  # an installed wheel ships no recipe
            continue
        found = MACHINE_NARRATIVE.findall((folder / file_name).read_text())
        assert not found, f"{name}/{file_name}: {found}"


@pytest.mark.parametrize("name", PRESETS)
def test_every_card_has_front_matter_the_one_command_and_the_figures(name):
    card, figures = zoo.card(name), zoo.metadata(name)["figures"]
    front, body = card.split("\n---\n", 1)
    assert front.startswith("---\nlicense: apache-2.0\n") and f"- {_dataset(name)}\n" in front
    assert f"value: {figures['log_likelihood']:.2f}\n" in front
    for section in ("Model", "Intended use and limitations", "Training data"):
        assert f"\n## {section}\n" in body
    for section in ("Training procedure", "Evaluation", "Citation"):
        assert f"\n## {section}\n" in body
    assert f"```bash\nKERAS_BACKEND=jax python tools/train.py {name}\n```" in body
    assert f"| {figures['log_likelihood']:.2f} |" in body and "@inproceedings{" in body


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_compiled_and_samples_its_data(name):
    model = zoo.load(name)
    assert model.optimizer is not None
    samples = np.asarray(model.sample(5, seed=0))
    assert samples.shape == (5, model.data_dim)
    means = np.asarray(model.sample(5, seed=0, mean=True))
    if _dataset(name) == "mnist":  # binary images; probabilities as means
        assert set(np.unique(samples)) <= {0.0, 1.0}
        assert np.all((means >= 0) & (means <= 1))  # float32 sigmoid reaches 1 for logits > ~17
        assert np.mean((means > 0) & (means < 1)) > 0.5
    else:  # real values around grey levels in [0, 1], drawn around the means
        assert np.all(np.isfinite(samples)) and not np.array_equal(samples, means)
        assert 0 < np.median(means) < 1


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_reproduces_its_recorded_figures_on_the_test_slice(name, mnist_path):
    test_slice = _test_slice(_dataset(name))
    model = zoo.load(name, compile=False)
    figures = zoo.metadata(name)["figures"]
    expected = figures["test_slice"]
    # Per layer, the analytic KL and the mean |posterior mean|, from 4 random streams. Where
    # they are a function of x alone (one-layer models, a ladder's top layer) they must match
    # the record to float precision; below a sampled layer (hierarchical models: q and p of
    # layer i depend on z_{i+1}) the record holds one draw, so the draws' mean is within 5%.
    draws = np.array([_slice_layer_figures(model, test_slice, seed) for seed in range(4)])
    recorded = np.array([expected["kl"], expected["posterior_mean_abs"]])  # [2, layers]
    fixed = np.all(np.isclose(draws, draws[0], rtol=1e-6, atol=0), axis=0)
    assert fixed[:, -1].all() or len(model.latent_dims) > 1  # one layer: no sampling at all
    np.testing.assert_allclose(draws[0][fixed], recorded[fixed], rtol=1e-4)
    np.testing.assert_allclose(draws.mean(axis=0)[~fixed], recorded[~fixed], rtol=0.05)
    # Monte Carlo (10,000 draws; the backends' random streams differ): within 0.3 nats.
    elbo = model.elbo(test_slice, num_samples=100, seed=0).mean()
    np.testing.assert_allclose(elbo, expected["elbo_100_samples_seed_0"], atol=0.3)
    assert figures["elbo"] < figures["L_5"] < figures["L_50"] < figures["log_likelihood"]
    if _dataset(name) == "mnist":  # probabilities of binary images
        assert figures["log_likelihood"] < 0
    if "exact_log_likelihood" in figures:  # E[L_k] <= log p(x), to Monte Carlo noise
        assert figures["log_likelihood"] < figures["exact_log_likelihood"] + 0.05
        exact = model.exact_log_likelihood(test_slice).mean()
        np.testing.assert_allclose(exact, figures["test_slice"]["exact_log_likelihood"], rtol=1e-5)


def _slice_layer_figures(model, x, seed):
    """`[[KL per layer], [mean |E_q[z_l]| per layer]]` of one pass with the stream at `seed`."""
    with model._seeded(seed):
        out = model(x)
        means = [np.abs(keras.ops.convert_to_numpy(q.mean())).mean() for q in model.encode(x)]
    kl = [keras.ops.convert_to_numpy(out[f"kl_{i + 1}"]).mean() for i in range(len(means))]
    return [kl, means]


def test_unknown_name_lists_the_presets_and_the_nearest():
    with pytest.raises(ValueError, match=r"Unknown preset 'vae-mnst'.*Did you mean 'vae-mnist'"):
        zoo.load("vae-mnst")
    with pytest.raises(ValueError, match=r"Known presets: \[.*'vae-mnist'.*\]"):
        zoo.card("no-such-model")


def test_a_bare_name_is_a_shipped_preset_and_a_path_is_a_folder(
    vae, preset_copy, tmp_path, monkeypatch
):
    """A folder `./vae-mnist` in the working directory never replaces the shipped preset."""
    crafted = tmp_path / "cwd" / "vae-mnist"
    shutil.copytree(preset_copy, crafted)
    metadata = json.loads((crafted / "metadata.json").read_text())
    metadata["figures"]["log_likelihood"] = -1.0
    (crafted / "metadata.json").write_text(json.dumps(metadata))
    monkeypatch.chdir(tmp_path / "cwd")
    shipped = zoo.metadata("vae-mnist")["figures"]["log_likelihood"]
    assert shipped == zoo.metadata(zoo.presets_dir() / "vae-mnist")["figures"]["log_likelihood"]
    assert shipped != -1.0
    for path in ("./vae-mnist", crafted, str(crafted), pathlib.Path("vae-mnist")):
        assert zoo.metadata(path)["figures"]["log_likelihood"] == -1.0
    model = zoo.load("./vae-mnist", compile=False)
    for a, b in zip(model.get_weights(), vae.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    shutil.copytree(preset_copy, tmp_path / "cwd" / "my-vae")
    with pytest.raises(ValueError, match="Unknown preset 'my-vae'"):
        zoo.load("my-vae")  # a name, although ./my-vae is a preset folder


def test_compile_must_be_a_bool():
    with pytest.raises(ValueError, match="`compile` must be a bool. Received: compile='no'"):
        zoo.load("vae-mnist", compile="no")


@pytest.mark.parametrize("file_name", ["model.weights.h5", "card.md", "config.json"])
def test_a_flipped_byte_is_caught_before_loading(preset_copy, file_name):
    path = preset_copy / file_name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{file_name} is corrupted: its sha256 is"):
        zoo.load(preset_copy)


def test_a_truncated_weights_file_is_named(preset_copy):
    path = preset_copy / "model.weights.h5"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model.weights.h5 is truncated: 1000 bytes, expected"):
        zoo.load(preset_copy)


@pytest.mark.parametrize(
    "change", [{"latent_dim": 40}, {"hidden": [200]}], ids=["latent_dim", "hidden"]
)
def test_a_config_that_does_not_match_the_weights_is_named(preset_copy, change):
    config = json.loads((preset_copy / "config.json").read_text())
    config["config"].update(change)
    _rewrite(preset_copy, "config.json", config)
    with pytest.raises(ValueError, match=r"config .*config.json does not match the weights") as e:
        zoo.load(preset_copy)
    message = str(e.value)
    # The preset config, as the model it describes, and what the weights file holds.
    described = ", ".join(
        f"{key}={value!r}" for key, value in config["config"].items() if key in change
    )
    assert "the config describes VAE(" in message and described in message, message
    weights = preset_copy / "model.weights.h5"
    held = {k: v for k, v in zoo._weight_shapes(weights).items() if "seed_generator" not in k}
    size = sum(int(np.prod(shape)) for shape in held.values())
    assert f"the weights file holds {len(held)} arrays of {size:,} numbers" in message, message
    assert "encoder" in message or "decoder" in message or "posterior" in message


def test_an_unregistered_class_is_named(preset_copy):
    config = json.loads((preset_copy / "config.json").read_text())
    config["registered_name"] = "tfdlgm>NoSuchModel"
    _rewrite(preset_copy, "config.json", config)
    with pytest.raises(ValueError, match=r"'tfdlgm>NoSuchModel' is not a registered"):
        zoo.load(preset_copy)


def test_a_folder_path_loads_the_same_model(vae, preset_copy):
    for name_or_path in (preset_copy, str(preset_copy)):
        model = zoo.load(name_or_path, compile=False)
        assert getattr(model, "optimizer", None) is None
        for a, b in zip(model.get_weights(), vae.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="is not a preset folder: it has no metadata.json"):
        zoo.load(preset_copy / "missing")


@pytest.mark.parametrize(
    "entry", ["../vae-mnist/card.md", "/etc/passwd", "sub/card.md", "..", "", "a\\b"]
)
def test_metadata_files_must_be_plain_names_inside_the_folder(preset_copy, entry):
    metadata = json.loads((preset_copy / "metadata.json").read_text())
    metadata["files"][entry] = metadata["files"]["card.md"]
    _rewrite(preset_copy, "metadata.json", metadata)
    with pytest.raises(ValueError, match=r"metadata.json: `files` must name files inside"):
        zoo.load(preset_copy)


def test_a_listed_file_may_not_be_a_link_out_of_the_folder(preset_copy, tmp_path):
    outside = tmp_path / "outside.md"
    shutil.copy(preset_copy / "card.md", outside)
    (preset_copy / "card.md").unlink()
    (preset_copy / "card.md").symlink_to(outside)
    with pytest.raises(ValueError, match=r"`files` entry 'card.md' is a symbolic link out"):
        zoo.load(preset_copy)


_MALFORMED = {
    "metadata not an object": ("metadata.json", [], r"metadata.json is not a preset's metadata"),
    "files missing": ("metadata.json", {"training": {}, "figures": {}}, r"`files` must be"),
    "files a list": ("metadata.json", {"files": [], "training": {}, "figures": {}}, r"`files`"),
    "bytes a str": ("metadata.json", "bytes", r"`files\['card.md'\]` must be"),
    "sha256 short": ("metadata.json", "sha256", r"`files\['card.md'\]` must be"),
    "no optimizer": ("metadata.json", "optimizer", r"`training.optimizer` is missing"),
    "bogus optimizer": ("metadata.json", "bogus", r"`training.optimizer` is not a Keras"),
    "deep nesting": ("metadata.json", b"[" * 100_000 + b"]" * 100_000, r"not a readable JSON"),
    "oversized": ("metadata.json", b" " * (2 << 20), r"bytes; a preset's JSON files are at most"),
    "not json": ("metadata.json", b"{'files'", r"metadata.json is not a readable JSON file"),
    "config a list": ("config.json", [], r"config.json is not a serialised model"),
    "no registered name": ("config.json", {"config": {}}, r"`registered_name` must be a str"),
    "config a str": ("config.json", {"registered_name": "tfdlgm>VAE", "config": "x"}, "`config`"),
    "bad setting": ("config.json", {"latent_dim": "fifty"}, r"`config` does not build a VAE"),
    "unknown setting": ("config.json", {"no_such": 1}, r"`config` does not build a VAE"),
}


@pytest.mark.parametrize("case", sorted(_MALFORMED))
def test_every_malformed_field_is_a_value_error_naming_the_file_and_field(preset_copy, case):
    file_name, value, message = _MALFORMED[case]
    metadata = json.loads((preset_copy / "metadata.json").read_text())
    config = json.loads((preset_copy / "config.json").read_text())
    if value == "bytes":
        metadata["files"]["card.md"]["bytes"] = "12"
    elif value == "sha256":
        metadata["files"]["card.md"]["sha256"] = "abc"
    elif value == "optimizer":
        del metadata["training"]["optimizer"]
    elif value == "bogus":
        metadata["training"]["optimizer"] = {"class_name": "NoSuchOptimizer", "config": []}
    elif file_name == "config.json" and isinstance(value, dict) and "config" not in value:
        value = {**config, "config": {**config["config"], **value}}
    if isinstance(value, str):
        value = metadata
    _rewrite(preset_copy, file_name, value)
    with pytest.raises(ValueError, match=message):
        zoo.load(preset_copy)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)  # sizes: no model too large to build
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_KEYS = ["files", "training", "figures", "config", "registered_name", "optimizer", "bytes"]
_KEYS += ["sha256", "card.md", "config.json", "model.weights.h5", "latent_dim", "hidden"]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    file_name=st.sampled_from(["metadata.json", "config.json"]),
    path=st.lists(st.sampled_from(_KEYS), min_size=1, max_size=3),
    value=_JSON,
)
def test_fuzzed_preset_json_loads_or_raises_value_error_and_reads_nothing_outside(
    tmp_path_factory, monkeypatch, file_name, path, value
):
    """Any value at a key path of a copied preset's JSON files: `load` either succeeds or
    raises `ValueError`, and reads no file outside the folder."""
    folder = tmp_path_factory.mktemp("fuzz") / "vae-copy"
    shutil.copytree(zoo.presets_dir() / "vae-mnist", folder)
    document = node = json.loads((folder / file_name).read_text())
    for key in path[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            break
        node = child
    if isinstance(node, dict):
        node[path[-1]] = value
    else:
        document = value
    _rewrite(folder, file_name, document)
    read = []
    real_open, real_sha256 = builtins.open, zoo.sha256

    def recording_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and "r" in mode and "+" not in mode:
            read.append(pathlib.Path(file))
        return real_open(file, mode, *args, **kwargs)

    def recording_sha256(file):
        read.append(pathlib.Path(file))
        return real_sha256(file)

    with monkeypatch.context() as patched:
        patched.setattr(builtins, "open", recording_open)
        patched.setattr(zoo, "sha256", recording_sha256)
        try:
            zoo.load(folder, compile=False)
        except ValueError:
            pass
    root = folder.resolve()
    preset_files = [p for p in read if p.suffix in (".json", ".md", ".h5")]
    assert all(root in p.resolve().parents for p in preset_files), preset_files


def test_fit_fine_tunes_a_loaded_preset():
    model = zoo.load("vae-mnist")
    x = model.sample(64, seed=1)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_a_preset_loads_with_another_objective_for_fine_tuning():
    model = zoo.load("iwae-mnist", objective={"name": "iwae", "num_samples": 10})
    assert model.objective.get_config() == {"name": "iwae", "num_samples": 10}
    assert model.optimizer is not None
    shipped = zoo.load("iwae-mnist", compile=False)
    assert shipped.objective.get_config() == {"name": "iwae", "num_samples": 50, "gradient": "dreg"}
    for a, b in zip(model.get_weights(), shipped.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="`objective` must be one of"):
        zoo.load("iwae-mnist", objective="iwea")


def _tiny(seed=0, hidden=(8,), data_dim=6):
    return tfdlgm.models.VAE(latent_dim=2, hidden=hidden, data_dim=data_dim, seed=seed)


def test_save_preset_round_trips_and_checks_its_output(tmp_path):
    model = _tiny()
    training = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.01}}}
    folder = zoo.save_preset(
        model, tmp_path / "tiny", training, figures={"elbo": -1.0}, card_text="# tiny\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no staging left
    assert sorted(p.name for p in folder.iterdir()) == SHIPPED_FILES
    loaded = zoo.load(folder)
    assert isinstance(loaded, tfdlgm.models.VAE) and loaded.latent_dim == 2
    np.testing.assert_allclose(loaded.optimizer.learning_rate, 0.01)
    x = np.eye(6, dtype="float32")
    np.testing.assert_allclose(loaded.elbo(x, seed=3), model.elbo(x, seed=3), rtol=1e-6)
    assert zoo.card(folder) == "# tiny\n" and zoo.metadata(folder)["name"] == "tiny"
    assert zoo.config(folder)["registered_name"] == "tfdlgm>VAE"
    named = zoo.save_preset(model, tmp_path / "run-3", training, {}, card_text="", name="tiny")
    assert zoo.metadata(named)["name"] == "tiny"
    with pytest.raises(ValueError, match="`name` must be a non-empty str"):
        zoo.save_preset(model, tmp_path / "x", training, figures={}, card_text="", name="")
    with pytest.raises(ValueError, match="must be a dict naming the `optimizer`"):
        zoo.save_preset(model, tmp_path / "x", training={}, figures={}, card_text="")


def test_save_preset_keeps_a_weights_file_holding_the_same_arrays(tmp_path):
    """Re-evaluating a preset rewrites its figures, not its weights (no churn in git)."""
    save = functools.partial(
        zoo.save_preset,
        folder=tmp_path / "tiny",
        training={"optimizer": "adam"},
        figures={"elbo": -1.0},
        card_text="# tiny\n",
    )
    model = _tiny()
    weights = save(model) / zoo.WEIGHTS_FILE
    first = weights.read_bytes()
    evaluated = tfdlgm.zoo.load(tmp_path / "tiny")
    evaluated.sample(3)  # moves its random stream's state, which the weights file holds
    evaluated.save_weights(str(tmp_path / "moved.weights.h5"))
    assert (tmp_path / "moved.weights.h5").read_bytes() != first
    save(evaluated, figures={"elbo": -2.0})
    assert weights.read_bytes() == first
    assert zoo.metadata(tmp_path / "tiny")["figures"]["elbo"] == -2.0
    model.trainable_weights[0].assign(model.trainable_weights[0] + 1.0)
    save(model)
    assert weights.read_bytes() != first
    for loaded, saved in zip(zoo.load(tmp_path / "tiny").weights, model.weights, strict=True):
        np.testing.assert_array_equal(loaded, saved)


def test_replacing_a_preset_keeps_the_other_files_of_its_folder(tmp_path):
    """A preset folder may hold more than the preset (zoo/<name>/recipe.json, a user's notes):
    the swap that replaces the preset carries them over, byte for byte."""
    folder = zoo.save_preset(_tiny(seed=0), tmp_path / "tiny", {"optimizer": "adam"}, {}, "")
    (folder / "recipe.json").write_text('{"name": "tiny"}\n')
    (folder / "notes").mkdir()
    (folder / "notes" / "run.txt").write_bytes(b"\x00kept")
    zoo.save_preset(_tiny(seed=1), folder, {"optimizer": "adam"}, {}, "# new\n")
    assert (folder / "recipe.json").read_text() == '{"name": "tiny"}\n'
    assert (folder / "notes" / "run.txt").read_bytes() == b"\x00kept"
    assert zoo.card(folder) == "# new\n"


def _assert_holds(folder, model):
    loaded = zoo.load(folder, compile=False)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_save_that_fails_before_its_metadata_leaves_the_old_preset(tmp_path, monkeypatch):
    old, new = _tiny(seed=0), _tiny(seed=1)
    folder = zoo.save_preset(old, tmp_path / "tiny", {"optimizer": "adam"}, {}, "# old\n")
    real_write_json = zoo.write_json

    def failing(path, value):
        if path.name == zoo.METADATA_FILE:  # the weights, card and config are written by now
            assert (path.parent / zoo.WEIGHTS_FILE).is_file()
            raise OSError(28, "No space left on device")
        real_write_json(path, value)

    monkeypatch.setattr(zoo, "write_json", failing)
    with pytest.raises(OSError, match="No space left"):
        zoo.save_preset(new, folder, {"optimizer": "adam"}, {}, "# new\n")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    _assert_holds(folder, old)
    assert zoo.card(folder) == "# old\n"
    # what a killed save leaves (its staging folder; a backup whose new folder never arrived)
    (tmp_path / ".tmp-tiny-killed").mkdir()
    (tmp_path / ".tmp-tiny-killed" / "model.weights.h5").write_bytes(b"partial")
    zoo.save_preset(new, folder, {"optimizer": "adam"}, {}, "# new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    _assert_holds(folder, new)
    folder.rename(tmp_path / ".old-tiny-killed")
    zoo.save_preset(old, folder, {"optimizer": "adam"}, {}, "# old\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    _assert_holds(folder, old)


def test_a_save_over_the_file_size_limit_leaves_the_old_preset(tmp_path):
    """In a process whose files may not grow past 64 KiB (RLIMIT_FSIZE), a save of larger
    weights fails with OSError and the old preset still loads with the old weights."""
    folder = tmp_path / "wide"
    old = _tiny(seed=0, hidden=(64,), data_dim=40)
    zoo.save_preset(old, folder, {"optimizer": "adam"}, {}, "# old\n")
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import tfdlgm
        from tfdlgm import zoo
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: OSError
        model = tfdlgm.models.VAE(latent_dim=2, hidden=(256, 256), data_dim=40, seed=0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
        try:
            zoo.save_preset(model, {str(folder)!r}, {{"optimizer": "adam"}}, {{}}, "# new")
        except (OSError, ValueError) as error:
            print("failed:", type(error).__name__, error)
            sys.exit(3)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "failed:" in result.stdout
    _assert_holds(folder, old)
    assert zoo.card(folder) == "# old\n"


def test_loads_under_jax_without_the_mnist_file(tmp_path):
    """Offline, with an empty Keras cache and no MNIST file (how long it takes is the
    benchmark suite's `load s` column, not a test)."""
    env = {k: v for k, v in os.environ.items() if k != "TFDLGM_MNIST"}
    env.update(KERAS_BACKEND="jax", KERAS_HOME=str(tmp_path))  # an empty Keras cache
    script = (
        "import tfdlgm, keras\n"
        "m = tfdlgm.zoo.load('vae-mnist')\n"
        "print(keras.backend.backend(), m.sample(3, seed=0).shape)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "jax (3, 784)"


# -- tools/train.py: the training tool, not shipped -----------------------------------------


def _train_tool():
    """`tools/train.py`, the script that trains the presets, imported as a module."""
    spec = importlib.util.spec_from_file_location("train_tool", TRAIN_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", PRESETS)
def test_every_recipe_is_the_schedule_its_preset_followed(name):
    train = _train_tool()
    recipe, metadata = train.read_recipe(name), zoo.metadata(name)
    record = metadata["training"]
    config = zoo.config(name)
    # the fine-tuning stages the preset reached; saved in the last, on its objective
    tuning = train.fine_tuning_stages(recipe)[: train.stage_reached(recipe, record["epochs"])]
    for key, value in recipe["model"]["config"].items():
        if key == "objective" and tuning:
            continue  # saved while fine-tuning: checked below
        assert config["config"][key] == value, key
    if recipe.get("method") == "em":  # fitted in one go: no schedule
        assert record["method"] == "em" and record["learning_rates"] == []
        assert record["optimizer"]["config"] == recipe["optimizer"]["config"]
        return
    assert recipe["name"] == name and recipe["epochs"] == record["epochs"]
    assert recipe["learning_rates"] == record["learning_rates"]
    assert recipe["batch_size"] == record["batch_size"]
    starts = [stage["from_epoch"] for stage in tuning]
    assert record.get("fine_tune_from_epoch") == (starts[0] if starts else None)
    assert record.get("fine_tune_from_epochs") == (starts if len(starts) > 1 else None)
    assert recipe["model"]["class_name"] == config["registered_name"]
    if tuning:
        assert config["config"]["objective"] == tuning[-1]["objective"]
    # the record's optimizer is the recipe's at the last epoch's rate
    assert (
        record["optimizer"]["config"]
        == train.with_learning_rate(
            recipe["optimizer"], train.learning_rate_at(recipe, record["epochs"] - 1)
        )["config"]
    )


def test_the_schedule_and_the_stages_are_functions_of_the_epoch():
    train = _train_tool()
    recipe = train.read_recipe("vae-mnist")  # rates from 0, 1833, 3280; fine-tuning from 4000
    assert [train.learning_rate_at(recipe, e) for e in (0, 1832, 1833, 3280, 4326)] == [
        1e-3,
        1e-3,
        1e-4,
        3e-5,
        1e-4,
    ]
    assert train.stages(recipe, 0, 4327) == [
        {"start": 0, "end": 4000, "fine_tune": 0},
        {"start": 4000, "end": 4327, "fine_tune": 1},
    ]
    assert train.stages(recipe, 3900, 3950) == [{"start": 3900, "end": 3950, "fine_tune": 0}]
    assert train.stages(recipe, 4100, 4200) == [{"start": 4100, "end": 4200, "fine_tune": 1}]
    assert train.stages(recipe, 4327, 4327) == []
    assert train.stages(train.read_recipe("iwae-mnist"), 0, 10) == [
        {"start": 0, "end": 10, "fine_tune": 0}
    ]


def test_a_fine_tuning_stage_may_train_on_another_split_and_the_record_says_which_epochs():
    train = _train_tool()
    recipe = train.read_recipe("vae-mnist")  # fine-tuning from epoch 4,000
    recipe["fine_tune"] = {**recipe["fine_tune"], "split": "train+validation"}
    assert (train.split_of(recipe), train.split_of(recipe, 1)) == ("train", "train+validation")
    before, after = train.data_record(recipe, 4000), train.data_record(recipe, 4001)
    assert (before["split"], before["examples"]) == ("train", 50_000)
    assert (after["split"], after["examples"]) == ("train+validation", 60_000)
    assert "for epochs 1-4,000; then all 60,000" in after["description"]
    assert "from epoch 4,001" in after["description"]
    figures = zoo.metadata("vae-mnist")["figures"]
    card = train.card_text(recipe, train.training_record(recipe, 4001, 60.0), figures, 1)
    assert 'tfdlgm.datasets.mnist("train+validation"' in card
    assert "the validation images were, once every choice" in card
    fewer = "The papers' figures come from more training images"
    assert fewer in card  # epochs 1-4,000 saw the training split only
    everything = {**recipe, "split": "train+validation"}  # all 60,000 from the first epoch
    assert train.splits_seen(everything, 4001) == {"train+validation"}
    card = train.card_text(everything, train.training_record(everything, 4001, 60.0), figures, 1)
    assert fewer not in card
    records = train.DATASETS["mnist"]["records"]
    assert train.data_record(everything, 4001) == records["train+validation"]
    no_split = train.read_recipe("vae-mnist")  # without `fine_tune.split`: the recipe's own
    assert train.data_record(no_split, 4327) == records["train"]


def test_a_fine_tuning_stage_keeps_the_weights_and_takes_the_objective_and_rate():
    train = _train_tool()
    recipe = {
        **train.read_recipe("vae-mnist"),
        "model": {"class_name": "tfdlgm>VAE", "config": {"latent_dim": 2, "hidden": [8]}},
    }
    stage = {"start": 4000, "end": 4001, "fine_tune": 0}
    model = train.stage_model(recipe, stage, None, None)  # from scratch
    tuned = train.stage_model(recipe, {**stage, "fine_tune": 1}, model, None)
    assert tuned.objective.get_config() == {"name": "iwae", "num_samples": 10}
    np.testing.assert_allclose(tuned.optimizer.learning_rate, 1e-4)
    for a, b in zip(model.get_weights(), tuned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # from one fine-tuning stage to the next: its objective, a fresh optimizer
    recipe["fine_tune"] = [recipe["fine_tune"], {"from_epoch": 4100, "objective": DREG_L_10}]
    again = train.stage_model(recipe, {"start": 4100, "end": 4101, "fine_tune": 2}, tuned, None)
    assert again.objective.get_config() == DREG_L_10
    assert again.optimizer is not tuned.optimizer
    for a, b in zip(tuned.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


L_10 = {"name": "iwae", "num_samples": 10}
DREG_L_10 = {**L_10, "gradient": "dreg"}


def _fine_tuned_twice(train, *more):
    """dlgm-mnist's recipe with its next run's second fine-tuning stage: L_10 from epoch 3,268,
    then DReG's gradient of it on all 60,000 images from 3,418 (then `more` stages)."""
    recipe = train.read_recipe("dlgm-mnist")
    recipe["fine_tune"] = [
        {"from_epoch": 3268, "objective": L_10},
        {"from_epoch": 3418, "objective": DREG_L_10, "split": "train+validation"},
        *more,
    ]
    return recipe


def test_a_recipe_may_fine_tune_in_several_stages():
    train = _train_tool()
    recipe = _fine_tuned_twice(train)
    assert train.stages(recipe, 0, 3500) == [
        {"start": 0, "end": 3268, "fine_tune": 0},
        {"start": 3268, "end": 3418, "fine_tune": 1},
        {"start": 3418, "end": 3500, "fine_tune": 2},
    ]
    assert train.stages(recipe, 3300, 3418) == [{"start": 3300, "end": 3418, "fine_tune": 1}]
    assert train.stages(recipe, 3400, 3450) == [
        {"start": 3400, "end": 3418, "fine_tune": 1},
        {"start": 3418, "end": 3450, "fine_tune": 2},
    ]
    assert train.stages(recipe, 3500, 3600) == [{"start": 3500, "end": 3600, "fine_tune": 2}]
    assert [train.stage_reached(recipe, e) for e in (3268, 3269, 3418, 3419)] == [0, 1, 1, 2]
    args = types.SimpleNamespace(workdir="work")
    assert [train.checkpoint_dir(recipe, args, k) for k in range(3)] == [
        pathlib.Path("work/checkpoints/dlgm-mnist"),
        pathlib.Path("work/checkpoints/dlgm-mnist-fine-tune"),
        pathlib.Path("work/checkpoints/dlgm-mnist-fine-tune-2"),
    ]
    record = train.training_record(recipe, 3500, 60.0)
    assert (record["fine_tune_from_epoch"], record["fine_tune_from_epochs"]) == (3268, [3268, 3418])
    record = train.training_record(recipe, 3418, 60.0)  # the second stage not reached
    assert record["fine_tune_from_epoch"] == 3268 and "fine_tune_from_epochs" not in record
    one = train.read_recipe("vae-mnist")  # one stage, a dict: a list of one
    assert train.fine_tuning_stages(one) == [one["fine_tune"]]
    assert train.fine_tuning_stages(train.read_recipe("fa-frey")) == []


def test_each_fine_tuning_stage_trains_on_its_split_or_the_one_before_and_the_record_says_which():
    train = _train_tool()
    recipe = _fine_tuned_twice(train, {"from_epoch": 3500, "objective": L_10})
    splits = [train.split_of(recipe, k) for k in range(4)]
    assert splits == ["train", "train", "train+validation", "train+validation"]
    records = train.DATASETS["mnist"]["records"]
    assert train.data_record(recipe, 3418) == records["train"]  # two stages on one split
    assert train.final_split(recipe, 3419) == "train+validation"
    record = train.data_record(recipe, 3600)
    assert (record["split"], record["examples"]) == ("train+validation", 60_000)
    assert record["description"] == (
        f"{records['train']['description']}, for epochs 1-3,418; then "
        f"{records['train+validation']['description']}, from epoch 3,419"
    )
    figures = zoo.metadata("dlgm-mnist")["figures"]
    card = train.card_text(recipe, train.training_record(recipe, 3600, 60.0), figures, 1)
    assert 'tfdlgm.datasets.mnist("train+validation"' in card and "for epochs 1-3,418" in card


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            [{"from_epoch": 3418, "objective": DREG_L_10}, {"from_epoch": 3268, "objective": L_10}],
            r"strictly increasing epochs.*Received: from_epoch=\[3418, 3268\]",
        ),
        (
            [{"from_epoch": 3268, "objective": L_10}, {"from_epoch": 3268, "objective": L_10}],
            r"strictly increasing epochs.*Received: from_epoch=\[3268, 3268\]",
        ),
        ([{"objective": L_10}], r"an int `from_epoch` >= 1 and an `objective`"),
        ([{"from_epoch": "3268", "objective": L_10}], r"an int `from_epoch` >= 1"),
        ([{"from_epoch": 0, "objective": L_10}], r"an int `from_epoch` >= 1"),
        ([{"from_epoch": 3268}], r"an int `from_epoch` >= 1 and an `objective`"),
        ("L_10", r"a stage or a list of stages.*Received: 'L_10'"),
    ],
)
def test_malformed_fine_tuning_stages_are_a_clear_error(stages, message, monkeypatch, capsys):
    train = _train_tool()
    recipe = {**train.read_recipe("dlgm-mnist"), "fine_tune": stages}
    with pytest.raises(ValueError, match=r"dlgm-mnist's recipe: `fine_tune`.*" + message):
        train.stages(recipe, 0, 10)
    assert "dlgm-mnist's recipe: `fine_tune`" in _parse_error(train, recipe, monkeypatch, capsys)


def test_a_stage_may_not_go_back_to_fewer_examples(monkeypatch, capsys):
    train = _train_tool()
    recipe = _fine_tuned_twice(train, {"from_epoch": 3500, "objective": L_10, "split": "train"})
    error = _parse_error(train, recipe, monkeypatch, capsys)
    assert "fine-tunes (stage 3) on 'train' after 'train+validation'" in error


def _parse_error(train, recipe, monkeypatch, capsys):
    """What `tools/train.py dlgm-mnist` says on stderr, exiting with status 2, when
    dlgm-mnist's recipe is `recipe`."""
    monkeypatch.setattr(train, "read_recipe", lambda name: recipe)
    with pytest.raises(SystemExit) as exit_info:
        train.parse(["dlgm-mnist"])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_run_through_two_fine_tuning_stages_checkpoints_and_records_each(tmp_path, monkeypatch):
    """A tiny VAE through `main` on 20 images: epoch 1 on the ELBO, epoch 2 on L_2, epoch 3 on
    DReG's gradient of L_2 over train+validation."""
    train = _train_tool()
    dreg = {"name": "iwae", "num_samples": 2, "gradient": "dreg"}
    recipe = {
        **train.read_recipe("vae-mnist"),
        "model": {"class_name": "tfdlgm>VAE", "config": {"latent_dim": 2, "hidden": [8]}},
        "learning_rates": [[0, 1e-3], [2, 1e-4]],
        "warm_up_epochs": None,
        "epochs": 3,
        "fine_tune": [
            {"from_epoch": 1, "objective": {"name": "iwae", "num_samples": 2}},
            {"from_epoch": 2, "objective": dreg, "split": "train+validation"},
        ],
    }
    monkeypatch.setattr(train, "read_recipe", lambda name: recipe)
    splits = []

    def tiny_data(recipe, fine_tune=0):
        splits.append(train.split_of(recipe, fine_tune))
        return (np.random.default_rng(0).random((20, 784)) < 0.5).astype("float32")

    monkeypatch.setattr(train, "training_data", tiny_data)
    _stand_in_evaluation(monkeypatch, zoo.metadata("vae-mnist")["figures"])
    out = tmp_path / "run"
    assert train.main(["vae-mnist", "--workdir", str(tmp_path), "--out", str(out)]) == 0
    assert splits == ["train", "train", "train+validation"]
    metadata = zoo.metadata(out)
    assert metadata["training"]["epochs"] == 3
    assert metadata["training"]["fine_tune_from_epoch"] == 1
    assert metadata["training"]["fine_tune_from_epochs"] == [1, 2]
    assert metadata["training"]["optimizer"]["config"]["learning_rate"] == 1e-4
    assert metadata["data"]["split"] == "train+validation"
    assert "for epochs 1-2; then all 60,000" in metadata["data"]["description"]
    assert zoo.config(out)["config"]["objective"] == dreg
    checkpoints = tmp_path / "checkpoints"
    assert [
        train.checkpoint_logs(checkpoints / folder)[0]
        for folder in ("vae-mnist", "vae-mnist-fine-tune", "vae-mnist-fine-tune-2")
    ] == [1, 2, 3]


def test_the_wall_clock_counts_the_time_between_epochs_and_stops_within_its_budget():
    clock = _train_tool().WallClock(start_seconds=100.0, max_seconds=100.85)
    clock.set_model(types.SimpleNamespace(stop_training=False))
    clock.on_train_begin()
    logs = []
    for epoch in range(5):
        clock.on_epoch_begin(epoch)
        time.sleep(0.1)  # the epoch
        logs.append({})
        clock.on_epoch_end(epoch, logs[-1])
        time.sleep(0.2)  # a checkpoint after it
        if clock.model.stop_training:
            break
    # Each epoch counts its 0.1 s and the 0.2 s before it (none before the first).
    assert clock.epoch_seconds[0] == pytest.approx(0.1, abs=0.05)
    assert all(s == pytest.approx(0.3, abs=0.05) for s in clock.epoch_seconds[1:])
    assert logs[-1]["wall_seconds"] == pytest.approx(100 + sum(clock.epoch_seconds))
    assert len(clock.epoch_seconds) == 3  # a fourth would end at about 101.0 s


def _stand_in_evaluation(monkeypatch, figures):
    """The long evaluation replaced by `figures`, as the preset's metadata has them."""
    monkeypatch.setattr(tfdlgm.evaluation, "evaluate_preset", lambda model, **_: dict(figures))


def test_re_evaluating_a_preset_rewrites_its_figures_and_keeps_its_weights(tmp_path, monkeypatch):
    train = _train_tool()
    before = zoo.metadata("vae-mnist")
    figures = {**before["figures"], "log_likelihood": -80.0}
    _stand_in_evaluation(monkeypatch, figures)
    out = tmp_path / "vae-mnist"  # a copy, written over as the shipped preset would be
    shutil.copytree(zoo.presets_dir() / "vae-mnist", out)
    assert train.main(["vae-mnist", "--re-evaluate", "--out", str(out)]) == 0
    after = zoo.metadata(out)
    assert after["figures"]["log_likelihood"] == -80.0
    assert after["training"] == before["training"]
    assert after["files"]["model.weights.h5"] == before["files"]["model.weights.h5"]
    assert "| -80.00 |" in zoo.card(out) and "value: -80.00\n" in zoo.card(out)
    # --from: another folder of the recipe, written to --out
    again = tmp_path / "again"
    assert train.main(["vae-mnist", "--re-evaluate", "--from", str(out), "--out", str(again)]) == 0
    assert zoo.metadata(again)["training"] == before["training"]
    for a, b in zip(zoo.load(again).weights, zoo.load(out).weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for trains in (["--epochs", "5"], ["--continue"], ["--resume"]):  # re-evaluating trains nothing
        with pytest.raises(SystemExit):
            train.main(["vae-mnist", "--re-evaluate", *trains])


def test_a_run_from_a_preset_at_its_own_epoch_trains_nothing_and_keeps_it(tmp_path, monkeypatch):
    train = _train_tool()
    before = zoo.metadata("lvae-mnist")
    _stand_in_evaluation(monkeypatch, before["figures"])
    out = tmp_path / "run"  # a copy, written over as the shipped preset would be
    shutil.copytree(zoo.presets_dir() / "lvae-mnist", out)
    epochs = str(before["training"]["epochs"])
    flags = ["--epochs", epochs, "--workdir", str(tmp_path), "--out", str(out)]
    assert train.main(["lvae-mnist", "--continue", *flags]) == 0
    after = zoo.metadata(out)
    assert after["name"] == "lvae-mnist"
    assert after["files"]["model.weights.h5"] == before["files"]["model.weights.h5"]
    assert after["training"]["epochs"] == before["training"]["epochs"]
    assert after["training"]["learning_rates"] == before["training"]["learning_rates"]
    assert after["training"]["optimizer"]["config"] == before["training"]["optimizer"]["config"]
    assert after["training"]["fine_tune_from_epoch"] == 468
    assert after["training"]["wall_time_minutes"] == before["training"]["wall_time_minutes"]
    assert "```bash\nKERAS_BACKEND=jax python tools/train.py lvae-mnist\n```" in zoo.card(out)
    with pytest.raises(SystemExit):  # the folder holds another recipe's preset
        train.main(["vae-mnist", "--from", str(out), *flags])
    with pytest.raises(SystemExit):
        train.main(["vae-mnist", "--validate-every", "0"])


def test_validation_diagnostics_use_the_validation_set_drawn_with_seed_1(mnist_path, frey_path):
    train = _train_tool()
    diagnostics = train.validation_diagnostics(train.read_recipe("vae-mnist"), 7)
    assert isinstance(diagnostics, tfdlgm.callbacks.LatentDiagnostics)
    assert diagnostics.every == 7 and diagnostics.num_samples == 50
    grey = tfdlgm.datasets.load_mnist_arrays(mnist_path)["validation"]
    np.testing.assert_array_equal(diagnostics.x, tfdlgm.datasets.fixed_binarization(grey, seed=1))
    frey = train.validation_diagnostics(train.read_recipe("dlgm-frey"), 7)
    levels = tfdlgm.datasets.load_frey_faces_arrays(frey_path)["validation"]
    np.testing.assert_array_equal(frey.x, tfdlgm.datasets.fixed_dequantization(levels, seed=1))


def test_an_em_recipe_fits_factor_analysis_in_one_go(tmp_path, monkeypatch):
    """fa-frey's recipe: EM on the training frames dequantised once, a record without a
    schedule, and flags that would cut a schedule refused."""
    train = _train_tool()
    before = zoo.metadata("fa-frey")
    _stand_in_evaluation(monkeypatch, before["figures"])
    out = tmp_path / "fa"
    assert train.main(["fa-frey", "--out", str(out), "--workdir", str(tmp_path)]) == 0
    record = zoo.metadata(out)["training"]
    assert record["method"] == "em" and record["epochs"] == before["training"]["epochs"]
    for loaded, shipped in zip(
        zoo.load(out).get_weights(), zoo.load("fa-frey").get_weights(), strict=True
    ):
        np.testing.assert_allclose(loaded, shipped, rtol=1e-5, atol=1e-6)
    with pytest.raises(SystemExit):
        train.parse(["fa-frey", "--epochs", "3"])


@pytest.mark.slow
def test_one_more_epoch_from_a_preset_follows_its_recipe(tmp_path, monkeypatch):
    """`--continue --epochs N+1`: one epoch of the recipe's stage at that epoch (vae-mnist: L_10
    at 1e-4), then the preset is written with its record carried on."""
    train = _train_tool()
    before = zoo.metadata("vae-mnist")
    _stand_in_evaluation(monkeypatch, before["figures"])
    epochs = before["training"]["epochs"] + 1
    out = tmp_path / "run"
    flags = ["--epochs", str(epochs), "--workdir", str(tmp_path), "--out", str(out)]
    assert train.main(["vae-mnist", "--continue", *flags]) == 0
    after = zoo.metadata(out)
    assert after["training"]["epochs"] == epochs
    assert after["training"]["learning_rates"] == before["training"]["learning_rates"]
    assert after["training"]["wall_time_minutes"] > before["training"]["wall_time_minutes"]
    assert after["files"]["model.weights.h5"] != before["files"]["model.weights.h5"]
    assert zoo.config(out)["config"]["objective"] == {"name": "iwae", "num_samples": 10}
    assert (tmp_path / "checkpoints" / "vae-mnist-fine-tune" / "state.json").is_file()


def test_a_recipe_on_train_and_validation_trains_on_them_and_says_so(mnist_path):
    train = _train_tool()
    recipe = {**train.read_recipe("vae-mnist"), "split": "train+validation"}
    assert len(train.training_data(recipe)) == 600  # 60,000 images, batches of 100
    record = train.data_record(recipe, 10)
    assert record["split"] == "train+validation" and record["examples"] == 60_000
    figures = zoo.metadata("vae-mnist")["figures"]
    card = train.card_text(recipe, train.training_record(recipe, 10, 60.0), figures, 1)
    assert 'tfdlgm.datasets.mnist("train+validation"' in card and "all 60,000" in card
    assert "the validation images were, once every choice" in card
    default = train.read_recipe("vae-mnist")
    card = train.card_text(default, train.training_record(default, 10, 60.0), figures, 1)
    assert "The validation and test images were never trained on." in card


def test_a_time_budget_the_preset_has_spent_is_refused_before_any_training(
    tmp_path, monkeypatch, capsys
):
    """--max-minutes counts the minutes the preset carries: below them, nothing trains."""
    train = _train_tool()
    monkeypatch.setattr(train, "train_stage", lambda *args: pytest.fail("it trained"))
    carried = zoo.metadata("vae-mnist")["training"]["wall_time_minutes"]
    argv = ["vae-mnist", "--continue", "--epochs", "9999", "--max-minutes", "25"]
    with pytest.raises(SystemExit) as exit_info:
        train.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"the training has run {carried:.1f} minutes already" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_recipe_on_an_unknown_split_is_a_command_line_error(monkeypatch, capsys):
    train = _train_tool()
    recipe = {**train.read_recipe("vae-mnist"), "split": "everything"}
    monkeypatch.setattr(train, "read_recipe", lambda name: recipe)
    with pytest.raises(SystemExit) as exit_info:
        train.parse(["vae-mnist"])
    assert exit_info.value.code == 2
    assert "\"split\": 'everything'; it must be one of train, train+validation" in (
        capsys.readouterr().err
    )
