"""A linear-Gaussian DLGM that is a known factor analysis model, parameter for parameter."""

import numpy as np
from keras import ops

from tfdlgm.models import DLGM

from .fa_helpers import known_factor_analysis


def linear_gaussian_dlgm(rng, data_dim=5, latent_dim=2, seed=0, **kwargs):
    """A one-layer DLGM with `hidden=()` and a Gaussian likelihood mapped from
    `known_factor_analysis`: x = (xi G) O + b + eps with G random and O = G^-1 W^T, so the
    loadings G O are W^T, b = mu, the same Psi, and q(xi | x) is the FA helper's (near-exact
    diagonal) posterior. Returns `(dlgm, fa, params)`."""
    fa, params = known_factor_analysis(rng, data_dim, latent_dim, seed)
    model = DLGM(
        latent_dims=(latent_dim,),
        hidden=(),
        likelihood="gaussian",
        data_dim=data_dim,
        seed=seed,
        **kwargs,
    )
    g = (rng.normal(size=(latent_dim, latent_dim)) + 2 * np.eye(latent_dim)).astype("float32")
    model.generative_matrices[0].kernel.assign(g)
    obs = model.observation
    obs.loc.kernel.assign(np.linalg.solve(g, params["w"].T).astype("float32"))
    obs.loc.bias.assign(params["mu"])
    obs.raw_scale.assign(ops.convert_to_numpy(fa.observation.raw_scale))  # a copy: fit donates
    if model.covariance == "diagonal":
        for target, source in zip(model.posteriors[0].weights, fa.posterior.weights, strict=True):
            target.assign(ops.convert_to_numpy(source))
    return model, fa, params


def small_dlgm(**kwargs):
    return DLGM(**{"latent_dims": (3, 2), "hidden": (8,), "data_dim": 20, "seed": 0, **kwargs})
