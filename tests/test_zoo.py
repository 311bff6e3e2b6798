"""The zoo: shipped presets load, match their checksums and reproduce their card's figures."""

import copy
import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import types

import keras
import numpy as np
import pytest

import tfdlgm
from tfdlgm import zoo

PRESETS = zoo.list()
ZOO_TRAIN = pathlib.Path(__file__).resolve().parents[1] / "zoo" / "train.py"


@pytest.fixture(scope="module")
def vae():
    return zoo.load("vae-mnist")


@pytest.fixture(scope="module")
def test_slice(mnist_path):
    """The first 100 test images, binarised once with seed 0 (what the cards report on)."""
    return tfdlgm.datasets.mnist(
        "test", binarize="fixed", seed=0, batch_size=100, path=mnist_path, as_numpy=True
    )[0]


@pytest.fixture
def preset_copy(tmp_path):
    folder = tmp_path / "vae-copy"
    shutil.copytree(zoo.presets_dir() / "vae-mnist", folder)
    return folder


def test_the_zoo_ships_vae_mnist():
    assert "vae-mnist" in PRESETS
    assert PRESETS == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_file_matches_its_sha256_and_the_card_gives_the_recipe(name):
    folder = zoo.presets_dir() / name
    preset = json.loads((folder / "config.json").read_text())
    assert set(preset["files"]) == {"model.weights.h5", "card.md"}
    assert sorted(p.name for p in folder.iterdir()) == [
        "card.md",
        "config.json",
        "model.weights.h5",
    ]
    for file_name, record in preset["files"].items():
        data = (folder / file_name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert len(data) == record["bytes"]
    assert (folder / "model.weights.h5").stat().st_size < 10_000_000
    card = zoo.card(name)
    assert preset["recipe"]["command"] in card
    assert f"{preset['figures']['log_likelihood']:.2f}" in card
    for key in ("epochs", "batch_size", "optimizer", "wall_time_minutes", "device"):
        assert key in preset["recipe"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_compiled_and_samples_binary_images(name):
    model = zoo.load(name)
    assert model.optimizer is not None
    samples = model.sample(5, seed=0)
    assert samples.shape == (5, model.data_dim)
    assert set(np.unique(samples)) <= {0.0, 1.0}
    means = model.sample(5, seed=0, mean=True)  # probabilities, not draws
    assert np.all((means >= 0) & (means <= 1))  # float32 sigmoid reaches 1 for logits > ~17
    assert np.mean((means > 0) & (means < 1)) > 0.5


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_reproduces_the_figures_of_its_card_on_the_test_slice(name, test_slice):
    model = zoo.load(name, compile=False)
    expected = zoo.config(name)["figures"]["test_slice"]
    # Per layer, the analytic KL and the mean |posterior mean|, from 4 random streams. Where
    # they are a function of x alone (one-layer models, a ladder's top layer) they must match
    # the card to float precision; below a sampled layer (hierarchical models: q and p of
    # layer i depend on z_{i+1}) the card holds one draw, so the draws' mean is within 5%.
    draws = np.array([_slice_layer_figures(model, test_slice, seed) for seed in range(4)])
    recorded = np.array([expected["kl"], expected["posterior_mean_abs"]])  # [2, layers]
    fixed = np.all(np.isclose(draws, draws[0], rtol=1e-6, atol=0), axis=0)
    assert fixed[:, -1].all() or len(model.latent_dims) > 1  # one layer: no sampling at all
    np.testing.assert_allclose(draws[0][fixed], recorded[fixed], rtol=1e-4)
    np.testing.assert_allclose(draws.mean(axis=0)[~fixed], recorded[~fixed], rtol=0.05)
    # Monte Carlo (10,000 draws; the backends' random streams differ): within 0.3 nats.
    elbo = model.elbo(test_slice, num_samples=100, seed=0).mean()
    np.testing.assert_allclose(elbo, expected["elbo_100_samples_seed_0"], atol=0.3)
    figures = zoo.config(name)["figures"]
    assert figures["elbo"] < figures["L_5"] < figures["L_50"] < figures["log_likelihood"] < 0


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


@pytest.mark.parametrize("file_name", ["model.weights.h5", "card.md"])
def test_a_flipped_byte_is_caught_before_loading(preset_copy, file_name):
    path = preset_copy / file_name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
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
    path = preset_copy / "config.json"
    preset = json.loads(path.read_text())
    preset["model"]["config"].update(change)
    path.write_text(json.dumps(preset))
    with pytest.raises(ValueError, match=r"config .*config.json does not match the weights") as e:
        zoo.load(preset_copy)
    message = str(e.value)
    # The preset config, as the model it describes, and what the weights file holds.
    described = ", ".join(
        f"{key}={value!r}" for key, value in preset["model"]["config"].items() if key in change
    )
    assert "the config describes VAE(" in message and described in message, message
    weights = preset_copy / "model.weights.h5"
    held = {k: v for k, v in zoo._weight_shapes(weights).items() if "seed_generator" not in k}
    size = sum(int(np.prod(shape)) for shape in held.values())
    assert f"the weights file holds {len(held)} arrays of {size:,} numbers" in message, message
    assert "encoder" in message or "decoder" in message or "posterior" in message


def test_an_unregistered_class_is_named(preset_copy):
    path = preset_copy / "config.json"
    preset = json.loads(path.read_text())
    preset["model"]["class_name"] = "tfdlgm>NoSuchModel"
    path.write_text(json.dumps(preset))
    with pytest.raises(ValueError, match=r"'tfdlgm>NoSuchModel' is not a registered"):
        zoo.load(preset_copy)


def test_a_folder_path_loads_the_same_model(vae, preset_copy):
    for name_or_path in (preset_copy, str(preset_copy)):
        model = zoo.load(name_or_path, compile=False)
        assert getattr(model, "optimizer", None) is None
        for a, b in zip(model.get_weights(), vae.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="is not a preset folder: it has no config.json"):
        zoo.load(preset_copy / "missing")


def test_fit_fine_tunes_a_loaded_preset():
    model = zoo.load("vae-mnist")
    x = model.sample(64, seed=1)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_save_preset_round_trips_and_checks_its_output(tmp_path):
    model = tfdlgm.models.VAE(latent_dim=2, hidden=(8,), data_dim=6, seed=0)
    recipe = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.01}}}
    folder = zoo.save_preset(
        model, tmp_path / "tiny", recipe, figures={"elbo": -1.0}, card_text="# tiny\n"
    )
    loaded = zoo.load(folder)
    assert isinstance(loaded, tfdlgm.models.VAE) and loaded.latent_dim == 2
    np.testing.assert_allclose(loaded.optimizer.learning_rate, 0.01)
    x = np.eye(6, dtype="float32")
    np.testing.assert_allclose(loaded.elbo(x, seed=3), model.elbo(x, seed=3), rtol=1e-6)
    assert zoo.card(folder) == "# tiny\n" and zoo.config(folder)["name"] == "tiny"
    named = zoo.save_preset(
        model, tmp_path / "run-3", recipe, figures={}, card_text="", name="tiny"
    )
    assert zoo.config(named)["name"] == "tiny"
    with pytest.raises(ValueError, match="`name` must be a non-empty str"):
        zoo.save_preset(model, tmp_path / "x", recipe, figures={}, card_text="", name="")
    with pytest.raises(ValueError, match="must name the `optimizer`"):
        zoo.save_preset(model, tmp_path / "x", recipe={}, figures={}, card_text="")


def test_save_preset_keeps_a_weights_file_holding_the_same_arrays(tmp_path):
    """Re-evaluating a preset rewrites its figures, not its weights (no churn in git)."""
    model = tfdlgm.models.VAE(latent_dim=2, hidden=(8,), data_dim=6, seed=0)
    save = functools.partial(
        zoo.save_preset,
        folder=tmp_path / "tiny",
        recipe={"optimizer": "adam"},
        figures={"elbo": -1.0},
        card_text="# tiny\n",
    )
    weights = save(model) / zoo.WEIGHTS_FILE
    first = weights.read_bytes()
    evaluated = tfdlgm.zoo.load(tmp_path / "tiny")
    evaluated.sample(3)  # moves its random stream's state, which the weights file holds
    evaluated.save_weights(str(tmp_path / "moved.weights.h5"))
    assert (tmp_path / "moved.weights.h5").read_bytes() != first
    save(evaluated, figures={"elbo": -2.0})
    assert weights.read_bytes() == first
    assert zoo.config(tmp_path / "tiny")["figures"]["elbo"] == -2.0
    model.trainable_weights[0].assign(model.trainable_weights[0] + 1.0)
    save(model)
    assert weights.read_bytes() != first
    for loaded, saved in zip(zoo.load(tmp_path / "tiny").weights, model.weights, strict=True):
        np.testing.assert_array_equal(loaded, saved)


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


def _zoo_train():
    """`zoo/train.py`, the script that trains the presets, imported as a module."""
    spec = importlib.util.spec_from_file_location("zoo_train", ZOO_TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wall_clock_counts_the_time_between_epochs_and_stops_within_its_budget():
    clock = _zoo_train().WallClock(start_seconds=100.0, max_seconds=100.85)
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


def test_a_preset_loads_with_another_objective_for_fine_tuning():
    model = zoo.load("iwae-mnist", objective={"name": "iwae", "num_samples": 10})
    assert model.objective.get_config() == {"name": "iwae", "num_samples": 10}
    assert model.optimizer is not None
    shipped = zoo.load("iwae-mnist", compile=False)
    assert shipped.objective.get_config() == {"name": "iwae", "num_samples": 50}
    for a, b in zip(model.get_weights(), shipped.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="`objective` must be one of"):
        zoo.load("iwae-mnist", objective="iwea")


def test_the_fine_tuning_recipe_takes_the_stage_learning_rate():
    train = _zoo_train()
    recipe = train.RECIPES["lvae-mnist"]
    before = copy.deepcopy(recipe)
    tuned = train.fine_tune_recipe(recipe, zoo.config("lvae-mnist"))
    assert recipe == before  # the recipe itself is left alone
    assert tuned["optimizer"]["config"] == {
        **recipe["optimizer"]["config"],
        "learning_rate": recipe["fine_tune"]["learning_rate"],
    }
    assert tuned["preset"]["epochs"] == zoo.config("lvae-mnist")["recipe"]["epochs"]
    begun = tuned["fine_tune_from_epoch"]
    assert 0 < begun <= tuned["preset"]["epochs"]
    assert f"from epoch {begun}" in tuned["objective_text"]
    # a preset not fine-tuned before begins its fine-tuning at its own last epoch
    fresh = {"recipe": {**zoo.config("lvae-mnist")["recipe"], "epochs": 7}}
    del fresh["recipe"]["fine_tune_from_epoch"]
    assert train.fine_tune_recipe(recipe, fresh)["fine_tune_from_epoch"] == 7
    with pytest.raises(SystemExit):  # a recipe without a fine_tune stage: a usage error
        train.main(["iwae-mnist", "--fine-tune", "--epochs", "1"])


def test_re_evaluating_a_preset_rewrites_its_figures_and_keeps_its_weights(tmp_path, monkeypatch):
    train = _zoo_train()
    name = "vae-mnist"
    shutil.copytree(ZOO_TRAIN.parent / name, tmp_path / name)
    before = zoo.config(tmp_path / name)
    figures = {**before["figures"], "log_likelihood": -80.0, "log_likelihood_examples": 10_000}
    monkeypatch.setattr(train, "ZOO_DIR", str(tmp_path))
    monkeypatch.setattr(train, "evaluate", lambda model, ll_examples: dict(figures))
    assert train.main([name, "--re-evaluate"]) == 0
    after = zoo.config(tmp_path / name)
    assert after["figures"]["log_likelihood"] == -80.0
    # the training record is kept; its commands gain the re-evaluation's
    *earlier, last = after["recipe"].pop("command").splitlines()
    assert earlier == before["recipe"].pop("command").splitlines()
    assert last.endswith(f"python zoo/train.py {name} --re-evaluate")
    assert after["recipe"] == before["recipe"]
    assert after["files"]["model.weights.h5"] == before["files"]["model.weights.h5"]
    card = zoo.card(tmp_path / name)
    assert "| -80.00 |" in card and "L_5000 (all 10,000 test images)" in card
    assert f"{last}\n```" in card
    with pytest.raises(SystemExit):  # re-evaluating trains nothing
        train.main([name, "--re-evaluate", "--epochs", "5"])


def test_a_run_from_a_preset_continues_its_stage_unless_told_to_fine_tune():
    train = _zoo_train()
    iwae = train.preset_recipe(train.RECIPES["iwae-mnist"], zoo.config("iwae-mnist"))
    assert iwae["optimizer"] == train.RECIPES["iwae-mnist"]["optimizer"]
    assert "fine_tune_from_epoch" not in iwae and iwae["preset"]["epochs"] > 0
    lvae = zoo.config("lvae-mnist")  # fine-tuned already: continuing is more fine-tuning
    recipe = train.RECIPES["lvae-mnist"]
    assert train.preset_recipe(recipe, lvae) == train.fine_tune_recipe(recipe, lvae)


def _run_from_preset(train, name, tmp_path, monkeypatch, *flags):
    """`zoo/train.py NAME FLAGS` on a copy of the preset, with the epochs it has already (so
    nothing trains) and a stand-in for the long evaluation: (config before, config after)."""
    shutil.copytree(ZOO_TRAIN.parent / name, tmp_path / name)
    before = zoo.config(tmp_path / name)
    monkeypatch.setattr(train, "ZOO_DIR", str(tmp_path))
    monkeypatch.setattr(train, "evaluate", lambda model, ll_examples: dict(before["figures"]))
    epochs = str(before["recipe"]["epochs"])
    assert train.main([name, *flags, "--epochs", epochs, "--workdir", str(tmp_path)]) == 0
    return before, zoo.config(tmp_path / name)


def test_continue_starts_from_the_preset_and_records_every_command(tmp_path, monkeypatch):
    train = _zoo_train()
    before, after = _run_from_preset(
        train, "vae-mnist", tmp_path, monkeypatch, "--continue", "--device", "another machine"
    )
    assert after["recipe"]["device"] == f"{before['recipe']['device']}, then another machine"
    assert after["recipe"]["epochs"] == before["recipe"]["epochs"]
    *earlier, last = after["recipe"]["command"].splitlines()
    assert earlier == before["recipe"]["command"].splitlines()
    assert "zoo/train.py vae-mnist --continue" in last
    assert after["files"]["model.weights.h5"] == before["files"]["model.weights.h5"]


def test_from_starts_a_run_from_another_folder_of_the_same_recipe(tmp_path, monkeypatch):
    train = _zoo_train()
    start = tmp_path / "a-run-from-scratch"
    shutil.copytree(ZOO_TRAIN.parent / "vae-mnist", start)
    before = zoo.config(start)
    monkeypatch.setattr(train, "ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setattr(train, "evaluate", lambda model, ll_examples: dict(before["figures"]))
    epochs = str(before["recipe"]["epochs"])
    flags = ["--epochs", epochs, "--workdir", str(tmp_path)]
    assert train.main(["vae-mnist", "--continue", "--from", str(start), *flags]) == 0
    after = zoo.config(tmp_path / "zoo" / "vae-mnist")
    *earlier, last = after["recipe"]["command"].splitlines()
    assert earlier == before["recipe"]["command"].splitlines()
    assert f"--from {start}" in last
    out = tmp_path / "run-2"  # written outside the zoo, under another folder name
    assert (
        train.main(["vae-mnist", "--continue", "--from", str(start), *flags, "--out", str(out)])
        == 0
    )
    assert zoo.config(out)["name"] == "vae-mnist"
    assert train.main(["vae-mnist", "--continue", "--from", str(out), *flags]) == 0
    with pytest.raises(SystemExit):  # the folder holds another recipe's preset
        train.main(["lvae-mnist", "--fine-tune", "--from", str(start), *flags])
    with pytest.raises(SystemExit):  # a run from scratch starts from no folder
        train.main(["vae-mnist", "--from", str(start), *flags])


def test_validate_every_logs_the_validation_bounds_every_n_epochs(
    tmp_path, monkeypatch, mnist_path
):
    train = _zoo_train()
    passed = {}

    def recording(*args, **kwargs):
        passed.update(kwargs)
        return real(*args, **kwargs)

    real = train.training.train
    monkeypatch.setattr(train.training, "train", recording)
    _run_from_preset(
        train, "vae-mnist", tmp_path, monkeypatch, "--continue", "--validate-every", "7"
    )
    (diagnostics,) = [
        c for c in passed["callbacks"] if isinstance(c, tfdlgm.callbacks.LatentDiagnostics)
    ]
    assert diagnostics.every == 7 and diagnostics.num_samples == 50
    grey = tfdlgm.datasets.load_mnist_arrays(mnist_path)["validation"]
    np.testing.assert_array_equal(diagnostics.x, tfdlgm.datasets.fixed_binarization(grey, seed=1))
    with pytest.raises(SystemExit):
        train.main(["vae-mnist", "--continue", "--epochs", "1", "--validate-every", "0"])


def test_continue_on_the_last_runs_device_keeps_the_device_history(tmp_path, monkeypatch):
    train = _zoo_train()
    before = zoo.config(ZOO_TRAIN.parent / "vae-mnist")
    last_device = before["recipe"]["device"].rsplit(", then ", 1)[-1]
    _, after = _run_from_preset(
        train, "vae-mnist", tmp_path, monkeypatch, "--continue", "--device", last_device
    )
    assert after["recipe"]["device"] == before["recipe"]["device"]


def test_notes_reach_the_card_and_later_runs_keep_them(tmp_path, monkeypatch):
    train = _zoo_train()
    before, after = _run_from_preset(
        train, "vae-mnist", tmp_path, monkeypatch, "--continue", "--note", "an unusual run"
    )
    earlier = before["recipe"].get("notes", [])  # the preset's own runs' notes come first
    assert after["recipe"]["notes"] == [*earlier, "an unusual run"]
    assert train.main(["vae-mnist", "--re-evaluate", "--note", "re-measured"]) == 0
    again = zoo.config(tmp_path / "vae-mnist")
    assert again["recipe"]["notes"] == [*earlier, "an unusual run", "re-measured"]
    assert "- Note: an unusual run\n- Note: re-measured\n" in zoo.card(tmp_path / "vae-mnist")


def test_a_run_stopped_by_a_signal_says_so_on_its_card(tmp_path, monkeypatch):
    train = _zoo_train()

    class Signalled(train.tfdlgm.callbacks.StopOnSignal):
        def __init__(self):
            super().__init__()
            self.received = "SIGTERM"

    monkeypatch.setattr(train.tfdlgm.callbacks, "StopOnSignal", Signalled)
    before, after = _run_from_preset(train, "vae-mnist", tmp_path, monkeypatch, "--continue")
    epochs = before["recipe"]["epochs"]
    assert (
        after["recipe"]["notes"][-1] == f"This run was stopped by SIGTERM after epoch {epochs:,}."
    )
    assert f"stopped by SIGTERM after epoch {epochs:,}" in zoo.card(tmp_path / "vae-mnist")


def test_the_card_records_the_learning_rate_by_epoch(tmp_path, monkeypatch):
    train = _zoo_train()
    lvae = train.RECIPES["lvae-mnist"]
    record = zoo.config("lvae-mnist")["recipe"]  # as recorded (2e-3: before the paper's 1e-3)
    assert train.preset_learning_rates(lvae, record)[:2] == [[0, 2e-3], [468, 5e-4]]
    del record["learning_rates"]  # a preset trained before the record: from the recipe
    assert train.preset_learning_rates(lvae, record) == [
        [0, lvae["optimizer"]["config"]["learning_rate"]],
        [468, lvae["fine_tune"]["learning_rate"]],
    ]
    vae = train.RECIPES["vae-mnist"]
    before, after = _run_from_preset(
        train, "vae-mnist", tmp_path, monkeypatch, "--continue", "--learning-rate", "2.5e-4"
    )
    epochs, earlier = before["recipe"]["epochs"], train.preset_learning_rates(vae, before["recipe"])
    assert earlier[0] == [0, 1e-3]
    assert after["recipe"]["learning_rates"] == [*earlier, [epochs, 2.5e-4]]
    assert after["recipe"]["optimizer"]["config"]["learning_rate"] == 2.5e-4
    assert f"then 0.00025 from epoch {epochs}\n" in zoo.card(tmp_path / "vae-mnist")
    assert "- Learning rate as trained: 0.001, then " in zoo.card(tmp_path / "vae-mnist")
    with pytest.raises(SystemExit):
        train.main(["vae-mnist", "--continue", "--epochs", "1", "--learning-rate", "0"])


def test_the_presets_that_follow_burda_et_al_continue_their_schedule_at_the_preset_epoch():
    train = _zoo_train()
    vae, iwae = (
        train.learning_rate_schedule(train.RECIPES[n]) for n in ("vae-mnist", "iwae-mnist")
    )
    assert vae(0) == iwae(0) == 1e-3
    assert vae(1833) == pytest.approx(1e-4) and iwae(56) == pytest.approx(1e-3 * 10 ** (-4 / 7))
    lvae = train.RECIPES["lvae-mnist"]
    assert train.learning_rate_schedule(lvae) is None  # constant rates
    fine_tune = train.fine_tune_recipe(
        {**lvae, "learning_rate_schedule": {}}, zoo.config("lvae-mnist")
    )
    assert train.learning_rate_schedule(fine_tune) is None  # the stage keeps its own rate
    # the record: the rates before, then each stage the run trained in, rounded to 6 digits
    assert train.with_rates([[0, 1e-3]], iwae.changes(56, 130)) == [
        [0, 1e-3],
        [56, 0.00026827],
        [121, 0.00019307],
    ]
    assert train.with_rates([[0, 1e-3], [1833, 1e-4]], vae.changes(1900, 3000)) == [
        [0, 1e-3],
        [1833, 1e-4],
    ]


def test_the_card_says_the_rates_a_preset_trained_at_where_they_changed_or_are_scheduled():
    train = _zoo_train()
    config = zoo.config("iwae-mnist")  # a scheduled recipe: the line even for one rate
    recipe = train.preset_recipe(train.RECIPES["iwae-mnist"], config)
    rates = train.preset_learning_rates(recipe, config["recipe"])
    line = train._learning_rates_text(recipe, config["recipe"])
    assert line.startswith(f"- Learning rate as trained: {rates[0][1]:g}")
    assert line.count(", then ") == len(rates) - 1 and line.endswith("\n")
    dlgm = train.RECIPES["dlgm-mnist"]  # a constant rate: the recipe's text says it
    assert train._learning_rates_text(dlgm, {"learning_rates": [[0, 1e-3]]}) == ""
    changed = {"learning_rates": [[0, 1e-3], [900, 1e-4]]}
    assert train._learning_rates_text(dlgm, changed) == (
        "- Learning rate as trained: 0.001, then 0.0001 from epoch 900\n"
    )


def test_a_run_from_a_preset_continues_at_the_rate_it_last_trained_at(tmp_path, monkeypatch):
    train = _zoo_train()
    lvae = train.RECIPES["lvae-mnist"]
    tuned = train.preset_recipe(lvae, zoo.config("lvae-mnist"))  # fine-tuned already
    rates = train.preset_learning_rates(lvae, tuned["preset"])
    assert train.continued_learning_rate(tuned, rates) == rates[-1][1]
    fresh = {"recipe": {**zoo.config("lvae-mnist")["recipe"], "epochs": 7}}
    del fresh["recipe"]["fine_tune_from_epoch"]
    begins = train.fine_tune_recipe(lvae, fresh)  # begins fine-tuning: the stage's own rate
    assert train.continued_learning_rate(begins, [[0, 2e-3]]) == lvae["fine_tune"]["learning_rate"]
    name = "dlgm-mnist"  # a constant-rate recipe, continued without --learning-rate
    shutil.copytree(ZOO_TRAIN.parent / name, tmp_path / name)
    config = zoo.config(tmp_path / name)
    config["recipe"]["learning_rates"] = [[0, 1e-3], [5, 3e-4]]
    (tmp_path / name / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(train, "ZOO_DIR", str(tmp_path))
    monkeypatch.setattr(train, "evaluate", lambda model, ll_examples: dict(config["figures"]))
    epochs = str(config["recipe"]["epochs"])
    assert train.main([name, "--continue", "--epochs", epochs, "--workdir", str(tmp_path)]) == 0
    after = zoo.config(tmp_path / name)["recipe"]
    assert after["learning_rates"] == [[0, 1e-3], [5, 3e-4]]
    assert after["optimizer"]["config"]["learning_rate"] == 3e-4
