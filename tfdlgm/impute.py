"""Missing data and prediction: Markov chains that complete partly observed data.

Data v splits into observed entries v_o (`mask` True) and missing entries v_m (`mask` False).
A trained latent model gives p(v_m | v_o) only through its latents xi, so imputation runs a
Markov chain over (xi, v_m) with v_o held fixed. Two chains, written once for every
`LatentModel` (they use only `infer`, `decode`, `generate` and the `Trace` they return):

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

METHODS = ("pseudo_gibbs", "metropolis_within_gibbs")


@dataclasses.dataclass
class ImputationResult:
    """What `impute` returns. Observed entries are the caller's values, bit for bit.

    Attributes:
        completed: `np.ndarray` `[batch, D]`, x with its missing entries drawn by the first
            chain's last step (one draw from the chain's approximation of p(v_m | v_o)).
        samples: `np.ndarray` `[num_chains, batch, D]`, every chain's last completion.
        mean: `np.ndarray` `[batch, D]` or None: the Rao-Blackwellised predictive mean
            (1/C) sum_c E[x | xi_c] at missing entries (pixel probabilities for binary data),
            x at observed ones. None when `num_chains` is 1.
        variance: `np.ndarray` `[batch, D]` or None: the predictive variance at missing
            entries (law of total variance over the chains), 0 at observed ones. None when
            `num_chains` is 1.
        acceptance_rate: float or None: the fraction of accepted proposals of the
            Metropolis-within-Gibbs chain, over steps, chains and examples; None for
            pseudo-Gibbs.
        chain: `np.ndarray` `[steps, num_chains, batch, D]` or None: the completion after
            every step, with `return_chain=True`.
        method: str, the chain that ran.
    """

    completed: np.ndarray
    samples: np.ndarray
    mean: np.ndarray | None
    variance: np.ndarray | None
    acceptance_rate: float | None
    chain: np.ndarray | None
    method: str


def impute(
    model,
    x,
    mask,
    method: str = "pseudo_gibbs",
    steps: int = 100,
    num_chains: int = 1,
    seed: int | None = None,
    return_chain: bool = False,
    verbose="auto",
) -> ImputationResult:
    """Draws the missing entries of `x` from a `LatentModel` by a Markov chain.

    The chains are described in the module docstring: `"pseudo_gibbs"` (Rezende et al. 2014,
    app. E) alternates xi ~ q(xi | v) and v_m ~ p(v_m | xi); `"metropolis_within_gibbs"`
    (Mattei & Frellsen 2018, alg. 1) accepts xi' ~ q(xi | v) with probability
    min(1, w(xi') / w(xi)), w = p(v, xi) / q(xi | v), and so targets p(v_m | v_o) exactly.
    Each step is one vectorised pass over all chains and examples.

    Args:
        model: a `LatentModel` (e.g. `VAE`, `FactorAnalysis`).
        x: float array `[batch, data_dim]`. Missing entries may hold anything, NaN included
            (the usual way to mark them); their values are ignored.
        mask: bool array of the shape of `x`: True where `x` is observed, False where it is
            missing. Every row needs at least one observed and one missing entry.
        method: `"pseudo_gibbs"` or `"metropolis_within_gibbs"`. Defaults to
            `"pseudo_gibbs"`.
        steps: int >= 1, sweeps of the chain (the Metropolis-within-Gibbs chain makes one
            pseudo-Gibbs sweep first, to start). Defaults to `100`.
        num_chains: int >= 1, independent chains per example; more than one gives the
            predictive mean and variance. Defaults to `1`.
        seed: int or None, for a reproducible chain. Defaults to `None` (the model's stream).
        return_chain: bool, keep the completion after every step. Defaults to `False`.
        verbose: `0` (silent), `1` (a progress bar over the steps, with the time left and
            the time per step), `2` (one line at the end) or `"auto"` (1 in a terminal, else
            0; `tfdlgm.progress`). Defaults to `"auto"`.

    Returns:
        `ImputationResult`.

    Raises:
        ValueError: for an unknown `method`; `steps` or `num_chains` not a positive int; a
            mask that is not bool or not of the shape of `x`, or a row with no observed or no
            missing entry; NaN in an observed entry; `x` of the wrong shape, dtype or support;
            and for `"metropolis_within_gibbs"` with a q(xi_l | .) that depends on other
            latents.

    Example:

    ```python
    x = x_test[:8].copy()
    mask = tfdlgm.impute.bottom_rows_mask(x.shape, rows=14)     # keep the top half
    x[~mask] = np.nan
    result = model.impute(x, mask, method="metropolis_within_gibbs", steps=200, num_chains=10)
    result.completed, result.mean, result.acceptance_rate
    ```
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    steps = validation.check_positive_int(steps, "steps")
    num_chains = validation.check_positive_int(num_chains, "num_chains")
    if not isinstance(return_chain, (bool, np.bool_)):
        raise ValueError(f"`return_chain` must be a bool. Received: return_chain={return_chain!r}")
    verbose = check_verbose(verbose)
    original, data, mask = validation.check_missing_data(
        x, mask, model.data_dim, model.support, model.compute_dtype
    )
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
