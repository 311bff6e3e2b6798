"""The PyTorch peer: the same VAE and training step as `tfdlgm.models.VAE`, eager and compiled.

Run through the suite (`python benchmarks/run.py`; it starts this module in its own process),
or alone for one measurement:

```bash
python benchmarks/peers/torch_vae.py --hidden 500,500 --latent-dim 50 --batch-size 100 \
    --steps 20 --windows 5 [--compile]
```

What it measures: training examples/s of one Adam step on the negative ELBO of a Bernoulli VAE
with a diagonal Gaussian q (sigma = softplus + 1e-4), one reparameterised sample and the
analytic KL (K&W sec. 2.4, app. B), on in-memory binary data, in windows of `--steps` steps
after one warm-up window (for `torch.compile`, the compilation); the median window is
reported. Adam's settings are Keras' defaults (lr 1e-3, eps 1e-7), as on our side. On a machine
with CUDA it runs on the GPU, the data already there (ours copies each batch from host memory,
as `fit` on arrays does), and with float32 matmuls in TF32, as JAX's default precision does
on such GPUs (`torch.set_float32_matmul_precision("high")`; `versions()` records it). Needs
the `bench` extra (`pip install -e ".[bench]"`); it prints one JSON object.

`TorchVAE.log_importance_weights` is also the estimator of the L_5000 peer
(`benchmarks/peers/torch_likelihood.py`, run by `benchmarks/likelihood_speed.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional


class TorchVAE(nn.Module):
    """Bernoulli VAE: MLP encoder -> (mu, softplus scale) -> z -> MLP decoder -> logits."""

    def __init__(self, latent_dim, hidden, activation="tanh", data_dim=784):
        super().__init__()
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        widths = [data_dim, *hidden]
        self.encoder = nn.Sequential(
            *[m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), act())]
        )
        self.loc = nn.Linear(widths[-1], latent_dim)
        self.raw_scale = nn.Linear(widths[-1], latent_dim)
        widths = [latent_dim, *hidden[::-1]]
        self.decoder = nn.Sequential(
            *[m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), act())],
            nn.Linear(widths[-1], data_dim),
        )

    def posterior(self, x):
        """q(z | x)'s `(mu, sigma)`, each `[batch, latent_dim]`."""
        h = self.encoder(x)
        return self.loc(h), functional.softplus(self.raw_scale(h)) + 1e-4

    def forward(self, x):
        """The mean negative ELBO of the batch `x` `[batch, data_dim]`."""
        mu, sigma = self.posterior(x)
        z = mu + sigma * torch.randn_like(mu)
        logits = self.decoder(z)
        reconstruction = (x * logits - functional.softplus(logits)).sum(-1)
        kl = (-torch.log(sigma) + 0.5 * (sigma**2 + mu**2 - 1.0)).sum(-1)
        return (kl - reconstruction).mean()

    def log_importance_weights(self, x, num_samples):
        """`log_weights(x, eps)` of `num_samples` fresh draws eps ~ N(0, I),
        `[num_samples, batch]`."""
        shape = (num_samples, x.shape[0], self.loc.out_features)
        return self.log_weights(x, torch.randn(shape, dtype=x.dtype, device=x.device))

    def log_weights(self, x, eps):
        """log w_s = log p(x | z_s) + log p(z_s) - log q(z_s | x) at z_s = mu + sigma eps_s.

        ```none
        log p(z_s) - log q(z_s | x) = sum_u [(eps_su^2 - z_su^2) / 2 + log sigma_u]
        log p(x | z_s) = sum_d [x_d l_sd - softplus(l_sd)],   l_s = MLP_dec(z_s)
        ```

        (Burda et al. 2015, eq. 8; the Gaussians' log(2 pi) / 2 terms cancel.)

        Args:
            x: `[batch, data_dim]`.
            eps: `[samples, batch, latent_dim]`.

        Returns:
            `[samples, batch]`.
        """
        mu, sigma = self.posterior(x)
        z = mu + sigma * eps  # [S, B, K]
        logits = self.decoder(z)  # [S, B, D]
        log_px = (x * logits - functional.softplus(logits)).sum(-1)
        return log_px + (0.5 * (eps**2 - z**2) + torch.log(sigma)).sum(-1)


def measure(latent_dim, hidden, activation, batch_size, steps, windows, compile, seed=0):
    """Median training examples/s over `windows` windows of `steps` Adam steps (after one)."""
    torch.manual_seed(seed)
    device = _device()
    model = TorchVAE(latent_dim, hidden, activation).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    rng = np.random.default_rng(seed)
    data = torch.from_numpy((rng.random((steps * batch_size, 784)) < 0.5).astype(np.float32))
    data = data.to(device)
    batches = list(data.split(batch_size))

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        loss = model(x)
        loss.backward()
        optimizer.step()
        return loss

    if compile:
        step = torch.compile(step)
    times = []
    for window in range(windows + 1):
        start = time.perf_counter()
        for x in batches:
            loss = step(x)
        float(loss.detach())
        if window:  # window 0 is the warm-up (compilation)
            times.append(time.perf_counter() - start)
    return {
        "examples_per_second": steps * batch_size / statistics.median(times),
        "best_examples_per_second": steps * batch_size / min(times),
        "window_seconds": times,
        "final_loss": float(loss),
    }


def _device():
    """CUDA when there is a GPU (float32 matmuls in TF32, as JAX's default), else the CPU."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
        return "cuda"
    return "cpu"


def versions():
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": _device(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latent-dim", type=int, default=50)
    parser.add_argument("--hidden", default="500,500")
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    hidden = tuple(int(u) for u in args.hidden.split(","))
    result = measure(
        args.latent_dim,
        hidden,
        args.activation,
        args.batch_size,
        args.steps,
        args.windows,
        args.compile,
    )
    print(json.dumps({**result, **versions(), "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
