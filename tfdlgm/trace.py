"""What one inference pass of a model produces: the quantities every objective reads."""

import dataclasses
from typing import Any


@dataclasses.dataclass
class LatentTrace:
    """One stochastic layer of an inference pass.

    Attributes:
        posterior: q(z_l | ...), batch shape `[S, B]` or `[B]` (when q depends on x only).
        prior: p(z_l | z_{l+1}), batch shape `[S, B]`, or `[]` for N(0, I).
        sample: z_l ~ q, `[S, B, K_l]`.
    """

    posterior: Any
    prior: Any
    sample: Any


@dataclasses.dataclass
class Trace:
    """An inference pass over a batch x `[B, D]` with S samples per example.

    Attributes:
        latents: list of `LatentTrace`, bottom layer (l = 1) first.
        likelihood: p(x | z), batch shape `[S, B]`, event shape `[D]`: an `Independent`
            distribution over the D features (every observation model is one).
        observed: None (every entry of x observed), or a bool tensor `[B, D]`, True where x
            is observed: log p(x | z) then sums over the observed entries only, so every
            bound is a bound on log p(x_observed) (`LatentModel` sets it for incomplete data).
    """

    latents: list
    likelihood: Any
    observed: Any = None
