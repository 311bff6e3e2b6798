"""The PyTorch L_5000 peer: a zoo VAE preset's weights in `peers.torch_vae.TorchVAE`, and the
importance-sampled log-likelihood of `tfdlgm`'s `log_likelihood`, eager and compiled.

Run through `python benchmarks/likelihood_speed.py` (its `torch-eager` and `torch-compile`
variants start this module's `measure` in processes of their own); on its own it has no command.

The estimate is the one of `LatentModel.iwae_bound` (Burda et al. 2015, eq. 8):

```none
L_k(x) = log (1/k) sum_s p(x, z_s) / q(z_s | x),    z_s ~ q(z | x),   k = 5000
```

over batches of 100 images, each batch's k samples drawn in chunks of 50,000 / 100 = 500 and
combined by a streaming log-sum-exp (memory independent of k), as ours does. The model is
`tfdlgm.models.VAE` with a diagonal Gaussian q and a Bernoulli decoder, read from the preset's
`config.json` (anything else is refused) and `model.weights.h5` (Keras' `[in, out]` kernels,
transposed into `nn.Linear`'s `[out, in]`). Needs the `bench` extra.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time

import h5py
import numpy as np
import torch

from peers.torch_vae import TorchVAE

# Rows of [samples x examples] per chunk: tfdlgm.models.base._ROWS_PER_CHUNK (a test checks).
ROWS_PER_CHUNK = 50_000
BATCH_SIZE = 100  # `log_likelihood`'s default


def from_preset(folder):
    """A `TorchVAE` holding the weights of the zoo preset in `folder` (a `tfdlgm.models.VAE`
    with `likelihood="bernoulli"` and `covariance="diagonal"`)."""
    folder = pathlib.Path(folder)
    config = json.loads((folder / "config.json").read_text())
    settings = config["config"]
    kind = (
        config["class_name"],
        settings.get("likelihood"),
        settings.get("covariance"),
        settings.get("data_dim"),
    )
    if kind != ("VAE", "bernoulli", "diagonal", 784):
        raise ValueError(
            "The PyTorch peer is the Bernoulli VAE with a diagonal Gaussian q on 784 pixels: "
            "the preset must have class_name VAE, likelihood 'bernoulli', covariance "
            f"'diagonal' and data_dim 784. Received: {kind} from {folder / 'config.json'}"
        )
    model = TorchVAE(settings["latent_dim"], tuple(settings["hidden"]), settings["activation"])
    with h5py.File(folder / "model.weights.h5", "r") as weights:

        def dense(path):
            return weights[f"{path}/vars/0"][()], weights[f"{path}/vars/1"][()]

        hidden = len(settings["hidden"])
        names = [f"dense_{i}" if i else "dense" for i in range(hidden)]
        pairs = [(model.encoder[2 * i], dense(f"encoder/dense/{n}")) for i, n in enumerate(names)]
        pairs += [
            (model.loc, dense("layers/diagonal_gaussian/loc")),
            (model.raw_scale, dense("layers/diagonal_gaussian/raw_scale")),
        ]
        pairs += [(model.decoder[2 * i], dense(f"decoder/dense/{n}")) for i, n in enumerate(names)]
        pairs.append((model.decoder[-1], dense("layers/bernoulli_observation/logits")))
    with torch.no_grad():
        for layer, (kernel, bias) in pairs:
            if layer.weight.shape != kernel.T.shape:
                raise ValueError(
                    f"{folder / 'model.weights.h5'}: a kernel of shape {kernel.shape} for a "
                    f"layer of {tuple(layer.weight.shape[::-1])}; the file does not match "
                    "its config.json"
                )
            layer.weight.copy_(torch.from_numpy(kernel.T.copy()))
            layer.bias.copy_(torch.from_numpy(bias))
    return model.eval()


def log_likelihood(log_weights, x, num_samples):
    """L_k per image of `x` `[N, 784]` (numpy), nats: `log_weights(batch, size)` gives the
    `[size, batch]` log importance weights of `size` fresh samples."""
    chunk = max(1, min(num_samples, ROWS_PER_CHUNK // BATCH_SIZE))
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), BATCH_SIZE):
            batch = torch.from_numpy(x[start : start + BATCH_SIZE])
            total = None
            for done in range(0, num_samples, chunk):
                chunk_total = torch.logsumexp(
                    log_weights(batch, min(chunk, num_samples - done)), dim=0
                )
                total = chunk_total if total is None else torch.logaddexp(total, chunk_total)
            out.append((total - np.log(num_samples)).numpy())
    return np.concatenate(out)


def flop_per_image(model, num_samples):
    """2 k sum(inputs x outputs) over the dense kernels (`likelihood_speed.flop_per_image`)."""
    return 2 * num_samples * sum(p.numel() for p in model.parameters() if p.dim() == 2)


def matmul_gflops(size=2000, repeats=5):
    """GFLOP/s of a `size` x `size` float32 matmul in PyTorch (median of `repeats`)."""
    a = torch.from_numpy(np.random.default_rng(0).standard_normal((size, size), "float32"))
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def measure(folder, x, num_samples, windows, compile, seed=0):
    """The preset's L_k on `x` in `windows` timed calls after one warm-up call (for
    `torch.compile`, the compilation), each with fresh samples.

    Returns:
        `(seconds, values, flop_per_image)`: each call's seconds and `[N]` L_k values, and
        the work per image (`flop_per_image`).
    """
    torch.manual_seed(seed)
    model = from_preset(folder)
    log_weights = model.log_importance_weights
    if compile:
        log_weights = torch.compile(log_weights, dynamic=False)
    log_likelihood(log_weights, x, num_samples)  # warm-up
    times, values = [], []
    for _ in range(windows):
        start = time.perf_counter()
        values.append(log_likelihood(log_weights, x, num_samples))
        times.append(time.perf_counter() - start)
    return times, values, flop_per_image(model, num_samples)


def versions():
    return {"torch": torch.__version__, "threads": torch.get_num_threads()}
