"""Imputation benchmark: complete MNIST test digits with a half of their pixels missing by every
method.

Run:

```bash
TFDLGM_MNIST=../shared/data/mnist.npz python benchmarks/imputation.py            # ~3 min, CPU
python benchmarks/imputation.py --preset vae-mnist      # a zoo preset instead of training
python benchmarks/imputation.py --preset dlgm-mnist --mask random:0.5   # or top-half
python benchmarks/imputation.py --task breast-cancer    # the UCI protocol against scikit-learn
```

What it measures. A small VAE (latent 20, one hidden layer of 200, Bernoulli pixels) is trained
for `--epochs` epochs on the dynamically binarised training split (or a zoo preset is loaded).
The first `--examples` test digits (binarised once, seed 0) lose the pixels `--mask` names (the
bottom 14 rows by default, the top 14, or each pixel with probability P) and are
completed by importance sampling (Mattei & Frellsen 2019) with the encoder's proposal and with
the mixture proposal (`tfdlgm.impute`), K = 1000 samples and `--num-chains` multiple
imputations, and by the pseudo-Gibbs chain (Rezende et al. 2014, app. E) and the
Metropolis-within-Gibbs chain (Mattei & Frellsen 2018), `--num-chains` chains of `--steps`
steps per digit. Two scores per method:

```none
log-likelihood of the missing pixels = sum_{j missing} v_j log p_j + (1 - v_j) log (1 - p_j)
class kept = share of the completions (chains' last states or multiple imputations) that a
             classifier assigns the digit's true label
```

p_j is the method's predictive pixel probability (p clipped to [1e-6, 1 - 1e-6]), in nats per
digit, against mean imputation, where p_j is the training set's mean grey level of pixel j and
its completions are draws from it. The classifier is a Keras MLP (784-256-10, 3 epochs on the
training split, binarised once, seed 0); its accuracy on the complete digits and on the
masked digits (missing pixels set to 0) are the references.

Writes `imputation.{json,md,png}` (a preset: `imputation-PRESET.{json,md,png}`; another mask than
the bottom half adds its name, `imputation-PRESET-top-half`, `-random-50`) under `--out`
(grid rows: original, masked (missing in blue), the mixture's completion, its pixel
probabilities, Metropolis-within-Gibbs completion). Exits non-zero unless `impute`'s default
method beats mean imputation and reaches the goal of issue 40: a higher log-likelihood than
the best chain, with the class kept in at least as many completions.

Breast cancer (`--task breast-cancer`, ~5 min on one CPU core): the MIWAE paper's UCI protocol
(Mattei & Frellsen 2019, sec. 5.1) on the Wisconsin breast cancer table scikit-learn ships
(569 x 30). The table is standardised, 50% of its entries are removed completely at random
(5 masks, seeds 0-4), and each method fills them from the incomplete table alone; the score is
the mean squared error on the removed entries of the standardised data. Peers: mean
imputation, `KNNImputer`, `IterativeImputer` (MICE, Bayesian ridge) and
`IterativeImputer(ExtraTreesRegressor)` (missForest-like), and factor analysis trained on the
incomplete table with `"miwae"` and imputed by its exact Gaussian conditional mean. Ours: a
Gaussian VAE trained with `"miwae"` on the incomplete table, imputing by importance sampling
with its encoder's proposal (and by the Metropolis-within-Gibbs chain for comparison). Writes
`imputation-breast-cancer.{json,md,png}` under `--out`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import pathlib
import sys
import time

import keras
import numpy as np

import tfdlgm
from tfdlgm import datasets, images, impute

ROWS = 14
EPS = 1e-6
IMPORTANCE_SAMPLES = 1000
# What each compared method passes to `impute`, in the report's order.
METHODS = {
    "importance_mixture": {"method": "importance", "proposal": "mixture"},
    "importance_encoder": {"method": "importance", "proposal": "encoder"},
    "metropolis_within_gibbs": {"method": "metropolis_within_gibbs"},
    "pseudo_gibbs": {"method": "pseudo_gibbs"},
}
LABELS = {
    "mean_imputation": "mean imputation (training pixel means)",
    "importance_mixture": "importance sampling, mixture proposal (K = 1000)",
    "importance_encoder": "importance sampling, encoder proposal (K = 1000)",
    "metropolis_within_gibbs": "Metropolis-within-Gibbs (Mattei & Frellsen 2018)",
    "pseudo_gibbs": "pseudo-Gibbs (Rezende et al. app. E)",
}


def bernoulli_log_likelihood(x, probabilities, mask):
    """sum over missing entries of log Bernoulli(x | p), per example, nats."""
    p = np.clip(probabilities, EPS, 1 - EPS)
    log_prob = x * np.log(p) + (1 - x) * np.log1p(-p)
    return np.where(mask, 0.0, log_prob).sum(axis=1)


def train_model(epochs, seed):
    keras.utils.set_random_seed(seed)
    model = tfdlgm.models.VAE(latent_dim=20, hidden=(200,), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    start = time.perf_counter()
    history = model.fit(
        datasets.mnist("train", batch_size=100, seed=seed), epochs=epochs, verbose=2
    )
    return model, {
        "model": "VAE(latent_dim=20, hidden=(200,))",
        "epochs": epochs,
        "train_elbo": float(history.history["elbo"][-1]),
        "train_seconds": round(time.perf_counter() - start, 1),
    }


def mnist_labels():
    """`(train, test)` labels in the order of `datasets.load_mnist_arrays`' splits."""
    with np.load(datasets.find_mnist()) as arrays:
        train, test = arrays["y_train"], arrays["y_test"]
    return train[: len(datasets.load_mnist_arrays()["train"])], test


def train_classifier(seed):
    """A Keras MLP on the training split binarised once: `(classifier, seconds)`."""
    keras.utils.set_random_seed(seed)
    x = datasets.fixed_binarization(datasets.load_mnist_arrays()["train"], seed)
    labels = mnist_labels()[0]
    classifier = keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(256, "relu"), keras.layers.Dense(10)]
    )
    classifier.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    start = time.perf_counter()
    classifier.fit(x, labels, batch_size=128, epochs=3, verbose=0)
    return classifier, round(time.perf_counter() - start, 1)


def class_kept(classifier, completions, labels):
    """Share of `completions` `[M, N, D]` the classifier assigns `labels` `[N]`."""
    flat = completions.reshape(-1, completions.shape[-1])
    predicted = classifier.predict(flat, batch_size=1000, verbose=0).argmax(-1)
    return float(np.mean(predicted.reshape(completions.shape[:2]) == labels))


def mnist_mask(pattern, shape, seed=0):
    """`(mask, what is missing, file name part)` for `--mask` (`tfdlgm.images.missing_pixels`:
    True where a pixel is observed)."""
    mask = images.missing_pixels(pattern, shape, seed=seed)
    if pattern.startswith("random:"):
        missing = float(pattern.partition(":")[2])
        return mask, f"each pixel with probability {missing:g}", f"-random-{round(100 * missing)}"
    where = pattern.partition("-")[0]
    return mask, f"{where} {ROWS} rows", "" if where == "bottom" else f"-{where}-half"


def run(
    epochs=5,
    examples=500,
    steps=100,
    num_chains=10,
    seed=0,
    out="benchmarks/results",
    preset=None,
    mask="bottom-half",
):
    """Trains (or loads) the model, imputes, scores, writes the results; returns them."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if preset is None:
        model, about = train_model(epochs, seed)
    else:
        model, about = tfdlgm.zoo.load(preset), {"model": f"zoo preset {preset}"}
    x = datasets.mnist("test", binarize="fixed", seed=0, batch_size=examples, as_numpy=True)[0]
    labels = mnist_labels()[1][: len(x)]
    mask, missing, stem_suffix = mnist_mask(mask, x.shape, seed)
    masked = np.where(mask, x, np.nan).astype("float32")
    classifier, classifier_seconds = train_classifier(seed)
    train_means = datasets.load_mnist_arrays()["train"].mean(axis=0)
    draws = np.random.default_rng(seed).uniform(size=(num_chains, *x.shape)) < train_means
    mean_completions = np.where(mask, x, draws).astype("float32")
    baseline = bernoulli_log_likelihood(x, np.broadcast_to(train_means, x.shape), mask)
    report = {
        **about,
        "backend": keras.backend.backend(),
        "test_examples": int(len(x)),
        "missing": f"{missing} ({int((~mask).sum()) / len(x):.0f} pixels per digit)",
        "steps": steps,
        "num_chains": num_chains,
        "mixture": {
            "num_components": impute.MIXTURE_COMPONENTS,
            "steps": impute.MIXTURE_STEPS,
        },
        "default_method": inspect.signature(impute.impute).parameters["method"].default,
        "classifier": {
            "model": "MLP 784-256-10, 3 epochs, Adam",
            "train_seconds": classifier_seconds,
            "accuracy_complete": class_kept(classifier, x[None], labels),
            "accuracy_masked_zero_filled": class_kept(
                classifier, np.where(mask, x, 0.0)[None], labels
            ),
        },
        "log_likelihood_missing": {"mean_imputation": float(baseline.mean())},
        "class_kept": {"mean_imputation": class_kept(classifier, mean_completions, labels)},
        "acceptance_rate": {},
        "effective_sample_size": {},
        "seconds": {},
    }
    results = {}
    for name, options in METHODS.items():
        if options["method"] == "importance":
            options = {**options, "num_samples": IMPORTANCE_SAMPLES}
        else:
            options = {**options, "steps": steps}
        start = time.perf_counter()
        results[name] = model.impute(
            masked, mask, num_chains=num_chains, seed=seed, verbose=0, **options
        )
        report["seconds"][name] = round(time.perf_counter() - start, 1)
        scores = bernoulli_log_likelihood(x, results[name].mean, mask)
        report["log_likelihood_missing"][name] = float(scores.mean())
        report["class_kept"][name] = class_kept(classifier, results[name].samples, labels)
        report["acceptance_rate"][name] = results[name].acceptance_rate
        ess = results[name].effective_sample_size
        if ess is not None:
            report["effective_sample_size"][name] = {
                "median": float(np.median(ess)),
                "mean": float(ess.mean()),
            }
        print(name, report["seconds"][name], "s", scores.mean(), flush=True)
    report["goal"] = goal(report)
    columns = slice(0, min(10, len(x)))
    grid = np.stack(
        [
            x[columns],
            masked[columns],
            results["importance_mixture"].completed[columns],
            results["importance_mixture"].mean[columns],
            results["metropolis_within_gibbs"].completed[columns],
        ]
    )
    stem = ("imputation" if preset is None else f"imputation-{preset}") + stem_suffix
    images.save_grid(grid, out / f"{stem}.png")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(report, stem))
    return report


def goal(report):
    """Issue 40's goal for `impute`'s default method (importance with its default proposal):
    a higher log-likelihood of the missing pixels than the best chain, with the class kept in
    at least as many completions, and above mean imputation."""
    ll, kept = report["log_likelihood_missing"], report["class_kept"]
    default = {"importance": "importance_mixture"}.get(
        report["default_method"], report["default_method"]
    )
    best_chain = max(impute.CHAINS, key=lambda name: ll[name])
    return {
        "default": default,
        "best_chain": best_chain,
        "beats_mean_imputation": ll[default] > ll["mean_imputation"],
        "beats_best_chain": ll[default] > ll[best_chain] and kept[default] >= kept[best_chain],
    }


def markdown(report, stem):
    ll, kept = report["log_likelihood_missing"], report["class_kept"]
    classifier = report["classifier"]
    mixture = report["mixture"]
    lines = [
        f"# Imputation: MNIST test digits, missing {report['missing'].split(' (')[0]}",
        "",
        f"Model: {report['model']}"
        + (
            f", {report['epochs']} epochs, train ELBO {report['train_elbo']:.2f} nats"
            if "epochs" in report
            else ""
        )
        + f"; backend {report['backend']}. {report['test_examples']} test digits (fixed "
        f"binarisation, seed 0), missing: {report['missing']}. Chains: {report['num_chains']} "
        f"chains x {report['steps']} steps per digit; importance sampling: K = "
        f"{IMPORTANCE_SAMPLES} and {report['num_chains']} multiple imputations, the mixture "
        f"of {mixture['num_components']} components (pseudo-Gibbs completions after "
        f"{mixture['steps']} sweeps).",
        "",
        f"Classifier ({classifier['model']}): accuracy {classifier['accuracy_complete']:.3f} on "
        "these digits complete, "
        f"{classifier['accuracy_masked_zero_filled']:.3f} with the missing pixels set to 0.",
        "",
        "| imputation | log-likelihood of the missing pixels (nats / digit) | class kept | "
        "acceptance | ESS (median) | seconds |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {LABELS['mean_imputation']} | {ll['mean_imputation']:.2f} | "
        f"{kept['mean_imputation']:.3f} | | | |",
    ]
    for name in METHODS:
        rate = report["acceptance_rate"][name]
        ess = report["effective_sample_size"].get(name, {}).get("median")
        lines.append(
            f"| {LABELS[name]} | {ll[name]:.2f} | {kept[name]:.3f} | "
            f"{'' if rate is None else f'{rate:.3f}'} | "
            f"{'' if ess is None else f'{ess:.1f}'} | {report['seconds'][name]} |"
        )
    goal = report["goal"]
    lines += [
        "",
        f"Default method ({goal['default']}): "
        + ("beats" if goal["beats_best_chain"] else "does not beat")
        + f" the best chain ({goal['best_chain']}) on both scores; "
        + ("beats" if goal["beats_mean_imputation"] else "does not beat")
        + " mean imputation.",
        "",
        f"![imputation]({stem}.png)",
        "",
        "Rows: original, masked (missing in blue), completion by importance sampling with the "
        "mixture proposal, its predictive pixel probabilities, Metropolis-within-Gibbs "
        "completion.",
        "",
    ]
    return "\n".join(lines)


def standardised_breast_cancer():
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data.astype(np.float64)
    return ((x - x.mean(0)) / x.std(0)).astype("float32")


def mcar_mask(shape, missing, seed):
    """True = observed; `missing` of the entries removed completely at random, each row keeping
    at least one entry."""
    rng = np.random.default_rng(seed)
    mask = rng.uniform(size=shape) >= missing
    mask[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] |= ~mask.any(1)
    return mask


def scikit_learn_imputers(seed):
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    forest = ExtraTreesRegressor(n_estimators=50, n_jobs=1, random_state=seed)
    return {
        "mean imputation": SimpleImputer(strategy="mean"),
        "KNNImputer (k = 5)": KNNImputer(n_neighbors=5),
        "IterativeImputer (MICE)": IterativeImputer(max_iter=20, random_state=seed),
        "IterativeImputer (ExtraTrees, missForest-like)": IterativeImputer(
            estimator=forest, max_iter=5, random_state=seed
        ),
    }


def train_on_incomplete(model, masked, epochs, seed):
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(masked, batch_size=64, epochs=epochs, verbose=0)
    return model


def breast_cancer(epochs=300, seeds=(0, 1, 2, 3, 4), missing=0.5, out="benchmarks/results"):
    """The MIWAE paper's UCI protocol on breast cancer; writes and returns the report."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x = standardised_breast_cancer()
    miwae = {"name": "miwae", "num_samples": 20}
    errors, seconds = {}, {}

    def score(name, completed, mask, start):
        error = float(np.mean((completed[~mask] - x[~mask]) ** 2))
        errors.setdefault(name, []).append(error)
        seconds.setdefault(name, []).append(round(time.perf_counter() - start, 1))
        print(f"  {name}: {error:.4f}", flush=True)

    for seed in seeds:
        print(f"mask {seed}", flush=True)
        mask = mcar_mask(x.shape, missing, seed)
        masked = np.where(mask, x, np.nan).astype("float32")
        for name, imputer in scikit_learn_imputers(seed).items():
            start = time.perf_counter()
            score(name, imputer.fit_transform(masked), mask, start)
        start = time.perf_counter()
        fa = tfdlgm.models.FactorAnalysis(latent_dim=10, data_dim=30, objective=miwae, seed=seed)
        train_on_incomplete(fa, masked, epochs, seed)
        score(
            "factor analysis (miwae fit, exact conditional mean)",
            fa.exact_conditional(masked)[0],
            mask,
            start,
        )
        start = time.perf_counter()
        vae = tfdlgm.models.VAE(
            latent_dim=10,
            hidden=(128, 128),
            data_dim=30,
            likelihood="gaussian",
            objective=miwae,
            seed=seed,
        )
        train_on_incomplete(vae, masked, epochs, seed)
        trained = time.perf_counter() - start
        result = vae.impute(
            masked,
            mask,
            method="importance",
            proposal="encoder",
            num_samples=10_000,
            seed=seed,
            verbose=0,
        )
        score("VAE + miwae, importance sampling (K = 10,000)", result.mean, mask, start)
        start = time.perf_counter() - trained
        result = vae.impute(
            masked,
            mask,
            method="metropolis_within_gibbs",
            steps=200,
            num_chains=10,
            seed=seed,
            verbose=0,
        )
        score(
            "VAE + miwae, Metropolis-within-Gibbs (10 chains x 200 steps)", result.mean, mask, start
        )
    report = {
        "data": "sklearn.datasets.load_breast_cancer, 569 x 30, standardised",
        "missing": f"{missing:.0%} of entries, completely at random",
        "masks": list(seeds),
        "backend": keras.backend.backend(),
        "epochs": epochs,
        "models": "VAE(latent_dim=10, hidden=(128, 128), likelihood='gaussian') and "
        "FactorAnalysis(latent_dim=10), objective miwae K = 20, Adam 1e-3, batch 64",
        "mse": {
            name: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_mask": v}
            for name, v in errors.items()
        },
        "seconds_per_mask": {name: float(np.mean(v)) for name, v in seconds.items()},
    }
    best_peer = min(
        (name for name in errors if not name.startswith(("VAE", "factor"))),
        key=lambda name: report["mse"][name]["mean"],
    )
    ours = "VAE + miwae, importance sampling (K = 10,000)"
    report["goal"] = {
        "best_scikit_learn": best_peer,
        "ours_beats_every_scikit_learn_imputer": report["mse"][ours]["mean"]
        < report["mse"][best_peer]["mean"],
    }
    (out / "imputation-breast-cancer.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "imputation-breast-cancer.md").write_text(breast_cancer_markdown(report))
    mse_chart(report, out / "imputation-breast-cancer.png")
    return report


def breast_cancer_markdown(report):
    lines = [
        "# Imputation: breast cancer, 50% missing completely at random",
        "",
        f"{report['data']}; {report['missing']}; masks (seeds) {report['masks']}; backend "
        f"{report['backend']}. Models trained on the incomplete table only: {report['models']}, "
        f"{report['epochs']} epochs. Mean squared error on the removed entries (standardised "
        "data), mean +- standard deviation over the masks; lower is better.",
        "",
        "| method | MSE | seconds per mask |",
        "|---|---:|---:|",
    ]
    for name, mse in sorted(report["mse"].items(), key=lambda item: item[1]["mean"]):
        lines.append(
            f"| {name} | {mse['mean']:.3f} +- {mse['std']:.3f} | "
            f"{report['seconds_per_mask'][name]:.1f} |"
        )
    goal = report["goal"]
    lines += [
        "",
        f"Best scikit-learn imputer: {goal['best_scikit_learn']}. Ours (importance sampling) "
        + ("beats" if goal["ours_beats_every_scikit_learn_imputer"] else "does not beat")
        + " every scikit-learn imputer on the mean over the masks.",
        "",
        "![mean squared error](imputation-breast-cancer.png)",
        "",
    ]
    return "\n".join(lines)


def mse_chart(report, path):
    """A horizontal bar chart of the mean squared error per method (Pillow), or nothing."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    bars = sorted(((n, m["mean"]) for n, m in report["mse"].items()), key=lambda b: b[1])
    label_width, bar_width, height = 430, 300, 20
    image = Image.new("RGB", (label_width + bar_width + 70, 30 + height * len(bars)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((5, 5), "breast cancer, 50% MCAR: MSE on the removed entries", fill="black")
    top = max(value for _, value in bars)
    for i, (label, value) in enumerate(bars):
        y = 25 + i * height
        colour = (40, 100, 180) if label.startswith(("VAE", "factor")) else (200, 90, 40)
        draw.text((5, y + 4), label[:72], fill="black")
        right = label_width + bar_width * value / top
        draw.rectangle([label_width, y + 2, right, y + height - 3], fill=colour)
        draw.text((right + 4, y + 4), f"{value:.3f}", fill="black")
    image.save(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("mnist", "breast-cancer"), default="mnist")
    parser.add_argument("--epochs", type=int, default=None, help="mnist: 5, breast-cancer: 300")
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--num-chains", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--masks", type=int, default=5, help="breast-cancer: masks, seeds 0...")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument("--preset", default=None, help="a tfdlgm.zoo preset instead of training")
    parser.add_argument(
        "--mask", default="bottom-half", help="mnist: bottom-half (default), top-half or random:P"
    )
    args = parser.parse_args(argv)
    try:
        mnist_mask(args.mask, (1, 28 * 28))
    except ValueError as error:
        parser.error(str(error))
    if args.task == "breast-cancer":
        report = breast_cancer(args.epochs or 300, tuple(range(args.masks)), out=args.out)
        print(json.dumps(report["goal"], indent=2))
        return 0
    report = run(
        args.epochs or 5,
        args.examples,
        args.steps,
        args.num_chains,
        args.seed,
        args.out,
        args.preset,
        args.mask,
    )
    print(json.dumps(report, indent=2))
    goal = report["goal"]
    return 0 if goal["beats_mean_imputation"] and goal["beats_best_chain"] else 1


if __name__ == "__main__":
    sys.exit(main())
