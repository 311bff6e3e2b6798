"""Rezende, Mohamed & Wierstra (2014), sec. 6 / table 2, on a small budget: MNIST test L_k of
factor analysis, wake-sleep, and the DLGM with diagonal and rank-one recognition covariance.

Run:

```bash
TFDLGM_MNIST=../shared/data/mnist.npz python benchmarks/paper_comparison.py \
    --epochs 10 --train-examples 10000 --test-examples 1000 --k 500      # ~3 min, 2 CPU cores
```

What it measures. Four models are trained on the same data for the same number of epochs,
with the same optimiser (Adam, learning rate `--learning-rate`), minibatch `--batch-size`
(200, the paper's), and the same initial random state:

* FA: the linear one-layer model, `DLGM(latent_dims=(200,), hidden=())`, i.e.
  `v ~ Bernoulli(sigmoid(W xi + b))`, `xi ~ N(0, I)`, trained on the ELBO with a linear
  diagonal q. (`tfdlgm.models.FactorAnalysis` has a Gaussian likelihood, a density rather
  than a probability on binary pixels, so its figure would not be comparable.)
* Wake-sleep: the DLGM architecture below, trained by `objective="wake_sleep"` (Hinton et
  al. 1995) instead of the ELBO; its recognition model is the L_k proposal.
* DLGM, diagonal / rank-one covariance: the paper's MNIST set-up, two deterministic layers of
  200 rectifiers and one stochastic layer of 200 (`DLGM(latent_dims=(200,),
  hidden=(200, 200))`), trained on the ELBO with the reparameterised estimator.

Training data: the first `--train-examples` images of the 50,000-image training split,
dynamically binarised (a new Bernoulli draw on every pass). Test data: the first
`--test-examples` images of the test split binarised once (`binarize="fixed"`, seed 0), by the
evaluation protocol. Reported per model, in nats per test image: the ELBO (one sample per
image) and L_k (Burda et al. eq. 8, k = `--k`; the protocol's log-likelihood uses k = 5000),
and the training time. The budget is a small fraction of the paper's (which trains for
days), so the figures are far below table 2's (about -86.6 nats for the rank-one DLGM), and
differences of about a nat between the two covariances are within what the seed changes.
Writes `paper_comparison.json` and `paper_comparison.md`
(with the command that made them) under `--out`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import shlex
import sys
import time

import keras
import numpy as np

import tfdlgm
from tfdlgm import datasets
from tfdlgm.models import DLGM

MODELS = {
    "FA (linear, Bernoulli output)": {"hidden": (), "covariance": "diagonal"},
    "Wake-sleep": {"hidden": (200, 200), "covariance": "diagonal", "objective": "wake_sleep"},
    "DLGM, diagonal covariance": {"hidden": (200, 200), "covariance": "diagonal"},
    "DLGM, rank-one covariance": {"hidden": (200, 200), "covariance": "rank_one"},
}


def train_and_evaluate(name, kwargs, train_x, test_x, args):
    keras.utils.set_random_seed(args.seed)
    model = DLGM(latent_dims=(200,), seed=args.seed, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    train = datasets.NumpyBatches(
        train_x, batch_size=args.batch_size, binarize="dynamic", seed=args.seed, shuffle=True
    )
    start = time.perf_counter()
    history = model.fit(train, epochs=args.epochs, shuffle=False, verbose=0)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    elbo = float(model.elbo(test_x, seed=args.seed).mean())
    bound = float(model.iwae_bound(test_x, args.k, batch_size=100, seed=args.seed).mean())
    eval_seconds = time.perf_counter() - start
    result = {
        "model": name,
        "config": {key: value for key, value in model.get_config().items() if key in kwargs},
        "final_train_loss": float(history.history["loss"][-1]),
        "test_elbo": elbo,
        f"test_L_{args.k}": bound,
        "train_seconds": round(train_seconds, 1),
        "train_examples_per_second": round(args.epochs * len(train_x) / train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
    }
    print(json.dumps(result), flush=True)
    return result


def write_report(results, args, command, out):
    report = {
        "command": command,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "tfdlgm": tfdlgm.__version__,
        "machine": f"{platform.machine()} CPU, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "args": vars(args) | {"out": str(args.out)},
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "paper_comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Rezende et al. (2014), table 2, on a small budget: MNIST test log-likelihood",
        "",
        f"Command: `{command}`",
        "",
        f"Backend {report['backend']} (Keras {report['keras']}), {report['machine']}. "
        f"{args.train_examples} training images (dynamic binarisation), {args.epochs} epochs, "
        f"batch {args.batch_size}, Adam {args.learning_rate}; {args.test_examples} test images "
        f"(fixed binarisation, seed 0). Nats per image; L_{args.k} is the importance-weighted "
        f"bound with k = {args.k}.",
        "",
        f"| model | test ELBO | test L_{args.k} | train loss (last epoch) | train s | examples/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['test_elbo']:.2f} | {r[f'test_L_{args.k}']:.2f} | "
            f"{r['final_train_loss']:.2f} | {r['train_seconds']:.1f} | "
            f"{r['train_examples_per_second']:.0f} |"
        )
    lines += [
        "",
        "Train loss is each objective's training loss: the negative ELBO for FA and the DLGMs, "
        "the wake plus sleep losses (-log p(x, z) - log q(z' | x'), not a bound on log p(x)) "
        "for wake-sleep. Train seconds include compiling the train step.",
        "",
        "Paper (table 2, fully trained, negated -log p(x)): FA -106.0, "
        "wake-sleep -91.3, DLGM diagonal -87.3, DLGM rank-one -86.6 nats.",
        "",
    ]
    (out / "paper_comparison.md").write_text("\n".join(lines))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-examples", type=int, default=10_000)
    parser.add_argument("--test-examples", type=int, default=1000)
    parser.add_argument("--k", type=int, default=500, help="samples of the L_k bound")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results"
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/paper_comparison.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    arrays = datasets.load_mnist_arrays()
    train_x = arrays["train"][: args.train_examples]
    test = datasets.mnist("test", binarize="fixed", seed=0, batch_size=args.test_examples)
    test_x = np.asarray(next(iter(test)))
    results = [
        train_and_evaluate(name, kwargs, train_x, test_x, args) for name, kwargs in MODELS.items()
    ]
    report = write_report(results, args, command, args.out)
    print((args.out / "paper_comparison.md").read_text())
    return report


if __name__ == "__main__":
    main()
