"""What `import tfdlgm` does before any backend starts, without importing one.

`import tfdlgm` imports no Keras, TensorFlow or JAX (so `tfdlgm --help` and `tfdlgm zoo list`
start in a fraction of a second); its modules load on first use (`tfdlgm/__init__.py`). Two
jobs cannot wait for that first use:

- the XLA flag below must be in the environment before JAX starts its CPU client;
- the model classes must be registered with Keras' serialisation whenever Keras can load a
  model, so that `import tfdlgm` then `keras.saving.load_model("vae.keras")` works: once Keras
  is imported (or right away if it already is), and no tfdlgm module is part way through its
  own import, `tfdlgm.models` is imported, which registers them
  (`keras.saving.register_keras_serializable`).
"""

import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import os
import sys

# XLA:CPU in jaxlib 0.10 hands a reduction and the elementwise ops that broadcast it back to
# a YNNPACK fusion that computes wrong values: for e [S, B, K] and u [B, K],
# `e + u * sum(u * e, -1, keepdims=True)` is off by hundreds from S * B * K ~ 40,000 on. The
# rank-one posterior's sample `mu + R eps` is that pattern, so under `jit` its samples were
# not from q (L_5000 came out above 0 nats). Turning that one fusion off fixes it; the flag
# must be set before JAX starts its CPU client (TensorFlow's XLA accepts it too).
# `tests/test_backend.py` checks the pattern.
XLA_CPU_FIX = "--xla_cpu_experimental_ynn_fusion_type=-reduce"
MODELS_MODULE = "tfdlgm.models"


def xla_cpu_fix_applies() -> bool:
    """Whether `XLA_CPU_FIX` is for this machine: jaxlib 0.10 installed, and the user has not
    set that option in `XLA_FLAGS` themselves."""
    if "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return False
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return False
    return version.startswith("0.10.")


def jax_started() -> bool:
    """Whether JAX has started its backends (too late to change `XLA_FLAGS`)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def avoid_xla_cpu_miscompile() -> None:
    """Adds `XLA_CPU_FIX` to `XLA_FLAGS` where it applies and JAX has not started yet (where it
    has, `tfdlgm.backend` warns under the JAX backend)."""
    if xla_cpu_fix_applies() and not jax_started():
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_FIX}".strip()


class _RegisterModelsAfterKeras(importlib.abc.MetaPathFinder):
    """Imports `tfdlgm.models` once Keras has been imported and no module of tfdlgm is part way
    through its own import.

    It finds nothing itself: for `keras` and for tfdlgm's submodules it asks the other finders
    for the spec and wraps its loader's `exec_module`, so that after each such module has
    executed it imports `tfdlgm.models` if both hold. The second condition keeps the import
    from being circular: where a tfdlgm module (`tfdlgm.backend`, say) imports Keras, the
    models are imported once that module, and every tfdlgm module importing it, has finished.
    A bare `importlib.util.find_spec("keras")` (TensorFlow makes several) executes nothing, so
    it triggers nothing; the finder leaves `sys.meta_path` once the models are imported.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" and not fullname.startswith("tfdlgm."):
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            self._register_if_ready(executed=fullname)

        spec.loader.exec_module = exec_module
        return spec

    def _register_if_ready(self, executed):
        if "keras" not in sys.modules or self not in sys.meta_path:
            return
        if any(
            getattr(getattr(module, "__spec__", None), "_initializing", False)
            for name, module in list(sys.modules.items())
            if name.startswith("tfdlgm.") and name != executed
        ):
            return  # a tfdlgm module is still importing: the last one to finish registers
        sys.meta_path.remove(self)
        importlib.import_module(MODELS_MODULE)


def register_models_with_keras() -> None:
    """Imports `tfdlgm.models` now if Keras is imported, else as soon as it is."""
    if "keras" in sys.modules:
        importlib.import_module(MODELS_MODULE)
    elif not any(isinstance(finder, _RegisterModelsAfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterModelsAfterKeras())
