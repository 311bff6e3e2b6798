"""Trains a zoo preset by its recipe, evaluates it by the protocol and writes its folder.

```bash
KERAS_BACKEND=jax python tools/train.py vae-mnist              # the whole recipe, from scratch
KERAS_BACKEND=jax python tools/train.py vae-mnist --epochs 500 --max-minutes 60 [--resume]
KERAS_BACKEND=jax python tools/train.py vae-mnist --continue --epochs 1000 [--resume]
KERAS_BACKEND=jax python tools/train.py vae-mnist --re-evaluate
```

A recipe is data: `zoo/<name>/recipe.json` holds the data set (`data`: "mnist", the default, or
"frey_faces") and the split it trains on (`split`: "train", the default, or "train+validation",
all 60,000 MNIST training images, for a final fit once every choice was made on the validation
split; metadata.json and the card say which), the model (registered class name and config), the
optimizer, the batch size, the learning rate by epoch (`learning_rates`, `[[from_epoch, rate],
...]`, piecewise constant: the schedule the shipped preset followed), the KL warm-up, the
fine-tuning stages (`fine_tune`: a list of `{"from_epoch", "objective", "split"}` at strictly
increasing `from_epoch`, or one such stage alone), each training from its epoch on another
objective (the importance-weighted bound, as Sønderby et al. 2016 fine-tune; DReG's gradient of
it, `"gradient": "dreg"`) and on its `split`, or without one on the stage before's (a fit that
chose its recipe on the validation split goes on over all 60,000 images; a stage's split must
hold the one before's), the total `epochs`, and the texts and citation of the card. Since the
rate and the objective are functions of the epoch alone, a run may be cut into pieces
(`--epochs`, `--max-minutes`, `--resume`, `--continue`) and still follow the recipe:
`tools/train.py NAME` with no flags reproduces the preset. A recipe with `"method": "em"`
(factor analysis) is fitted by `FactorAnalysis.fit_em` in one go on the training split drawn
once with seed 0.

Training is `tfdlgm.training.train`: it logs to TensorBoard under `logs/<folder>` and
checkpoints every epoch into `checkpoints/<folder>/` under `--workdir`, the folder `<name>`
before fine-tuning, `<name>-fine-tune` in the first fine-tuning stage and `<name>-fine-tune-<k>`
in the k-th (atomically; `state.json` keeps the wall time so far, which a resumed run counts on
from, the latest of every stage's; one run at a time owns a folder). `--resume` continues from
the checkpoint, `--overwrite` starts afresh over one (a folder that holds a checkpoint is
refused without either); `--max-minutes M` stops before an epoch that would take the
training's wall time past M minutes (those the preset or checkpoint carries count: a budget
already spent is refused before any training); SIGTERM or Ctrl-C
(`tfdlgm.callbacks.StopOnSignal`) after the epoch in progress. Then the model is evaluated on
the recipe's test set (MNIST binarised once, or Frey faces dequantised once, seed 0) by
`tfdlgm.evaluation.evaluate_preset` and the preset folder (`zoo/<name>/`, or `--out`) is
written by `tfdlgm.zoo.save_preset`, its card from the recipe.

`--continue` starts from the shipped preset `zoo/<name>` (`--from FOLDER`: from another folder
of the same recipe, e.g. an `--out`) instead of from scratch: its weights, epoch count and wall
time carry on (its optimizer state is not kept) and the recipe's schedule continues at its
epoch. `--validate-every N` logs held-out figures every N epochs
(`tfdlgm.callbacks.LatentDiagnostics` on the whole validation split, drawn once with seed 1).
`--re-evaluate` trains nothing: it evaluates the preset (`--from FOLDER`: that folder of the
recipe) again and rewrites its figures and card, keeping its weights (written over itself, the
weights file byte for byte).

How the shipped presets' compute was pieced together, stage by stage, is in `zoo/TRAINING.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import textwrap
import time

import keras
import numpy as np

import tfdlgm
from tfdlgm import evaluation, files, training

ZOO_DIR = pathlib.Path(__file__).resolve().parents[1] / "zoo"
RECIPE_FILE = "recipe.json"
# Each data set a recipe may train on (`recipe["data"]`, default "mnist"): what metadata.json
# records of the examples the weights saw, and the texts of the card.
DATASETS = {
    "mnist": {
        "records": {
            "train": {
                "dataset": "MNIST",
                "split": "train",
                "examples": 50_000,
                "binarization": "dynamic",
                "description": (
                    "50,000 MNIST training images (the first 50,000 of keras.datasets.mnist's "
                    "60,000; the last 10,000 are the validation set), dynamically binarised: "
                    "each pixel drawn anew each epoch as Bernoulli(intensity)"
                ),
            },
            "train+validation": {
                "dataset": "MNIST",
                "split": "train+validation",
                "examples": 60_000,
                "binarization": "dynamic",
                "description": (
                    "all 60,000 MNIST training images (keras.datasets.mnist's x_train: the "
                    "training and the validation split), dynamically binarised: each pixel "
                    "drawn anew each epoch as Bernoulli(intensity)"
                ),
            },
        },
        "loader": "mnist",
        "draw": 'binarize="dynamic"',
        "fixed": {"binarize": "fixed"},
        "env_var": "TFDLGM_MNIST",
        "card_dataset": ("mnist", "MNIST test set, binarised once with seed 0"),
        "examples_word": "images",
        "test_text": "MNIST's 10,000 test images binarised once with seed 0",
        "shape_text": "[16, 784] binary images",
        "x_text": "x: [n, 784] in {0, 1}",
        "intended_use": (
            "A density model and sampler of 28 x 28 binarised handwritten digits, for research "
            "and teaching: a baseline to compare a model or an estimator with, latent codes to "
            "inspect, importance-weighted bounds to study. It models binary images only "
            "(Bernoulli pixels): grey levels, other image sizes and other data sets are out of "
            "its scope, and it is not meant for any decision about people. Its figures hold for "
            "MNIST's test set binarised once with seed 0; another binarisation gives other "
            "numbers."
        ),
        # Added to the intended use when some epochs saw only the training split.
        "fewer_examples_text": (
            "The papers' figures come from more training images (see Training data)."
        ),
    },
    "frey_faces": {
        "records": {
            "train": {
                "dataset": "Frey faces",
                "split": "train",
                "examples": 1_575,
                "dequantization": "dynamic",
                "description": (
                    "1,575 Frey faces frames (28 x 20, 8-bit): all but blocks b % 10 in {4, 9} "
                    "of the 131 blocks of 15 consecutive frames, which are the validation and "
                    "test sets; uniformly dequantised, x = (k + u) / 256 with u drawn anew each "
                    "epoch"
                ),
            },
            "train+validation": {
                "dataset": "Frey faces",
                "split": "train+validation",
                "examples": 1_770,
                "dequantization": "dynamic",
                "description": (
                    "1,770 Frey faces frames (28 x 20, 8-bit): all but blocks b % 10 == 9 of the "
                    "131 blocks of 15 consecutive frames, which are the test set (the training "
                    "and the validation split); uniformly dequantised, x = (k + u) / 256 with u "
                    "drawn anew each epoch"
                ),
            },
        },
        "loader": "frey_faces",
        "draw": 'dequantize="dynamic"',
        "fixed": {"dequantize": "fixed"},
        "env_var": "TFDLGM_FREY_FACES",
        "card_dataset": ("frey_faces", "Frey faces test frames, dequantised once with seed 0"),
        "examples_word": "frames",
        "test_text": (
            "the 195 Frey faces test frames (blocks b % 10 == 9) dequantised once with seed 0"
        ),
        "shape_text": "[16, 560] faces, grey levels in [0, 1]",
        "x_text": "x: [n, 560] in [0, 1]",
        "intended_use": (
            "A density model, sampler and imputer of 28 x 20 grey-level frames of one face, for "
            "research and teaching: the continuous-data case of Kingma & Welling, with a "
            "Gaussian decoder. Its densities are of dequantised 8-bit data; `log_likelihood_8bit` "
            "(a lower bound on the 8-bit frames' log-likelihood) and bits per dimension compare "
            "with other models of the same frames. One person's face from one video: it says "
            "nothing about faces in general and is not meant for any decision about people."
        ),
    },
}


def recipe_names() -> list[str]:
    """The presets with a recipe, sorted."""
    return sorted(p.parent.name for p in ZOO_DIR.glob(f"*/{RECIPE_FILE}"))


def read_recipe(name: str) -> dict:
    """The recipe `zoo/<name>/recipe.json`."""
    return json.loads((ZOO_DIR / name / RECIPE_FILE).read_text(encoding="utf-8"))


def learning_rate_at(recipe: dict, epoch: int) -> float:
    """The recipe's learning rate at the 0-based `epoch` (`learning_rates` is piecewise
    constant: `[[from_epoch, rate], ...]`, from epoch 0, in order)."""
    return [rate for start, rate in recipe["learning_rates"] if start <= epoch][-1]


def fine_tuning_stages(recipe: dict) -> list[dict]:
    """The recipe's fine-tuning stages, `[{"from_epoch", "objective", "split"?}, ...]` in order:
    `fine_tune` is a list of them or one stage alone (a dict), and none without it.

    Raises:
        ValueError: if a stage is not a dict with an int `from_epoch` (>= 1) and an
            `objective`, or the `from_epoch`s do not strictly increase.
    """
    tuning = recipe.get("fine_tune") or []
    tuning = [tuning] if isinstance(tuning, dict) else tuning
    where = f"{recipe['name']}'s recipe: `fine_tune`"
    if not isinstance(tuning, list):
        raise ValueError(
            f"{where} must be a stage or a list of stages, "
            f'{{"from_epoch": int, "objective": {{...}}, "split"?: str}}. Received: {tuning!r}'
        )
    for stage in tuning:
        if not (
            isinstance(stage, dict)
            and type(stage.get("from_epoch")) is int
            and stage["from_epoch"] >= 1
            and "objective" in stage
        ):
            raise ValueError(
                f"{where} stages must each have an int `from_epoch` >= 1 and an `objective`. "
                f"Received: {stage!r}"
            )
    starts = [stage["from_epoch"] for stage in tuning]
    if any(later <= earlier for earlier, later in zip(starts, starts[1:])):
        raise ValueError(
            f"{where} stages must start at strictly increasing epochs, each `from_epoch` after "
            f"the one before. Received: from_epoch={starts}"
        )
    return tuning


def stage_reached(recipe: dict, epochs: int) -> int:
    """The stage a run of `epochs` epochs ended in: 0 for the recipe's own objective, k for its
    k-th fine-tuning stage (which trains epochs `from_epoch + 1 ..`, 1-based)."""
    return sum(stage["from_epoch"] < epochs for stage in fine_tuning_stages(recipe))


def stages(recipe: dict, start: int, end: int) -> list[dict]:
    """The pieces of a run from epoch `start` to `end`, one for each stage it trains in:
    `{"start", "end", "fine_tune"}`, where `fine_tune` is 0 for the recipe's own objective,
    before the first fine-tuning stage's `from_epoch`, and k from the k-th stage's on."""
    bounds = [0, *(stage["from_epoch"] for stage in fine_tuning_stages(recipe)), math.inf]
    parts = []
    for k, (begin, finish) in enumerate(zip(bounds, bounds[1:])):
        if max(start, begin) < min(end, finish):
            parts.append({"start": max(start, begin), "end": min(end, finish), "fine_tune": k})
    return parts


def build(recipe: dict, optimizer_config: dict | None = None):
    """The recipe's model, compiled (both by registered class name)."""
    model = keras.saving.deserialize_keras_object(recipe["model"])
    model.compile(optimizer=keras.optimizers.get(optimizer_config or recipe["optimizer"]))
    return model


def with_learning_rate(optimizer: dict, rate: float) -> dict:
    """The optimizer config `optimizer` at learning rate `rate`."""
    return {**optimizer, "config": {**optimizer["config"], "learning_rate": rate}}


def stage_model(recipe: dict, stage: dict, model, start_folder):
    """The model a stage starts from, compiled with a fresh optimizer: `model` (the stage
    before's), else the preset in `start_folder`, else a new one; a fine-tuning stage's model
    trains on its fine-tuning stage's objective (a model from the stage before is rebuilt on it,
    its weights kept)."""
    optimizer = with_learning_rate(recipe["optimizer"], learning_rate_at(recipe, stage["start"]))
    k = stage["fine_tune"]
    objective = fine_tuning_stages(recipe)[k - 1]["objective"] if k else None
    if model is None and start_folder is None:
        return build(recipe, optimizer)
    if model is None:
        model = tfdlgm.zoo.load(start_folder, compile=False, objective=objective)
    elif objective is not None:
        weights = model.get_weights()
        model = type(model).from_config({**model.get_config(), "objective": objective})
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.get(optimizer))
    return model


class WallClock(keras.callbacks.Callback):
    """Adds the training wall time so far (`wall_seconds`, across resumes) to each epoch's logs,
    which the checkpoint's `state.json` keeps, and stops before an epoch that would end past
    `max_seconds` (the median of the last 10 epochs predicts it).

    An epoch's time runs from the end of the one before (or the start of training) to its
    own end, so it counts what the callbacks do between epochs too (a checkpoint, TensorBoard's
    diagnostics): on a GPU they took as long as the epoch itself (about 2 s), and a clock of the
    epochs alone let a 200 s budget run to 300 s."""

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


def checkpoint_logs(folder: pathlib.Path) -> tuple[int, dict]:
    """The last checkpointed epoch and its logs, `(0, {})` before the first."""
    state = files.read_state(folder)
    return (0, {}) if state is None else (state["epoch"], state["logs"])


def dataset_of(recipe: dict) -> str:
    """The data set a recipe trains on, a key of `DATASETS`."""
    return recipe.get("data", "mnist")


def split_of(recipe: dict, fine_tune: int = 0) -> str:
    """The split a recipe's stage (`stages`' `fine_tune`) trains on: `recipe["split"]` (default
    "train") before fine-tuning; a fine-tuning stage's own `split`, else the stage before's."""
    split = recipe.get("split", "train")
    for stage in fine_tuning_stages(recipe)[:fine_tune]:
        split = stage.get("split", split)
    return split


def final_split(recipe: dict, epochs: int) -> str:
    """The split of the last stage a run of `epochs` epochs reached."""
    return split_of(recipe, stage_reached(recipe, epochs))


def splits_seen(recipe: dict, epochs: int) -> set[str]:
    """The splits the stages a run of `epochs` epochs reached trained on."""
    return {split_of(recipe, k) for k in range(stage_reached(recipe, epochs) + 1)}


def data_record(recipe: dict, epochs: int) -> dict:
    """What metadata.json records of the examples the weights of a run of `epochs` epochs saw:
    the last stage's split (each split holds the one before: "train+validation" holds
    "train"), and when the stages' splits differ, which epochs saw which (stages on the split
    of the one before count as one run of epochs)."""
    records = DATASETS[dataset_of(recipe)]["records"]
    runs = []  # (split, first epoch, 1-based) for each run of epochs on one split
    starts = [0, *(stage["from_epoch"] for stage in fine_tuning_stages(recipe))]
    for k in range(stage_reached(recipe, epochs) + 1):
        split = split_of(recipe, k)
        if not runs or runs[-1][0] != split:
            runs.append((split, starts[k] + 1))
    if len(runs) == 1:
        return records[runs[0][0]]
    spans = [
        f"{records[split]['description']}, for epochs {first:,}-{after - 1:,}"
        for (split, first), (_, after) in zip(runs, runs[1:])
    ]
    split, first = runs[-1]
    return {
        **records[split],
        "description": "; then ".join(
            [*spans, f"{records[split]['description']}, from epoch {first:,}"]
        ),
    }


def validation_diagnostics(recipe: dict, every: int):
    """`LatentDiagnostics` on the whole validation split, drawn once with seed 1 (the test
    set's protocol, another seed), every `every` epochs."""
    x = evaluation.protocol_test_set(dataset=dataset_of(recipe), split="validation")
    return tfdlgm.callbacks.LatentDiagnostics(x, every=every, num_samples=50, seed=0)


def training_data(recipe: dict, fine_tune: int = 0):
    """The training split of the recipe's stage (`split_of`), drawn anew each epoch (seed 0)."""
    loader = getattr(tfdlgm.datasets, DATASETS[dataset_of(recipe)]["loader"])
    return loader(split_of(recipe, fine_tune), batch_size=recipe["batch_size"], seed=0)


def checkpoint_dir(recipe, args, fine_tune: int) -> pathlib.Path:
    """Where a stage (`stages`' `fine_tune`) checkpoints: `checkpoints/<name>`, the first
    fine-tuning stage `checkpoints/<name>-fine-tune`, the k-th (k >= 2)
    `checkpoints/<name>-fine-tune-<k>`."""
    suffix = "" if fine_tune == 0 else "-fine-tune" if fine_tune == 1 else f"-fine-tune-{fine_tune}"
    return pathlib.Path(args.workdir) / "checkpoints" / f"{recipe['name']}{suffix}"


def train_stage(recipe, stage, model, args, clock, stop):
    """Trains one stage (`stages`); returns the model trained and the epoch it reached."""
    checkpoints = checkpoint_dir(recipe, args, stage["fine_tune"])
    scheduler = keras.callbacks.LearningRateScheduler(lambda e: learning_rate_at(recipe, e))
    callbacks = [clock, stop, scheduler]
    if args.validate_every is not None:
        callbacks.append(validation_diagnostics(recipe, args.validate_every))
    model = training.train(
        model,
        training_data(recipe, stage["fine_tune"]),
        epochs=stage["end"],
        logdir=pathlib.Path(args.workdir) / "logs" / checkpoints.name,
        checkpoint_dir=checkpoints,
        resume=args.resume,
        overwrite=args.overwrite,
        warm_up_epochs=recipe.get("warm_up_epochs"),
        callbacks=callbacks,
        verbose=2,
        initial_epoch=stage["start"],
    ).model
    return model, checkpoint_logs(checkpoints)[0] or stage["start"]


def train_recipe(recipe, args, start_folder, start_epoch, start_seconds):
    """Trains the recipe from `start_epoch` (the preset in `start_folder`, or from scratch) to
    `args.epochs`, stage by stage; returns the model, the epoch reached and the wall clock,
    which counts on from the preset's wall time or, resuming, from the last checkpoint's."""
    if args.resume:
        logs = [
            checkpoint_logs(checkpoint_dir(recipe, args, k))[1]
            for k in range(len(fine_tuning_stages(recipe)) + 1)
        ]
        start_seconds = max([start_seconds, *(log.get("wall_seconds", 0.0) for log in logs)])
    max_seconds = None if args.max_minutes is None else 60 * args.max_minutes
    if max_seconds is not None and start_seconds >= max_seconds:
        print(
            f"tools/train.py: error: --max-minutes {args.max_minutes:g} is spent before the "
            f"first epoch: the training has run {start_seconds / 60:.1f} minutes already (the "
            "budget counts the minutes the preset or checkpoint carries); give more",
            file=sys.stderr,
        )
        raise SystemExit(2)
    clock = WallClock(start_seconds, max_seconds)
    stop = tfdlgm.callbacks.StopOnSignal()  # kill -TERM: evaluate after the epoch in progress
    keras.utils.set_random_seed(0)
    model, reached = None, start_epoch
    for stage in stages(recipe, start_epoch, args.epochs):
        model = stage_model(recipe, stage, model, start_folder)
        model, reached = train_stage(recipe, stage, model, args, clock, stop)
        if reached < stage["end"]:  # stopped by the budget or a signal
            break
    if model is None:  # nothing to train: the preset as it is
        model = tfdlgm.zoo.load(start_folder, compile=False)
    return model, reached, clock


def fit_by_em(recipe):
    """An EM recipe (`"method": "em"`, factor analysis): `fit_em` on the training split drawn
    once with seed 0; returns the model, the EM iterations and the wall seconds."""
    data = DATASETS[dataset_of(recipe)]
    loader = getattr(tfdlgm.datasets, data["loader"])
    batches = loader(
        split_of(recipe), batch_size=10_000, seed=0, shuffle=False, as_numpy=True, **data["fixed"]
    )
    x = np.concatenate(list(batches))
    model = build(recipe)
    began = time.perf_counter()
    history = model.fit_em(x, **recipe["em"])
    print(f"EM: {len(history)} iterations, training log-likelihood {history[-1]:.2f} nats")
    return model, len(history), time.perf_counter() - began


def em_record(recipe, iterations, wall_seconds):
    """What `metadata.json` records of an EM fit (the optimizer is what `fit` fine-tunes
    with after `tfdlgm.zoo.load`)."""
    return {
        "recipe": recipe["name"],
        "method": "em",
        "epochs": iterations,
        "batch_size": recipe["batch_size"],
        "optimizer": recipe["optimizer"],
        "learning_rates": [],
        "objective": recipe["objective_summary"],
        "wall_time_minutes": round(wall_seconds / 60, 2),
        "backend": keras.backend.backend(),
    }


def training_record(recipe, epochs, wall_seconds):
    """What `metadata.json` records of the training: the recipe, epochs, wall time, and the
    optimizer (at the last epoch's rate) that `tfdlgm.zoo.load` compiles with."""
    rates = [[start, rate] for start, rate in recipe["learning_rates"] if start < max(epochs, 1)]
    record = {
        "recipe": recipe["name"],
        "epochs": epochs,
        "batch_size": recipe["batch_size"],
        "optimizer": with_learning_rate(recipe["optimizer"], rates[-1][1]),
        "learning_rates": rates,
        "objective": recipe["objective_summary"],
        "wall_time_minutes": round(wall_seconds / 60, 1),
        "backend": keras.backend.backend(),
    }
    tuning = fine_tuning_stages(recipe)[: stage_reached(recipe, epochs)]
    reached = [stage["from_epoch"] for stage in tuning]
    if reached:
        record["fine_tune_from_epoch"] = reached[0]
    if len(reached) > 1:
        record["fine_tune_from_epochs"] = reached
    return record


def write_preset(model, recipe, record, ll_examples, out):
    """Evaluates `model` by the protocol and writes its preset folder; returns the figures."""
    dataset = dataset_of(recipe)
    figures = evaluation.evaluate_preset(model, ll_examples=ll_examples, dataset=dataset)
    print(json.dumps(figures, indent=2))
    tfdlgm.zoo.save_preset(
        model,
        out,
        training=record,
        figures=figures,
        card_text=card_text(recipe, record, figures, _parameters(model)),
        name=recipe["name"],
        protocol=evaluation.protocol_text(figures["log_likelihood_examples"], dataset),
        data=data_record(recipe, record["epochs"]),
    )
    return figures


def reproduce_command(recipe) -> str:
    """The one command that reproduces the preset from a fresh clone."""
    return f"KERAS_BACKEND=jax python tools/train.py {recipe['name']}"


def _latent_dims(config) -> list:
    return config["latent_dims"] if "latent_dims" in config else [config["latent_dim"]]


def _parameters(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _rates_text(record) -> str:
    return ", ".join(
        f"{rate:g} from epoch {start:,}" if start else f"{rate:g}"
        for start, rate in record["learning_rates"]
    )


def _front_matter(name, figures, dataset) -> str:
    metrics = [
        ("log_likelihood", "L_5000 (nats)", figures["log_likelihood"]),
        ("L_50", "L_50 (nats)", figures["L_50"]),
        ("L_5", "L_5 (nats)", figures["L_5"]),
        ("elbo", "ELBO (nats)", figures["elbo"]),
    ]
    if "bits_per_dim" in figures:
        metrics.append(("bits_per_dim", "bits per dimension (8-bit)", figures["bits_per_dim"]))
    listed = "".join(
        f"    - type: {kind}\n      name: {label}\n      value: {value:.2f}\n"
        for kind, label, value in metrics
    )
    card_type, card_name = DATASETS[dataset]["card_dataset"]
    return (
        f"---\nlicense: apache-2.0\nlibrary_name: tfdlgm\ndatasets:\n- {card_type}\ntags:\n"
        "- keras\n"
        "- tensorflow-probability\n- jax\n- variational-autoencoder\n- generative-model\n"
        f"- density-estimation\nmodel-index:\n- name: {name}\n  results:\n  - task:\n"
        "      type: density-estimation\n      name: Density estimation\n    dataset:\n"
        f"      type: {card_type}\n      name: {card_name}\n"
        f"      split: test\n    metrics:\n{listed}---\n"
    )


def card_text(recipe, record, figures, parameters) -> str:
    """The model card of a preset (Hugging Face's layout: YAML front matter, then sections),
    from its recipe, training record, figures and trainable parameter count."""
    name = recipe["name"]
    dataset = dataset_of(recipe)
    data = DATASETS[dataset]
    word = data["examples_word"]
    seen = data_record(recipe, record["epochs"])
    split = final_split(recipe, record["epochs"])
    intended_use = data["intended_use"]
    if "fewer_examples_text" in data and "train" in splits_seen(recipe, record["epochs"]):
        intended_use += " " + data["fewer_examples_text"]
    held_out = (
        f"The validation and test {word} were never trained on."
        if split == "train"
        else f"The test {word} were never trained on; the validation {word} were, once every "
        "choice of the recipe had been made on them."
    )
    model = recipe["model"]
    class_name = model["class_name"].split(">")[-1]
    ll, examples = figures["log_likelihood_examples"], figures["examples"]
    ll_on = f"all {examples:,} test {word}" if ll >= examples else f"the first {ll:,} test {word}"
    kl = ", ".join(f"{k:.2f}" for k in figures["kl"])
    active = ", ".join(str(a) for a in figures["active_units"])
    sizes = ", ".join(str(k) for k in _latent_dims(model["config"]))
    paper_epochs = (
        f"{recipe['paper_epochs']:,} in the paper" if recipe["paper_epochs"] else "not stated"
    )
    warm_up = recipe.get("warm_up_epochs")
    slice_ = figures["test_slice"]
    loader = f"tfdlgm.datasets.{data['loader']}"
    exact = (
        f"\n\nThe exact log-likelihood, `model.exact_log_likelihood(x).mean()`, is "
        f"{figures['exact_log_likelihood']:.2f} nats per {word[:-1]}."
        if "exact_log_likelihood" in figures
        else ""
    )
    source = "the exact figure" if exact else "L_5000"
    eight_bit = (
        f"\n\nAs 8-bit data: log_likelihood_8bit = {source} - 560 log 256 = "
        f"{figures['log_likelihood_8bit']:.2f} nats per frame, a lower bound on the "
        f"log-likelihood of the 8-bit test frames (Theis et al. 2016), "
        f"{figures['bits_per_dim']:.3f} bits per dimension."
        if "bits_per_dim" in figures
        else ""
    )
    return f"""{_front_matter(name, figures, dataset)}
# {name}

{recipe["description"]}

## Model

- Class: `tfdlgm.models.{class_name}` (registered as `{model["class_name"]}`), \
{parameters:,} trainable parameters, float32
- Follows: {recipe["paper"]}

```python
import tfdlgm

model = tfdlgm.zoo.load("{name}")           # compiled with the preset's optimizer
model.sample(16, seed=0)                     # {data["shape_text"]}
model.log_likelihood(x, num_samples=5000)    # nats per {word[:-1]}, {data["x_text"]}
model.fit({loader}("train"), epochs=1)   # fine-tune with plain Keras
```

## Intended use and limitations

{_wrap(intended_use)}

## Training data

{seen["description"]} (`{loader}("{split}", {data["draw"]}, \
batch_size={recipe["batch_size"]}, seed=0)`). {held_out}

## Training procedure

From a fresh clone, with {seen["dataset"]} at `{data["env_var"]}` (or in Keras' \
cache):

```bash
{reproduce_command(recipe)}
```

It follows `zoo/{name}/recipe.json`; `zoo/TRAINING.md` says how the compute for this preset
was pieced together and what each stage gained.

| Hyperparameter | Value |
|---|---|
{_schedule_rows(recipe, record, paper_epochs)}
| Objective | {recipe["objective_text"]} |
| KL warm-up | {f"{warm_up} epochs" if warm_up else "none"} |
| Backend | {record["backend"]} |
| Wall time | {record["wall_time_minutes"]:.1f} min of training |

## Evaluation

Nats per {word[:-1]} on {data["test_text"]}
(`{evaluation.protocol_source(dataset)}`):

| ELBO | L_1 | L_5 | L_50 | L_5000 ({ll_on}) | KL per layer | active units |
|---|---|---|---|---|---|---|
| {figures["elbo"]:.2f} | {figures["L_1"]:.2f} | {figures["L_5"]:.2f} | {figures["L_50"]:.2f} \
| {figures["log_likelihood"]:.2f} | {kl} | {active} / {sizes} |

ELBO, L_1, L_5, L_50 and KL are on all {examples:,} test {word}; active units use Burda et al.'s
criterion Cov_x(E_q[z_u]) > 0.01 over the {examples:,} posterior means. \
{recipe["reference_text"]}{exact}{eight_bit}

On the first 100 test {word} `model.elbo(x, num_samples=100, seed=0).mean()` is \
{slice_["elbo_100_samples_seed_0"]:.3f} and the analytic KL per layer \
{", ".join(f"{k:.4f}" for k in slice_["kl"])} (`metadata.json`'s `figures.test_slice`, which
`tests/test_zoo.py` checks the shipped weights against).

## Citation

```bibtex
{recipe["citation"].strip()}
```
"""


def _schedule_rows(recipe, record, paper_epochs) -> str:
    """The hyperparameter table's rows on the schedule: EM iterations, or epochs and rates."""
    if record.get("method") == "em":
        return (
            f"| EM iterations | {record['epochs']:,} (to a gain under "
            f"{recipe['em']['tolerance']:g} nats per example) |\n"
            f"| Data per iteration | all {record['batch_size']:,} training examples |\n"
            f"| Optimizer for fine-tuning | {recipe['optimizer_text']} |"
        )
    return (
        f"| Epochs | {record['epochs']:,} ({paper_epochs}) |\n"
        f"| Batch size | {record['batch_size']} |\n"
        f"| Optimizer | {recipe['optimizer_text']} |\n"
        f"| Learning rate by epoch | {_rates_text(record)} |"
    )


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=92)


def parse(argv=None):
    """The command line's arguments, checked (`parser.error` exits with status 2)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=recipe_names())
    parser.add_argument("--epochs", type=int, help="the epoch to reach (default: the recipe's)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh where a checkpoint folder already holds a checkpoint (deletes it)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="the training's wall budget in minutes, counting those the preset or checkpoint "
        "carries",
    )
    parser.add_argument("--ll-examples", type=int, default=10_000, help="test images for L_5000")
    parser.add_argument("--out", help="the preset folder to write (default zoo/<name>)")
    parser.add_argument("--workdir", default=".", help="where logs/ and checkpoints/ go")
    parser.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help="start from the shipped preset zoo/<name> at its epoch",
    )
    parser.add_argument("--from", dest="start", help="start from this preset folder instead")
    parser.add_argument(
        "--validate-every", type=int, metavar="N", help="log validation figures every N epochs"
    )
    parser.add_argument("--re-evaluate", action="store_true", help="only evaluate the preset again")
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume continues a checkpoint and --overwrite deletes it: pass one")
    if args.re_evaluate and (args.epochs is not None or args.resume or args.continue_):
        parser.error("--re-evaluate trains nothing: no --epochs, --resume or --continue")
    if args.validate_every is not None and args.validate_every < 1:
        parser.error(f"--validate-every must be a positive epoch count, got {args.validate_every}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be positive, got {args.epochs}")
    recipe = read_recipe(args.name)
    try:
        tuning = fine_tuning_stages(recipe)
    except ValueError as error:
        parser.error(str(error))
    splits = [split_of(recipe, k) for k in range(len(tuning) + 1)]
    for split in splits:
        if split not in tfdlgm.datasets.TRAINING_SPLITS:
            parser.error(
                f'{args.name}\'s recipe trains on "split": {split!r}; it must be one of '
                f"{', '.join(tfdlgm.datasets.TRAINING_SPLITS)}"
            )
    order = tfdlgm.datasets.TRAINING_SPLITS.index
    for k, (before, after) in enumerate(zip(splits, splits[1:]), start=1):
        if order(after) < order(before):
            parser.error(
                f"{args.name}'s recipe fine-tunes (stage {k}) on {after!r} after {before!r}: a "
                "stage's split must hold the one before's (the weights saw those examples)"
            )
    em = recipe.get("method") == "em"
    if em and (args.epochs or args.resume or args.continue_ or args.start or args.max_minutes):
        parser.error(
            f"{args.name} is fitted by EM in one go: no --epochs, --resume, --continue, "
            "--from or --max-minutes"
        )
    if args.continue_ and args.start is None:
        args.start = str(ZOO_DIR / args.name)
    if args.start is not None:
        start_name = tfdlgm.zoo.metadata(pathlib.Path(args.start)).get("name")
        if start_name != args.name:
            parser.error(f"{args.start} holds the preset {start_name!r}, not {args.name!r}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    recipe = read_recipe(args.name)
    out = pathlib.Path(args.out) if args.out else ZOO_DIR / args.name
    if args.re_evaluate:
        folder = pathlib.Path(args.start) if args.start else ZOO_DIR / args.name
        record = tfdlgm.zoo.metadata(folder)["training"]
        model = tfdlgm.zoo.load(folder, compile=False)
        figures = write_preset(model, recipe, record, args.ll_examples, out)
        return 0 if math.isfinite(figures["elbo"]) else 1
    if recipe.get("method") == "em":
        model, iterations, seconds = fit_by_em(recipe)
        figures = write_preset(
            model, recipe, em_record(recipe, iterations, seconds), args.ll_examples, out
        )
        return 0 if math.isfinite(figures["elbo"]) else 1
    args.epochs = args.epochs or recipe["epochs"]
    start_epoch, start_seconds = 0, 0.0
    if args.start is not None:
        start = tfdlgm.zoo.metadata(pathlib.Path(args.start))["training"]
        start_epoch, start_seconds = start["epochs"], 60 * start["wall_time_minutes"]
    start_folder = pathlib.Path(args.start) if args.start else None
    model, epochs, clock = train_recipe(recipe, args, start_folder, start_epoch, start_seconds)
    record = training_record(recipe, epochs, clock.seconds)
    figures = write_preset(model, recipe, record, args.ll_examples, out)
    return 0 if math.isfinite(figures["elbo"]) else 1


if __name__ == "__main__":
    sys.exit(main())
