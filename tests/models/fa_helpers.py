"""A factor analysis model with known parameters and a near-exact recognition model."""

import numpy as np

from tfdlgm.models import FactorAnalysis


def known_factor_analysis(rng, data_dim=5, latent_dim=2, seed=0):
    """FactorAnalysis with random W, mu, Psi, and q(z|x) set to the exact posterior's mean map
    and marginal variances (diagonal q cannot hold the posterior's correlations)."""
    model = FactorAnalysis(latent_dim=latent_dim, data_dim=data_dim, seed=seed)
    w = rng.normal(size=(data_dim, latent_dim)).astype("float32")
    mu = rng.normal(size=data_dim).astype("float32")
    psi = rng.uniform(0.3, 1.0, size=data_dim).astype("float32")
    model.set_parameters(w, mu, psi)
    return model, {"w": w, "mu": mu, "psi": psi}


def draw(params, n, rng):
    """n examples from the FA model with the given parameters."""
    z = rng.normal(size=(n, params["w"].shape[1]))
    noise = rng.normal(size=(n, len(params["mu"]))) * np.sqrt(params["psi"])
    return (z @ params["w"].T + params["mu"] + noise).astype("float32")
