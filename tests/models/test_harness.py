"""One harness for every model, after Keras' `run_layer_test` (keras/src/testing/test_case.py).

Each model of `tfdlgm.models`, tiny, goes through the same checks: the shapes of what it
returns, its trainable parameter count against the count its architecture implies, the
`.keras` round trip and the `get_config` / `from_config` round trip (same outputs for the
same seed), and one `fit` step that moves every trainable weight and gives a finite loss.
Model-specific behaviour (the maths, the bounds, the arguments) is tested beside each model.
"""

import keras
import numpy as np
import pytest
from keras import ops

from tfdlgm import models

from .round_trip import assert_keras_round_trip

DATA_DIM = 12
BATCH = 8


def dense(inputs, units, bias=True):
    """The parameters of a dense layer `inputs -> units`."""
    return inputs * units + (units if bias else 0)


def block(inputs, width, layers, batch_norm):
    """An MLP of `layers` layers of `width` units (a Ladder VAE block): kernels and biases,
    and batch normalisation's scale and offset per unit."""
    count = dense(inputs, width) + (layers - 1) * dense(width, width)
    return count + (2 * width * layers if batch_norm else 0)


D = DATA_DIM


def ladder_vae(second_input, batch_norm):
    """The parameters of the harness' two-layer Ladder VAE (hidden 8, 4; latents 3, 2): the
    bottom-up blocks and their Gaussians, the top-down block and its Gaussian, the decoder
    block and the logits; `second_input` is the width the second bottom-up block reads."""
    return (
        block(D, 8, 2, batch_norm)
        + 2 * dense(8, 3)
        + block(second_input, 4, 2, batch_norm)
        + 2 * dense(4, 2)
        + block(2, 8, 2, batch_norm)
        + 2 * dense(8, 3)
        + block(3, 8, 2, batch_norm)
        + dense(8, D)
    )


# name: (class, arguments, the trainable parameter count the architecture implies)
CASES = {
    "vae": (
        models.VAE,
        {
            "latent_dim": 3,
            "hidden": (8,),
            "covariance": "rank_one",
            "objective": {"name": "iwae", "num_samples": 3},
        },
        # encoder, q (loc, precision diagonal, precision factor), decoder, Bernoulli logits
        dense(D, 8) + 3 * dense(8, 3) + dense(3, 8) + dense(8, D),
    ),
    "vae-gaussian": (
        models.VAE,
        {"latent_dim": 2, "hidden": (), "likelihood": "gaussian"},
        # q (loc, scale) straight from x, the Gaussian's loc and per-feature scale
        2 * dense(D, 2) + dense(2, D) + D,
    ),
    "dlgm": (
        models.DLGM,
        {"latent_dims": (3, 2), "hidden": (8,), "covariance": "rank_one"},
        # G_1, G_2 (no bias), T_1 and its output, T_0, logits, recognition MLP, q_1, q_2
        dense(3, 3, bias=False)
        + dense(2, 2, bias=False)
        + dense(2, 8)
        + dense(8, 3)
        + dense(3, 8)
        + dense(8, D)
        + dense(D, 8)
        + 3 * dense(8, 3)
        + 3 * dense(8, 2),
    ),
    "ladder-vae": (
        models.LadderVAE,
        {
            "latent_dims": (3, 2),
            "hidden": (8, 4),
            "objective": {"name": "iwae", "num_samples": 3},
        },
        ladder_vae(second_input=8, batch_norm=True),
    ),
    "hierarchical-vae": (
        models.LadderVAE,
        {"latent_dims": (3, 2), "hidden": (8, 4), "ladder": False, "batch_norm": False},
        # as the ladder, but the second bottom-up block reads z_1 (3 units), not d_1 (8)
        ladder_vae(second_input=3, batch_norm=False),
    ),
    "factor-analysis": (
        models.FactorAnalysis,
        {"latent_dim": 2},
        # q (loc, scale) from x; W and mu (the Gaussian's loc), psi (its per-feature scale)
        2 * dense(D, 2) + dense(2, D) + D,
    ),
}


def build(name):
    cls, kwargs, _ = CASES[name]
    return cls(**kwargs, data_dim=DATA_DIM, seed=0)


def data(model, rows=BATCH):
    rng = np.random.default_rng(0)
    if model.support == "binary":
        return (rng.uniform(size=(rows, DATA_DIM)) < 0.4).astype("float32")
    return rng.normal(size=(rows, DATA_DIM)).astype("float32")


parametrize = pytest.mark.parametrize("name", list(CASES))


def test_every_model_is_in_the_harness():
    classes = {
        cls
        for cls in vars(models).values()
        if isinstance(cls, type) and issubclass(cls, models.base.LatentModel)
    }
    assert classes - {models.base.LatentModel} == {cls for cls, _, _ in CASES.values()}


@parametrize
def test_shapes(name):
    model = build(name)
    x = data(model)
    outputs = model(x)
    kls = [f"kl_{i + 1}" for i in range(len(model.latent_dims))]
    assert set(outputs) == {"loss", "elbo", "reconstruction", *kls}
    assert all(tuple(value.shape) == (BATCH,) for value in outputs.values())
    posteriors = model.encode(x)
    assert [tuple(q.batch_shape) for q in posteriors] == [(BATCH,)] * len(model.latent_dims)
    assert [tuple(q.event_shape) for q in posteriors] == [(k,) for k in model.latent_dims]
    assert model.elbo(x, seed=0).shape == (BATCH,)
    assert model.iwae_bound(x, 3, seed=0).shape == (BATCH,)
    assert model.reconstruct(x, seed=0).shape == (BATCH, DATA_DIM)
    samples = model.sample(5, seed=0)
    assert samples.shape == (5, DATA_DIM)
    np.testing.assert_array_equal(model.sample(5, seed=0), samples)
    if model.support == "binary":
        assert set(np.unique(samples)) <= {0.0, 1.0}


@parametrize
def test_trainable_parameter_count(name):
    model = build(name)
    count = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert count == CASES[name][2]


@parametrize
def test_keras_file_round_trip(name, tmp_path):
    model = build(name)
    assert_keras_round_trip(model, tmp_path / f"{name}.keras", data(model))


@parametrize
def test_config_round_trip(name, tmp_path):
    """`from_config(get_config())` builds the same model: with the weights of a weights file,
    the same outputs for the same seed."""
    model = build(name)
    config = model.get_config()
    fresh = type(model).from_config(config)
    assert fresh.get_config() == config
    model.save_weights(tmp_path / "model.weights.h5")
    fresh.load_weights(tmp_path / "model.weights.h5")
    x = data(model)
    np.testing.assert_array_equal(fresh.elbo(x, seed=2), model.elbo(x, seed=2))
    np.testing.assert_array_equal(fresh.sample(4, seed=2), model.sample(4, seed=2))


@parametrize
def test_one_fit_step_moves_every_trainable_weight(name):
    model = build(name)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(data(model), batch_size=BATCH, epochs=1, verbose=0)
    (loss,) = history.history["loss"]
    assert np.isfinite(loss)
    for weight, old in zip(model.trainable_weights, before, strict=True):
        assert not np.array_equal(ops.convert_to_numpy(weight), old), weight.path
