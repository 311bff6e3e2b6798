"""One of two processes that train a tiny VAE together on loopback, as two hosts would.

```bash
KERAS_BACKEND=jax python tests/workers/multihost_worker.py 0 PORT &    # the coordinator (chief)
KERAS_BACKEND=jax python tests/workers/multihost_worker.py 1 PORT
```

JAX: `keras.distribution.initialize` (which calls `jax.distributed.initialize`) then
`tfdlgm.distribute.data_parallel()` over the devices of both processes; each process feeds its
own examples, half of every global batch. TensorFlow: `TF_CONFIG` names both workers and
`tfdlgm.distribute.data_parallel(multi_worker=True)` opens a `MultiWorkerMirroredStrategy`;
each process passes the whole data and the global batch size, and the strategy shards it.
Each process prints one JSON line: its loss history and a checksum of its weights after
training, which must agree across the processes (`tests/test_distribute.py`).
"""

import json
import os
import sys

PROCESSES = 2

process_id, port = int(sys.argv[1]), int(sys.argv[2])
if os.environ.get("KERAS_BACKEND") == "tensorflow":
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"localhost:{port}", f"localhost:{port + 1}"]},
            "task": {"type": "worker", "index": process_id},
        }
    )
else:
    import keras

    keras.distribution.initialize(
        job_addresses=f"localhost:{port}", num_processes=PROCESSES, process_id=process_id
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdlgm  # noqa: E402

GLOBAL_BATCH = 16
rng = np.random.default_rng(0)
x = (rng.uniform(size=(64, 12)) < 0.4).astype("float32")
with tfdlgm.distribute.data_parallel(multi_worker=True):
    keras.utils.set_random_seed(0)
    model = tfdlgm.models.VAE(latent_dim=3, hidden=(8,), data_dim=12, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    if keras.backend.backend() == "jax":  # this process's examples, its half of each batch
        data, batch_size = x[process_id::PROCESSES], GLOBAL_BATCH // PROCESSES
    else:
        data, batch_size = x, GLOBAL_BATCH
    history = model.fit(data, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
    replicas = tfdlgm.distribute.num_replicas()
weights = np.concatenate([np.ravel(w) for w in model.get_weights()])
print(
    json.dumps(
        {
            "process": process_id,
            "replicas": replicas,
            "loss": [float(v) for v in history.history["loss"]],
            "weights_sum": float(weights.astype("float64").sum()),
            "weights_norm": float(np.linalg.norm(weights.astype("float64"))),
        }
    )
)
