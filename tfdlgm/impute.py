"""Missing data and prediction: complete partly observed data by importance sampling or by
Markov chains.

Data v splits into observed entries v_o (`mask` True) and missing entries v_m (`mask` False).
A trained latent model gives p(v_m | v_o) only through its latents xi. Three methods, written
once for every `LatentModel`.

Importance sampling (Mattei & Frellsen 2019, MIWAE, sec. 4), `"importance"`: K latents from
a proposal r(xi) that depends on v_o (and the model) only, self-normalised weights of the
observed entries' joint density:

```none
xi_i ~ r(xi),   w_i = p(v_o | xi_i) p(xi_i) / r(xi_i),   a_i = w_i / sum_k w_k
E[v_m | v_o]   ~= sum_i a_i E[v_m | xi_i]                                    (M&F eq. 8)
Var[v_m | v_o] ~= sum_i a_i (Var[v_m | xi_i] + (E[v_m | xi_i] - E[v_m | v_o])^2)
multiple imputation: i ~ Categorical(a_1 ... a_K),  v_m ~ p(v_m | xi_i)  (sampling importance
                     resampling, M&F sec. 4.2)
effective sample size = (sum_i w_i)^2 / sum_i w_i^2 = 1 / sum_i a_i^2
```

It is consistent for p(v_m | v_o) as K grows whatever r (with support where p has it), and
the effective sample size says how well r covers p(xi | v_o) (near K: well; near 1: one sample
dominates). The variance is the law of total variance over the weighted samples. Two
proposals (`proposal`):

```none
"encoder":  r(xi) = q(xi | v^0),   v^0 = v with its missing entries set to 0      (M&F)
"mixture":  r(xi) = (1/C) sum_c q(xi | v^c),   v^c = (v_o, v_m^c),   c = 0 .. C-1
            v_m^1 .. v_m^{C-1}: the last states of C - 1 pseudo-Gibbs chains of `steps`
            sweeps (below), one draw each; K / C latents from each component
```

q(xi | v) is the whole recognition model, every latent layer (for a hierarchical q, the
product of its q(xi_l | xi_l+1, v) or q(xi_l | xi_l-1)): each latent of every component is
scored under every component, from the trace's own posteriors where each q(xi_l | v) depends
on v only, else through the model's `posterior_log_prob(v, latents)` (as the
Metropolis-within-Gibbs chain below). The completions depend on v_o and the model only, so r
is a fixed proposal given v_o and the weights are exact importance weights; drawing K / C
from each component and weighing by the whole mixture is the deterministic-mixture (balance
heuristic) estimator, unbiased for the unnormalised sums and of no larger variance than
drawing the components at random (Veach & Guibas 1995; Owen & Zhou 2000, sec. 3). Component
0 is the encoder's proposal, so w_i <= C p(v_o, xi_i) / q(xi_i | v^0): the mixture is never
much worse where the encoder's proposal is good (a model trained with `"miwae"`). A model
trained on complete data proposes from q(xi | v^0) the latents of an example whose missing
entries are 0 (on MNIST, a digit with a blank bottom half), a poor proposal for p(xi | v_o);
q at the completions puts its mass where completed examples put theirs.

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
import math

import keras
import numpy as np
from keras import ops

from tfdlgm import objectives, validation
from tfdlgm.backend import tfp_seed
from tfdlgm.progress import Progress, check_verbose

CHAINS = ("pseudo_gibbs", "metropolis_within_gibbs")
METHODS = ("importance", *CHAINS)
PROPOSALS = ("mixture", "encoder")
# The mixture proposal's defaults: components (the encoder at the zero-filled data and at
# MIXTURE_COMPONENTS - 1 completions) and the pseudo-Gibbs sweeps that draw the completions.
MIXTURE_COMPONENTS = 100
MIXTURE_STEPS = 3
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
    method: str = "importance",
    steps: int | None = None,
    num_chains: int = 1,
    seed: int | None = None,
    return_chain: bool = False,
    verbose="auto",
    num_samples: int | None = None,
    proposal: str | None = None,
    num_components: int | None = None,
) -> ImputationResult:
    """Completes the missing entries of `x` from a `LatentModel`.

    The methods are described in the module docstring. `"importance"` (Mattei & Frellsen
    2019), the default, weighs K = `num_samples` latents xi_i ~ r(xi) by w_i = p(v_o, xi_i) /
    r(xi_i): the single imputation sum_i a_i E[v_m | xi_i] (a_i the normalised weights), its
    variance, multiple imputations by resampling, and the effective sample size. Its default
    proposal r, `"mixture"`, is (1/C) sum_c q(xi | v_o, v_m^c) over the zero-filled v and
    C - 1 completions drawn by `steps` pseudo-Gibbs sweeps; `"encoder"` is q(xi | v_o, 0)
    alone. The chains: `"pseudo_gibbs"` (Rezende et al. 2014, app. E) alternates
    xi ~ q(xi | v) and v_m ~ p(v_m | xi); `"metropolis_within_gibbs"` (Mattei & Frellsen
    2018, alg. 1) accepts xi' ~ q(xi | v) with probability min(1, w(xi') / w(xi)),
    w = p(v, xi) / q(xi | v), and so targets p(v_m | v_o) exactly. Every method runs through
    the model's compiled functions; each sweep of a chain is one pass over all chains and
    examples.

    On the bottom half of MNIST digits (`benchmarks/imputation.py`) the mixture proposal
    scores the true missing pixels best and keeps the digit's class at least as often as the
    Metropolis-within-Gibbs chain, on models trained on complete images whose encoder's
    proposal is poor there.

    Args:
        model: a `LatentModel` (e.g. `VAE`, `FactorAnalysis`).
        x: float array `[batch, data_dim]`. Missing entries may hold anything, NaN included
            (the usual way to mark them); their values are ignored.
        mask: bool array of the shape of `x`: True where `x` is observed, False where it is
            missing. Every row needs at least one observed entry, and, for a chain, one
            missing entry.
        method: `"importance"`, `"pseudo_gibbs"` or `"metropolis_within_gibbs"`. Defaults
            to `"importance"`.
        steps: int >= 1, sweeps of a chain (the Metropolis-within-Gibbs chain makes one
            pseudo-Gibbs sweep first, to start), or, for the mixture proposal, of the
            pseudo-Gibbs chains that draw its completions. Defaults to `100` for a chain,
            `MIXTURE_STEPS` (3) for the mixture; not for `proposal="encoder"`.
        num_chains: int >= 1, independent chains per example (more than one gives the
            predictive mean and variance), or, for `"importance"`, the number of multiple
            imputations drawn by resampling. Defaults to `1`.
        seed: int or None, for a reproducible result. Defaults to `None` (the model's stream).
        return_chain: bool, keep the completion after every step. Defaults to `False`;
            chains only.
        verbose: `0` (silent), `1` (a progress bar over the steps, or over the examples for
            `"importance"`, with the time left), `2` (one line at the end) or `"auto"` (1 in a
            terminal, else 0; `tfdlgm.progress`). Defaults to `"auto"`.
        num_samples: int >= 1, K, the importance samples per example, a multiple of
            `num_components`. Defaults to `1000`; `"importance"` only.
        proposal: `"mixture"` or `"encoder"`, the importance proposal (module docstring).
            Defaults to `"mixture"`; `"importance"` only.
        num_components: int >= 2, C, the mixture's components: the encoder at the
            zero-filled data and C - 1 completions. Defaults to `MIXTURE_COMPONENTS` (100);
            `proposal="mixture"` only.

    Returns:
        `ImputationResult`.

    Raises:
        ValueError: for an unknown `method` or `proposal`; `steps`, `num_chains`,
            `num_samples` or `num_components` not a positive int, or given to a method or
            proposal that does not take it; `num_samples` not a multiple of `num_components`;
            `return_chain` with `"importance"`; a mask that is not bool or not of the shape
            of `x`, or a row with no observed entry (or, for a chain, no missing entry); NaN
            in an observed entry; `x` of the wrong shape, dtype or support; and for
            `"metropolis_within_gibbs"` or the mixture proposal with a q(xi_l | .) that
            depends on other latents and no `posterior_log_prob` to score it.

    Example:

    ```python
    x = x_test[:8].copy()
    mask = tfdlgm.impute.bottom_rows_mask(x.shape, rows=14)     # keep the top half
    x[~mask] = np.nan
    result = model.impute(x, mask, num_samples=1000, num_chains=5)  # mixture proposal
    result.mean, result.variance, result.samples, result.effective_sample_size
    result = model.impute(x, mask, method="importance", proposal="encoder")  # MIWAE's
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
        proposal, steps, num_components, num_samples = _importance_options(
            proposal, steps, num_components, num_samples, return_chain
        )
    else:
        for name, value in (
            ("num_samples", num_samples),
            ("proposal", proposal),
            ("num_components", num_components),
        ):
            if value is not None:
                raise ValueError(
                    f"`{name}` is for method='importance'; a chain takes `steps`. "
                    f"Received: {name}={value!r} with method={method!r}"
                )
        steps = validation.check_positive_int(100 if steps is None else steps, "steps")
    original, data, mask = validation.check_missing_data(
        x, mask, model.data_dim, model.support, model.variable_dtype, method in CHAINS
    )
    with model._seeded(seed):
        if method == "importance":
            completions = _completions(model, data, mask, num_components - 1, steps, verbose)
            return _importance(
                model, original, data, mask, num_samples, num_chains, completions, verbose
            )
        chain = _CHAINS[method]
        state, states, moments = _run_chain(
            model, chain, data, mask, steps, num_chains, return_chain, verbose
        )
    batch, dim = data.shape

    def complete(values):  # [..., C * B, D] -> [..., C, B, D] with the caller's observed entries
        values = np.reshape(values, values.shape[:-2] + (num_chains, batch, dim))
        return np.where(mask, original, values.astype(original.dtype))

    samples = complete(ops.convert_to_numpy(state[:, :dim]))
    mean = variance = None
    if moments is not None:  # E[x | xi_c] and Var[x | xi_c] at the chains' last latent states
        conditional_mean, conditional_variance = (
            np.reshape(ops.convert_to_numpy(m), (num_chains, batch, dim)) for m in moments
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
        acceptance_rate=chain.acceptance_rate(model, state, steps),
        chain=complete(np.stack(states)) if return_chain else None,
        method=method,
    )


def _importance_options(proposal, steps, num_components, num_samples, return_chain):
    """`(proposal, steps, num_components, num_samples)` of `"importance"`, checked, with their
    defaults; the encoder proposal is the mixture of one component and no sweeps."""
    proposal = "mixture" if proposal is None else proposal
    if proposal not in PROPOSALS:
        raise ValueError(f"`proposal` must be one of {PROPOSALS}. Received: proposal={proposal!r}")
    if return_chain:
        raise ValueError(
            "`return_chain` is for the Markov chains; method='importance' returns its multiple "
            "imputations in `samples`. Received: return_chain=True"
        )
    if proposal == "encoder":
        for name, value in (("steps", steps), ("num_components", num_components)):
            if value is not None:
                raise ValueError(
                    f"`{name}` is for proposal='mixture' (the sweeps and the components of the "
                    "mixture proposal); proposal='encoder' takes `num_samples` only. "
                    f"Received: {name}={value!r}"
                )
        steps, num_components = 0, 1
    else:
        steps = validation.check_positive_int(MIXTURE_STEPS if steps is None else steps, "steps")
        num_components = validation.check_positive_int(
            MIXTURE_COMPONENTS if num_components is None else num_components, "num_components"
        )
        if num_components < 2:
            raise ValueError(
                "`num_components` must be at least 2 for proposal='mixture' (the encoder at "
                "the zero-filled data and at least one completion); proposal='encoder' is the "
                f"encoder alone. Received: num_components={num_components}"
            )
    num_samples = validation.check_positive_int(
        1000 if num_samples is None else num_samples, "num_samples"
    )
    if num_samples % num_components:
        raise ValueError(
            "`num_samples` must be a multiple of `num_components`: each component proposes "
            "num_samples / num_components latents. Pass a `num_components` that divides it (or "
            f"proposal='encoder'). Received: num_samples={num_samples}, "
            f"num_components={num_components}"
        )
    return proposal, steps, num_components, num_samples


def _completions(model, data, mask, num_chains, steps, verbose):
    """The mixture proposal's completions, `[num_chains, N, D]`: the last states of
    `num_chains` pseudo-Gibbs chains of `steps` sweeps per example."""
    if not num_chains:
        return np.zeros((0, *data.shape), data.dtype)
    state = _run_chain(model, _PseudoGibbs(), data, mask, steps, num_chains, False, verbose)[0]
    return np.reshape(ops.convert_to_numpy(state[:, : data.shape[1]]), (num_chains, *data.shape))


def _run_chain(model, chain, data, mask, steps, num_chains, return_chain, verbose):
    """Runs `num_chains` chains per example for `steps` sweeps through the model's compiled
    functions, in the model's random stream (seeded by the caller).

    The chains are stacked along the batch axis, chain-major (row c * B + b), and their state
    is one tensor `[C * B, width]` (`_Chain`), so each sweep is one compiled call over every
    chain and example. Returns `(state, states, moments)`: the last state, the completions
    after every step (NumPy, with `return_chain`, else empty), and, for `num_chains` > 1,
    `(E[x | xi_c], Var[x | xi_c])` at the last latent states (`[C * B, D]` each), else None.
    """
    batch, dim = data.shape
    observed = np.tile(mask, (num_chains, 1))
    known = np.tile(np.where(mask, data, 0.0).astype(data.dtype), (num_chains, 1))
    start = model.generate(batch * num_chains, model.seed_generator)
    v = ops.where(observed, known, start.sample(seed=tfp_seed(model.seed_generator)))
    state = ops.concatenate([v, ops.cast(observed, v.dtype)], axis=-1)  # [C * B, 2 D]
    state = chain.start(model, state)
    step = model._compiled(f"{chain.name}_step", lambda s, moments: _step(model, chain, s, moments))
    width = ops.shape(state)[1]
    progress = Progress(steps, verbose, unit_name="step")
    states, moments = [], None
    for number in range(1, steps + 1):
        with_moments = number == steps and num_chains > 1
        state = step(state, with_moments)
        if with_moments:
            state, moments = (
                state[:, :width],
                (
                    state[:, width : width + dim],
                    state[:, width + dim :],
                ),
            )
        if return_chain:
            states.append(ops.convert_to_numpy(state[:, :dim]))
        progress.update(number, state)
    return state, states, moments


def _step(model, chain, state, with_moments):
    """One sweep of `chain` (traced); with `with_moments`, E[x | xi] and Var[x | xi] at the new
    latents appended to the state: `[N, width + 2 D]`."""
    state, likelihood = chain.step(model, state)
    if not with_moments:
        return state
    return ops.concatenate([state, likelihood.mean()[0], likelihood.variance()[0]], axis=-1)


def _importance(model, original, data, mask, num_samples, num_imputations, completions, verbose):
    """Importance-sampling imputation (module docstring), in the model's random stream
    (seeded by the caller), with the mixture proposal of the encoder at the zero-filled data
    and at each of `completions` (`[C - 1, N, D]`, none for the encoder proposal): the
    examples in passes of `_IMPORTANCE_EXAMPLES`, the samples of each in chunks combined
    exactly (`_combine`)."""
    dim = data.shape[1]
    num_components = 1 + len(completions)
    proposal = np.concatenate([data, *completions], axis=1)  # [N, C D]
    passes = model._compiled("importance", lambda x, k, m, c: _importance_pass(model, x, k, m, c))
    examples = min(len(data), _IMPORTANCE_EXAMPLES)
    per_component = num_samples // num_components
    chunk = max(1, min(per_component, _IMPORTANCE_VALUES // (examples * dim * num_components)))
    progress = Progress(len(data), verbose, unit_name="example")
    parts = []
    for start in range(0, len(data), examples):
        batch = proposal[start : start + examples]
        chunks = []
        for first in range(0, per_component, chunk):
            size = min(chunk, per_component - first)
            packed = ops.convert_to_numpy(passes(batch, size, num_imputations, num_components))
            chunks.append(packed.astype(np.float64))
            progress.update(start + len(batch) * (first + size) / per_component)
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


def _importance_pass(model, proposal, num_samples, num_imputations, num_components):
    """One chunk of weighted samples for a batch (traced): `proposal` `[B, C D]` holds x
    (NaN = missing) and the C - 1 completions of the mixture's other components; k =
    `num_samples` latents from each component, C k in all. Reduced within the chunk and packed
    in one tensor `[B, 2 + 2 D + M D]` (one output keeps the model's compiled-function
    machinery, data parallelism included):

    ```none
    log sum_i w_i,  sum_i a_i^2,  sum_i a_i mu_i,  sum_i a_i (sigma_i^2 + (mu_i - mean)^2),
    M draws x ~ p(x | xi_i), i ~ Categorical(a)       a_i = w_i / sum_k w_k within the chunk
    ```
    """
    dim = model.data_dim
    batch = ops.shape(proposal)[0]
    x, observed = objectives.zero_filled(proposal[:, :dim])
    # The components stacked along the batch axis, component-major: row c B + b.
    components = ops.concatenate(
        [x] + [proposal[:, c * dim : (c + 1) * dim] for c in range(1, num_components)], axis=0
    )
    trace = model.infer(components, num_samples, model.seed_generator)  # batch [k, C B]
    trace.observed = ops.tile(observed, (num_components, 1))
    if num_components == 1:
        log_q = _log_posterior(trace)
    else:  # each sample scored under every component: latents [C k, C B, K_l]
        latents = [
            ops.reshape(
                ops.tile(ops.reshape(layer.sample, (-1, 1, batch, k)), (1, num_components, 1, 1)),
                (-1, num_components * batch, k),
            )
            for layer, k in zip(trace.latents, model.latent_dims, strict=True)
        ]
        try:
            log_q = objectives.recognition_log_prob(model, trace, components, latents)
        except NotImplementedError as error:
            raise ValueError(
                "proposal='mixture' scores the latents of each component under every other "
                f"component's q(xi | v), which this model cannot do: {error} Or use "
                "proposal='encoder'."
            ) from error
        log_q = ops.reshape(log_q, (num_samples, num_components, num_components, batch))
        log_q = ops.logsumexp(log_q, axis=2) - math.log(num_components)  # [k, C, B]

    def by_sample(values, *event):  # [k, C B, *event] -> [C k, B, *event], sample-major
        return ops.reshape(values, (-1, batch, *event))

    log_p = objectives.reconstruction(trace, components) + _log_prior(trace)  # [k, C B]
    log_w = by_sample(log_p) - ops.reshape(log_q, (-1, batch))  # [C k, B]
    log_total = ops.logsumexp(log_w, axis=0)  # [B]
    a = ops.exp(log_w - log_total)  # [C k, B]
    mu = by_sample(trace.likelihood.mean(), dim)  # [C k, B, D]
    mean = ops.sum(a[..., None] * mu, axis=0)
    variance = ops.sum(
        a[..., None] * (by_sample(trace.likelihood.variance(), dim) + (mu - mean) ** 2), axis=0
    )
    picks = keras.random.categorical(
        ops.transpose(log_w), num_imputations, seed=model.seed_generator
    )  # [B, M]
    draws = by_sample(trace.likelihood.sample(seed=tfp_seed(model.seed_generator)), dim)
    draws = ops.take_along_axis(
        ops.transpose(draws, (1, 0, 2)), ops.cast(picks, "int32")[..., None], axis=1
    )  # [B, M, D]
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


class _Chain:
    """A Markov chain over (xi, v_m), run by `_run_chain` through the model's compiled
    functions. Its state is one tensor `[N, width]`: the completion v `[N, D]`, the mask of
    observed entries (1 = observed) `[N, D]`, then what the chain carries; `start` and `step`
    are traced, so they keep nothing on the instance."""

    name = None

    def start(self, model, state):
        """The state the first sweep starts from, given v and the mask (`[N, 2 D]`)."""
        return state

    def step(self, model, state):
        """One sweep: `(state, p(x | xi))` at the new latents xi (batch shape `[1, N]`)."""
        raise NotImplementedError

    def acceptance_rate(self, model, state, steps):
        return None


class _PseudoGibbs(_Chain):
    """xi ~ q(xi | v); v_m ~ p(v_m | xi) (Rezende et al. 2014, app. E). State: v, the mask."""

    name = "pseudo_gibbs"

    def step(self, model, state):
        v, observed = _split_state(model, state)
        likelihood = model.infer(v, 1, model.seed_generator).likelihood
        v = _complete(likelihood, v, observed, model.seed_generator)
        return ops.concatenate([v, state[:, model.data_dim :]], axis=-1), likelihood


class _MetropolisWithinGibbs(_Chain):
    """Mattei & Frellsen (2018, alg. 1): an independence Metropolis-Hastings step on xi.

    State: v, the mask, the latents xi (`[N, K_l]` each, bottom first), log p(xi) and
    log p(v | xi) at the current completion v, and the number of accepted proposals so far
    (one column each).
    """

    name = "metropolis_within_gibbs"

    def start(self, model, state):
        return model._compiled(f"{self.name}_start", lambda s: self._start(model, s))(state)

    def _start(self, model, state):
        v, observed = _split_state(model, state)
        trace = model.infer(v, 1, model.seed_generator)
        latents = [layer.sample for layer in trace.latents]
        try:
            objectives.recognition_log_prob(model, trace, v, latents)
        except NotImplementedError as error:
            raise ValueError(
                "method='metropolis_within_gibbs' scores the current latents under q(xi | v) "
                f"at each new completion v, which this model cannot do: {error} Or use "
                "method='pseudo_gibbs', which works for every model."
            ) from error
        v = _complete(trace.likelihood, v, observed, model.seed_generator)
        log_likelihood = trace.likelihood.log_prob(v[None])
        accepted = ops.zeros_like(log_likelihood)
        return self._pack(v, observed, latents, _log_prior(trace), log_likelihood, accepted)

    def step(self, model, state):
        v, observed = _split_state(model, state)
        columns = ops.split(
            state[:, 2 * model.data_dim :], np.cumsum(model.latent_dims).tolist(), axis=-1
        )
        latents = [z[None] for z in columns[:-1]]  # [1, N, K_l]
        log_prior, log_likelihood, accepted = (c[None] for c in ops.unstack(columns[-1], axis=1))
        trace = model.infer(v, 1, model.seed_generator)  # xi' ~ q(xi | v)
        log_w_proposal = objectives.log_importance_weights(trace, v[None])  # [1, N]
        log_q_current = objectives.recognition_log_prob(model, trace, v, latents)
        log_w_current = log_likelihood + log_prior - log_q_current
        uniform = keras.random.uniform(ops.shape(log_w_current), seed=model.seed_generator)
        accept = ops.log(uniform) < log_w_proposal - log_w_current  # [1, N]
        latents = [
            ops.where(accept[..., None], layer.sample, latent)
            for layer, latent in zip(trace.latents, latents, strict=True)
        ]
        log_prior = ops.where(accept, _log_prior(trace), log_prior)
        likelihood = model.decode(latents[0] if len(latents) == 1 else latents)
        v = _complete(likelihood, v, observed, model.seed_generator)  # v_m ~ p(v_m | xi)
        log_likelihood = likelihood.log_prob(v[None])
        accepted = accepted + ops.cast(accept, accepted.dtype)
        state = self._pack(v, observed, latents, log_prior, log_likelihood, accepted)
        return state, likelihood

    @staticmethod
    def _pack(v, observed, latents, log_prior, log_likelihood, accepted):
        scalars = [ops.transpose(c) for c in (log_prior, log_likelihood, accepted)]  # [N, 1]
        return ops.concatenate(
            [v, ops.cast(observed, v.dtype), *(z[0] for z in latents), *scalars], axis=-1
        )

    def acceptance_rate(self, model, state, steps):
        return float(np.mean(ops.convert_to_numpy(state[:, -1]))) / steps


_CHAINS = {chain.name: chain for chain in (_PseudoGibbs(), _MetropolisWithinGibbs())}


def _split_state(model, state):
    """`(v [N, D], observed [N, D] bool)` from a chain's state."""
    dim = model.data_dim
    return state[:, :dim], state[:, dim : 2 * dim] > 0.5


def _complete(likelihood, data, observed, generator):
    """x ~ p(x | xi) (batch shape `[1, N]`) with the observed entries put back: `[N, D]`."""
    draw = likelihood.sample(seed=tfp_seed(generator))[0]
    return ops.where(observed, data, draw)


def _log_prior(trace):
    """log p(xi) = sum_l log p(xi_l | xi_l+1) at the trace's samples, `[S, B]`."""
    return sum(layer.prior.log_prob(layer.sample) for layer in trace.latents)


def _log_posterior(trace):
    """log q(xi | .) = sum_l log q(xi_l | .) at the trace's own samples, `[S, B]`."""
    return sum(layer.posterior.log_prob(layer.sample) for layer in trace.latents)


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
