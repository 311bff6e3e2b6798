"""A hand-written minimal Keras 3 VAE: the floor that `benchmarks/run.py` measures tfdlgm's
overhead against.

Run through the suite (`python benchmarks/run.py`), which trains it with `fit` beside
`tfdlgm.models.VAE` of the same architecture; on its own it has no command.

The same model and objective as `tfdlgm.models.VAE(likelihood="bernoulli")` with one sample,
written in plain `keras.ops`: no TensorFlow Probability, no objectives module, no validation,
and Keras' own train step (the model only overrides `compute_loss`).

```none
h = MLP_enc(x),  mu = W_mu h + b_mu,  sigma = softplus(W_s h + b_s) + 1e-4
z = mu + sigma * eps,  eps ~ N(0, I)                       (K&W sec. 2.4)
-ELBO(x) = -sum_d [x_d l_d - softplus(l_d)] + KL,  l = MLP_dec(z)     (Bernoulli)
KL = sum_u [-log sigma_u + (sigma_u^2 + mu_u^2 - 1) / 2]    (K&W app. B)
```
"""

import keras
from keras import ops


class MinimalVAE(keras.Model):
    """Bernoulli VAE with a diagonal Gaussian q, analytic KL, one reparameterised sample.

    Args:
        latent_dim: int, the size of z.
        hidden: tuple of ints, the encoder's widths; the decoder mirrors them.
        activation: str, the hidden activation.
        data_dim: int, the number of binary pixels.
        seed: int, for the noise eps.
    """

    def __init__(self, latent_dim, hidden, activation, data_dim=784, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = [keras.layers.Dense(u, activation=activation) for u in hidden]
        self.loc = keras.layers.Dense(latent_dim)
        self.raw_scale = keras.layers.Dense(latent_dim)
        self.decoder = [keras.layers.Dense(u, activation=activation) for u in hidden[::-1]]
        self.logits = keras.layers.Dense(data_dim)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.build((None, data_dim))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.encoder:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.loc.build(shape)
        self.raw_scale.build(shape)
        shape = shape[:-1] + (self.loc.units,)
        for layer in self.decoder:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.logits.build(shape)

    def call(self, x, training=False):
        h = x
        for layer in self.encoder:
            h = layer(h)
        mu = self.loc(h)
        sigma = ops.softplus(self.raw_scale(h)) + 1e-4
        z = mu + sigma * keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        for layer in self.decoder:
            z = layer(z)
        logits = self.logits(z)
        reconstruction = ops.sum(x * logits - ops.softplus(logits), axis=-1)
        kl = ops.sum(-ops.log(sigma) + 0.5 * (ops.square(sigma) + ops.square(mu) - 1.0), axis=-1)
        return kl - reconstruction  # [batch], the negative ELBO

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.mean(y_pred)
