"""The models of the zoo."""

from tfdlgm.models.base import LatentModel
from tfdlgm.models.factor_analysis import FactorAnalysis
from tfdlgm.models.vae import VAE

__all__ = ["LatentModel", "FactorAnalysis", "VAE"]
