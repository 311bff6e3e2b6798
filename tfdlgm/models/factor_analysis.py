"""Factor analysis: the linear-Gaussian latent model with an exact likelihood."""

import keras
from keras import ops

from tfdlgm.backend import tfd, tfp_seed
from tfdlgm.distributions import posterior_layer, standard_normal
from tfdlgm.models.base import LatentModel
from tfdlgm.trace import LatentTrace, Trace


@keras.saving.register_keras_serializable(package="tfdlgm")
class FactorAnalysis(LatentModel):
    """Factor analysis, a one-layer linear DLGM whose log-likelihood is exact.

    ```none
    z ~ N(0, I_K),   x = W z + mu + eps,   eps ~ N(0, Psi),  Psi = diag(psi)
    p(x) = N(x; mu, W W^T + Psi)
    p(z | x) = N(M^-1 W^T Psi^-1 (x - mu), M^-1),   M = I + W^T Psi^-1 W
    ```

    It trains like every other model (an amortised linear q(z | x), through `fit`), and its
    closed forms (`exact_log_likelihood`, `exact_posterior`, `marginal`) are the test bed of
    every estimator: ELBO <= L_k <= log p(x).

    Args:
        latent_dim: int, K. Defaults to `2`.
        data_dim: int, D. Defaults to `784`.
        covariance: the recognition covariance, `"diagonal"` or `"rank_one"`.
        **kwargs: `LatentModel` arguments `objective`, `seed`.
    """

    standard_normal_prior = True

    def __init__(self, latent_dim=2, data_dim=784, covariance="diagonal", **kwargs):
        if kwargs.get("likelihood", "gaussian") != "gaussian":
            raise ValueError(
                "`likelihood` of FactorAnalysis is always 'gaussian' (x = W z + mu + noise); "
                f"use VAE or DLGM for another. Received: likelihood={kwargs['likelihood']!r}"
            )
        kwargs.pop("likelihood", None)
        super().__init__(
            latent_dims=(latent_dim,), data_dim=data_dim, likelihood="gaussian", **kwargs
        )
        self.latent_dim = latent_dim
        self.covariance = covariance
        self.posterior = posterior_layer(covariance, latent_dim, name="posterior")
        self.build()

    def build(self, input_shape=None):
        self.posterior.build((None, self.data_dim))
        self.observation.build((None, self.latent_dim))

    def infer(self, x, num_samples, seed_generator, training=False):
        posterior = self.posterior(x)
        z = posterior.sample(num_samples, seed=tfp_seed(seed_generator))  # [S, B, K]
        prior = standard_normal(self.latent_dim, self.compute_dtype)
        return Trace([LatentTrace(posterior, prior, z)], self.decode(z))

    def decode(self, latents, training=False):
        return self.observation(latents)

    # -- closed forms ----------------------------------------------------------------------

    @property
    def loadings(self):
        """W, `[D, K]`."""
        return ops.transpose(self.observation.loc.kernel)

    @property
    def mean(self):
        """mu, `[D]`."""
        return ops.convert_to_tensor(self.observation.loc.bias)

    @property
    def noise_variance(self):
        """psi, the diagonal of Psi, `[D]`."""
        return ops.square(self.observation.feature_scale())

    def marginal(self):
        """p(x) = N(mu, W W^T + Psi) as a TFP distribution (O(D K^2) log_prob, Woodbury)."""
        return tfd.MultivariateNormalDiagPlusLowRankCovariance(
            loc=self.mean, cov_diag_factor=self.noise_variance, cov_perturb_factor=self.loadings
        )

    def exact_log_likelihood(self, x):
        """log p(x) in closed form per example, `np.ndarray` `[batch]`."""
        return ops.convert_to_numpy(self.marginal().log_prob(self._check_x(x)))

    def exact_posterior(self, x):
        """p(z | x) = N(M^-1 W^T Psi^-1 (x - mu), M^-1) as a full-covariance TFP Gaussian."""
        x = self._check_x(x)
        w_over_psi = self.loadings / ops.expand_dims(self.noise_variance, -1)  # Psi^-1 W, [D, K]
        precision = ops.eye(self.latent_dim) + ops.matmul(ops.transpose(self.loadings), w_over_psi)
        covariance = ops.inv(precision)
        loc = ops.matmul(ops.matmul(x - self.mean, w_over_psi), covariance)  # [B, K]
        return tfd.MultivariateNormalTriL(loc=loc, scale_tril=ops.cholesky(covariance))

    def get_config(self):
        config = super().get_config()
        for key in ("latent_dims", "likelihood"):
            del config[key]
        return {**config, "latent_dim": self.latent_dim, "covariance": self.covariance}
