"""`LatentModel.export`: a SavedModel served without tfdlgm gives the Python model's numbers;
the data check on symbolic tensors; the `tfdlgm export` command."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfdlgm import cli
from tfdlgm.models import DLGM

TENSORFLOW = keras.backend.backend() == "tensorflow"
SEED = 3

# Loads the SavedModel in a fresh interpreter that never imports tfdlgm, calls every endpoint
# and writes the results; prints whether tfdlgm was imported after all.
SERVE = """
import sys
import numpy as np
import tensorflow as tf

folder, seed = sys.argv[1], int(sys.argv[2])
served = tf.saved_model.load(folder)
x = np.load(folder + "-x.npy")
out = {
    "log_likelihood": served.log_likelihood(x, seed),
    "elbo": served.elbo(x=x, seed=seed),
    "reconstruct": served.reconstruct(x, seed),
    **{f"sample/{k}": v for k, v in served.sample(4, seed).items()},
    **{f"encode/{k}": v for k, v in served.encode(x, seed).items()},
}
np.savez(folder + "-out.npz", **{k: v.numpy() for k, v in out.items()})
print("tfdlgm" in sys.modules)
"""


def tiny_dlgm():
    """Two layers with the rank-one posterior: every kind of endpoint output."""
    return DLGM(latent_dims=(4, 3), hidden=(8,), data_dim=12, covariance="rank_one", seed=0)


def binary(n):
    return (np.random.default_rng(0).uniform(size=(n, 12)) < 0.5).astype("float32")


@pytest.mark.slow  # two interpreters and XLA compiles: about 20 s on a 2-core CPU
@pytest.mark.skipif(not TENSORFLOW, reason="a SavedModel is written under TensorFlow")
def test_the_saved_model_serves_the_python_models_numbers_without_tfdlgm(tmp_path):
    model = tiny_dlgm()
    x = binary(5)
    folder = str(tmp_path / "served")
    model.export(folder, num_samples=1200, verbose=False)  # 3 chunks of 500, 500, 200
    np.save(folder + "-x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", SERVE, folder, str(SEED)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"  # tfdlgm was not imported
    served = dict(np.load(folder + "-out.npz"))
    posteriors = model.encode(x, seed=SEED)
    expected = {
        "log_likelihood": model.log_likelihood(x, 1200, seed=SEED, verbose=0),
        "elbo": model.elbo(x, seed=SEED, verbose=0),
        "reconstruct": model.reconstruct(x, seed=SEED),
        "sample/samples": model.sample(4, seed=SEED),
        "sample/means": model.sample(4, seed=SEED, mean=True),
        **{f"encode/mean_{i + 1}": q.mean() for i, q in enumerate(posteriors)},
        **{f"encode/stddev_{i + 1}": q.stddev() for i, q in enumerate(posteriors)},
    }
    assert sorted(served) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(
            served[key], keras.ops.convert_to_numpy(value), atol=2e-5, err_msg=key
        )
    assert served["elbo"].shape == (5,) and np.all(served["elbo"] <= served["log_likelihood"] + 0.5)
    # another seed, other draws
    assert not np.array_equal(model.sample(4, seed=SEED + 1), expected["sample/samples"])


@pytest.mark.skipif(TENSORFLOW, reason="the JAX backend's refusal")
def test_export_under_jax_says_why_it_cannot(tmp_path):
    with pytest.raises(ValueError, match=r"needs the TensorFlow backend: under JAX.*jax2tf"):
        tiny_dlgm().export(str(tmp_path / "served"))
    assert not (tmp_path / "served").exists()


@pytest.mark.parametrize(
    "options",
    [{"format": "onnx"}, {"input_signature": [None]}, {"is_static": True}, {"num_samples": 0}],
)
def test_export_refuses_options_it_cannot_honour(tmp_path, options):
    with pytest.raises(ValueError, match=r"format|num_samples"):
        tiny_dlgm().export(str(tmp_path / "served"), **options)


def _traced(fn, x):
    """`fn(x)` with `x` a symbolic tensor: in a `tf.function` or under `jax.jit`."""
    if TENSORFLOW:
        import tensorflow as tf

        return tf.function(fn)(x)
    import jax

    def stateless(t):  # the random stream's update stays inside the trace
        with keras.StatelessScope():
            return fn(t)

    return jax.jit(stateless)(x)


def test_the_data_check_takes_symbolic_tensors():
    model = tiny_dlgm()
    x = binary(3)
    traced = _traced(lambda t: model.encode(t)[1].mean(), x)  # q(z_2 | x): x alone
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(traced),
        keras.ops.convert_to_numpy(model.encode(x)[1].mean()),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match=r"`x` must have shape \[batch, 12\].*\(3, 5\)"):
        _traced(lambda t: model.encode(t)[0].mean(), x[:, :5])
    with pytest.raises(ValueError, match=r"`x` must have a floating dtype. Received: dtype=int32"):
        _traced(lambda t: model.encode(t)[0].mean(), x.astype("int32"))


def test_the_export_command_writes_a_saved_model_with_the_models_numbers(tmp_path, capsys):
    """The cheap check of serving: reloaded in this process (the slow test above reloads it
    where tfdlgm is never imported)."""
    model = tiny_dlgm()
    model.save(tmp_path / "m.keras")
    status = cli.main(["export", str(tmp_path / "m.keras"), str(tmp_path / "served"), "--k", "7"])
    captured = capsys.readouterr()
    if TENSORFLOW:
        import tensorflow as tf

        assert status == 0, captured.err
        assert "SavedModel written to" in captured.out
        served = tf.saved_model.load(str(tmp_path / "served"))
        x = binary(5)
        np.testing.assert_allclose(
            served.log_likelihood(x, SEED),
            model.log_likelihood(x, 7, seed=SEED, verbose=0),
            atol=2e-5,
        )
        np.testing.assert_allclose(
            served.elbo(x, SEED), model.elbo(x, seed=SEED, verbose=0), atol=2e-5
        )
        np.testing.assert_array_equal(served.sample(3, SEED)["samples"], model.sample(3, seed=SEED))
    else:
        assert status == 1
        assert captured.err.count("\n") == 1
        assert "tfdlgm export: error: `export` needs the TensorFlow backend" in captured.err
