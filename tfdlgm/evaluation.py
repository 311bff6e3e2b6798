"""The evaluation protocol (docs/architecture.md): every figure a report quotes
(`evaluate_protocol`), and those a zoo preset records, on a protocol's test set
(`evaluate_preset`): MNIST binarised once, or Frey faces dequantised once.

```none
ELBO = L_1 <= L_5 <= L_50 <= L_k <= log p(x)     (Burda et al. 2015, thm. 1), k = 5000
A_u  = Cov_x(E_q(z|x)[z_u]) > 0.01              (active units, Burda et al. sec. 5.2)
```
"""

from __future__ import annotations

import time

import numpy as np
from keras import ops

from tfdlgm import progress, validation
from tfdlgm.models.base import LatentModel


def evaluate_protocol(
    model,
    x,
    ks=(1, 5, 50),
    k: int = 5000,
    seed: int = 0,
    batch_size: int = 100,
    k_examples: int | None = None,
    verbose=0,
) -> dict:
    """The protocol's figures for `model` on the examples `x`, in nats, averaged over `x`.

    ```none
    ELBO   = E_q[log p(x | z)] - sum_l KL_l                  (K&W eq. 3; Rezende et al. eq. 13)
    L_j    = E[log (1/j) sum_s p(x, z_s) / q(z_s | x)]       (Burda et al. eq. 8), j in ks
    L_k    = the log-likelihood estimate, j = k (5000)
    KL_l   = E_x KL[q(z_l | .) || p(z_l | .)]                 one per latent layer, bottom first
    active = #{u : Var_x(E_q[z_u | x]) > 0.01}               per layer
    ```

    Each bound uses its own fixed seed (`seed`, `seed + 1`, ...), so a call is reproducible.

    Args:
        model: a `tfdlgm.models.LatentModel`.
        x: float array `[n, data_dim]` (for MNIST: the test split binarised once with seed 0,
            `tfdlgm.datasets.mnist("test", binarize="fixed", seed=0)`).
        ks: tuple of ints, the j of the L_j bounds besides L_k. Defaults to `(1, 5, 50)`.
        k: int, samples of the log-likelihood estimate. Defaults to `5000`.
        seed: int, the first seed. Defaults to `0`.
        batch_size: int, examples per pass of the L_j estimators. Defaults to `100`.
        k_examples: int or None, L_k on the first `k_examples` of `x` only (it costs k / 50
            times L_50); None for all of `x`.
        verbose: 0 (silent), 1 (each figure's name, then a progress bar over its examples),
            2 (one line per figure) or `"auto"` (1 in a terminal). Defaults to `0`.

    Returns:
        dict: `examples` (n), `elbo`, `L_j` for each j in `ks` and `L_k` (floats, e.g.
        `"L_5000"`), `k_examples` (the examples L_k is over), `kl` (list of floats, one per
        latent layer) and `active_units` (list of ints, one per latent layer).
    """
    if not isinstance(model, LatentModel):
        raise ValueError(
            f"`model` must be a tfdlgm LatentModel. Received: type {type(model).__name__}"
        )
    if not isinstance(ks, (list, tuple)) or not all(
        isinstance(j, (int, np.integer)) and not isinstance(j, bool) and j > 0 for j in ks
    ):
        raise ValueError(f"`ks` must be a tuple of positive ints. Received: ks={ks!r}")
    ks = tuple(int(j) for j in ks)
    k = validation.check_positive_int(k, "k")
    if seed is None:
        raise ValueError(
            "`seed` must be a non-negative int: the protocol's figures are reproducible. "
            "Received: seed=None"
        )
    seed = validation.check_seed(seed)
    batch_size = validation.check_positive_int(batch_size, "batch_size")
    x = model._check_x(x)  # complete data: the protocol's figures are of log p(x)
    k_examples = (
        len(x) if k_examples is None else validation.check_positive_int(k_examples, "k_examples")
    )
    verbose = progress.check_verbose(verbose)

    def announce(name, examples):
        if verbose:
            print(f"{name} on {len(examples):,} examples", flush=True)

    announce("ELBO", x)
    figures = {
        "examples": len(x),
        "k_examples": min(k_examples, len(x)),
        "elbo": float(np.mean(model.elbo(x, seed=seed, verbose=verbose))),
    }
    for offset, j in enumerate(dict.fromkeys((*ks, k)), start=1):
        examples = x[:k_examples] if j == k else x
        announce(f"L_{j}", examples)
        bound = model.iwae_bound(
            examples, j, batch_size=batch_size, seed=seed + offset, verbose=verbose
        )
        figures[f"L_{j}"] = float(np.mean(bound))
    kl = np.zeros(len(model.latent_dims))
    for start in range(0, len(x), batch_size):
        terms = model(x[start : start + batch_size])  # per-example terms, `LatentModel.call`
        kl += [float(np.sum(ops.convert_to_numpy(terms[f"kl_{i + 1}"]))) for i in range(len(kl))]
    figures["kl"] = [float(value) for value in kl / len(x)]
    figures["active_units"] = model.active_units(x, seed=seed)
    return figures


LOG_LIKELIHOOD_SAMPLES = 5000  # k of the protocol's log-likelihood estimate L_k
SLICE_EXAMPLES = 100  # the test slice: the first 100 test examples, what a preset's test checks
DATASETS = ("mnist", "frey_faces")
# How each data set's held-out splits are fixed: the test set with seed 0, validation with 1.
_TEST_SETS = {
    "mnist": 'tfdlgm.datasets.mnist("test", binarize="fixed", seed=0)',
    "frey_faces": 'tfdlgm.datasets.frey_faces("test", dequantize="fixed", seed=0)',
}


def protocol_test_set(path=None, dataset: str = "mnist", split: str = "test") -> np.ndarray:
    """A protocol's held-out set, drawn once: the test split with seed 0, validation with 1.

    MNIST: the 10,000 test images binarised once, `[10000, 784]` float32 in {0, 1}
    (`tfdlgm.datasets.mnist("test", binarize="fixed", seed=0)`). Frey faces: the 195 test
    frames dequantised once, `[195, 560]` float32 in [0, 1]
    (`tfdlgm.datasets.frey_faces("test", dequantize="fixed", seed=0)`).

    Args:
        path: str or path-like or None, the data file (None: the data set's environment
            variable, then Keras' cache, as `tfdlgm.datasets` looks). Defaults to `None`.
        dataset: str, `"mnist"` or `"frey_faces"`. Defaults to `"mnist"`.
        split: str, `"test"` or `"validation"`. Defaults to `"test"`.
    """
    from tfdlgm import datasets

    if dataset not in DATASETS:
        raise ValueError(f"`dataset` must be one of {DATASETS}. Received: dataset={dataset!r}")
    if split not in ("test", "validation"):
        raise ValueError(f"`split` must be 'test' or 'validation'. Received: split={split!r}")
    seed = 0 if split == "test" else 1
    if dataset == "mnist":
        batches = datasets.mnist(split, binarize="fixed", seed=seed, path=path, as_numpy=True)
    else:
        batches = datasets.frey_faces(
            split, dequantize="fixed", seed=seed, path=path, as_numpy=True
        )
    return np.concatenate(list(batches))


def protocol_source(dataset: str = "mnist") -> str:
    """The call that gives a data set's protocol test set, as text (cards quote it)."""
    return _TEST_SETS[dataset]


def protocol_text(log_likelihood_examples: int, dataset: str = "mnist") -> str:
    """How `evaluate_preset`'s figures were measured, in words (a preset's `protocol`)."""
    if dataset == "frey_faces":
        return (
            f"Test set: {_TEST_SETS[dataset]} (the 195 frames of blocks b % 10 == 9, "
            "dequantised once: x = (k + u) / 256). ELBO, L_1, L_5, L_50, KL per layer on all "
            f"195 frames; log_likelihood = L_{LOG_LIKELIHOOD_SAMPLES} = model.log_likelihood(x, "
            f"num_samples={LOG_LIKELIHOOD_SAMPLES}) on the first {log_likelihood_examples}, in "
            "nats per frame of the dequantised density; log_likelihood_8bit = log_likelihood - "
            "560 log 256, a lower bound on the 8-bit frames' log-likelihood (Theis et al. "
            "2016), and bits_per_dim = -log_likelihood_8bit / (560 log 2); active units: "
            "Var_x(E_q[z_u]) > 0.01 over the posterior means (Burda et al.); test_slice: the "
            f"first {SLICE_EXAMPLES} frames."
        )
    return (
        f"Test set: {_TEST_SETS['mnist']}. ELBO, L_1, L_5, "
        f"L_50, KL per layer on all 10,000 images; log_likelihood = L_{LOG_LIKELIHOOD_SAMPLES} "
        f"= model.log_likelihood(x, num_samples={LOG_LIKELIHOOD_SAMPLES}) on the first "
        f"{log_likelihood_examples}; active units: Var_x(E_q[z_u]) > 0.01 over the posterior "
        "means of the 10,000 images (Burda et al.); test_slice: the first "
        f"{SLICE_EXAMPLES} images."
    )


def evaluate_preset(
    model, ll_examples: int = 10_000, seed: int = 0, path=None, dataset: str = "mnist"
) -> dict:
    """The figures a zoo preset records, under the names its `metadata.json` gives them.

    `evaluate_protocol` on `protocol_test_set(dataset=dataset)` with k = 5000, its `L_5000`
    named `log_likelihood` (over the first `ll_examples` test examples), its wall time in
    `seconds`, and `test_slice`: the figures on the first 100 test examples that a test checks
    the shipped weights against (`model.elbo(x, num_samples=100, seed=0).mean()`, the analytic
    KL and the mean |E_q[z]| per latent layer, of one pass of the model's own random stream).
    For factor analysis also `exact_log_likelihood`, log p(x) in closed form. For 8-bit data
    (Frey faces) also `log_likelihood_8bit` and `bits_per_dim`
    (`tfdlgm.datasets.discrete_log_likelihood`), of the exact figure where there is one.

    Args:
        model: a `tfdlgm.models.LatentModel`.
        ll_examples: int, the test examples L_5000 is over. Defaults to `10_000` (all).
        seed: int, the first seed of `evaluate_protocol`. Defaults to `0`.
        path: the data file, as `protocol_test_set` takes it. Defaults to `None`.
        dataset: str, `"mnist"` or `"frey_faces"`. Defaults to `"mnist"`.

    Returns:
        dict: `examples`, `elbo`, `L_1`, `L_5`, `L_50`, `log_likelihood`,
        `log_likelihood_examples`, `kl`, `active_units`, `seconds`, `test_slice` (and for
        Frey faces `log_likelihood_8bit`, `bits_per_dim`).
    """
    from tfdlgm import datasets

    x = protocol_test_set(path, dataset=dataset)
    began = time.perf_counter()
    figures = evaluate_protocol(
        model, x, k=LOG_LIKELIHOOD_SAMPLES, seed=seed, k_examples=ll_examples
    )
    figures["log_likelihood"] = figures.pop(f"L_{LOG_LIKELIHOOD_SAMPLES}")
    figures["log_likelihood_examples"] = figures.pop("k_examples")
    exact = getattr(model, "exact_log_likelihood", None)  # factor analysis: log p(x) itself
    if exact is not None:
        figures["exact_log_likelihood"] = float(np.mean(exact(x)))
    if dataset == "frey_faces":
        best = figures.get("exact_log_likelihood", figures["log_likelihood"])
        discrete = datasets.discrete_log_likelihood(best, x.shape[1])
        figures["log_likelihood_8bit"] = float(discrete)
        figures["bits_per_dim"] = float(datasets.bits_per_dimension(discrete, x.shape[1]))
    figures["seconds"] = round(time.perf_counter() - began, 1)
    figures["test_slice"] = slice_figures(model, x[:SLICE_EXAMPLES], _TEST_SETS[dataset])
    return figures


def slice_figures(model, x, source: str = _TEST_SETS["mnist"]) -> dict:
    """The figures on a few fixed examples that a preset's test compares the loaded model
    with; `source` says where they come from."""
    out = model(x)
    exact = getattr(model, "exact_log_likelihood", None)
    return {
        **({"exact_log_likelihood": float(np.mean(exact(x)))} if exact is not None else {}),
        "examples": f"first {len(x)} of {source}",
        "elbo_100_samples_seed_0": float(model.elbo(x, num_samples=100, seed=0, verbose=0).mean()),
        "kl": [
            float(ops.convert_to_numpy(out[f"kl_{i + 1}"]).mean())
            for i in range(len(model.latent_dims))
        ],
        "posterior_mean_abs": [
            float(np.abs(ops.convert_to_numpy(q.mean())).mean()) for q in model.encode(x)
        ],
    }
