"""tfdlgm: deep latent Gaussian models as Keras 3 models with TensorFlow Probability latents."""

from tfdlgm import (
    backend,
    callbacks,
    datasets,
    distribute,
    distributions,
    impute,
    metrics,
    models,
    objectives,
    schedules,
    zoo,
)

__version__ = "0.1.0"

__all__ = [
    "backend",
    "callbacks",
    "datasets",
    "distribute",
    "distributions",
    "impute",
    "metrics",
    "models",
    "objectives",
    "schedules",
    "zoo",
    "__version__",
]
