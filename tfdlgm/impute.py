"""Missing data and prediction: complete partly observed data by importance sampling or by
Markov chains.

Data v splits into observed entries v_o (`mask` True) and missing entries v_m (`mask` False).
A trained latent model gives p(v_m | v_o) only through its latents xi. Three methods, written
once for every `LatentModel`.

Importance sampling (Mattei & Frellsen 2019, MIWAE, sec. 4), `"importance"`: K latents from
the recognition model fed v with its missing entries set to 0, self-normalised weights of the
observed entries' joint density:

```none
xi_i ~ q(xi | v_o),   w_i = p(v_o | xi_i) p(xi_i) / q(xi_i | v_o),   a_i = w_i / sum_k w_k
E[v_m | v_o]   ~= sum_i a_i E[v_m | xi_i]                                    (M&F eq. 8)
Var[v_m | v_o] ~= sum_i a_i (Var[v_m | xi_i] + (E[v_m | xi_i] - E[v_m | v_o])^2)
multiple imputation: i ~ Categorical(a_1 ... a_K),  v_m ~ p(v_m | xi_i)  (sampling importance
                     resampling, M&F sec. 4.2)
effective sample size = (sum_i w_i)^2 / sum_i w_i^2 = 1 / sum_i a_i^2
```

It is consistent for p(v_m | v_o) as K grows whatever q (with support where p has it), needs no
mixing, and uses only the inference pass, so it works for every model; the effective sample
size says how well q covers p(xi | v_o) (near K: well; near 1: one sample dominates). The
variance is the law of total variance over the weighted samples.

Markov chains over (xi, v_m) with v_o held fixed (they use only `infer`, `decode`, `generate`
and the `Trace` they return):

```none
pseudo-Gibbs (Rezende et al. 2014, app. E):
    v_m^0 ~ p(x) at the missing entries (an ancestral draw)
    repeat steps times:   xi ~ q(xi | v_o, v_m);   v_m ~ p(v_m | xi)

Metropolis-within-Gibbs (Mattei & Frellsen 2018, alg. 1):
    one pseudo-Gibbs step from v_m^0 gives the start (xi, v_m); then repeat steps times:
    xi' ~ q(xi | v)                                 v = (v_o, v_m), the current completion
    rho = [p(v, xi') q(xi | v)] / [p(v, xi) q(xi' | v)] = w(xi') / w(xi),
          w(xi) = p(v | xi) p(xi) / q(xi | v)       (importance weights, Burda et al. eq. 8)
    xi <- xi' with probability min(1, rho)
    v_m ~ p(v_m | xi)
```

where p(v_m | xi) is the model's likelihood p(v | xi) at the missing entries: the observation
models factorise over features, so v_m is independent of v_o given xi and the draw is the
full x ~ p(x | xi) with the missing entries kept.

The pseudo-Gibbs chain uses q(xi | v) in place of p(xi | v); its stationary distribution is
p(v_m | v_o) only if q is exact, and is biased otherwise. The Metropolis-within-Gibbs step on xi
is an independence sampler with target p(xi | v) and proposal q(xi | v), so each sweep leaves
p(xi, v_m | v_o) invariant and the chain targets p(v_m | v_o) exactly, whatever q (with support
where p has it); a poor q shows as a low acceptance rate. For several latent layers
w(xi) is `objectives.log_importance_weights` on the trace's own samples, and the current xi is
scored under q(xi | v) at the new v: from the trace's own posteriors when each q(xi_l | v)
depends on v only (the VAE, factor analysis, the DLGM), else through the model's
`posterior_log_prob(x, latents)`, which a model with a hierarchical q (the ladder VAE's
top-down q(xi_l | xi_l+1, v)) overrides; without that override the chain raises an error
naming `"pseudo_gibbs"`, which works for every model. `decode` receives the latent samples as
`LatentModel.dream` passes them: one tensor for a single layer, the list (bottom first) for
several.

Uncertainty. With `num_chains` = C > 1 independent chains the predictive mean and variance
of each missing entry are Rao-Blackwellised over the chains' last latent states xi_c:

```none
E[v_m | v_o]   ~= (1/C) sum_c E[v_m | xi_c]
Var[v_m | v_o] ~= (1/C) sum_c Var[v_m | xi_c] + (1/C) sum_c (E[v_m | xi_c] - E[v_m | v_o])^2
```

(the law of total variance). For binary data E[v_m | xi_c] is the pixel's probability, the
mean is the predicted probability of each missing pixel and the variance is p (1 - p).

Prediction ("what comes next") is imputation with the future masked: `future_mask` masks the
last features of each row, `bottom_rows_mask` the bottom rows of flattened images, and
`predict_bottom_rows` completes them.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from tfdlgm import objectives, validation
from tfdlgm.backend import tfp_seed
from tfdlgm.progress import Progress, check_verbose

CHAINS = ("pseudo_gibbs", "metropolis_within_gibbs")
METHODS = ("importance", *CHAINS)
# Values of one [samples, examples, features] tensor of the importance pass (memory bound).
_IMPORTANCE_VALUES = 2**22
# Examples per importance pass.
_IMPORTANCE_EXAMPLES = 100


@dataclasses.dataclass
class ImputationResult:
    """What `impute` returns. Observed entries are the caller's values, bit for bit.

    Attributes:
        completed: `np.ndarray` `[batch, D]`, x with its missing entries drawn by the first
            chain's last step (one draw from the chain's approximation of p(v_m | v_o)), or,
            for `"importance"`, the first multiple imputation.
        samples: `np.ndarray` `[num_chains, batch, D]`, every chain's last completion, or, for
            `"importance"`, the multiple imputations (one per `num_chains`).
        mean: `np.ndarray` `[batch, D]` or None: the predictive mean at missing entries
            (pixel probabilities for binary data), x at observed ones: Rao-Blackwellised over
            the chains, (1/C) sum_c E[x | xi_c] (None when `num_chains` is 1), or, for
            `"importance"`, the single imputation sum_i a_i E[x | xi_i] (always).
        variance: `np.ndarray` `[batch, D]` or None: the predictive variance at missing
            entries (law of total variance over the chains or the weighted samples), 0 at
            observed ones. None for a chain when `num_chains` is 1.
        acceptance_rate: float or None: the fraction of accepted proposals of the
            Metropolis-within-Gibbs chain, over steps, chains and examples; None for
            pseudo-Gibbs.
        chain: `np.ndarray` `[steps, num_chains, batch, D]` or None: the completion after
            every step, with `return_chain=True`.
        method: str, the method that ran.
        effective_sample_size: `np.ndarray` `[batch]` or None: for `"importance"`, each
            example's (sum_i w_i)^2 / sum_i w_i^2, between 1 and `num_samples`; None for the
            chains.
    """

    completed: np.ndarray
    samples: np.ndarray
    mean: np.ndarray | None
    variance: np.ndarray | None
    acceptance_rate: float | None
    chain: np.ndarray | None
    method: str
    effective_sample_size: np.ndarray | None = None


def impute(
    model,
    x,
    mask,
    method: str = "pseudo_gibbs",
    steps: int | None = None,
    num_chains: int = 1,
    seed: int | None = None,
    return_chain: bool = False,
    verbose="auto",
    num_samples: int | None = None,
) -> ImputationResult:
    """Completes the missing entries of `x` from a `LatentModel`.

    The methods are described in the module docstring. `"importance"` (Mattei & Frellsen
    2019) weighs K = `num_samples` latents xi_i ~ q(xi | v_o) by w_i = p(v_o, xi_i) /
    q(xi_i | v_o): the single imputation sum_i a_i E[v_m | xi_i] (a_i the normalised weights),
    its variance, multiple imputations by resampling, and the effective sample size; it needs
    no mixing, works for every model and runs through the model's compiled functions. The
    chains: `"pseudo_gibbs"` (Rezende et al. 2014, app. E) alternates xi ~ q(xi | v) and
    v_m ~ p(v_m | xi); `"metropolis_within_gibbs"` (Mattei & Frellsen 2018, alg. 1) accepts
    xi' ~ q(xi | v) with probability min(1, w(xi') / w(xi)), w = p(v, xi) / q(xi | v), and so
    targets p(v_m | v_o) exactly. Each step is one vectorised pass over all chains and
    examples.

    Args:
        model: a `LatentModel` (e.g. `VAE`, `FactorAnalysis`).
        x: float array `[batch, data_dim]`. Missing entries may hold anything, NaN included
            (the usual way to mark them); their values are ignored.
        mask: bool array of the shape of `x`: True where `x` is observed, False where it is
            missing. Every row needs at least one observed entry, and, for a chain, one
            missing entry.
        method: `"importance"`, `"pseudo_gibbs"` or `"metropolis_within_gibbs"`. Defaults
            to `"pseudo_gibbs"`.
        steps: int >= 1, sweeps of a chain (the Metropolis-within-Gibbs chain makes one
            pseudo-Gibbs sweep first, to start). Defaults to `100`; chains only.
        num_chains: int >= 1, independent chains per example (more than one gives the
            predictive mean and variance), or, for `"importance"`, the number of multiple
            imputations drawn by resampling. Defaults to `1`.
        seed: int or None, for a reproducible result. Defaults to `None` (the model's stream).
        return_chain: bool, keep the completion after every step. Defaults to `False`;
            chains only.
        verbose: `0` (silent), `1` (a progress bar over the steps, or over the examples for
            `"importance"`, with the time left), `2` (one line at the end) or `"auto"` (1 in a
            terminal, else 0; `tfdlgm.progress`). Defaults to `"auto"`.
        num_samples: int >= 1, K, the importance samples per example. Defaults to `1000`;
            `"importance"` only.

    Returns:
        `ImputationResult`.

    Raises:
        ValueError: for an unknown `method`; `steps`, `num_chains` or `num_samples` not a
            positive int, or given to a method that does not take it; a
            mask that is not bool or not of the shape of `x`, or a row with no observed or no
            missing entry; NaN in an observed entry; `x` of the wrong shape, dtype or support;
            and for `"metropolis_within_gibbs"` with a q(xi_l | .) that depends on other
            latents.

    Example:

    ```python
    x = x_test[:8].copy()
    mask = tfdlgm.impute.bottom_rows_mask(x.shape, rows=14)     # keep the top half
    x[~mask] = np.nan
    result = model.impute(x, mask, method="importance", num_samples=1000, num_chains=5)
    result.mean, result.variance, result.samples, result.effective_sample_size
    result = model.impute(x, mask, method="metropolis_within_gibbs", steps=200, num_chains=10)
    result.completed, result.mean, result.acceptance_rate
    ```
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    num_chains = validation.check_positive_int(num_chains, "num_chains")
    if not isinstance(return_chain, (bool, np.bool_)):
        raise ValueError(f"`return_chain` must be a bool. Received: return_chain={return_chain!r}")
    verbose = check_verbose(verbose)
    if method == "importance":
        for name, value in (("steps", steps), ("return_chain", return_chain or None)):
            if value is not None:
                raise ValueError(
                    f"`{name}` is for the Markov chains; method='importance' takes "
                    f"`num_samples` instead. Received: {name}={value!r}"
                )
        num_samples = validation.check_positive_int(
            1000 if num_samples is None else num_samples, "num_samples"
        )
    elif num_samples is not None:
        raise ValueError(
            "`num_samples` is for method='importance'; a chain takes `steps`. "
            f"Received: num_samples={num_samples!r} with method={method!r}"
        )
    else:
        steps = validation.check_positive_int(100 if steps is None else steps, "steps")
    original, data, mask = validation.check_missing_data(
        x, mask, model.data_dim, model.support, model.variable_dtype, method in CHAINS
    )
    if method == "importance":
        return _importance(model, original, data, mask, num_samples, num_chains, seed, verbose)
    generator = model._seed_generator(seed)
    batch, dim = data.shape
    # Chains are stacked along the batch axis, chain-major: row c * batch + b.
    observed = ops.convert_to_tensor(np.tile(mask, (num_chains, 1)))
    data = ops.convert_to_tensor(
        np.tile(np.where(mask, data, 0.0).astype(data.dtype), (num_chains, 1))
    )
    chain = _PseudoGibbs() if method == "pseudo_gibbs" else _MetropolisWithinGibbs()
    start = model.generate(batch * num_chains, generator).sample(seed=tfp_seed(generator))
    v = ops.where(observed, data, start)  # [C * B, D]
    v = chain.start(model, v, data, observed, generator)
    progress = Progress(steps, verbose, unit_name="step")
    states = []
    for step in range(steps):
        v = chain.step(model, v, data, observed, generator)
        if return_chain:
            states.append(ops.convert_to_numpy(v))
        progress.update(step + 1, v)

    def complete(values):  # [..., C * B, D] -> [..., C, B, D] with the caller's observed entries
        values = np.reshape(values, values.shape[:-2] + (num_chains, batch, dim))
        return np.where(mask, original, values.astype(original.dtype))

    samples = complete(ops.convert_to_numpy(v))
    mean = variance = None
    if num_chains > 1:
        likelihood = chain.likelihood  # p(x | xi_c) at the chains' last latent states
        conditional_mean = np.reshape(
            ops.convert_to_numpy(likelihood.mean()), (num_chains, batch, dim)
        )
        conditional_variance = np.reshape(
            ops.convert_to_numpy(likelihood.variance()), (num_chains, batch, dim)
        )
        mean = np.where(mask, original, conditional_mean.mean(0).astype(original.dtype))
        variance = np.where(
            mask,
            0,
            (conditional_variance.mean(0) + conditional_mean.var(0)).astype(original.dtype),
        )
    return ImputationResult(
        completed=samples[0],
        samples=samples,
        mean=mean,
        variance=variance,
        acceptance_rate=chain.acceptance_rate(),
        chain=complete(np.stack(states)) if return_chain else None,
        method=method,
    )


def _importance(model, original, data, mask, num_samples, num_imputations, seed, verbose):
    """Importance-sampling imputation (module docstring): the examples in passes of
    `_IMPORTANCE_EXAMPLES`, the K samples of each in chunks combined exactly (`_combine`)."""
    dim = data.shape[1]
    passes = model._compiled("importance", lambda x, k, m: _importance_pass(model, x, k, m))
    examples = min(len(data), _IMPORTANCE_EXAMPLES)
    chunk = max(1, min(num_samples, _IMPORTANCE_VALUES // (examples * dim)))
    progress = Progress(len(data), verbose, unit_name="example")
    parts = []
    with model._seeded(seed):
        for start in range(0, len(data), examples):
            batch = data[start : start + examples]
            chunks = []
            for first in range(0, num_samples, chunk):
                size = min(chunk, num_samples - first)
                packed = ops.convert_to_numpy(passes(batch, size, num_imputations))
                chunks.append(packed.astype(np.float64))
                progress.update(start + len(batch) * (first + size) / num_samples)
            uniform = ops.convert_to_numpy(
                keras.random.uniform((num_imputations, len(batch)), seed=model.seed_generator)
            )
            parts.append(_combine(np.stack(chunks), uniform, dim, num_imputations))
    means, variances, draws, sizes = zip(*parts)
    mean, variance, ess = (np.concatenate(p) for p in (means, variances, sizes))
    draws = np.concatenate(draws, axis=1)  # [M, N, D]
    dtype = original.dtype
    samples = np.where(mask, original, draws.astype(dtype))
    return ImputationResult(
        completed=samples[0],
        samples=samples,
        mean=np.where(mask, original, mean.astype(dtype)),
        variance=np.where(mask, 0, variance).astype(dtype),
        acceptance_rate=None,
        chain=None,
        method="importance",
        effective_sample_size=ess,
    )


def _importance_pass(model, x, num_samples, num_imputations):
    """One chunk of k = `num_samples` weighted samples for a batch x `[B, D]` (NaN = missing),
    reduced within the chunk and packed in one tensor `[B, 2 + 2 D + M D]` (one output keeps
    the model's compiled-function machinery, data parallelism included):

    ```none
    log sum_i w_i,  sum_i a_i^2,  sum_i a_i mu_i,  sum_i a_i (sigma_i^2 + (mu_i - mean)^2),
    M draws x ~ p(x | xi_i), i ~ Categorical(a)       a_i = w_i / sum_k w_k within the chunk
    ```
    """
    trace, x = model._trace(x, num_samples, model.seed_generator, missing=True)
    log_w = objectives.log_importance_weights(trace, x)  # [k, B]
    log_total = ops.logsumexp(log_w, axis=0)  # [B]
    a = ops.exp(log_w - log_total)  # [k, B]
    mu = trace.likelihood.mean()  # [k, B, D]
    mean = ops.sum(a[..., None] * mu, axis=0)
    variance = ops.sum(a[..., None] * (trace.likelihood.variance() + (mu - mean) ** 2), axis=0)
    picks = keras.random.categorical(
        ops.transpose(log_w), num_imputations, seed=model.seed_generator
    )  # [B, M]
    draws = ops.transpose(trace.likelihood.sample(seed=tfp_seed(model.seed_generator)), (1, 0, 2))
    draws = ops.take_along_axis(draws, ops.cast(picks, "int32")[..., None], axis=1)  # [B, M, D]
    batch = ops.shape(mean)[0]
    return ops.concatenate(
        [
            log_total[:, None],
            ops.sum(a**2, axis=0)[:, None],
            mean,
            variance,
            ops.reshape(draws, (batch, -1)),
        ],
        axis=-1,
    )


def _combine(chunks, uniform, dim, num_imputations):
    """The chunks' packed results `[C, B, 2 + 2 D + M D]` combined into the estimates over all
    K samples: chunk c has weight W_c = sum of its w_i (normalised over chunks), so

    ```none
    mean = sum_c W_c mean_c,   variance = sum_c W_c (variance_c + (mean_c - mean)^2)
    sum_i a_i^2 = sum_c W_c^2 sum_{i in c} a_i^2,   a draw: chunk c ~ W, then its own draw
    ```

    `uniform` `[M, B]` picks each draw's chunk. Returns `(mean, variance, draws, ess)`:
    `[B, D]`, `[B, D]`, `[M, B, D]`, `[B]`.
    """
    log_total, squares = chunks[..., 0], chunks[..., 1]  # [C, B]
    means, variances = chunks[..., 2 : 2 + dim], chunks[..., 2 + dim : 2 + 2 * dim]
    draws = chunks[..., 2 + 2 * dim :].reshape(*chunks.shape[:2], num_imputations, dim)
    weights = np.exp(log_total - log_total.max(axis=0))
    weights /= weights.sum(axis=0)  # [C, B]
    mean = np.sum(weights[..., None] * means, axis=0)
    variance = np.sum(weights[..., None] * (variances + (means - mean) ** 2), axis=0)
    ess = 1.0 / np.sum(weights**2 * squares, axis=0)
    cumulative = np.cumsum(weights, axis=0)  # [C, B]
    picked = np.minimum((uniform[None] > cumulative[:, None]).sum(axis=0), len(chunks) - 1)
    batch = np.arange(chunks.shape[1])
    chosen = draws[picked, batch[None], np.arange(num_imputations)[:, None]]  # [M, B, D]
    return mean, variance, chosen, ess


class _PseudoGibbs:
    """xi ~ q(xi | v); v_m ~ p(v_m | xi) (Rezende et al. 2014, app. E)."""

    likelihood = None  # p(x | xi) at the last xi, batch shape [1, C * B]

    def start(self, model, v, data, observed, generator):
        return v

    def step(self, model, v, data, observed, generator):
        trace = model.infer(v, 1, generator)
        self.likelihood = trace.likelihood
        return _complete(self.likelihood, data, observed, generator)

    def acceptance_rate(self):
        return None


class _MetropolisWithinGibbs:
    """Mattei & Frellsen (2018, alg. 1): an independence Metropolis-Hastings step on xi.

    State: the latents xi (a list of `[1, C * B, K_l]`), log p(xi) and log p(v | xi) at the
    current completion v (both `[1, C * B]`), and p(x | xi).
    """

    def start(self, model, v, data, observed, generator):
        trace = model.infer(v, 1, generator)
        self.latents = [layer.sample for layer in trace.latents]
        try:
            objectives.recognition_log_prob(model, trace, v, self.latents)
        except NotImplementedError as error:
            raise ValueError(
                "method='metropolis_within_gibbs' scores the current latents under q(xi | v) "
                f"at each new completion v, which this model cannot do: {error} Or use "
                "method='pseudo_gibbs', which works for every model."
            ) from error
        self.log_prior = _log_prior(trace)
        self.likelihood = trace.likelihood
        self.accepted = []
        v = _complete(self.likelihood, data, observed, generator)
        self.log_likelihood = self.likelihood.log_prob(v[None])
        return v

    def step(self, model, v, data, observed, generator):
        trace = model.infer(v, 1, generator)  # xi' ~ q(xi | v)
        log_w_proposal = objectives.log_importance_weights(trace, v[None])  # [1, C * B]
        log_q_current = objectives.recognition_log_prob(model, trace, v, self.latents)
        log_w_current = self.log_likelihood + self.log_prior - log_q_current
        uniform = keras.random.uniform(ops.shape(log_w_current), seed=generator)
        accept = ops.log(uniform) < log_w_proposal - log_w_current  # [1, C * B]
        self.accepted.append(ops.convert_to_numpy(accept))
        self.latents = [
            ops.where(accept[..., None], layer.sample, latent)
            for layer, latent in zip(trace.latents, self.latents, strict=True)
        ]
        self.log_prior = ops.where(accept, _log_prior(trace), self.log_prior)
        self.likelihood = model.decode(self.latents[0] if len(self.latents) == 1 else self.latents)
        v = _complete(self.likelihood, data, observed, generator)  # v_m ~ p(v_m | xi)
        self.log_likelihood = self.likelihood.log_prob(v[None])
        return v

    def acceptance_rate(self):
        return float(np.mean(self.accepted)) if self.accepted else None


def _complete(likelihood, data, observed, generator):
    """x ~ p(x | xi) (batch shape `[1, N]`) with the observed entries put back: `[N, D]`."""
    draw = likelihood.sample(seed=tfp_seed(generator))[0]
    return ops.where(observed, data, draw)


def _log_prior(trace):
    """log p(xi) = sum_l log p(xi_l | xi_l+1) at the trace's samples, `[1, N]`."""
    return sum(layer.prior.log_prob(layer.sample) for layer in trace.latents)


# -- prediction: imputation with the future masked -------------------------------------------


def future_mask(shape, num_future: int) -> np.ndarray:
    """A mask that hides the last `num_future` features of every row ("what comes next").

    Args:
        shape: `(batch, D)`, the shape of the data.
        num_future: int, 1 <= num_future < D, how many trailing features are missing.

    Returns:
        bool `np.ndarray` of `shape`: True (observed) for the first D - num_future features,
        False (missing) for the rest.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            f"`shape` must be (batch, D) with positive sizes. Received: shape={shape!r}"
        )
    num_future = validation.check_positive_int(num_future, "num_future")
    if num_future >= shape[1]:
        raise ValueError(
            f"`num_future` must be less than D = {shape[1]} (something must be observed). "
            f"Received: num_future={num_future}"
        )
    mask = np.ones(shape, dtype=bool)
    mask[:, shape[1] - num_future :] = False
    return mask


def bottom_rows_mask(shape, rows: int, image_shape=(28, 28)) -> np.ndarray:
    """A mask that hides the bottom `rows` rows of flattened (row-major) images.

    Args:
        shape: `(batch, height * width)`, the shape of the flattened images.
        rows: int, 1 <= rows < height, how many bottom rows are missing.
        image_shape: `(height, width)`. Defaults to `(28, 28)` (MNIST).

    Returns:
        bool `np.ndarray` of `shape`, False on the bottom `rows` rows.
    """
    height, width = (int(n) for n in image_shape)
    if len(tuple(shape)) != 2 or int(tuple(shape)[1]) != height * width:
        raise ValueError(
            f"`shape` must be (batch, {height * width}) for images of shape {image_shape}. "
            f"Received: shape={tuple(shape)!r}"
        )
    rows = validation.check_positive_int(rows, "rows")
    if rows >= height:
        raise ValueError(
            f"`rows` must be less than the image height {height}. Received: rows={rows}"
        )
    return future_mask(shape, rows * width)


def predict_bottom_rows(model, x, rows: int, image_shape=(28, 28), **kwargs) -> ImputationResult:
    """Completes the bottom `rows` rows of each image given the rows above.

    `impute(model, x, bottom_rows_mask(x.shape, rows, image_shape), **kwargs)`: the values of
    `x` in the bottom rows are ignored.

    Args:
        model: a `LatentModel`.
        x: float array `[batch, height * width]`.
        rows: int, how many bottom rows to predict.
        image_shape: `(height, width)`. Defaults to `(28, 28)`.
        **kwargs: `impute` arguments: `method`, `steps`, `num_chains`, `seed`, `return_chain`.

    Returns:
        `ImputationResult`.
    """
    x = validation.to_numpy(x, "x")
    return impute(model, x, bottom_rows_mask(x.shape, rows, image_shape), **kwargs)
