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
        likelihood: p(x | z), batch shape `[S, B]`, event shape `[D]`.
    """

    latents: list
    likelihood: Any
