"""The Ladder VAE of Sønderby et al. (2016), and the hierarchical VAE it is compared with."""

import keras

from tfdlgm import validation
from tfdlgm.backend import tfp_seed
from tfdlgm.distributions import DiagonalGaussian, precision_weighted_merge, standard_normal
from tfdlgm.layers import MLP
from tfdlgm.models.base import LatentModel
from tfdlgm.trace import LatentTrace, Trace


@keras.saving.register_keras_serializable(package="tfdlgm")
class LadderVAE(LatentModel):
    """Ladder variational autoencoder: a hierarchy of Gaussian latents with a
    precision-weighted merge of bottom-up and top-down information (Sønderby et al. 2016).

    ```none
    generative:  z_L ~ N(0, I),  p(z_i | z_i+1) = N(mu_p,i(z_i+1), sigma_p,i^2(z_i+1)),
                 p(x | z_1) = pi(x | MLP_0(z_1))
    bottom-up:   d_1 = MLP_1(x), d_i = MLP_i(d_i-1),  (mu_hat_i, sigma_hat_i) = Gaussian_i(d_i)
    inference:   q(z_L | x) = N(mu_hat_L, sigma_hat_L^2)
                 q(z_i | .) = N(mu_q, sigma_q^2),  sigma_q^2 = 1 / (sigma_hat^-2 + sigma_p^-2),
                 mu_q = (mu_hat sigma_hat^-2 + mu_p sigma_p^-2) sigma_q^2        (eq. 17-18)
    ```

    With `ladder=False` the same layers make the plain hierarchical VAE the paper compares
    against (Burda et al.'s two-layer IWAE architecture is one): the bottom-up pass is
    stochastic, `q(z_1 | x) = Gaussian_1(MLP_1(x))`, `q(z_i | z_i-1) = Gaussian_i(MLP_i(z_i-1))`,
    and the top-down pass gives the priors only.

    Train with KL warm-up (`tfdlgm.callbacks.KLWarmUp`) and, optionally, the
    importance-weighted bound (`objective={"name": "iwae", "num_samples": k}`).

    Args:
        latent_dims: tuple of ints, sizes of z_1 ... z_L. Defaults to `(64, 32, 16, 8, 4)`.
        hidden: tuple of ints, one width per stochastic layer: MLP_i (and the top-down MLP
            into layer i) has `layers_per_block` layers of `hidden[i]` units. Defaults to
            `(512, 256, 128, 64, 32)`.
        layers_per_block: int, dense layers in each MLP. Defaults to `2`.
        ladder: bool, the ladder merge (True) or the plain hierarchical VAE. Defaults to `True`.
        batch_norm: bool, batch normalisation in the deterministic layers. Defaults to `True`.
        activation: str. Defaults to `"leaky_relu"` (slope 0.1).
        **kwargs: `LatentModel` arguments `data_dim`, `likelihood`, `objective`, `seed`.
    """

    short_name = "lvae"

    def __init__(
        self,
        latent_dims=(64, 32, 16, 8, 4),
        hidden=(512, 256, 128, 64, 32),
        layers_per_block=2,
        ladder=True,
        batch_norm=True,
        activation="leaky_relu",
        **kwargs,
    ):
        super().__init__(latent_dims=latent_dims, **kwargs)
        hidden = validation.check_sizes(hidden, "hidden")
        if len(hidden) != len(self.latent_dims):
            raise ValueError(
                "`hidden` must give one width per stochastic layer "
                f"(len(latent_dims) = {len(self.latent_dims)}). Received: hidden={hidden!r}"
            )
        self.hidden = hidden
        self.layers_per_block = validation.check_positive_int(layers_per_block, "layers_per_block")
        self.ladder = validation.check_bool(ladder, "ladder")
        self.batch_norm = validation.check_bool(batch_norm, "batch_norm")
        self.activation = activation

        def block(width, name):
            return MLP((width,) * layers_per_block, activation, batch_norm, name=name)

        num_layers = len(self.latent_dims)
        self.bottom_up = [block(h, f"bottom_up_{i + 1}") for i, h in enumerate(hidden)]
        self.bottom_up_gaussians = [
            DiagonalGaussian(k, name=f"bottom_up_gaussian_{i + 1}")
            for i, k in enumerate(self.latent_dims)
        ]
        # top-down: from z_{i+1} to p(z_i | z_{i+1}) for i = 1 .. L-1, and from z_1 to x
        self.top_down = [block(hidden[i], f"top_down_{i + 1}") for i in range(num_layers - 1)]
        self.prior_gaussians = [
            DiagonalGaussian(self.latent_dims[i], name=f"prior_gaussian_{i + 1}")
            for i in range(num_layers - 1)
        ]
        self.decoder = block(hidden[0], "decoder")
        self.build()

    def build(self, input_shape=None):
        shape = (None, self.data_dim)
        for i, (mlp, gaussian) in enumerate(zip(self.bottom_up, self.bottom_up_gaussians)):
            mlp.build(shape)
            gaussian.build(mlp.compute_output_shape(shape))
            # ladder: the next block reads d_i; hierarchical VAE: it reads z_i
            shape = (None, self.hidden[i] if self.ladder else self.latent_dims[i])
        for i, (mlp, gaussian) in enumerate(zip(self.top_down, self.prior_gaussians)):
            mlp.build((None, self.latent_dims[i + 1]))
            gaussian.build((None, self.hidden[i]))
        self.decoder.build((None, self.latent_dims[0]))
        self.observation.build((None, self.hidden[0]))

    def _prior(self, i, upper_sample, training=False):
        """p(z_i | z_i+1) (0-based i < L-1), or N(0, I) for the top layer."""
        if i == len(self.latent_dims) - 1:
            return standard_normal(self.latent_dims[i], self.variable_dtype)
        return self.prior_gaussians[i](self.top_down[i](upper_sample, training=training))

    def infer(self, x, num_samples, seed_generator, training=False):
        if self.ladder:
            return self._infer_ladder(x, num_samples, seed_generator, training)
        return self._infer_hierarchical(x, num_samples, seed_generator, training)

    def _infer_ladder(self, x, num_samples, seed_generator, training):
        d, bottom_up = x, []
        for mlp, gaussian in zip(self.bottom_up, self.bottom_up_gaussians):
            d = mlp(d, training=training)
            bottom_up.append(gaussian(d))  # (mu_hat_i, sigma_hat_i), batch [B]
        top = len(self.latent_dims) - 1
        posterior = bottom_up[top]
        z = posterior.sample(num_samples, seed=tfp_seed(seed_generator))  # [S, B, K_L]
        latents = [LatentTrace(posterior, self._prior(top, None), z)]
        for i in reversed(range(top)):
            prior = self._prior(i, z, training)  # batch [S, B]
            posterior = precision_weighted_merge(bottom_up[i], prior)
            z = posterior.sample(seed=tfp_seed(seed_generator))  # [S, B, K_i]
            latents.insert(0, LatentTrace(posterior, prior, z))
        return Trace(latents, self.decode(z, training=training))

    def _infer_hierarchical(self, x, num_samples, seed_generator, training):
        samples, posteriors, below = [], [], x
        for i, (mlp, gaussian) in enumerate(zip(self.bottom_up, self.bottom_up_gaussians)):
            posterior = gaussian(mlp(below, training=training))
            shape = (num_samples,) if i == 0 else ()
            below = posterior.sample(shape, seed=tfp_seed(seed_generator))  # [S, B, K_i]
            posteriors.append(posterior)
            samples.append(below)
        upper = samples[1:] + [None]
        latents = [
            LatentTrace(q, self._prior(i, z_above, training), z)
            for i, (q, z, z_above) in enumerate(zip(posteriors, samples, upper))
        ]
        return Trace(latents, self.decode(samples[0], training=training))

    def decode(self, latents, training=False):
        """p(x | z_1); `latents` is z_1 or the list of samples, bottom first."""
        z_1 = latents[0] if isinstance(latents, (list, tuple)) else latents
        return self.observation(self.decoder(z_1, training=training))

    # -- densities at given latents (wake-sleep, score function, imputation) ---------------

    def sample_prior(self, num_examples, seed_generator):
        """Ancestral draws z_L ~ N(0, I), z_i ~ p(z_i | z_i+1): a list, bottom first."""
        top = len(self.latent_dims) - 1
        latents = [self._prior(top, None).sample(num_examples, seed=tfp_seed(seed_generator))]
        for i in reversed(range(top)):
            latents.insert(0, self._prior(i, latents[0]).sample(seed=tfp_seed(seed_generator)))
        return latents

    def prior_log_prob(self, latents, training=False):
        """sum_i log p(z_i | z_i+1) + log N(z_L; 0, I) at given latents."""
        upper = list(latents[1:]) + [None]
        return sum(
            self._prior(i, z_above, training).log_prob(z)
            for i, (z, z_above) in enumerate(zip(latents, upper))
        )

    def posterior_log_prob(self, x, latents, training=False):
        """sum_i log q(z_i | .) at given latents: the ladder merges the bottom-up Gaussians
        with p(z_i | z_i+1) at the given z_i+1; the hierarchical q reads the given z_i-1."""
        log_prob, below = 0.0, x
        d = x
        for i, (mlp, gaussian) in enumerate(zip(self.bottom_up, self.bottom_up_gaussians)):
            if self.ladder:
                d = mlp(d, training=training)
                posterior = gaussian(d)
                if i < len(self.latent_dims) - 1:
                    prior = self._prior(i, latents[i + 1], training)
                    posterior = precision_weighted_merge(posterior, prior)
            else:
                posterior = gaussian(mlp(below, training=training))
                below = latents[i]
            log_prob = log_prob + posterior.log_prob(latents[i])
        return log_prob

    def get_config(self):
        return {
            **super().get_config(),
            "hidden": self.hidden,
            "layers_per_block": self.layers_per_block,
            "ladder": self.ladder,
            "batch_norm": self.batch_norm,
            "activation": self.activation,
        }
