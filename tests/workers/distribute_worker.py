"""Data parallelism on 2 virtual CPU devices, in a process of its own (the device count is
fixed when the backend starts). `tests/test_distribute.py` runs it and checks what it prints:

```bash
KERAS_BACKEND=jax python tests/workers/distribute_worker.py     # one JSON object on the last line
```

For each model: the largest difference between the weights after one data-parallel SGD
step and after the single-device step on the same global batch with the same noise; the
per-example ELBOs of one example repeated across both replicas (their noise must differ);
and the largest difference between the sharded and the single-device L_k.

The same noise. Under JAX a data-parallel step draws the single-device noise (one program over
the global batch), so the reference is a plain single-device `fit`. Under TensorFlow replica r
folds r into its seeds (`tfdlgm.backend.tfp_seed`), so the reference computes, on one device,
each shard's per-example losses with the seeds folded with r (a stand-in replica context),
then the gradient of their mean over the global batch plus the weight penalty.
"""

import json
import os
import sys

import tfdlgm

tfdlgm.distribute.virtual_cpu_devices(2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfdlgm import backend  # noqa: E402

REPLICAS = 2
DATA_DIM = 12
MODELS = {
    "vae": {"class_name": "tfdlgm>VAE", "config": {"latent_dim": 3, "hidden": [8]}},
    "vae-iwae": {
        "class_name": "tfdlgm>VAE",
        "config": {"latent_dim": 3, "hidden": [8], "objective": {"name": "iwae", "num_samples": 4}},
    },
    "vae-score-function": {
        "class_name": "tfdlgm>VAE",
        "config": {"latent_dim": 3, "hidden": [8], "objective": "score_function"},
    },
    "dlgm-wake-sleep": {
        "class_name": "tfdlgm>DLGM",
        "config": {"latent_dims": [3], "hidden": [8], "objective": "wake_sleep"},
    },
    "dlgm": {
        "class_name": "tfdlgm>DLGM",
        "config": {
            "latent_dims": [3, 2],
            "hidden": [8],
            "covariance": "rank_one",
            "kappa": 10.0,
            "num_train_examples": 100,
            "input_noise": 0.1,
        },
    },
    "factor-analysis": {
        "class_name": "tfdlgm>FactorAnalysis",
        "config": {"latent_dim": 2, "likelihood": "gaussian"},
    },
    "hierarchical-vae": {
        "class_name": "tfdlgm>LadderVAE",
        "config": {"latent_dims": [3, 2], "hidden": [8, 4], "ladder": False, "batch_norm": False},
    },
    "ladder-vae": {
        "class_name": "tfdlgm>LadderVAE",
        "config": {"latent_dims": [3, 2], "hidden": [8, 4], "batch_norm": False},
    },
}


def build(spec):
    keras.utils.set_random_seed(0)
    config = {**spec["config"], "data_dim": DATA_DIM, "seed": 7}
    model = keras.saving.deserialize_keras_object({**spec, "config": config})
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    return model


def data(model, rows, seed=0):
    rng = np.random.default_rng(seed)
    if model.support == "binary":
        return (rng.uniform(size=(rows, DATA_DIM)) < 0.4).astype("float32")
    return rng.normal(size=(rows, DATA_DIM)).astype("float32")


class StandInReplica:
    """What `tfdlgm.backend.tensorflow._replica_context` returns for replica `replica` of
    `REPLICAS`."""

    def __init__(self, replica):
        self.replica_id_in_sync_group = replica
        self.num_replicas_in_sync = REPLICAS

    def all_reduce(self, reduction, value):
        return value * REPLICAS


def as_replica(replica, fn, *args, **kwargs):
    """`fn(*args, **kwargs)` on one device with the seeds replica `replica` would draw."""
    from tfdlgm.backend import tensorflow as tensorflow_backend

    saved = tensorflow_backend._replica_context
    tensorflow_backend._replica_context = lambda: StandInReplica(replica)
    try:
        return fn(*args, **kwargs)
    finally:
        tensorflow_backend._replica_context = saved


def reference_step(model, x):
    """One single-device SGD step with the noise each replica would draw."""
    if backend.name == "jax":
        model.fit(x, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        return
    import tensorflow as tf

    # every replica starts from the same state: the random stream, the score-function baseline
    state = [v.numpy() for v in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        losses = []
        for r, shard in enumerate(np.split(x, REPLICAS)):
            for variable, value in zip(model.non_trainable_variables, state):
                variable.assign(value)
            losses.append(as_replica(r, model, shard, training=True)["loss"])
        loss = tf.reduce_mean(tf.concat(losses, axis=0)) + sum(model.losses)
    gradients = tape.gradient(loss, model.trainable_weights)
    model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))


def reference_log_likelihood(model, x, k, seed):
    if backend.name == "jax":
        return model.iwae_bound(x, k, batch_size=len(x), seed=seed)
    out = []
    for r, shard in enumerate(np.split(x, REPLICAS)):
        model.__dict__.pop("_compiled_functions", None)  # traced with the replica id inside
        out.append(as_replica(r, model.iwae_bound, shard, k, batch_size=len(shard), seed=seed))
    return np.concatenate(out)


def check(name, spec):
    with tfdlgm.distribute.data_parallel() as engine:
        parallel = build(spec)
        x = data(parallel, 8)
        initial = [np.array(w) for w in parallel.get_weights()]
        trainable = [np.array(w) for w in parallel.trainable_weights]
        parallel.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
        same = np.repeat(x[:1], 8, axis=0)
        repeated = keras.ops.convert_to_numpy(
            parallel.predict(same, batch_size=8, verbose=0)["elbo"]
        )
        x_ll = data(parallel, 10, seed=1)
        sharded = parallel.iwae_bound(x_ll, 20, batch_size=10, seed=3)
        odd = parallel.log_likelihood(x_ll[:7], num_samples=20, batch_size=7, seed=3)
        replicas = tfdlgm.distribute.num_replicas()
    single = build(spec)
    single.set_weights(initial)
    reference_step(single, x)
    # the parameters (the score-function baseline, a running mean, is not one)
    step = _largest_difference(parallel.trainable_weights, single.trainable_weights)
    moved = _largest_difference(trainable, single.trainable_weights)
    single.set_weights(parallel.get_weights())
    expected = reference_log_likelihood(single, x_ll, 20, seed=3)
    return {
        "engine": type(engine).__name__,
        "replicas": replicas,
        "step_max_abs_difference": step,
        "weights_moved": moved,
        "repeated_example_elbo": repeated.tolist(),
        "log_likelihood_max_abs_difference": float(np.abs(sharded - expected).max()),
        "odd_batch_shape": list(odd.shape),
        "odd_batch_finite": bool(np.isfinite(odd).all()),
    }


def _largest_difference(a, b):
    return max(float(np.abs(np.asarray(u) - np.asarray(v)).max()) for u, v in zip(a, b))


def main(names):
    results = {"backend": backend.name, "devices": len(backend.local_devices())}
    for name in names or MODELS:
        results[name] = check(name, MODELS[name])
    print(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(sys.argv[1:])
