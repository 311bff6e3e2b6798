"""The `tfdlgm` command: one verb per job, the work done by the library.

```bash
tfdlgm zoo list                                  # the presets
tfdlgm zoo card vae-mnist                        # a preset's card
tfdlgm train --model vae --latent-dims 50 --hidden 200,200 --epochs 10 \\
    --logdir logs/vae --checkpoint-dir checkpoints/vae --output vae.keras
tfdlgm eval vae.keras --k 5000 --examples 1000   # the protocol table on the test split
tfdlgm sample vae-mnist -n 64 -o samples.png
tfdlgm impute vae.keras --mask bottom-half -o completed.png
tfdlgm impute table.keras --input my_table.csv   # -> my_table.imputed.csv, ...-variance.csv
tfdlgm export vae-mnist served                   # a TensorFlow SavedModel (LatentModel.export)
tfdlgm --backend jax train ...                   # any verb under JAX
```

`--backend` sets `KERAS_BACKEND` before Keras starts. `import tfdlgm` starts no backend, and
this module imports the heavy modules only inside the verbs that need them: `tfdlgm --help`,
`tfdlgm zoo list` and `tfdlgm zoo card NAME` never import Keras, TensorFlow or JAX. Where
Keras already runs another backend (`main` called in a process that imported it), the command
starts itself again in a fresh interpreter with `KERAS_BACKEND` set. TensorFlow's C++ logging
is silenced (`TF_CPP_MIN_LOG_LEVEL=3`, set before TensorFlow starts) unless you set
`TF_CPP_MIN_LOG_LEVEL` yourself; the lines its libraries log while they load, which that
variable does not reach, are held back by the same level (`_start_keras`).

`train --model NAME` names a registered model class by its `short_name`
(`tfdlgm.models.get`): `vae`, `dlgm`, `lvae`, `fa`, or a model of your own registered with
Keras (imported before `main` runs).

Exit status: 0 on success, 1 when the command failed (a missing file, a file that is not a
model, an unknown preset, an optional package not installed: one line on stderr, no
traceback), 2 on a usage error (argparse's).

Every path a verb writes (`--output`/`-o`, `--logdir`, `--checkpoint-dir`) is checked before
any work starts (`_check_output`). `train --checkpoint-dir DIR` owns DIR for the whole run
(`tfdlgm.files.hold_folder`), refuses a DIR that holds a checkpoint unless `--resume` or
`--overwrite`, and with `--resume` takes the model from the checkpoint: the flags that
describe the model may be omitted, and those given must agree with it (docs/reliability.md).

`impute --input FILE` reads and writes the table through `tfdlgm.tables`; it refuses an output
that exists unless `--overwrite`, and one that is the input always.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import re
import sys
import zipfile

BACKENDS = ("tensorflow", "jax")
IMPUTATION_METHODS = ("importance", "pseudo_gibbs", "metropolis_within_gibbs")
IMPUTATION_PROPOSALS = ("mixture", "encoder")
# `impute`'s defaults, filled in after parsing: each applies to some modes and methods only
# (`_check_impute_flags`).
IMPUTATION_DEFAULTS = {
    "num_samples": 1000,
    "proposal": "mixture",
    "steps": 100,
    "num_chains": 10,
    "examples": 16,
}
_RESTARTED = "_TFDLGM_CLI_RESTARTED"  # set in the environment of the restarted command
# TensorFlow's C++ log level unless the user set one: 3 keeps its INFO, WARNING and ERROR lines
# (such as `failed call to cuInit` on a machine without a GPU) off the terminal; its errors
# still reach the user as Python exceptions, one line each.
TF_LOG_LEVEL = "3"
# Below this effective sample size `impute --input` warns that a row's variance understates
# the uncertainty (a self-normalised estimate from fewer distinct draws).
FEW_EFFECTIVE_SAMPLES = 10
# The verbs that start Keras (and its backend); `zoo` and its verbs never do.
KERAS_VERBS = frozenset({"train", "eval", "sample", "impute", "export", "bench"})
# A line of absl's C++ logging: severity letter, MMDD, then the time ("I0000 00:00:17...").
_ABSL_LINE = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d\d")
_ABSL_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
# What absl prints, at WARNING severity, before its first line when logging is not set up yet.
_ABSL_UNINITIALISED = "WARNING: All log messages before absl::InitializeLog() is called"
# `train`'s defaults, filled in after parsing (argparse's are None, so that `_train` knows which
# flags were given); with --resume the checkpoint's values replace the model's.
TRAINING_DEFAULTS = {"batch_size": 100, "learning_rate": 1e-3}
DEFAULT_SEED = 0


class CommandError(Exception):
    """A failure the user can fix: printed as one line on stderr, exit status 1 (or `status`)."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def main(argv: list[str] | None = None) -> int:
    """Runs `tfdlgm ARGV...`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    parser = build_parser()
    argv, suite_arguments = _split_bench(argv)
    args = parser.parse_args(argv)
    if suite_arguments is not None:
        args.arguments = suite_arguments
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        _use_backend(args.backend, argv)
        if args.command in KERAS_VERBS:
            _start_keras()
        return args.run(args) or 0
    except CommandError as error:
        _print_error(args, error)
        return error.status
    except (ValueError, OSError) as error:  # the library's errors on bad input
        _print_error(args, error)
        return 1
    except ImportError as error:  # an optional package (tensorboard) not installed
        _print_error(args, error)
        return 1
    except Exception as error:
        if not isinstance(error, _machine_errors()):
            raise
        _print_error(args, _machine_error_message(error))
        return 1


def _machine_errors() -> tuple[type[BaseException], ...]:
    """The errors of a computation the machine could not run (out of memory, a kernel or a
    write TensorFlow or JAX could not do): printed as one line, as a user's mistake is. Only
    the libraries already imported are asked."""
    errors = [MemoryError]
    if "tensorflow" in sys.modules:
        errors.append(sys.modules["tensorflow"].errors.OpError)
    if "jax" in sys.modules:
        errors.append(sys.modules["jax"].errors.JaxRuntimeError)
    return tuple(errors)


def _machine_error_message(error, limit=300):
    """`error`'s first line, without TensorFlow's `{{function_node ...}}` prefix, cut at `limit`
    characters; with a hint where the machine ran out of memory or of file space (TensorFlow's
    event writer reports a full disk or a file-size limit as an `OutOfRangeError`)."""
    lines = str(error).strip().splitlines() or [""]
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", lines[0])
    text = text if len(text) <= limit else f"{text[: limit - 3]}..."
    out_of_memory = isinstance(error, MemoryError) or re.search(
        r"OOM|RESOURCE_EXHAUSTED|out of memory", str(error)
    )
    hint = (
        ": the machine ran out of memory; ask for less (--batch-size, --num-samples, "
        "--hidden, --examples, -n, --k)"
        if out_of_memory
        else ""
    )
    if re.search(r"File too large|No space left on device|Disk quota exceeded", text):
        return f"a file could not be written ({text}): free space or raise the file-size limit"
    return f"the computation failed ({type(error).__name__}: {text}){hint}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (no Keras import: it runs before `--backend` acts)."""
    parser = argparse.ArgumentParser(
        prog="tfdlgm",
        description="Deep latent Gaussian models: train, evaluate, sample, impute.",
        epilog="Exit status: 0 success, 1 failure (one line on stderr), 2 usage error.",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (sets KERAS_BACKEND); default: KERAS_BACKEND or Keras' config",
    )
    parser.set_defaults(command=None)
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")

    zoo = verbs.add_parser("zoo", help="the pretrained presets", description="The presets.")
    zoo.set_defaults(command="zoo", run=lambda args: zoo.print_help(sys.stderr) or 2)
    zoo_verbs = zoo.add_subparsers(title="commands", metavar="COMMAND")
    listing = zoo_verbs.add_parser(
        "list",
        help="list the presets",
        description="The presets: data set, objective, test L_5000 (nats), parameters.",
    )
    listing.set_defaults(command="zoo list", run=_zoo_list)
    card = zoo_verbs.add_parser("card", help="print a preset's card", description="A card.")
    card.add_argument("name", help="preset name (see `tfdlgm zoo list`) or folder")
    card.set_defaults(command="zoo card", run=_zoo_card)

    train = verbs.add_parser(
        "train",
        help="train a model on MNIST",
        description="Trains a model on dynamically binarised MNIST with Keras' fit (a progress "
        "bar per epoch), checkpointing every epoch; see tfdlgm.training.train. Ctrl-C or "
        "SIGTERM ends it after the epoch in progress (and writes --output); a second, at once.",
    )
    model = train.add_argument_group("model")
    model.add_argument(
        "--model",
        help="the model family: vae, dlgm, lvae or fa, a registered class's short_name (with "
        "--resume: the checkpoint's)",
    )
    model.add_argument(
        "--latent-dims", type=_int_list, help="units per latent layer, bottom first: 50 or 64,32"
    )
    model.add_argument("--hidden", type=_int_list, help="hidden units, e.g. 200,200")
    model.add_argument("--covariance", help="posterior covariance: diagonal or rank_one")
    model.add_argument(
        "--likelihood", help="bernoulli, gaussian or gaussian_per_example (fa: gaussian)"
    )
    model.add_argument("--objective", choices=("elbo", "iwae"), default=None)
    model.add_argument("--num-samples", type=_positive_int, help="k: samples per example")
    model.add_argument(
        "--seed",
        type=_non_negative_int,
        help=f"default: {DEFAULT_SEED} (with --resume: the checkpoint's)",
    )
    fitting = train.add_argument_group("training")
    fitting.add_argument("--epochs", type=_positive_int, required=True, help="epochs to reach")
    fitting.add_argument(
        "--batch-size", type=_positive_int, help=f"default: {TRAINING_DEFAULTS['batch_size']}"
    )
    fitting.add_argument(
        "--learning-rate",
        type=_positive_float,
        help=f"Adam's; default: {TRAINING_DEFAULTS['learning_rate']:g} (with --resume: the "
        "checkpoint's optimizer's)",
    )
    fitting.add_argument("--warm-up", type=_positive_int, help="KL warm-up epochs")
    fitting.add_argument(
        "--train-examples", type=_positive_int, help="train on this prefix of the split"
    )
    fitting.add_argument(
        "--validation-examples",
        type=_non_negative_int,
        default=1000,
        help="validation images evaluated each epoch (0: none); default: 1000",
    )
    fitting.add_argument("--logdir", help="TensorBoard logs (tensorboard --logdir DIR)")
    fitting.add_argument("--checkpoint-dir", help="checkpoint every epoch into this folder")
    fitting.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    fitting.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the checkpoint in --checkpoint-dir as the run starts, and start afresh",
    )
    fitting.add_argument("--output", type=_keras_file, help="save the trained model (.keras)")
    _add_devices_argument(fitting)
    train.set_defaults(command="train", run=_train)

    evaluate = verbs.add_parser(
        "eval",
        help="the evaluation protocol's table",
        description="Prints ELBO, L_1, L_5, L_50, L_k, KL per layer and active units on the "
        "first --examples images of an MNIST split, binarised once with seed 0.",
    )
    _add_model_argument(evaluate)
    evaluate.add_argument("--k", type=_positive_int, default=5000, help="default: 5000")
    evaluate.add_argument("--split", choices=("test", "validation", "train"), default="test")
    evaluate.add_argument("--examples", type=_positive_int, default=1000, help="default: 1000")
    evaluate.add_argument(
        "--k-examples", type=_positive_int, help="L_k on the first N only; default: --examples"
    )
    evaluate.add_argument("--seed", type=_non_negative_int, default=0, help="default: 0")
    _add_devices_argument(evaluate)
    evaluate.set_defaults(command="eval", run=_eval)

    sample = verbs.add_parser(
        "sample",
        help="a PNG grid of samples",
        description="Writes a grid of samples x ~ p(x) (pixel probabilities E[x | z]).",
    )
    _add_model_argument(sample)
    sample.add_argument("-n", type=_positive_int, default=64, help="samples; default: 64")
    sample.add_argument("-o", "--output", type=_png_file, required=True, help="the PNG file")
    sample.add_argument("--seed", type=_non_negative_int, default=0, help="default: 0")
    sample.add_argument(
        "--draws", action="store_true", help="draw binary x instead of pixel probabilities"
    )
    sample.set_defaults(command="sample", run=_sample)

    impute = verbs.add_parser(
        "impute",
        help="complete your table, or masked test images",
        description="With --input FILE: completes the missing entries (NaN or empty cells) of "
        "a .csv or .npy table and writes the completed table (the predictive mean at missing "
        "entries, observed entries as given) and the predictive variances beside it, or to "
        "-o and its -variance twin. With --mask: masks MNIST test images, completes them and "
        "writes a PNG: rows of originals, masked inputs (missing pixels in blue), completions.",
    )
    _add_model_argument(impute)
    given = impute.add_mutually_exclusive_group()
    given.add_argument(
        "--input",
        metavar="FILE",
        type=_file_name(".csv", ".npy"),
        help="your table: .csv (an optional header row) or .npy; NaN or empty = missing",
    )
    given.add_argument(
        "--mask",
        type=_mask,
        help="MNIST test images: bottom-half (default), top-half or random:P",
    )
    impute.add_argument(
        "--method",
        choices=IMPUTATION_METHODS,
        help="default: importance (sampling, from the mixture proposal)",
    )
    impute.add_argument(
        "--proposal",
        choices=IMPUTATION_PROPOSALS,
        help="importance: the mixture of the encoder at completions drawn by short chains, or "
        "the encoder at the zero-filled data (MIWAE's); default: "
        f"{IMPUTATION_DEFAULTS['proposal']}",
    )
    impute.add_argument(
        "--num-samples",
        type=_positive_int,
        help=f"importance samples per row; default: {IMPUTATION_DEFAULTS['num_samples']}",
    )
    impute.add_argument(
        "--steps",
        type=_positive_int,
        help=f"steps of a chain; default: {IMPUTATION_DEFAULTS['steps']}",
    )
    impute.add_argument(
        "--num-chains",
        type=_number(int, lambda value: value >= 2, "an int >= 2"),
        help="--input, a chain: chains per row, whose spread gives the variance; default: "
        f"{IMPUTATION_DEFAULTS['num_chains']}",
    )
    impute.add_argument(
        "--examples",
        type=_positive_int,
        help=f"--mask: test images; default: {IMPUTATION_DEFAULTS['examples']}",
    )
    impute.add_argument(
        "-o",
        "--output",
        help="--mask: the PNG file (required); --input: the completed table, default "
        "NAME.imputed.csv (.npy) beside the input, variances in NAME.imputed-variance.csv",
    )
    impute.add_argument(
        "--overwrite", action="store_true", help="--input: replace existing output files"
    )
    impute.add_argument("--seed", type=_non_negative_int, default=0, help="default: 0")
    impute.set_defaults(command="impute", run=_impute)

    export = verbs.add_parser(
        "export",
        help="a TensorFlow SavedModel for serving",
        description="Writes a TensorFlow SavedModel with the endpoints log_likelihood, elbo, "
        "sample, reconstruct and encode (LatentModel.export); needs the TensorFlow backend.",
    )
    _add_model_argument(export)
    export.add_argument("folder", metavar="DIR", help="the SavedModel's folder")
    export.add_argument(
        "--k", type=_positive_int, default=5000, help="samples of log_likelihood; default: 5000"
    )
    export.set_defaults(command="export", run=_export)

    bench = verbs.add_parser(
        "bench", help="run the benchmark suite", description="Runs benchmarks/run.py."
    )
    bench.add_argument(
        "arguments", nargs=argparse.REMAINDER, help="passed to benchmarks/run.py as they are"
    )
    bench.set_defaults(command="bench", run=_bench)
    return parser


# -- verbs -----------------------------------------------------------------------------------


def _zoo_list(args):
    """One line a preset: name, data set, objective, test L_5000 and trainable parameters, in
    columns as wide as their longest entry."""
    from tfdlgm import zoo

    rows = []
    for name in zoo.list():
        metadata = zoo.metadata(name)
        figure = metadata["figures"].get("log_likelihood")
        nll = f"L_5000 {figure:7.2f}" if isinstance(figure, (int, float)) else ""
        data = metadata.get("data", {})
        dataset = data.get("dataset", "?") + (", binarised" if data.get("binarization") else "")
        objective = metadata["training"].get("objective", "?")
        rows.append((name, dataset, objective, nll, f"{metadata['parameters']:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        left = "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths))
        print(f"{left}  {row[3]:>{widths[3]}}  {row[4]:>{widths[4]}} parameters")


def _zoo_card(args):
    from tfdlgm import zoo

    print(zoo.card(args.name))


def _train(args):
    import keras

    from tfdlgm import files, training

    if args.model is None and not args.resume:
        raise CommandError("the following arguments are required: --model", 2)
    if args.resume and args.checkpoint_dir is None:
        raise CommandError("--resume needs --checkpoint-dir, the folder to resume from", 2)
    if args.resume and args.overwrite:
        raise CommandError(
            "--resume continues the checkpoint and --overwrite deletes it: pass one", 2
        )
    if args.model is not None:
        _model_class(args.model)  # an unknown name fails before any work
    _check_output(args.output, "--output")
    _check_output(args.logdir, "--logdir", folder=True)
    _check_output(args.checkpoint_dir, "--checkpoint-dir", folder=True)
    owner = (
        contextlib.nullcontext()
        if args.checkpoint_dir is None
        else files.hold_folder(args.checkpoint_dir)
    )
    try:
        with owner:
            checkpoint = None
            if args.checkpoint_dir is not None:
                training.check_checkpoint_folder(
                    args.checkpoint_dir, resume=args.resume, overwrite=args.overwrite
                )
                if args.resume:
                    checkpoint = training.checkpoint_config(args.checkpoint_dir)
            given = _fill_flags(args, checkpoint)
            keras.utils.set_random_seed(args.seed)
            with _data_parallel(args.devices):
                _train_in_block(args, checkpoint, given)
    except files.FolderInUseError as error:
        raise CommandError(str(error)) from error


def _fill_flags(args, checkpoint):
    """Fills in the defaults of the flags not given. Resuming a checkpoint (`(config, epoch)`),
    `--model` and `--seed` take the checkpoint's values, the model flags given must agree
    with its model (a `CommandError` listing each that does not), and the training flags
    given are said on stderr. Returns the training flags given, as `{option: value}`."""
    given = {option: getattr(args, option) for option in TRAINING_DEFAULTS}
    given = {option: value for option, value in given.items() if value is not None}
    for option, value in TRAINING_DEFAULTS.items():
        if getattr(args, option) is None:
            setattr(args, option, value)
    if checkpoint is None:
        if args.seed is None:
            args.seed = DEFAULT_SEED
        if args.model is None:
            raise CommandError(
                f"--model is required: --resume found no checkpoint in {args.checkpoint_dir}", 2
            )
        return given
    config, epoch = checkpoint
    saved = _checkpoint_flags(config)
    disagree = [
        f"--{option.replace('_', '-')} {_flag_text(getattr(args, option))} (the checkpoint's: "
        f"{_flag_text(value)})"
        for option, value in saved.items()
        if getattr(args, option) is not None and getattr(args, option) != value
    ]
    if disagree:
        raise CommandError(
            f"--resume: the checkpoint in {args.checkpoint_dir} (epoch {epoch}) holds another "
            f"model than these flags say: {', '.join(disagree)}. Omit them to resume the "
            "checkpoint's model, or pass --overwrite or another --checkpoint-dir to train a "
            "new one",
            2,
        )
    args.model = saved["model"]
    args.seed = DEFAULT_SEED if saved["seed"] is None else saved["seed"]
    if given:
        rate = (
            config.get("compile_config", {})
            .get("optimizer", {})
            .get("config", {})
            .get("learning_rate")
        )
        changes = [
            f"--{option.replace('_', '-')} {value:g}"
            + (
                f" (the checkpoint's optimizer had {rate:g})"
                if option == "learning_rate" and isinstance(rate, (int, float))
                else ""
            )
            for option, value in given.items()
        ]
        print(
            f"tfdlgm train: resuming {args.checkpoint_dir} at epoch {epoch} with "
            f"{', '.join(changes)}",
            file=sys.stderr,
        )
    return given


def _checkpoint_flags(config):
    """The model flags' values of a checkpoint's model config (None: it has no such flag)."""
    import keras

    cls = keras.saving.get_registered_object(config.get("registered_name"))
    options = config.get("config", {})
    objective = options.get("objective") or {}
    latent = options.get(
        "latent_dims", [options["latent_dim"]] if "latent_dim" in options else None
    )
    return {
        "model": getattr(cls, "short_name", None) or config.get("class_name"),
        "latent_dims": None if latent is None else tuple(latent),
        "hidden": None if options.get("hidden") is None else tuple(options["hidden"]),
        "covariance": options.get("covariance"),
        "likelihood": options.get("likelihood"),
        "objective": objective.get("name"),
        "num_samples": objective.get("num_samples"),
        "seed": options.get("seed"),
    }


def _flag_text(value):
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _train_in_block(args, checkpoint, given):
    import keras

    from tfdlgm import callbacks, datasets, training

    extra = [callbacks.StopOnSignal()]
    if checkpoint is None:
        model = _build_model(args)
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    else:  # the checkpoint's architecture; `training.train` loads its weights and optimizer
        model = keras.saving.deserialize_keras_object(checkpoint[0])
        if "learning_rate" in given:
            rate = args.learning_rate
            extra.append(keras.callbacks.LearningRateScheduler(lambda epoch, _: rate))
    arrays = datasets.load_mnist_arrays()
    _check_count(args.train_examples, arrays["train"], "--train-examples", "train")
    _check_count(
        args.validation_examples, arrays["validation"], "--validation-examples", "validation"
    )
    x_train = arrays["train"][: args.train_examples]
    train_data = datasets.NumpyBatches(
        x_train, batch_size=args.batch_size, binarize="dynamic", seed=args.seed, shuffle=True
    )
    validation_data = None
    if args.validation_examples:
        validation_data = datasets.NumpyBatches(
            arrays["validation"][: args.validation_examples],
            batch_size=args.batch_size,
            binarize="fixed",
            seed=0,
        )
    resuming = "" if checkpoint is None else f" resumed at epoch {checkpoint[1]}"
    print(
        f"{type(model).__name__} ({model.count_params():,} parameters){resuming} on "
        f"{len(x_train):,} MNIST images, backend {keras.backend.backend()}"
    )
    try:
        history = training.train(
            model,
            train_data,
            epochs=args.epochs,
            logdir=args.logdir,
            checkpoint_dir=args.checkpoint_dir,
            resume=args.resume,
            validation_data=validation_data,
            warm_up_epochs=args.warm_up,
            callbacks=extra,
            overwrite=args.overwrite,
        )
    except Exception as error:
        print(flush=True)  # end the progress bar's line: the error starts on its own line
        if isinstance(error, training.NonFiniteLossError):
            raise CommandError(str(error)) from error
        raise
    if args.output:
        history.model.save(args.output)
        print(f"Model written to {args.output}")


def _eval(args):
    from tfdlgm import zoo
    from tfdlgm.evaluation import evaluate_protocol

    if args.k_examples is not None and args.k_examples > args.examples:
        raise CommandError(
            f"--k-examples {args.k_examples:,} is more than --examples {args.examples:,}: L_k "
            "is computed on the first --k-examples of the --examples images",
            2,
        )

    with _data_parallel(args.devices):
        model = _load_model(args.model)
        x = _mnist_examples(model, args.split, args.examples)
        print(f"Evaluating {args.model} on {len(x):,} {args.split} images (k = {args.k:,})...")
        figures = evaluate_protocol(
            model, x, k=args.k, seed=args.seed, k_examples=args.k_examples, verbose="auto"
        )
    card = zoo.metadata(args.model)["figures"] if args.model in zoo.list() else {}
    names = [("ELBO", "elbo", "elbo")] + [
        (f"L_{j}", f"L_{j}", "log_likelihood" if j == 5000 else f"L_{j}")
        for j in sorted({1, 5, 50, args.k})
    ]
    print(f"{'figure':16} {'nats':>10} {'card':>10}   (card: the preset's full evaluation)")
    for label, key, card_key in names:
        note = f"   first {figures['k_examples']:,} images" if key == f"L_{args.k}" else ""
        on_card = f"{card[card_key]:10.2f}" if card_key in card else f"{'':10}"
        print(f"{label:16} {figures[key]:10.2f} {on_card}{note}")
    for layer, (kl, active, units) in enumerate(
        zip(figures["kl"], figures["active_units"], model.latent_dims, strict=True), start=1
    ):
        print(f"{f'KL layer {layer}':16} {kl:10.2f}   active units {active}/{units}")


def _sample(args):
    from tfdlgm import images

    _check_output(args.output, "-o")
    model = _load_model(args.model)
    shape = _image_shape(model)
    x = model.sample(args.n, seed=args.seed, mean=not args.draws)
    images.save_grid(x, args.output, image_shape=shape)
    print(f"{args.n} samples written to {args.output}")


def _export(args):
    _check_output(args.folder, "DIR", folder=True)
    model = _load_model(args.model)
    model.export(args.folder, num_samples=args.k, verbose=False)
    print(f"SavedModel written to {args.folder} (log_likelihood with k = {args.k})")


def _impute(args):
    _check_impute_flags(args)
    return _impute_images(args) if args.input is None else _impute_table(args)


def _check_impute_flags(args):
    """Refuses the flags the mode (--input or --mask) or the method does not use, then fills
    in the defaults of the others."""
    table = args.input is not None
    if args.method is None:
        args.method = "importance"
    chain = args.method != "importance"
    takes = {
        "examples": (not table, "--mask (MNIST test images)"),
        "overwrite": (table, "--input"),
        "num_chains": (table and chain, "--input with a chain method"),
        "num_samples": (not chain, "--method importance"),
        "proposal": (not chain, "--method importance"),
        "steps": (chain, "a chain method (pseudo_gibbs, metropolis_within_gibbs)"),
    }
    for option, (applies, where) in takes.items():
        if not applies and getattr(args, option) not in (None, False):
            flag = f"--{option.replace('_', '-')}"
            raise CommandError(f"{flag} applies to {where} only; this run does not use it", 2)
        if applies and getattr(args, option) is None:
            setattr(args, option, IMPUTATION_DEFAULTS[option])
    if args.proposal == "mixture":
        from tfdlgm.impute import MIXTURE_COMPONENTS

        if args.num_samples % MIXTURE_COMPONENTS:
            raise CommandError(
                f"--num-samples {args.num_samples}: the mixture proposal draws as many samples "
                f"from each of its {MIXTURE_COMPONENTS} components, so it needs a multiple of "
                f"{MIXTURE_COMPONENTS} (or --proposal encoder)",
                2,
            )
    if not table:
        if args.output is None:
            raise CommandError("-o/--output is required with --mask: the PNG file to write", 2)
        try:
            _png_file(args.output)
        except argparse.ArgumentTypeError as error:
            raise CommandError(f"argument -o/--output: {error}", 2) from error


def _imputation_options(args):
    """`impute`'s keyword arguments for the method: K samples from a proposal, or the chains'
    steps."""
    if args.method == "importance":
        return {"num_samples": args.num_samples, "proposal": args.proposal}
    return {"steps": args.steps}


def _impute_images(args):
    import numpy as np

    from tfdlgm import images

    _check_output(args.output, "-o")
    model = _load_model(args.model)
    shape = _image_shape(model)
    x = _mnist_examples(model, "test", args.examples)
    mask = images.missing_pixels(args.mask or "bottom-half", x.shape, shape, seed=args.seed)
    masked = np.where(mask, x, np.nan)
    result = model.impute(
        masked, mask, method=args.method, seed=args.seed, **_imputation_options(args)
    )
    images.save_grid(np.stack([x, masked, result.completed]), args.output, image_shape=shape)
    print(
        f"{len(x)} test images completed ({_imputation_summary(args, result)}); rows: "
        f"original, masked, completed, written to {args.output}"
    )


def _impute_table(args):
    """Completes the missing entries of the table `--input` (`tfdlgm.tables`): the rows with a
    missing entry go to `model.impute`; the completed table holds the predictive mean E[x_m |
    x_o], the variance file Var[x_m | x_o] (0 at observed entries)."""
    import numpy as np

    from tfdlgm import tables, validation

    table = tables.read_table(args.input)
    outputs = tables.output_paths(args.input, args.output)
    option = "-o" if args.output else "output"
    for path in outputs:
        if path.suffix != table.path.suffix:
            raise CommandError(
                f"-o {args.output}: the output is written as the input is, so it needs the "
                f"input's suffix {table.path.suffix}",
                2,
            )
        _check_output(path, option)
        if path.exists() and path.samefile(table.path):
            raise CommandError(f"{option}: {path} is the input table; choose another -o")
        if path.exists() and not args.overwrite:
            raise CommandError(f"{option}: {path} exists; pass --overwrite to replace it")
    model = _load_model(args.model)
    rows, columns = table.values.shape
    if columns != model.data_dim:
        raise CommandError(
            f"{args.input} has {columns} columns; the model {args.model} takes "
            f"data_dim={model.data_dim}"
        )
    missing = table.missing
    try:  # the observed entries in the model's support, complete rows included
        validation.check_missing_data(
            table.values, ~missing, model.data_dim, model.support, require_missing=False
        )
    except ValueError as error:
        raise CommandError(f"{args.input} does not fit the model {args.model}: {error}") from error
    gaps = missing.any(axis=1)  # the rows to impute
    print(
        f"{args.input}: {rows:,} rows x {columns} columns, {int(missing.sum()):,} missing "
        f"entries in {int(gaps.sum()):,} rows"
    )
    mean, variance = table.values.copy(), np.zeros(table.values.shape)
    if gaps.any():
        options = _imputation_options(args)
        if args.method != "importance":
            options["num_chains"] = args.num_chains
        result = model.impute(
            table.values[gaps], ~missing[gaps], method=args.method, seed=args.seed, **options
        )
        mean[gaps], variance[gaps] = result.mean, result.variance
        print(f"Imputed by {_imputation_summary(args, result)}")
        _warn_of_few_effective_samples(result)
    else:
        print("Nothing was missing: the outputs are the input and zero variances")
    # At the precision the model computes in: the digits beyond it are rounding noise.
    tables.write_array(outputs[1], variance.astype(model.variable_dtype), table)
    tables.write_completed(outputs[0], table, mean.astype(model.variable_dtype))
    print(f"Completed table written to {outputs[0]}, predictive variances to {outputs[1]}")


def _warn_of_few_effective_samples(result):
    """One line on stderr when importance sampling's estimate of some rows rests on fewer
    than `FEW_EFFECTIVE_SAMPLES` effective samples: their variances then leave out most of
    the spread of p(x_m | x_o) over the latents (`tfdlgm.impute`)."""
    if result.effective_sample_size is None:
        return
    few = int((result.effective_sample_size < FEW_EFFECTIVE_SAMPLES).sum())
    if few:
        print(
            f"tfdlgm impute: warning: {few:,} of {len(result.effective_sample_size):,} imputed "
            f"rows have an effective sample size under {FEW_EFFECTIVE_SAMPLES}: their means "
            "and variances rest on a few of the samples, and the variances understate the "
            "uncertainty; more --num-samples raise it",
            file=sys.stderr,
        )


def _imputation_summary(args, result):
    """The method, its sizes and its diagnostic: the effective sample size of importance
    sampling (median and lowest over the rows), the acceptance rate of a Metropolis chain."""
    import numpy as np

    if args.method == "importance":
        ess = result.effective_sample_size
        return (
            f"importance sampling, {args.num_samples:,} samples from the {args.proposal} "
            "proposal, effective sample size per "
            f"row: median {np.median(ess):,.1f}, lowest {ess.min():,.1f}"
        )
    chains = "" if args.num_chains is None else f", {args.num_chains} chains"
    rate = result.acceptance_rate
    accepted = "" if rate is None else f", acceptance rate {rate:.2f}"
    return f"{args.method}, {args.steps} steps{chains}{accepted}"


def _bench(args):
    suite = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    if not suite.is_file():
        raise CommandError(
            f"the benchmark suite is not installed yet ({suite} does not exist)", status=2
        )
    import runpy

    return runpy.run_path(str(suite))["main"](args.arguments, prog="tfdlgm bench")


# -- helpers ---------------------------------------------------------------------------------


def _split_bench(argv):
    """`tfdlgm [--backend B] bench ARGS...` -> (the words up to `bench`, ARGS untouched).

    The suite's own options (`--quick`, `--out DIR`) must not meet argparse here; a leading
    `--` is dropped. Any other command -> (argv, None).
    """
    for i, word in enumerate(argv):
        if word == "bench" and argv[i - 1 : i] != ["--backend"]:
            rest = argv[i + 1 :]
            return argv[: i + 1], rest[1:] if rest[:1] == ["--"] else rest
        if not word.startswith("-") and argv[i - 1 : i] != ["--backend"]:
            break
    return argv, None


def _use_backend(backend, argv):
    """Sets KERAS_BACKEND; restarts the command if Keras already runs another backend."""
    if backend is None:
        return
    os.environ["KERAS_BACKEND"] = backend
    keras = sys.modules.get("keras")
    if keras is None or keras.backend.backend() == backend:
        return
    if os.environ.get(_RESTARTED):
        raise CommandError(f"could not start Keras with the {backend} backend")
    os.environ[_RESTARTED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "tfdlgm.cli", *argv])


def _start_keras():
    """Imports Keras, and so its backend, holding back the start-up lines its C++ libraries
    log below `TF_CPP_MIN_LOG_LEVEL` (`_absl_lines_held_back`).

    TensorFlow's shared libraries log through absl while they load ("oneDNN custom operations
    are on", "Could not find cuda drivers"), before absl's logging is set up and so past
    `TF_CPP_MIN_LOG_LEVEL`.
    """
    if "keras" in sys.modules:
        return
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
    with _absl_lines_held_back(int(level) if level.isdigit() else 0):
        import keras  # noqa: F401


@contextlib.contextmanager
def _absl_lines_held_back(level):
    """What the block writes to the stderr file descriptor is kept aside and written back at
    its end, less the absl lines of a severity below `level` (`_filter_start_up_log`); anything
    else (a Python warning, a traceback) comes through."""
    import tempfile  # here, not at the top: `tfdlgm zoo list` starts without it

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            sys.stderr.write(_filter_start_up_log(held.read().decode(errors="replace"), level))
            sys.stderr.flush()


def _filter_start_up_log(text, level):
    """`text` less its absl lines of a severity below `level` (0 INFO, 1 WARNING, 2 ERROR,
    3 FATAL: `TF_CPP_MIN_LOG_LEVEL`'s scale); absl's notice that logging is not set up yet
    counts as a WARNING."""

    def kept(line):
        if line.startswith(_ABSL_UNINITIALISED):
            return level <= _ABSL_SEVERITY["W"]
        match = _ABSL_LINE.match(line)
        return match is None or _ABSL_SEVERITY[match.group(1)] >= level

    return "".join(line for line in text.splitlines(keepends=True) if kept(line))


def _model_class(name):
    """The registered model class `--model NAME` names (`tfdlgm.models.get`)."""
    from tfdlgm import models

    try:
        return models.get(name)
    except ValueError as error:
        raise CommandError(f"--model: {error}", 2) from error


def _build_model(args):
    """The model the flags describe: each flag given becomes the argument of that name of the
    class's constructor (or `LatentModel`'s); a flag neither takes is refused."""
    import inspect

    from tfdlgm.models import LatentModel

    cls = _model_class(args.model)
    arguments = {*inspect.signature(cls).parameters, *inspect.signature(LatentModel).parameters}
    options = {"seed": args.seed}
    for option in ("hidden", "covariance", "likelihood"):
        value = getattr(args, option)
        if value is not None:
            if option not in arguments:
                raise CommandError(f"--{option} does not apply to --model {args.model}", 2)
            options[option] = value
    if args.latent_dims is not None:
        if "latent_dim" in arguments:
            if len(args.latent_dims) != 1:
                raise CommandError(
                    f"--model {args.model} has one latent layer: --latent-dims takes one "
                    f"number. Received: {','.join(map(str, args.latent_dims))}",
                    2,
                )
            options["latent_dim"] = args.latent_dims[0]
        else:
            options["latent_dims"] = args.latent_dims
    if args.objective is not None or args.num_samples is not None:
        objective = {"name": args.objective or "elbo"}
        if args.num_samples is not None:
            objective["num_samples"] = args.num_samples
        options["objective"] = objective
    try:
        return cls(**options)
    except ValueError as error:
        raise CommandError(str(error), 2) from error


def _load_model(source):
    """A `LatentModel` from a preset name, a preset folder or a `.keras` file."""
    import keras

    from tfdlgm import layers, zoo
    from tfdlgm.models import LatentModel

    path = pathlib.Path(source).expanduser()
    if path.is_file() or (path.suffix == ".keras" and not path.is_dir()):
        if not path.is_file():
            raise CommandError(f"{source}: no such file")
        if not zipfile.is_zipfile(path):
            raise CommandError(
                f"{source} is not a model file: a .keras file is the zip archive model.save writes"
            )
        try:
            with layers.weights_to_load():  # the file holds every weight
                model = keras.models.load_model(path)
        except Exception as error:  # keras, zipfile, h5py and json all raise their own
            raise CommandError(
                f"{source} is not a Keras model file ({type(error).__name__}: {error})"
            ) from error
        if not isinstance(model, LatentModel):
            raise CommandError(f"{source} holds a {type(model).__name__}, not a tfdlgm model")
        return model
    if os.sep in source and not path.exists():
        raise CommandError(f"{source}: no such file or folder")
    return zoo.load(source)


def _mnist_examples(model, split, count):
    from tfdlgm import datasets

    if model.data_dim != datasets.NUM_PIXELS:
        raise CommandError(
            f"this command uses MNIST ({datasets.NUM_PIXELS} pixels); the model has "
            f"data_dim={model.data_dim}"
        )
    batches = datasets.mnist(
        split, binarize="fixed", seed=0, batch_size=count, shuffle=False, as_numpy=True
    )
    x = batches[0]
    _check_count(count, x, "--examples", split)
    return x


def _check_count(count, images, option, split):
    """Refuses a count of images (None: all) the split does not have, rather than using fewer."""
    if count is not None and count > len(images):
        raise CommandError(
            f"{option} {count:,}: the MNIST {split} split has {len(images):,} images", 2
        )


def _image_shape(model):
    import math

    side = math.isqrt(model.data_dim)
    if side * side != model.data_dim:
        raise CommandError(
            f"images need a square number of features; the model has data_dim={model.data_dim}"
        )
    return (side, side)


def _check_output(path, option, folder=False):
    """Fails at once (`CommandError`) unless the command can write `path` (None: not asked).

    A file (`folder=False`) needs an existing, writable parent folder and must not be a
    folder; a folder (`folder=True`, created by the command if missing) must not be a file,
    and it, or else its nearest existing ancestor, must be a writable folder.
    """
    if path is None:
        return
    path = pathlib.Path(path)
    cannot = f"{option}: cannot write {path}:"
    if folder and path.exists() and not path.is_dir():
        raise CommandError(f"{cannot} it is a file, expected a folder; choose another path")
    if not folder and path.is_dir():
        raise CommandError(f"{cannot} it is a folder, expected a file name")
    if folder:
        parent = path
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise CommandError(f"{cannot} {parent} is a file, so the folder cannot be created")
    else:
        parent = path.parent
        if not parent.is_dir():
            what = "is a file, not a folder" if parent.exists() else "does not exist"
            raise CommandError(f"{cannot} the folder {parent} {what}; create it or choose another")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"{cannot} the folder {parent} is not writable")
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise CommandError(f"{cannot} the file is read-only")


def _print_error(args, error):
    message = " ".join(str(error).split())
    print(f"tfdlgm {args.command}: error: {message}", file=sys.stderr)


def _number(parse, accepts, expected):
    """An argparse `type`: `parse(text)` when `accepts` the value, else an error naming it."""

    def check(text):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not accepts(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return check


_positive_int = _number(int, lambda value: value >= 1, "a positive int")
_non_negative_int = _number(int, lambda value: value >= 0, "a non-negative int")
_positive_float = _number(float, lambda value: 0 < value < float("inf"), "a positive finite number")


def _int_list(text):
    try:
        values = tuple(_positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(
            f"must be positive ints separated by commas (e.g. 200,200), got {text!r}"
        )
    return values


def _file_name(*suffixes):
    """An argparse `type`: a file name ending in one of `suffixes`."""

    def check(text):
        if not any(text.endswith(suffix) and text != suffix for suffix in suffixes):
            names = " or ".join(suffixes)
            raise argparse.ArgumentTypeError(f"must be a {names} file name, got {text!r}")
        return text

    return check


_keras_file = _file_name(".keras")
_png_file = _file_name(".png")


def _mask(text):
    from tfdlgm import images

    try:
        return images.check_pattern(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _add_devices_argument(parser):
    parser.add_argument(
        "--devices",
        type=_positive_int,
        help="data-parallel over the first N accelerators (else CPU devices): "
        "tfdlgm.distribute.data_parallel(N); default: one device",
    )


def _data_parallel(devices):
    """`tfdlgm.distribute.data_parallel(devices)`, or no block when `devices` is None."""
    if devices is None:
        return contextlib.nullcontext()
    from tfdlgm import distribute

    return distribute.data_parallel(devices)


def _add_model_argument(parser):
    parser.add_argument(
        "model", metavar="NAME|PATH", help="a preset name, a preset folder or a .keras file"
    )


if __name__ == "__main__":
    sys.exit(main())
