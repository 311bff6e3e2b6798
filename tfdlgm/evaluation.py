"""The evaluation protocol (ARCHITECTURE.md): every figure a report quotes (`evaluate_protocol`),
and those a zoo preset records, on the protocol's test set (`evaluate_preset`).

```none
ELBO = L_1 <= L_5 <= L_50 <= L_k <= log p(x)     (Burda et al. 2015, thm. 1), k = 5000
A_u  = Cov_x(E_q(z|x)[z_u]) > 0.01              (active units, Burda et al. sec. 5.2)
```
"""

from __future__ import annotations

import time

import numpy as np
from keras import ops

from tfdlgm import validation
from tfdlgm.models.base import LatentModel


def evaluate_protocol(
    model,
    x,
    ks=(1, 5, 50),
    k: int = 5000,
    seed: int = 0,
    batch_size: int = 100,
    k_examples: int | None = None,
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
    x = validation.to_numpy(x)
    k_examples = (
        len(x) if k_examples is None else validation.check_positive_int(k_examples, "k_examples")
    )
    figures = {
        "examples": len(x),
        "k_examples": min(k_examples, len(x)),
        "elbo": float(np.mean(model.elbo(x, seed=seed))),
    }
    for offset, j in enumerate(dict.fromkeys((*ks, k)), start=1):
        examples = x[:k_examples] if j == k else x
        bound = model.iwae_bound(examples, j, batch_size=batch_size, seed=seed + offset)
        figures[f"L_{j}"] = float(np.mean(bound))
    kl = np.zeros(len(model.latent_dims))
    for start in range(0, len(x), batch_size):
        terms = model(x[start : start + batch_size])  # per-example terms, `LatentModel.call`
        kl += [float(np.sum(ops.convert_to_numpy(terms[f"kl_{i + 1}"]))) for i in range(len(kl))]
    figures["kl"] = [float(value) for value in kl / len(x)]
    figures["active_units"] = model.active_units(x, seed=seed)
    return figures


LOG_LIKELIHOOD_SAMPLES = 5000  # k of the protocol's log-likelihood estimate L_k
SLICE_EXAMPLES = 100  # the test slice: the first 100 test images, what a preset's test checks


def protocol_test_set(path=None) -> np.ndarray:
    """The protocol's test set: MNIST's 10,000 test images binarised once with seed 0,
    `[10000, 784]` float32 in {0, 1} (`tfdlgm.datasets.mnist("test", binarize="fixed", seed=0)`).

    Args:
        path: str or path-like or None, the `mnist.npz` (None: `TFDLGM_MNIST`, then Keras'
            cache, as `tfdlgm.datasets.mnist` looks). Defaults to `None`.
    """
    from tfdlgm import datasets

    batches = datasets.mnist("test", binarize="fixed", seed=0, path=path, as_numpy=True)
    return np.concatenate(list(batches))


def protocol_text(log_likelihood_examples: int) -> str:
    """How `evaluate_preset`'s figures were measured, in words (a preset's `protocol`)."""
    return (
        "Test set: tfdlgm.datasets.mnist('test', binarize='fixed', seed=0). ELBO, L_1, L_5, "
        f"L_50, KL per layer on all 10,000 images; log_likelihood = L_{LOG_LIKELIHOOD_SAMPLES} "
        f"= model.log_likelihood(x, num_samples={LOG_LIKELIHOOD_SAMPLES}) on the first "
        f"{log_likelihood_examples}; active units: Var_x(E_q[z_u]) > 0.01 over the posterior "
        "means of the 10,000 images (Burda et al.); test_slice: the first "
        f"{SLICE_EXAMPLES} images."
    )


def evaluate_preset(model, ll_examples: int = 10_000, seed: int = 0, path=None) -> dict:
    """The figures a zoo preset records, under the names its `metadata.json` gives them.

    `evaluate_protocol` on `protocol_test_set()` with k = 5000, its `L_5000` named
    `log_likelihood` (over the first `ll_examples` images), its wall time in
    `seconds`, and `test_slice`: the figures on the first 100 test images that a test checks the
    shipped weights against (`model.elbo(x, num_samples=100, seed=0).mean()`, the analytic KL
    and the mean |E_q[z]| per latent layer, of one pass of the model's own random stream).

    Args:
        model: a `tfdlgm.models.LatentModel`.
        ll_examples: int, the test images L_5000 is over. Defaults to `10_000` (all).
        seed: int, the first seed of `evaluate_protocol`. Defaults to `0`.
        path: the `mnist.npz`, as `protocol_test_set` takes it. Defaults to `None`.

    Returns:
        dict: `examples`, `elbo`, `L_1`, `L_5`, `L_50`, `log_likelihood`,
        `log_likelihood_examples`, `kl`, `active_units`, `seconds`, `test_slice`.
    """
    x = protocol_test_set(path)
    began = time.perf_counter()
    figures = evaluate_protocol(
        model, x, k=LOG_LIKELIHOOD_SAMPLES, seed=seed, k_examples=ll_examples
    )
    figures["log_likelihood"] = figures.pop(f"L_{LOG_LIKELIHOOD_SAMPLES}")
    figures["log_likelihood_examples"] = figures.pop("k_examples")
    figures["seconds"] = round(time.perf_counter() - began, 1)
    figures["test_slice"] = slice_figures(model, x[:SLICE_EXAMPLES])
    return figures


def slice_figures(model, x) -> dict:
    """The figures on a few fixed images that a preset's test compares the loaded model with."""
    out = model(x)
    return {
        "examples": f"first {len(x)} of tfdlgm.datasets.mnist('test', binarize='fixed', seed=0)",
        "elbo_100_samples_seed_0": float(model.elbo(x, num_samples=100, seed=0).mean()),
        "kl": [
            float(ops.convert_to_numpy(out[f"kl_{i + 1}"]).mean())
            for i in range(len(model.latent_dims))
        ],
        "posterior_mean_abs": [
            float(np.abs(ops.convert_to_numpy(q.mean())).mean()) for q in model.encode(x)
        ],
    }
