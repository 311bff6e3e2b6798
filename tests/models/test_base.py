"""`LatentModel` and Keras' own arguments: `compile`'s loss and metrics, targets, class and
sample weights, validation data, and the data checks of every Keras entry point."""

import hypothesis
import keras
import numpy as np
import pytest

from tfdlgm.models import VAE


def tiny_vae():
    return VAE(latent_dim=2, hidden=(8,), data_dim=12, seed=0)


def binary(n):
    return (np.random.default_rng(0).uniform(size=(n, 12)) < 0.5).astype("float32")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("loss", "mse"),
        ("loss", keras.losses.BinaryCrossentropy()),
        ("loss_weights", [1.0]),
        ("metrics", ["mae"]),
        ("weighted_metrics", ["mae"]),
    ],
)
def test_compile_refuses_a_keras_loss_or_metric(name, value):
    model = tiny_vae()
    with pytest.raises(
        ValueError, match=rf"`{name}` must be None: .*objective=.*Received: {name}="
    ):
        model.compile(optimizer="adam", **{name: value})
    assert not model.compiled


def test_compile_passes_keras_arguments_and_survives_a_round_trip(tmp_path):
    model = tiny_vae()
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
    model.fit(binary(8), batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.compiled
    assert isinstance(loaded.optimizer, keras.optimizers.SGD)
    assert float(loaded.optimizer.learning_rate) == 0.5


def test_sample_weight_weights_each_examples_loss():
    model = tiny_vae()
    x = binary(6)
    outputs = model(x)
    per_example = keras.ops.convert_to_numpy(outputs["loss"])
    weights = np.array([0.0, 1.0, 2.0, 0.5, 0.0, 3.0], "float32")
    loss = model.compute_loss(x, y_pred=outputs, sample_weight=weights)
    # Keras' reduction: sum_n w_n loss_n / B
    np.testing.assert_allclose(float(loss), np.mean(weights * per_example), rtol=1e-6)
    np.testing.assert_allclose(
        float(model.compute_loss(x, y_pred=outputs)), per_example.mean(), rtol=1e-6
    )


def test_fit_and_evaluate_use_sample_weight():
    model = tiny_vae()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x = binary(8)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    logs = model.fit(x, sample_weight=np.zeros(8, "float32"), batch_size=4, epochs=1, verbose=0)
    assert logs.history["loss"] == [0.0]
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)  # zero weight: zero gradient
    assert model.evaluate(x, sample_weight=np.zeros(8), verbose=0, return_dict=True)["loss"] == 0
    model.fit(x, sample_weight=np.ones(8, "float32"), batch_size=4, epochs=1, verbose=0)
    moved = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert any(not np.array_equal(old, new) for old, new in zip(after, moved, strict=True))


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("y", lambda m, x: m.fit(x, x, verbose=0)),
        ("y", lambda m, x: m.fit(x, y=np.zeros(len(x)), verbose=0)),
        ("y", lambda m, x: m.evaluate(x, x, verbose=0)),
        ("y", lambda m, x: m.train_on_batch(x, x)),
        ("y", lambda m, x: m.test_on_batch(x, x)),
        ("class_weight", lambda m, x: m.fit(x, class_weight={0: 1.0, 1: 2.0}, verbose=0)),
    ],
)
def test_targets_and_class_weights_are_refused(name, call):
    model = tiny_vae()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=rf"`{name}` must be None for VAE: .*Received: {name}"):
        call(model, binary(8))


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones((8, 12)), r"one number per example, shape \(8,\). Received: shape=\(8, 12\)"),
        (np.ones(5), r"one number per example, shape \(8,\). Received: shape=\(5,\)"),
        (np.r_[np.ones(7), np.nan], r"finite and non-negative .* nan at index 7"),
        (np.r_[np.ones(7), -1.0], r"finite and non-negative .* -1.0 at index 7"),
    ],
)
def test_bad_sample_weights_are_refused(weights, message):
    model = tiny_vae()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=rf"`sample_weight` must .*{message}"):
        model.fit(binary(8), sample_weight=weights, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data's sample_weight` must"):
        model.fit(binary(8), validation_data=(binary(8), None, weights), verbose=0)


def test_validation_data_takes_weights_and_no_targets():
    model = tiny_vae()
    model.compile(optimizer="adam")
    x = binary(8)
    history = model.fit(x, validation_data=(x, None, np.zeros(8)), epochs=1, verbose=0).history
    assert history["val_loss"] == [0.0] and history["val_elbo"][0] < 0  # weighted loss only
    history = model.fit(x, sample_weight=np.zeros(8), validation_split=0.25, verbose=0).history
    assert history["val_loss"] == [0.0]
    with pytest.raises(ValueError, match=r"`validation_data` must be `x_val`.* takes no targets"):
        model.fit(x, validation_data=(x, x), verbose=0)
    with pytest.raises(ValueError, match=r"`sample_weight` must be None when the data is a"):
        model.fit(_datasets(x)["PyDataset"], sample_weight=np.ones(8), verbose=0)


def test_keras_arguments_work():
    model = tiny_vae()
    model.compile(optimizer="adam", run_eagerly=True, steps_per_execution=2)
    x = binary(16)
    history = model.fit(
        x,
        None,
        4,  # batch_size, positionally
        epochs=3,
        initial_epoch=1,
        steps_per_epoch=2,
        validation_split=0.25,
        validation_batch_size=2,
        validation_freq=2,
        verbose=0,
    ).history
    assert len(history["loss"]) == 2 and len(history["val_loss"]) == 1
    assert set(model.evaluate(x, batch_size=4, steps=1, verbose=0, return_dict=True)) == {
        "loss",
        "elbo",
        "reconstruction",
        "kl_1",
    }
    outputs = model.predict(x, batch_size=4, verbose=0)  # what `call` returns, per example
    assert {k: v.shape for k, v in outputs.items()} == {
        k: (16,) for k in ("loss", "elbo", "reconstruction", "kl_1")
    }
    np.testing.assert_allclose(outputs["elbo"], -outputs["loss"], rtol=1e-6)


@pytest.mark.parametrize(
    "method", ["predict", "predict_on_batch", "train_on_batch", "test_on_batch"]
)
def test_the_other_keras_entry_points_check_the_data(method):
    model = tiny_vae()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"`x` must hold binary values"):
        getattr(model, method)(binary(4) + 0.5)


# -- data on the way into fit and evaluate ------------------------------------------------


def _datasets(x):
    """The same data as a PyDataset and, where TensorFlow is installed, as tf.data."""
    from tfdlgm.datasets import NumpyBatches

    out = {"PyDataset": NumpyBatches(x, batch_size=4, binarize=None)}
    try:
        import tensorflow as tf
    except ImportError:
        return out
    out["tf.data"] = tf.data.Dataset.from_tensor_slices(x).batch(4)
    return out


@pytest.mark.parametrize("first", [True, False], ids=["first batch", "a later batch"])
@pytest.mark.parametrize("bad_value", [np.nan, 0.5], ids=["NaN", "non-binary"])
def test_a_bad_batch_of_a_dataset_stops_fit_and_evaluate_and_loses_nothing(first, bad_value):
    model = tiny_vae()
    model.compile(optimizer="adam")
    x = binary(16)
    x[1 if first else 13, 3] = bad_value
    before = [np.array(w) for w in model.get_weights()]
    for kind, data in _datasets(x).items():
        with pytest.raises(ValueError, match=r"A batch of `x` is not valid data: `x` must"):
            model.fit(data, epochs=1, verbose=0)
        with pytest.raises(ValueError, match=r"A batch of `x` is not valid data"):
            model.evaluate(data, verbose=0)
        if first:  # no step ran: the weights are those before, and the model still works
            for w, b in zip(model.get_weights(), before, strict=True):
                np.testing.assert_array_equal(w, b, err_msg=kind)
        assert np.all(np.isfinite(model.elbo(binary(4), seed=0))), kind
    model.fit(binary(16), epochs=1, batch_size=4, verbose=0)  # trains on good data after
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_tensors_lists_and_validation_data_are_checked_whole():
    model = tiny_vae()
    model.compile(optimizer="adam")
    x = binary(8)
    x[2, 1] = 0.5
    with pytest.raises(ValueError, match=r"`x` must hold binary values"):
        model.fit(keras.ops.convert_to_tensor(x), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data` must hold binary values"):
        model.fit(binary(8), validation_data=x, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`x` must have shape \[batch, 12\]"):
        model.fit([[0.0, 1.0]] * 4, epochs=1, verbose=0)
    model.fit(binary(8).tolist(), epochs=1, verbose=0)  # a list of rows is data too


def test_plain_fit_stops_at_a_non_finite_loss():
    from tfdlgm.callbacks import NonFiniteLossError

    model = tiny_vae()
    model.compile(optimizer=keras.optimizers.SGD(1e30))
    with pytest.raises(NonFiniteLossError, match="Training stopped: the loss is"):
        model.fit(binary(16), batch_size=4, epochs=3, verbose=0)


def test_the_elbo_draws_its_samples_in_chunks(monkeypatch):
    """Memory does not grow with num_samples: the samples come in chunks of at most
    _ROWS_PER_CHUNK / batch rows, and the chunked mean estimates the same ELBO."""
    from tfdlgm.models import base

    model = tiny_vae()
    x = binary(8)
    whole = model.elbo(x, num_samples=400, seed=0)
    sizes = []
    real = model._compiled("elbo", model._elbo_batch)
    monkeypatch.setattr(base, "_ROWS_PER_CHUNK", 8 * 64)
    model._compiled_functions["elbo"] = lambda batch, size, missing: (
        sizes.append(size) or real(batch, size, missing)
    )
    chunked = model.elbo(x, num_samples=400, seed=1)
    assert sizes == [64] * 6 + [16]
    np.testing.assert_allclose(chunked, whole, atol=0.3)  # 400 draws each, different streams


def test_the_log_likelihood_draws_its_samples_in_passes_of_a_compiled_loop(monkeypatch):
    """L_k runs `_ROWS_PER_PASS`-row passes in a loop inside each compiled call: the calls
    cover num_samples, and the estimate depends on the pass size, not on how many passes a
    call holds (the loop carries the random stream from pass to pass)."""
    from tfdlgm.models import base

    model = tiny_vae()
    x = binary(8)
    monkeypatch.setattr(base, "_ROWS_PER_PASS", 8 * 16)
    monkeypatch.setattr(base, "_ROWS_PER_CHUNK", 8 * 16 * 5)
    assert base._bound_calls(150, 8) == [(16, 5, 0), (16, 4, 6)]
    five_per_call = model.log_likelihood(x, num_samples=150, batch_size=8, seed=0, verbose=0)
    monkeypatch.setattr(base, "_ROWS_PER_CHUNK", 8 * 16 * 2)
    assert base._bound_calls(150, 8) == [(16, 2, 0)] * 4 + [(16, 1, 6)]
    two_per_call = model.log_likelihood(x, num_samples=150, batch_size=8, seed=0, verbose=0)
    np.testing.assert_allclose(two_per_call, five_per_call, rtol=1e-5)
    other_seed = model.log_likelihood(x, num_samples=150, batch_size=8, seed=1, verbose=0)
    assert np.all(other_seed != five_per_call)


def test_compiled_sampling_draws_by_seed_and_traces_once_per_count(monkeypatch):
    """`sample` runs one compiled function: a seed gives the same draws on every call and
    another seed others, and a count seen before traces nothing again (TensorFlow: one trace
    with a dynamic count serves every count after the second)."""
    model = tiny_vae()
    traced = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda n, g: traced.append(n) or generate(n, g))
    first = model.sample(6, seed=0)
    np.testing.assert_array_equal(model.sample(6, seed=0), first)
    assert not np.array_equal(model.sample(6, seed=1), first)
    for count in (3, 4, 5, 7, 3, 4, 5, 7):
        assert model.sample(count, seed=0).shape == (count, 12)
    if keras.backend.backend() == "tensorflow":
        assert len(traced) <= 2
    else:  # JAX compiles one program per shape
        assert len(traced) == 5
    np.testing.assert_array_equal(model.sample(6, seed=0), first)


def test_reconstruct_encode_and_active_units_are_compiled_and_seeded():
    model = tiny_vae()
    x = binary(10)
    np.testing.assert_array_equal(model.reconstruct(x, seed=3), model.reconstruct(x, seed=3))
    assert not np.array_equal(model.reconstruct(x, seed=3), model.reconstruct(x, seed=4))
    (q,) = model.encode(x, seed=0)
    assert q.batch_shape == (10,) and q.event_shape == (2,)
    assert model.active_units(x, threshold=0.0, batch_size=4, seed=0) == [2]
    assert model.active_units(x, threshold=1e6, batch_size=4, seed=0) == [0]
    assert {"reconstruct", "encode", "posterior_means"} <= set(model._compiled_functions)


_VALUES = [0.0, 1.0, 0.5, -1.0, np.nan, np.inf]


@pytest.fixture(scope="module")
def fuzzed_model():
    model = tiny_vae()
    model.compile(optimizer="adam")
    return model


@hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
@hypothesis.given(
    picks=hypothesis.strategies.lists(
        hypothesis.strategies.integers(0, len(_VALUES) - 1), min_size=8 * 12, max_size=8 * 12
    ),
    width=hypothesis.strategies.sampled_from([12, 11]),
    dtype=hypothesis.strategies.sampled_from(["float32", "float64", "int32"]),
    kind=hypothesis.strategies.sampled_from(["array", "tensor", "PyDataset", "tf.data"]),
    clean=hypothesis.strategies.booleans(),
)
def test_fuzzed_data_trains_or_is_a_value_error_and_never_reaches_the_weights(
    fuzzed_model, picks, width, dtype, kind, clean
):
    """Whatever `fit` and `evaluate` are given, in whichever container: valid binary data
    trains; anything else is a `ValueError` before a weight changes."""
    if clean:  # binary values only: valid data where the shape and dtype are
        picks = [i % 2 for i in picks]
    x = np.array([_VALUES[i] for i in picks]).reshape(8, 12)[:, :width]
    with np.errstate(invalid="ignore"):
        x = x.astype(dtype)
    valid = width == 12 and dtype != "int32" and np.isin(x, [0.0, 1.0]).all()
    if kind == "tensor":
        data = keras.ops.convert_to_tensor(x)
    elif kind == "PyDataset":
        from tfdlgm.datasets import NumpyBatches

        if dtype == "int32":  # NumpyBatches serves float32 by construction
            return
        data = NumpyBatches(x, batch_size=4, binarize=None)
    elif kind == "tf.data":
        tf = pytest.importorskip("tensorflow")
        data = tf.data.Dataset.from_tensor_slices(x).batch(4)
    else:
        data = x
    model = fuzzed_model
    before = [np.array(w) for w in model.get_weights()]
    for run in (
        lambda: model.fit(data, epochs=1, batch_size=4, verbose=0),
        lambda: model.evaluate(data, batch_size=4, verbose=0),
    ):
        if valid:
            run()
            continue
        with pytest.raises(ValueError):
            run()
        for w, b in zip(model.get_weights(), before, strict=True):
            np.testing.assert_array_equal(w, b)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
