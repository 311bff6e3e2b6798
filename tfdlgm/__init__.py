"""tfdlgm: deep latent Gaussian models as Keras 3 models with TensorFlow Probability latents.

The modules below load on first use (`tfdlgm.models`, `tfdlgm.zoo`, ...; PEP 562), so that
`import tfdlgm` starts no backend; `tfdlgm.startup` says what it does at once.
"""

import importlib

from tfdlgm import startup

__version__ = "0.1.0"

__all__ = [
    "backend",
    "callbacks",
    "datasets",
    "distribute",
    "distributions",
    "impute",
    "layers",
    "metrics",
    "models",
    "objectives",
    "schedules",
    "zoo",
    "__version__",
]

startup.avoid_xla_cpu_miscompile()
startup.register_models_with_keras()


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
