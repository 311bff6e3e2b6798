"""tfdlgm: deep latent Gaussian models as Keras 3 models with TensorFlow Probability latents."""

from tfdlgm import backend, datasets, distributions, models, objectives

__version__ = "0.1.0"

__all__ = ["backend", "datasets", "distributions", "models", "objectives", "__version__"]
