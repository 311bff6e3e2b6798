import ast
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from tfdlgm import backend

# The checks that start a JAX process of their own run once, in the JAX session.
jax_session_only = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="runs a JAX process; once, in the JAX session"
)


def test_tfd_comes_from_the_active_backends_substrate():
    module = backend.tfd.__name__
    if keras.backend.backend() == "jax":
        assert "substrates.jax" in module
        sample = backend.tfd.Normal(0.0, 1.0).sample(
            seed=backend.tfp_seed(keras.random.SeedGenerator(0))
        )
        assert type(sample).__module__.startswith("jax")
    else:
        assert module == "tensorflow_probability.python.distributions"
        assert "substrates" not in backend.tfb.__name__


def _public_names(module):
    """The public top-level names a backend module's source defines."""
    tree = ast.parse((pathlib.Path(backend.__file__).parent / f"{module}.py").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
    return {n for n in names if not n.startswith("_")}


def test_each_backend_module_defines_what_the_package_takes_from_it():
    """`tfdlgm.backend` takes every name it re-exports from the active module: both must
    define them (read from the source, so that neither backend has to be installed)."""
    taken = {
        node.attr
        for node in ast.walk(ast.parse(pathlib.Path(backend.__file__).read_text()))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "_active"
    }
    assert taken >= {"tfp_seed", "global_mean", "compile_function", "data_parallel"}
    for module in ("tensorflow", "jax"):
        assert taken <= _public_names(module), (module, taken - _public_names(module))


def test_log_mean_exp_is_stable_and_exact():
    values = np.array([[1000.0, -1000.0], [1000.0, -1001.0], [1001.0, -1002.0]], "float32")
    shift = values.max(axis=0).astype("float64")
    expected = np.log(np.mean(np.exp(values - shift), axis=0)) + shift
    np.testing.assert_allclose(
        ops.convert_to_numpy(backend.log_mean_exp(values)), expected, rtol=1e-6
    )


def test_streaming_log_mean_exp_equals_the_whole(rng):
    values = rng.normal(scale=30.0, size=(103, 4)).astype("float32")
    acc = backend.StreamingLogMeanExp()
    for start in range(0, 103, 10):
        acc.update(values[start : start + 10])
    assert acc.count == 103
    np.testing.assert_allclose(
        ops.convert_to_numpy(acc.result()),
        ops.convert_to_numpy(backend.log_mean_exp(values)),
        rtol=1e-5,
    )


def test_streaming_log_mean_exp_without_updates_raises():
    with pytest.raises(ValueError, match="before any update"):
        backend.StreamingLogMeanExp().result()


def _run(code, env_backend):
    env = {**os.environ, "KERAS_BACKEND": env_backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_unsupported_backend_gets_an_error_naming_the_supported_ones():
    result = _run("import tfdlgm.models", "numpy")
    assert result.returncode != 0
    assert "tfdlgm supports the Keras backends tensorflow, jax" in result.stderr
    assert "KERAS_BACKEND='numpy'" in result.stderr


@jax_session_only
def test_jax_backend_imports_and_trains_without_tensorflow():
    code = """
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
import numpy as np
import tfdlgm
from tfdlgm.models import VAE
x = (np.random.default_rng(0).uniform(size=(64, 12)) < 0.5).astype("float32")
model = VAE(latent_dim=2, hidden=(8,), data_dim=12, seed=0)
model.compile(optimizer="adam")
history = model.fit(x, batch_size=32, epochs=2, verbose=0)
assert np.isfinite(history.history["loss"]).all()
print("trained", sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
"""
    result = _run(code, "jax")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained ['tensorflow']" in result.stdout  # only the blocked placeholder


def test_a_reduction_broadcast_back_over_a_batch_compiles_to_the_right_values(rng):
    """The pattern XLA:CPU's YNNPACK fusion miscompiled in jaxlib 0.10 (XLA_CPU_FIX in
    tfdlgm/backend/jax.py):
    e + u * sum(u * e, -1, keepdims=True), e [S, B, K], u [B, K]; off by hundreds there."""
    u = rng.normal(size=(100, 200)).astype("float32")
    e = rng.normal(size=(2, 100, 200)).astype("float32")
    expected = e + u * np.sum(u * e, -1, keepdims=True)
    if keras.backend.backend() == "jax":
        import jax

        compiled = jax.jit(lambda u, e: e + u * jax.numpy.sum(u * e, -1, keepdims=True))
    else:
        import tensorflow as tf

        compiled = tf.function(
            lambda u, e: e + u * tf.reduce_sum(u * e, -1, keepdims=True), jit_compile=True
        )
    np.testing.assert_allclose(ops.convert_to_numpy(compiled(u, e)), expected, atol=1e-3)


@jax_session_only
def test_importing_tfdlgm_after_jax_started_warns_of_the_miscompile():
    from tfdlgm.startup import XLA_CPU_FIX

    code = "import jax; jax.devices(); import tfdlgm.models"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    late = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    import jaxlib

    if jaxlib.__version__.startswith("0.10."):
        assert late.returncode != 0 and XLA_CPU_FIX in late.stderr
    first_code = "import os, tfdlgm, jax; jax.devices(); import tfdlgm.models; print(os.environ)"
    first = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", first_code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    if jaxlib.__version__.startswith("0.10."):  # `import tfdlgm` set it, before JAX started
        assert XLA_CPU_FIX in first.stdout
