import keras
import numpy as np
import pytest
from keras import ops

from tests.gradients import value_and_grad
from tfdlgm.layers import (
    MLP,
    Dense,
    freeze_batch_norm,
    normalises_by_batch,
    weights_to_load,
)


def _pair(units, input_dim):
    """A `tfdlgm.layers.Dense` and a `keras.layers.Dense` holding the same random weights."""
    ours, theirs = Dense(units), keras.layers.Dense(units)
    ours.build((None, input_dim))
    theirs.build((None, input_dim))
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(input_dim, units)), rng.normal(size=units)]
    for layer in (ours, theirs):
        layer.set_weights([w.astype("float32") for w in weights])
    return ours, theirs


@pytest.mark.parametrize("shape", [(5, 3), (4, 5, 3), (2, 4, 5, 3)])
def test_dense_folds_leading_axes_to_the_same_map(shape):
    ours, theirs = _pair(7, 3)
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    y = ops.convert_to_numpy(ours(x))
    assert y.shape == shape[:-1] + (7,)
    np.testing.assert_allclose(y, ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=1e-5)


def test_dense_kernel_gradient_matches_the_unfolded_one():
    """dL/dW = x^T dL/dy over every leading axis, folded or not."""
    ours, theirs = _pair(4, 3)
    x = np.random.default_rng(2).normal(size=(6, 5, 3)).astype("float32")
    kernel, bias = [w.astype("float32") for w in theirs.get_weights()]

    def loss(layer):
        return lambda k, b: ops.sum(ops.square(layer.stateless_call([k, b], [], x)[0]))

    (v_ours, g_ours), (v_theirs, g_theirs) = (
        value_and_grad(loss(layer), [kernel, bias]) for layer in (ours, theirs)
    )
    np.testing.assert_allclose(v_ours, v_theirs, rtol=1e-5)
    for a, b in zip(g_ours, g_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_mlp_batch_norm_pools_statistics_over_every_leading_axis():
    """[S, B, H] through a batch-normalised MLP is [S B, H] through it, reshaped."""
    mlp = MLP((6, 4), activation="leaky_relu", batch_norm=True)
    mlp.build((None, 3))
    x = np.random.default_rng(3).normal(size=(2, 5, 3)).astype("float32")
    y = ops.convert_to_numpy(mlp(x, training=True))
    flat = ops.convert_to_numpy(mlp(x.reshape(10, 3), training=True))
    np.testing.assert_allclose(y.reshape(10, 4), flat, rtol=1e-5, atol=1e-5)


def test_frozen_batch_norm_normalises_each_example_by_the_moving_statistics_in_training():
    """Trainable, an example's output in training depends on its batch; frozen, it is the
    inference output, the same in any batch."""
    mlp = MLP((6, 4), activation="leaky_relu", batch_norm=True)
    mlp.build((None, 3))
    for norm in mlp.norms:
        norm.moving_mean.assign(np.linspace(-1.0, 1.0, norm.moving_mean.shape[0]))
    x = np.random.default_rng(4).normal(size=(5, 3)).astype("float32")
    alone, in_batch = (ops.convert_to_numpy(mlp(v, training=True))[:2] for v in (x[:2], x))
    assert normalises_by_batch(mlp) and not np.allclose(alone, in_batch, atol=1e-3)
    assert freeze_batch_norm(mlp) == 2 and not normalises_by_batch(mlp)
    assert mlp.trainable_weights == [w for d in mlp.dense for w in d.trainable_weights]
    frozen = ops.convert_to_numpy(mlp(x, training=True))
    np.testing.assert_allclose(frozen, ops.convert_to_numpy(mlp(x)), rtol=1e-6)
    np.testing.assert_allclose(
        frozen[:2], ops.convert_to_numpy(mlp(x[:2], training=True)), rtol=1e-6
    )
    assert freeze_batch_norm(MLP((3,))) == 0


def test_mlp_round_trips_its_config():
    mlp = MLP((8, 2), activation="relu", batch_norm=True, name="net")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(mlp))
    assert isinstance(clone, MLP)
    assert (clone.units, clone.activation, clone.batch_norm) == ((8, 2), "relu", True)
    assert all(isinstance(dense, Dense) for dense in clone.dense)


@pytest.mark.parametrize("units", [(0,), (3, -1), (2.0,), (True,)])
def test_mlp_refuses_units_that_are_not_positive_ints(units):
    with pytest.raises(ValueError, match="positive ints"):
        MLP(units)


def test_weights_to_load_start_kernels_at_zero_and_only_within_the_block():
    def kernel():
        layer = Dense(4, kernel_initializer="glorot_uniform")
        layer.build((None, 3))
        assert layer.get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"
        return ops.convert_to_numpy(layer.kernel)

    with weights_to_load():
        with weights_to_load():  # nested blocks end with the outer one
            pass
        np.testing.assert_array_equal(kernel(), np.zeros((3, 4), "float32"))
    drawn = kernel()
    assert drawn.dtype == np.float32 and np.all(drawn != 0)
