"""The variational autoencoder of Kingma & Welling (2014)."""

import keras

from tfdlgm import validation
from tfdlgm.backend import tfp_seed
from tfdlgm.distributions import posterior_layer, standard_normal
from tfdlgm.layers import MLP
from tfdlgm.models.base import LatentModel
from tfdlgm.trace import LatentTrace, Trace


@keras.saving.register_keras_serializable(package="tfdlgm")
class VAE(LatentModel):
    """Variational autoencoder with one Gaussian latent layer (Kingma & Welling 2014, app. C).

    ```none
    p(z) = N(0, I),   p(x | z) = pi(x | MLP_dec(z)),   q(z | x) = N(mu(x), diag sigma^2(x))
    ```

    with pi Bernoulli for binary data or Gaussian for continuous data. With
    `covariance="rank_one"` q has the diagonal-plus-rank-one precision of Rezende et al.

    Args:
        latent_dim: int, the size of z. Defaults to `50`.
        hidden: tuple of ints, the encoder's hidden widths; the decoder mirrors them.
            Defaults to `(200, 200)`.
        activation: str, the hidden activation. Defaults to `"tanh"`.
        covariance: `"diagonal"` or `"rank_one"`. Defaults to `"diagonal"`.
        **kwargs: `LatentModel` arguments: `data_dim`, `likelihood`, `objective`, `seed`.

    Example:

    ```python
    model = tfdlgm.models.VAE(latent_dim=50, hidden=(200, 200), likelihood="bernoulli")
    model.compile(optimizer="adam")
    model.fit(tfdlgm.datasets.mnist("train"), epochs=1)
    model.log_likelihood(x_test, num_samples=5000)
    ```
    """

    short_name = "vae"
    standard_normal_prior = True

    def __init__(
        self, latent_dim=50, hidden=(200, 200), activation="tanh", covariance="diagonal", **kwargs
    ):
        latent_dim = validation.check_positive_int(latent_dim, "latent_dim")
        hidden = validation.check_sizes(hidden, "hidden", allow_empty=True)
        super().__init__(latent_dims=(latent_dim,), **kwargs)
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.covariance = covariance
        self.encoder = MLP(self.hidden, activation, name="encoder")
        self.posterior = posterior_layer(covariance, latent_dim, name="posterior")
        self.decoder = MLP(self.hidden[::-1], activation, name="decoder")
        self.build()

    def build(self, input_shape=None):
        self.encoder.build((None, self.data_dim))
        self.posterior.build(self.encoder.compute_output_shape((None, self.data_dim)))
        self.decoder.build((None, self.latent_dim))
        self.observation.build(self.decoder.compute_output_shape((None, self.latent_dim)))

    def infer(self, x, num_samples, seed_generator, training=False):
        posterior = self.posterior(self.encoder(x, training=training))
        z = posterior.sample(num_samples, seed=tfp_seed(seed_generator))  # [S, B, K]
        prior = standard_normal(self.latent_dim, self.variable_dtype)
        return Trace([LatentTrace(posterior, prior, z)], self.decode(z, training=training))

    def decode(self, latents, training=False):
        return self.observation(self.decoder(latents, training=training))

    def get_config(self):
        config = super().get_config()
        del config["latent_dims"]
        return {
            **config,
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "activation": self.activation,
            "covariance": self.covariance,
        }
