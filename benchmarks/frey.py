"""The Frey faces table: factor analysis, the VAE and the DLGM side by side, by the density
protocol, with their samples, reconstructions and imputations as pictures.

Run:

```bash
TFDLGM_FREY_FACES=../shared/data/frey_faces.npz python benchmarks/frey.py   # ~2 min, CPU
python benchmarks/frey.py --remeasure     # evaluate every preset again (L_5000: ~5 min more)
```

What it reports. For the presets `fa-frey`, `vae-frey` and `dlgm-frey` (see their cards), the
figures their `metadata.json` records (or, with `--remeasure`,
`tfdlgm.evaluation.evaluate_preset` run again): nats per test frame of the dequantised density
(ELBO, L_50, L_5000; factor analysis' exact log-likelihood), the bound on the 8-bit frames and
bits per dimension (docs/architecture.md, "Evaluation protocol"). The decoder's learned scales
on the test frames, against the dequantisation noise's own standard deviation
1 / (256 sqrt(12)) = 0.0011, say whether a Gaussian decoder has collapsed onto the frames.

Imputation: the test frames with their bottom half missing, and with half of their pixels
missing at random (seed 0), completed by each model; the mean squared error of the completion
(the predictive mean) on the missing pixels, in grey levels squared, against the training
frames' mean. Factor analysis' completion is its exact conditional mean
E[x_m | x_o] = mu_m + C_mo C_oo^-1 (x_o - mu_o), C = W W^T + Psi; the deep models' is the
pseudo-Gibbs chain's Rao-Blackwellised mean (`model.impute`, 10 chains of `STEPS` sweeps).

Writes `frey.json`, `frey.md` and the pictures `frey-samples.png` (a row of samples' means per
model), `frey-reconstructions.png` (test frames, then each model's reconstruction) and
`frey-impute.png` (for each mask: the frames, the masked frames with the missing pixels in
blue, then each model's completion) under `--out`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

import tfdlgm
from tfdlgm import datasets, evaluation, images, impute

PRESETS = ("fa-frey", "vae-frey", "dlgm-frey")
SHAPE = datasets.FREY_IMAGE_SHAPE
DEQUANTIZATION_STD = 1 / (datasets.LEVELS * np.sqrt(12))
SHOWN = 8  # frames per picture row
# Sweeps of the deep models' pseudo-Gibbs chains. On this data Metropolis-within-Gibbs gets
# stuck (its acceptance falls under 1% within 20 sweeps) and pseudo-Gibbs needs a few hundred
# sweeps to leave the noise its first draws v_m ~ p(v_m | xi) put in.
STEPS = 500


def figures_of(name: str, remeasure: bool) -> dict:
    """The preset's recorded figures, or measured again by the protocol."""
    if not remeasure:
        return tfdlgm.zoo.metadata(name)["figures"]
    model = tfdlgm.zoo.load(name, compile=False)
    return evaluation.evaluate_preset(model, ll_examples=195, dataset="frey_faces")


def decoder_scales(model, x) -> dict:
    """Quantiles of the decoder's standard deviations p(x | z), z ~ q(z | x), over frames and
    pixels, and their ratio to the dequantisation noise's."""
    trace = model.infer(x, 1, model._seed_generator(0))
    scale = np.asarray(trace.likelihood.stddev()).ravel()
    quantiles = {q: float(np.quantile(scale, q)) for q in (0.0, 0.01, 0.5, 0.99)}
    return {
        "min": quantiles[0.0],
        "q01": quantiles[0.01],
        "median": quantiles[0.5],
        "q99": quantiles[0.99],
        "min_over_dequantization_std": quantiles[0.0] / DEQUANTIZATION_STD,
    }


def masks(shape) -> dict:
    """The two missing-data patterns: the bottom half, and half of the pixels at random."""
    rng = np.random.default_rng(0)
    return {
        "bottom half": impute.bottom_rows_mask(shape, rows=SHAPE[0] // 2, image_shape=SHAPE),
        "50% at random": rng.uniform(size=shape) < 0.5,
    }


def complete(name, model, x, mask) -> np.ndarray:
    """The model's completion of `x` where `mask` is False: its predictive mean."""
    if name.startswith("fa-"):
        return exact_conditional_mean(model, x, mask)
    missing = np.where(mask, x, np.nan)
    result = model.impute(
        missing, mask, method="pseudo_gibbs", steps=STEPS, num_chains=10, seed=0, verbose=0
    )
    return np.where(mask, x, np.asarray(result.mean))


def exact_conditional_mean(model, x, mask) -> np.ndarray:
    """Factor analysis' E[x_m | x_o] = mu_m + C_mo C_oo^-1 (x_o - mu_o), frame by frame."""
    w = np.asarray(model.loadings, dtype=np.float64)
    mu = np.asarray(model.mean, dtype=np.float64)
    covariance = w @ w.T + np.diag(np.asarray(model.noise_variance, dtype=np.float64))
    out = np.array(x, dtype=np.float64)
    for i, observed in enumerate(mask):
        o, m = observed, ~observed
        gain = np.linalg.solve(covariance[np.ix_(o, o)], covariance[np.ix_(o, m)])  # C_oo^-1 C_om
        out[i, m] = mu[m] + (x[i, o] - mu[o]) @ gain
    return out.astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remeasure", action="store_true", help="evaluate the presets again")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    test = evaluation.protocol_test_set(dataset="frey_faces")
    train_mean = np.concatenate(
        list(datasets.frey_faces("train", "fixed", batch_size=2000, as_numpy=True))
    ).mean(0)
    models = {name: tfdlgm.zoo.load(name, compile=False) for name in PRESETS}
    report = {"presets": {}, "imputation": {}}
    for name, model in models.items():
        entry = {"figures": figures_of(name, args.remeasure)}
        if not name.startswith("fa-"):
            entry["decoder_scale"] = decoder_scales(model, test)
        report["presets"][name] = entry
    shown = test[:SHOWN]
    grids = {"impute": []}
    for label, mask in masks(test.shape).items():
        errors = {"training mean": float(np.mean((train_mean - test)[~mask] ** 2))}
        rows = [shown, np.where(mask[:SHOWN], shown, np.nan)]
        for name, model in models.items():
            completed = complete(name, model, test, mask)
            errors[name] = float(np.mean((completed - test)[~mask] ** 2))
            rows.append(completed[:SHOWN])
        report["imputation"][label] = errors
        grids["impute"].extend(rows)
    samples = [np.asarray(m.sample(SHOWN, seed=0, mean=True)) for m in models.values()]
    reconstructions = [shown] + [np.asarray(m.reconstruct(shown, seed=0)) for m in models.values()]
    images.save_grid(np.stack(samples), out / "frey-samples.png", image_shape=SHAPE)
    images.save_grid(np.stack(reconstructions), out / "frey-reconstructions.png", SHAPE)
    images.save_grid(np.stack(grids["impute"]), out / "frey-impute.png", image_shape=SHAPE)
    (out / "frey.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "frey.md").write_text(markdown(report))
    print(markdown(report))
    deep = [report["presets"][n]["figures"]["log_likelihood"] for n in ("vae-frey", "dlgm-frey")]
    return 0 if max(deep) > report["presets"]["fa-frey"]["figures"]["exact_log_likelihood"] else 1


def markdown(report) -> str:
    lines = [
        "| preset | L_5000 (nats) | exact log p | ELBO | L_50 | 8-bit bound (nats) | bits/dim "
        "| KL | decoder scale: min / median (x dequantisation std) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["presets"].items():
        f = entry["figures"]
        exact = f.get("exact_log_likelihood")
        scale = entry.get("decoder_scale")
        scale_text = (
            f"{scale['min']:.4f} / {scale['median']:.4f} "
            f"({scale['min_over_dequantization_std']:.1f}x)"
            if scale
            else "one per pixel, exact"
        )
        lines.append(
            f"| [{name}](../../zoo/{name}/card.md) | {f['log_likelihood']:.1f} | "
            f"{'' if exact is None else f'{exact:.1f}'} | {f['elbo']:.1f} | {f['L_50']:.1f} | "
            f"{f['log_likelihood_8bit']:.1f} | {f['bits_per_dim']:.3f} | "
            f"{', '.join(f'{k:.1f}' for k in f['kl'])} | {scale_text} |"
        )
    lines += ["", "| missing | " + " | ".join(report["imputation"]["bottom half"]) + " |"]
    lines.append("|---" * (1 + len(report["imputation"]["bottom half"])) + "|")
    for label, errors in report["imputation"].items():
        lines.append(f"| {label} | " + " | ".join(f"{e:.5f}" for e in errors.values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
