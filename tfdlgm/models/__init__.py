"""The models of the zoo."""

from tfdlgm.models.base import LatentModel
from tfdlgm.models.dlgm import DLGM
from tfdlgm.models.factor_analysis import FactorAnalysis
from tfdlgm.models.lvae import LadderVAE
from tfdlgm.models.vae import VAE

__all__ = ["LatentModel", "DLGM", "FactorAnalysis", "LadderVAE", "VAE"]
