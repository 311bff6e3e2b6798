"""Trains a preset of the zoo by its recipe, evaluates it by the protocol and writes its folder.

```bash
TFDLGM_MNIST=../shared/data/mnist.npz KERAS_BACKEND=jax \
    python zoo/train.py vae-mnist --epochs 3000 [--max-minutes 35] [--resume]
```

A recipe (`RECIPES`) is data: the model's registered class and config, the optimizer's config,
the batch size, the KL warm-up, the learning-rate schedule (`tfdlgm.schedules.StagedDecay`,
Burda et al.'s for the presets that follow them; a run from a preset continues it at the
preset's epoch), the paper it follows. Training is `tfdlgm.training.train`: it
logs to TensorBoard under `logs/<name>` and checkpoints every epoch into `checkpoints/<name>/`
(atomically; `state.json` also keeps the wall time so far). `--resume` continues from that
checkpoint; `--max-minutes` stops before an epoch that would not end within the budget, and
SIGTERM or Ctrl-C (`tfdlgm.callbacks.StopOnSignal`) after the epoch in progress. Then
the model is evaluated on the test set (fixed binarisation, seed 0) by the evaluation protocol
(ARCHITECTURE.md): ELBO, L_1, L_5, L_50 on all 10,000 images, L_5000 on the first
`--ll-examples` (by default all), KL per latent layer and active units (Burda et al. 2015,
sec. 5.2: Cov_x(E_q[z_u]) > 0.01), and the preset folder `zoo/<name>/` is written by
`tfdlgm.zoo.save_preset`. `--epochs` equal to the epochs already done with `--resume`
only evaluates and writes the preset.

`--validate-every N` adds held-out figures to the logs of every Nth epoch
(`tfdlgm.callbacks.LatentDiagnostics` on all 10,000 validation images, binarised once with
seed 1): `val_L_50`, `val_elbo`, `val_kl_i` and `active_units_i`, which TensorBoard plots and
`state.json` keeps. They say when a stage has stopped improving on images it does not train on
(for lvae-mnist they take as long as four or five epochs of training on the ELBO).

`--re-evaluate` trains nothing: it evaluates the shipped preset again (say, L_5000 on all
10,000 test images where the card has fewer) and rewrites its figures and card, keeping its
weights file byte for byte and its training record (its command gains the re-evaluation's
line, so the card says how its figures were measured). `--note TEXT` adds a line about a run to
the card (say, what was unusual about it); runs from the preset keep its notes.

`--continue` starts from the shipped preset `zoo/<name>` instead of from scratch (its weights,
epoch count and wall time carry on; its optimizer state is not kept) and trains on the stage
the preset was trained on, at the rate it last trained at (a scheduled recipe: at its
schedule's rate for the epoch); `--fine-tune` trains on the recipe's `fine_tune` stage instead:
another objective and learning rate, e.g. the importance-weighted fine-tuning of Sønderby et
al. (2016) (a preset fine-tuned already continues that stage). `--epochs` counts the preset's
epochs too, and the card lists every command since the first. Checkpoints are not shipped, so
this is how a preset grows across machines and sessions:

```bash
KERAS_BACKEND=jax python zoo/train.py vae-mnist --continue --epochs 1000 [--resume]
KERAS_BACKEND=jax python zoo/train.py lvae-mnist --fine-tune --epochs 568 [--resume]
```

`--from FOLDER` starts such a run from another preset folder of the same recipe instead, such
as the `--out` of a run from scratch kept apart from the shipped preset until it beats it:

```bash
KERAS_BACKEND=jax python zoo/train.py lvae-mnist --epochs 2000 --out runs/lvae [--resume]
KERAS_BACKEND=jax python zoo/train.py lvae-mnist --fine-tune --from runs/lvae --epochs 2100
```
"""

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time

import keras
import numpy as np

import tfdlgm
from tfdlgm import training
from tfdlgm.evaluation import evaluate_protocol
from tfdlgm.schedules import StagedDecay

ZOO_DIR = os.path.dirname(os.path.abspath(__file__))
# Burda et al. (2015, sec. 5): 3^i epochs at 1e-3 * 10^(-i/7), i = 0, ..., 7 (3,280 epochs).
BURDA_SCHEDULE = {"decay": 10 ** (-1 / 7), "growth": 3, "stages": 8}
BURDA_SCHEDULE_TEXT = (
    "learning rate 1e-3 * 10^(-i/7) for 3^i epochs, i = 0, ..., 7 (Burda et al.'s schedule)"
)


def adam(learning_rate):
    """The recipes' optimizer: Adam with epsilon 1e-4 (Burda et al. 2015, sec. 5)."""
    config = {"learning_rate": learning_rate, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-4}
    return {"class_name": "Adam", "config": config}


def importance_weighted_fine_tuning(learning_rate, paper_text=""):
    """A recipe's `fine_tune` stage: the importance-weighted bound L_10 (Burda et al. 2015) at
    a constant `learning_rate`, as Sønderby et al. (2016, sec. 4) fine-tune the Ladder VAE;
    `paper_text` says where the recipe's own paper does not."""
    return {
        "objective": {"name": "iwae", "num_samples": 10},
        "learning_rate": learning_rate,
        "objective_text": f"then importance-weighted fine-tuning on L_10 (k = 10{paper_text})",
    }


RECIPES = {
    "vae-mnist": {
        "description": (
            "Variational autoencoder (Kingma & Welling 2014) on dynamically binarised MNIST: "
            "one Gaussian latent layer of 50 units, two deterministic tanh layers of 200 units "
            "in encoder and decoder, Bernoulli pixels, trained on the ELBO (k = 1)."
        ),
        "paper": (
            "Burda, Grosse & Salakhutdinov (2015), Importance Weighted Autoencoders, "
            "arXiv:1509.00519, table 1, VAE with one stochastic layer, k = 1 (86.76 nats "
            "after 3,280 epochs); model of Kingma & Welling (2014), arXiv:1312.6114."
        ),
        "model": {
            "class_name": "tfdlgm>VAE",
            "config": {
                "latent_dim": 50,
                "hidden": [200, 200],
                "activation": "tanh",
                "likelihood": "bernoulli",
                "seed": 0,
            },
        },
        "optimizer": adam(1e-3),
        "optimizer_text": f"Adam (epsilon 1e-4), {BURDA_SCHEDULE_TEXT}",
        "learning_rate_schedule": BURDA_SCHEDULE,
        "objective_text": "ELBO with one sample",
        "fine_tune": importance_weighted_fine_tuning(1e-4, "; not in Burda et al.'s k = 1 VAE"),
        "paper_epochs": 3280,
        "reference_text": (
            "For reference, Burda et al. report L_5000 = -86.76 for this model after 3,280 epochs."
        ),
        "batch_size": 100,
        "data": 'tfdlgm.datasets.mnist("train", binarize="dynamic", batch_size=100, seed=0)',
    },
    "dlgm-mnist": {
        "description": (
            "Deep latent Gaussian model (Rezende, Mohamed & Wierstra 2014) on dynamically "
            "binarised MNIST: one stochastic layer of 200 units, generative and recognition "
            "MLPs of two deterministic layers of 200 rectifier units, Bernoulli pixels, "
            "recognition covariance with rank-one precision (eq. 15-16), trained on the free "
            "energy (eq. 13, one sample)."
        ),
        "paper": (
            "Rezende, Mohamed & Wierstra (2014), Stochastic Backpropagation and Approximate "
            "Inference in Deep Generative Models, arXiv:1401.4082, sec. 7.2 (86.60 nats, "
            "fixed binarisation)."
        ),
        "model": {
            "class_name": "tfdlgm>DLGM",
            "config": {
                "latent_dims": [200],
                "hidden": [200, 200],
                "covariance": "rank_one",
                "activation": "relu",
                "likelihood": "bernoulli",
                "seed": 0,
            },
        },
        "optimizer": adam(1e-3),
        "optimizer_text": (
            "Adam (learning rate 1e-3, epsilon 1e-4) in place of the paper's RMSprop; no "
            "weight prior (kappa) and no input noise"
        ),
        "objective_text": "ELBO (free energy, eq. 13) with one sample",
        "fine_tune": importance_weighted_fine_tuning(1e-4, "; not in Rezende et al."),
        "paper_epochs": None,
        "reference_text": "For reference, Rezende et al. report 86.60 nats (fixed binarisation).",
        "batch_size": 200,
        "data": 'tfdlgm.datasets.mnist("train", binarize="dynamic", batch_size=200, seed=0)',
    },
    "iwae-mnist": {
        "description": (
            "Importance weighted autoencoder (Burda, Grosse & Salakhutdinov 2015) on dynamically "
            "binarised MNIST: two stochastic layers of 100 and 50 Gaussian units; the "
            "deterministic blocks are two tanh layers of 200 units between x and z_1 and of "
            "100 units between z_1 and z_2, in both directions; Bernoulli pixels; trained on "
            "the importance-weighted bound with k = 50 samples."
        ),
        "paper": (
            "Burda, Grosse & Salakhutdinov (2015), Importance Weighted Autoencoders, "
            "arXiv:1509.00519, table 1, IWAE with two stochastic layers, k = 50 (82.90 nats "
            "after 3,280 epochs)."
        ),
        "model": {
            "class_name": "tfdlgm>LadderVAE",
            "config": {
                "latent_dims": [100, 50],
                "hidden": [200, 100],
                "layers_per_block": 2,
                "ladder": False,
                "batch_norm": False,
                "activation": "tanh",
                "likelihood": "bernoulli",
                "objective": {"name": "iwae", "num_samples": 50},
                "seed": 0,
            },
        },
        "optimizer": adam(1e-3),
        "optimizer_text": (
            f"Adam (epsilon 1e-4; Burda et al. use batches of 20), {BURDA_SCHEDULE_TEXT}"
        ),
        "learning_rate_schedule": BURDA_SCHEDULE,
        "objective_text": "importance-weighted bound L_50",
        "paper_epochs": 3280,
        "reference_text": (
            "For reference, Burda et al. report L_5000 = -82.90 for this model after 3,280 epochs."
        ),
        "batch_size": 100,
        "data": 'tfdlgm.datasets.mnist("train", binarize="dynamic", batch_size=100, seed=0)',
    },
    "lvae-mnist": {
        "description": (
            "Ladder variational autoencoder (Sønderby et al. 2016) on dynamically binarised "
            "MNIST: five stochastic layers of 64, 32, 16, 8 and 4 Gaussian units, deterministic "
            "blocks of two leaky-rectifier layers of 512, 256, 128, 64 and 32 units with batch "
            "normalisation, precision-weighted merge of the bottom-up and top-down passes, "
            "Bernoulli pixels, trained on the ELBO with KL warm-up."
        ),
        "paper": (
            "Sønderby, Raiko, Maaløe, Sønderby & Winther (2016), Ladder Variational "
            "Autoencoders, arXiv:1602.02282, table 1 (81.74 nats with batch normalisation, "
            "warm-up and importance-weighted fine-tuning)."
        ),
        "model": {
            "class_name": "tfdlgm>LadderVAE",
            "config": {
                "latent_dims": [64, 32, 16, 8, 4],
                "hidden": [512, 256, 128, 64, 32],
                "layers_per_block": 2,
                "ladder": True,
                "batch_norm": True,
                "activation": "leaky_relu",
                "likelihood": "bernoulli",
                "seed": 0,
            },
        },
        # Sønderby et al.'s section 4: learning rate 1e-3 and warm-up over N_t = 200 epochs (the
        # shipped preset's first 468 epochs ran at 2e-3 with 100, its card says so).
        "optimizer": adam(1e-3),
        "optimizer_text": "Adam (learning rate 1e-3, epsilon 1e-4)",
        "objective_text": "ELBO with one sample, KL warm-up over the first 200 epochs",
        "warm_up_epochs": 200,
        "fine_tune": importance_weighted_fine_tuning(5e-4),
        "paper_epochs": 2000,
        "reference_text": (
            "For reference, Sønderby et al. report L_5000 = -81.74 for this model after 2,000 "
            "epochs of training and importance-weighted fine-tuning."
        ),
        "batch_size": 256,
        "data": 'tfdlgm.datasets.mnist("train", binarize="dynamic", batch_size=256, seed=0)',
    },
}


def with_learning_rate(recipe, rate):
    """`recipe` with its optimizer's learning rate set to `rate` (the recipe is left alone)."""
    config = {**recipe["optimizer"]["config"], "learning_rate": rate}
    return {**recipe, "optimizer": {**recipe["optimizer"], "config": config}}


def with_notes(recorded, preset_record, notes):
    """`recorded` with the notes of the preset's record, then `notes`, if there are any."""
    notes = [*preset_record.get("notes", []), *notes]
    return {**recorded, "notes": notes} if notes else dict(recorded)


def fine_tune_recipe(recipe, preset):
    """The recipe of a fine-tuning run from `preset` (the `config.json` of the preset it starts
    from): the `fine_tune` stage's learning rate, the epoch the fine-tuning began at (a preset
    fine-tuned before keeps its own), and the texts of the card."""
    stage = recipe["fine_tune"]
    start = preset["recipe"].get("fine_tune_from_epoch", preset["recipe"]["epochs"])
    return {
        **with_learning_rate(recipe, stage["learning_rate"]),
        "optimizer_text": (
            f"{recipe['optimizer_text']}, learning rate {stage['learning_rate']:g} while "
            "fine-tuning"
        ),
        "objective_text": (
            f"{recipe['objective_text']}, {stage['objective_text']} from epoch {start}"
        ),
        "fine_tune_from_epoch": start,
        "learning_rate_schedule": None,  # the stage trains at its own constant rate
        "preset": preset["recipe"],
    }


def preset_recipe(recipe, preset, fine_tune=False):
    """The recipe of a run that starts from `preset` (its `config.json`): the `fine_tune`
    stage where `fine_tune` is asked for or the preset was fine-tuned already, else the
    recipe's own stage, continued. `recipe["preset"]` is the preset's training record."""
    if fine_tune or "fine_tune_from_epoch" in preset["recipe"]:
        return fine_tune_recipe(recipe, preset)
    return {**recipe, "preset": preset["recipe"]}


def preset_learning_rates(recipe, record):
    """The learning rate by epoch, `[[from_epoch, rate], ...]`, of a preset's training
    `record`: as recorded, or, for a preset trained before the record, from its `recipe`."""
    if "learning_rates" in record:
        return [list(entry) for entry in record["learning_rates"]]
    rates = [[0, recipe["optimizer"]["config"]["learning_rate"]]]
    if "fine_tune_from_epoch" in record:
        rates.append([record["fine_tune_from_epoch"], recipe["fine_tune"]["learning_rate"]])
    return rates


def learning_rate_schedule(recipe):
    """The recipe's per-epoch `StagedDecay` from its optimizer's rate, or None (a constant rate)."""
    stages = recipe.get("learning_rate_schedule")
    if stages is None:
        return None
    return StagedDecay(base=recipe["optimizer"]["config"]["learning_rate"], **stages)


def with_rates(rates, changes):
    """The record `rates` (`[[from_epoch, rate], ...]`) followed by `changes`, each rate rounded
    to 6 significant digits and kept only where it differs from the one before."""
    rates = [list(entry) for entry in rates]
    for epoch, rate in changes:
        rate = float(f"{rate:.6g}")
        if not rates or rates[-1][1] != rate:
            rates.append([epoch, rate])
    return rates


def continued_learning_rate(recipe, rates):
    """The learning rate of a run from a preset (`recipe["preset"]`, whose rates by epoch are
    `rates`) on a constant-rate recipe, unless `--learning-rate` says otherwise: the rate the
    preset last trained at, except in a run that begins the recipe's fine-tuning stage, which
    starts at the stage's own rate."""
    if recipe.get("fine_tune_from_epoch") == recipe["preset"]["epochs"]:
        return recipe["optimizer"]["config"]["learning_rate"]
    return rates[-1][1]


def build(recipe):
    """The recipe's model, compiled with its optimizer (both by registered class name)."""
    model = keras.saving.deserialize_keras_object(recipe["model"])
    model.compile(optimizer=keras.optimizers.get(recipe["optimizer"]))
    return model


class WallClock(keras.callbacks.Callback):
    """Adds the training wall time so far (`wall_seconds`, across resumes) to each epoch's logs,
    which the checkpoint's `state.json` keeps, and stops before an epoch that would end past
    `max_seconds` (the median of the last 10 epochs predicts it).

    An epoch's time runs from the end of the one before (or the start of training) to its
    own end, so it counts what the callbacks do between epochs too (a checkpoint, TensorBoard's
    diagnostics): on the GPU machine they took as long as the epoch itself (about 2 s), and a
    clock of the epochs alone let a 200 s budget run to 300 s."""

    def __init__(self, start_seconds=0.0, max_seconds=None):
        super().__init__()
        self.seconds = start_seconds
        self.max_seconds = max_seconds
        self.epoch_seconds = []

    def on_train_begin(self, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.epoch_seconds.append(now - self._last)
        self._last = now
        self.seconds += self.epoch_seconds[-1]
        if logs is not None:
            logs["wall_seconds"] = self.seconds
        typical = float(np.median(self.epoch_seconds[-10:]))
        if self.max_seconds is not None and self.seconds + typical > self.max_seconds:
            self.model.stop_training = True


class LearningRate(keras.callbacks.Callback):
    """Sets the optimizer's learning rate to `rate` as training begins (a resumed checkpoint
    would keep the rate it was saved with) and adds `rate` and the epoch it took over at
    (`learning_rate`, `learning_rate_since`) to each epoch's logs, which `state.json` keeps."""

    def __init__(self, rate, since):
        super().__init__()
        self.rate, self.since = rate, since

    def on_train_begin(self, logs=None):
        self.model.optimizer.learning_rate = self.rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(learning_rate=self.rate, learning_rate_since=self.since)


def _checkpoint_logs(folder):
    """The last checkpointed epoch and its logs, `(0, {})` before the first."""
    path = os.path.join(folder, training.STATE_FILE)
    if not os.path.isfile(path):
        return 0, {}
    with open(path) as f:
        state = json.load(f)
    return state["epoch"], state.get("logs", {})


def evaluate(model, ll_examples, seed=0):
    """The evaluation protocol on the fixed-binarised test set, in nats (means over images)."""
    x = np.concatenate(list(tfdlgm.datasets.mnist("test", binarize="fixed", seed=0, as_numpy=True)))
    began = time.perf_counter()
    figures = evaluate_protocol(model, x, k=5000, seed=seed, k_examples=ll_examples)
    figures["log_likelihood"] = figures.pop("L_5000")
    figures["log_likelihood_examples"] = figures.pop("k_examples")
    figures["seconds"] = round(time.perf_counter() - began, 1)
    return figures


def slice_figures(model):
    """Figures on the first 100 test images (fixed binarisation, seed 0) a test compares."""
    x = next(
        iter(tfdlgm.datasets.mnist("test", binarize="fixed", seed=0, batch_size=100, as_numpy=True))
    )
    out = model(x)
    return {
        "examples": 'first 100 of tfdlgm.datasets.mnist("test", binarize="fixed", seed=0)',
        "elbo_100_samples_seed_0": float(model.elbo(x, num_samples=100, seed=0).mean()),
        "kl": [
            float(keras.ops.convert_to_numpy(out[f"kl_{i + 1}"]).mean())
            for i in range(len(model.latent_dims))
        ],
        "posterior_mean_abs": [
            float(np.abs(keras.ops.convert_to_numpy(q.mean())).mean()) for q in model.encode(x)
        ],
    }


def _learning_rates_text(recipe, recorded):
    """The card's line on the learning rates the preset trained at, where they changed between
    runs or the recipe schedules them (its text then says what it would do), else nothing."""
    rates = preset_learning_rates(recipe, recorded)
    if len(rates) < 2 and recipe.get("learning_rate_schedule") is None:
        return ""
    steps = "".join(f", then {rate:g} from epoch {epoch}" for epoch, rate in rates[1:])
    return f"- Learning rate as trained: {rates[0][1]:g}{steps}\n"


def _notes_text(recorded):
    """The card's lines for the notes of a preset's runs (`--note`), else nothing."""
    return "".join(f"- Note: {note}\n" for note in recorded.get("notes", []))


def card_text(name, recipe, recorded, figures, slice_, latent_dims):
    ll = figures["log_likelihood_examples"]
    ll_on = "all 10,000 test images" if ll >= 10_000 else f"the first {ll:,} test images"
    kl = ", ".join(f"{k:.2f}" for k in figures["kl"])
    active = ", ".join(str(a) for a in figures["active_units"])
    sizes = ", ".join(str(k) for k in latent_dims)
    paper_epochs = (
        f"the paper trains {recipe['paper_epochs']:,}"
        if recipe["paper_epochs"]
        else "the paper does not state its epoch count"
    )
    return f"""# {name}

{recipe["description"]}

**Follows:** {recipe["paper"]}

## Use

```python
import tfdlgm

model = tfdlgm.zoo.load("{name}")           # compiled with the recipe's optimizer
model.sample(16, seed=0)                     # [16, 784] binary images
model.fit(tfdlgm.datasets.mnist("train"), epochs=1)   # fine-tune with plain Keras
```

## Training

```bash
{recorded["command"]}
```

- Epochs: {recorded["epochs"]} ({paper_epochs}; see the figures for \
how far this preset is from converged)
- Batch size: {recipe["batch_size"]}, {recipe["optimizer_text"]}, {recipe["objective_text"]}
{_learning_rates_text(recipe, recorded)}\
- Data: 50,000 MNIST training images, dynamically binarised (`{recipe["data"]}`)
- Wall time: {recorded["wall_time_minutes"]:.1f} min of training on {recorded["device"]}, \
backend {recorded["backend"]}
{_notes_text(recorded)}\

## Measured figures (nats, test set binarised once with seed 0)

| ELBO | L_1 | L_5 | L_50 | L_5000 ({ll_on}) | KL per layer | active units |
|---|---|---|---|---|---|---|
| {figures["elbo"]:.2f} | {figures["L_1"]:.2f} | {figures["L_5"]:.2f} | {figures["L_50"]:.2f} \
| {figures["log_likelihood"]:.2f} | {kl} | {active} / {sizes} |

ELBO, L_1, L_5, L_50 and KL are on all 10,000 test images; active units use Burda et al.'s
criterion Cov_x(E_q[z_u]) > 0.01 over the 10,000 posterior means. {recipe["reference_text"]}

On the first 100 test images (what `tests/test_zoo.py` checks): `model.elbo(x, num_samples=100,
seed=0).mean()` = {slice_["elbo_100_samples_seed_0"]:.3f}, analytic KL = \
{", ".join(f"{k:.4f}" for k in slice_["kl"])}.
"""


def write_preset(model, name, recipe, recorded, ll_examples, out=None):
    """Evaluates `model` by the protocol and writes its preset folder (default `zoo/<name>`)
    with `recorded` as its training record; returns the figures."""
    figures = evaluate(model, ll_examples)
    slice_ = slice_figures(model)
    print(json.dumps({"figures": figures, "test_slice": slice_}, indent=2))
    protocol = (
        "Test set: tfdlgm.datasets.mnist('test', binarize='fixed', seed=0). ELBO, L_1, L_5, "
        "L_50, KL per layer on all 10,000 images; L_5000 = model.log_likelihood(x, "
        f"num_samples=5000) on the first {figures['log_likelihood_examples']}; active units: "
        "Var_x(E_q[z_u]) > 0.01 over the posterior means of the 10,000 images (Burda et al.)."
    )
    from tfdlgm import zoo  # imported here so a fix to zoo.py reaches a long run's end

    zoo.save_preset(
        model,
        out or os.path.join(ZOO_DIR, name),
        recipe={**recorded, "paper": recipe["paper"]},
        figures={**figures, "protocol": protocol, "test_slice": slice_},
        card_text=card_text(name, recipe, recorded, figures, slice_, model.latent_dims),
        name=name,
    )
    return figures


def this_command(argv=None):
    """The command line of this run, as the card records it."""
    arguments = shlex.join(sys.argv[1:] if argv is None else argv)
    return f"KERAS_BACKEND={keras.backend.backend()} python zoo/train.py {arguments}"


def re_evaluate(name, ll_examples, command, out=None, notes=()):
    """Evaluates the shipped preset `zoo/<name>` again (e.g. L_5000 on more test images) and
    rewrites its figures and card; its weights file and training record are kept (`command`,
    this run's, is added to its commands, `notes` to its notes)."""
    folder = os.path.join(ZOO_DIR, name)
    preset = tfdlgm.zoo.config(folder)
    recipe = preset_recipe(RECIPES[name], preset)
    kept = {key: value for key, value in preset["recipe"].items() if key not in ("paper", "notes")}
    kept["command"] = f"{kept['command']}\n{command}"
    recorded = with_notes(kept, preset["recipe"], notes)
    model = tfdlgm.zoo.load(folder, compile=False)
    return write_preset(model, name, recipe, recorded, ll_examples, out)


def validation_diagnostics(every):
    """`LatentDiagnostics` on all 10,000 validation images, binarised once with seed 1 (the
    test set's protocol, another seed), every `every` epochs."""
    grey = tfdlgm.datasets.load_mnist_arrays()["validation"]
    x = tfdlgm.datasets.fixed_binarization(grey, seed=1)
    return tfdlgm.callbacks.LatentDiagnostics(x, every=every, num_samples=50, seed=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int, help="total epochs to reach")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints/<name>")
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="training wall budget (all runs together)"
    )
    parser.add_argument("--ll-examples", type=int, default=10_000, help="test images for L_5000")
    parser.add_argument("--out", default=None, help="preset folder (default zoo/<name>)")
    parser.add_argument("--workdir", default=".", help="where logs/ and checkpoints/ go")
    parser.add_argument("--device", default=None, help="device description for the card")
    parser.add_argument(
        "--fine-tune",
        action="store_true",
        help="start from the shipped preset zoo/<name> and train the recipe's fine_tune stage",
    )
    parser.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help="start from the shipped preset zoo/<name> and train on the stage it was trained on",
    )
    parser.add_argument(
        "--from",
        dest="start",
        default=None,
        help="with --continue or --fine-tune: the preset folder to start from (default "
        "zoo/<name>), e.g. the --out of an earlier run",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="this run's learning rate (default: the recipe's or its schedule's; from a preset "
        "on a constant rate: the rate the preset last trained at); the card records from when",
    )
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line for the card about this run (runs from the preset keep it); may repeat",
    )
    parser.add_argument(
        "--validate-every",
        type=int,
        default=None,
        metavar="N",
        help="every N epochs, log L_50, the ELBO, KL and active units on the validation set",
    )
    parser.add_argument(
        "--re-evaluate",
        action="store_true",
        help="only evaluate the shipped preset zoo/<name> again and rewrite its figures and card",
    )
    args = parser.parse_args(argv)
    if args.re_evaluate:
        if args.epochs is not None or args.resume or args.fine_tune or args.continue_:
            parser.error(
                "--re-evaluate trains nothing: no --epochs, --resume, --fine-tune or --continue"
            )
        figures = re_evaluate(args.name, args.ll_examples, this_command(argv), args.out, args.note)
        return 0 if math.isfinite(figures["elbo"]) else 1
    if args.epochs is None:
        parser.error("--epochs is required (unless --re-evaluate)")
    if args.learning_rate is not None and not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.validate_every is not None and args.validate_every < 1:
        parser.error(f"--validate-every must be a positive epoch count, got {args.validate_every}")
    recipe = RECIPES[args.name]
    rates = []
    run_name = args.name
    model, preset_epochs, preset_seconds = None, 0, 0.0
    from_preset = args.fine_tune or args.continue_
    if args.fine_tune and "fine_tune" not in recipe:
        parser.error(f"the recipe of {args.name} has no fine_tune stage")
    if args.start is not None and not from_preset:
        parser.error("--from names the preset a --continue or --fine-tune run starts from")
    if from_preset:
        preset_folder = args.start or os.path.join(ZOO_DIR, args.name)
        preset = tfdlgm.zoo.config(preset_folder)
        if preset["name"] != args.name:
            parser.error(f"{preset_folder} holds the preset {preset['name']!r}, not {args.name!r}")
        recipe = preset_recipe(recipe, preset, args.fine_tune)
        fine_tuning = "fine_tune_from_epoch" in recipe
        preset_epochs = recipe["preset"]["epochs"]
        preset_seconds = 60 * recipe["preset"]["wall_time_minutes"]
        rates = preset_learning_rates(RECIPES[args.name], recipe["preset"])
        run_name = f"{args.name}-{'fine-tune' if fine_tuning else 'continue'}"
    learning_rate, schedule = args.learning_rate, learning_rate_schedule(recipe)
    if learning_rate is None and from_preset and schedule is None:
        learning_rate = continued_learning_rate(recipe, rates)
    if learning_rate is not None:  # a constant rate, in place of the recipe's schedule
        recipe, schedule = with_learning_rate(recipe, learning_rate), None
    rate = recipe["optimizer"]["config"]["learning_rate"]
    checkpoints = os.path.join(args.workdir, "checkpoints", run_name)
    keras.utils.set_random_seed(0)
    done, logs = _checkpoint_logs(checkpoints) if args.resume else (0, {})
    if done:
        print(f"Resuming {run_name} at epoch {done} ({logs.get('wall_seconds', 0):.0f} s)")
        if learning_rate is None and "learning_rate_since" in logs:
            parser.error(
                f"the checkpoint trained at learning rate {logs['learning_rate']:g}: pass "
                "--learning-rate to resume it (the card records the rate)"
            )
    elif from_preset:  # a resumed run trains the checkpoint's model instead
        objective = recipe["fine_tune"]["objective"] if fine_tuning else None
        model = tfdlgm.zoo.load(preset_folder, compile=False, objective=objective)
        model.compile(optimizer=keras.optimizers.get(recipe["optimizer"]))
    since, callbacks = preset_epochs, []
    if learning_rate is not None:  # from this run's start, or as its checkpoint says
        since = logs["learning_rate_since"] if logs.get("learning_rate") == rate else done or since
        callbacks.append(LearningRate(rate, since))
    elif schedule is not None:  # set each epoch from the epoch alone, so resuming continues it
        callbacks.append(keras.callbacks.LearningRateScheduler(schedule))
    if args.validate_every is not None:  # before TensorBoard (`train` adds it last)
        callbacks.append(validation_diagnostics(args.validate_every))
    max_seconds = None if args.max_minutes is None else 60 * args.max_minutes
    clock = WallClock(logs.get("wall_seconds", preset_seconds), max_seconds)
    stop = tfdlgm.callbacks.StopOnSignal()  # kill -TERM: evaluate after the epoch in progress
    model = training.train(
        model or build(recipe),
        tfdlgm.datasets.mnist("train", batch_size=recipe["batch_size"], seed=0),
        epochs=max(args.epochs, done, preset_epochs),
        logdir=os.path.join(args.workdir, "logs", run_name),
        checkpoint_dir=checkpoints,
        resume=args.resume,
        warm_up_epochs=recipe.get("warm_up_epochs"),
        callbacks=[clock, stop, *callbacks],
        verbose=2,
        initial_epoch=preset_epochs,
    ).model
    epochs_done = _checkpoint_logs(checkpoints)[0] or preset_epochs
    if schedule is None:
        rates = with_rates(rates, [[since, rate]])
    else:
        rates = with_rates(rates, schedule.changes(preset_epochs, epochs_done))
    device = (
        args.device
        or f"{platform.processor() or platform.machine()} CPU ({os.cpu_count()} cores, shared)"
    )
    if from_preset:  # the devices of every run, in order; a repeat of the last is not added
        previous = recipe["preset"]["device"]
        device = previous if previous.endswith(device) else f"{previous}, then {device}"
    command = this_command(argv)
    if from_preset:
        command = f"{recipe['preset']['command']}\n{command}"
    recorded = {
        "command": command,
        "epochs": epochs_done,
        "batch_size": recipe["batch_size"],
        "optimizer": recipe["optimizer"],
        "objective": recipe["objective_text"],
        "data": recipe["data"],
        "wall_time_minutes": round(clock.seconds / 60, 1),
        "device": device,
        "backend": keras.backend.backend(),
    }
    recorded["learning_rates"] = rates
    notes = args.note
    if stop.received:
        notes = [*notes, f"This run was stopped by {stop.received} after epoch {epochs_done:,}."]
    recorded = with_notes(recorded, recipe.get("preset", {}), notes)
    if "fine_tune_from_epoch" in recipe:
        recorded["fine_tune_from_epoch"] = recipe["fine_tune_from_epoch"]
    figures = write_preset(model, args.name, recipe, recorded, args.ll_examples, args.out)
    return 0 if math.isfinite(figures["elbo"]) else 1


if __name__ == "__main__":
    sys.exit(main())
