"""Factor analysis: the linear-Gaussian latent model with an exact likelihood."""

import keras
import numpy as np
from keras import ops

from tfdlgm import validation
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
    closed forms (`exact_log_likelihood`, `exact_posterior`, `marginal`, and for incomplete
    data the observed entries' `exact_log_likelihood` and `exact_conditional` p(x_m | x_o))
    are the test bed of every estimator: ELBO <= L_k <= log p(x).

    Args:
        latent_dim: int, K. Defaults to `2`.
        data_dim: int, D. Defaults to `784`.
        covariance: the recognition covariance, `"diagonal"` or `"rank_one"`.
        **kwargs: `LatentModel` arguments `objective`, `seed`.
    """

    short_name = "fa"
    standard_normal_prior = True

    def __init__(self, latent_dim=2, data_dim=784, covariance="diagonal", **kwargs):
        if kwargs.get("likelihood", "gaussian") != "gaussian":
            raise ValueError(
                "`likelihood` of FactorAnalysis is always 'gaussian' (x = W z + mu + noise); "
                f"use VAE or DLGM for another. Received: likelihood={kwargs['likelihood']!r}"
            )
        kwargs.pop("likelihood", None)
        latent_dim = validation.check_positive_int(latent_dim, "latent_dim")
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
        prior = standard_normal(self.latent_dim, self.variable_dtype)
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

    def exact_log_likelihood(self, x, mask=None):
        """log p(x) in closed form per example, `np.ndarray` `[batch]`.

        With missing entries (`mask` False, or NaN in `x`), log p(x_o), the marginal density
        of each row's observed entries, N(x_o; mu_o, W_o W_o^T + Psi_o) (`_observed_posterior`).
        """
        if mask is None and not np.isnan(validation.to_numpy(x)).any():
            return ops.convert_to_numpy(self.marginal().log_prob(self._check_x(x)))
        return self._observed_posterior(x, mask)[-1]

    def exact_conditional(self, x, mask=None):
        """p(x_m | x_o) in closed form: its mean and variance per entry, float64.

        ```none
        E[x_m | x_o] = mu_m + W_m E[z | x_o],   Var[x_m | x_o] = diag(W_m M_o^-1 W_m^T) + psi_m
        ```

        (`_observed_posterior`). Args as `LatentModel.elbo`'s `x` and `mask`.

        Returns:
            `(mean, variance)`, `np.ndarray`s `[batch, D]`: x and 0 at observed entries.
        """
        x, observed, loc, covariance, _ = self._observed_posterior(x, mask)
        w, mu, psi = self._parameters()
        mean = mu + loc @ w.T
        variance = np.einsum("dk,bkl,dl->bd", w, covariance, w) + psi
        return np.where(observed, x, mean), np.where(observed, 0.0, variance)

    def _parameters(self):
        """W, mu, psi as float64 NumPy arrays."""
        return (
            ops.convert_to_numpy(value).astype(np.float64)
            for value in (self.loadings, self.mean, self.noise_variance)
        )

    def _observed_posterior(self, x, mask):
        """p(z | x_o) and log p(x_o) for each row's observed entries o, float64:

        ```none
        M_o = I + W_o^T Psi_o^-1 W_o,   h = W_o^T Psi_o^-1 (x_o - mu_o)
        p(z | x_o) = N(M_o^-1 h, M_o^-1)
        log p(x_o) = -(|o| log 2 pi + sum_o log psi + log det M_o
                       + r^T Psi_o^-1 r - h^T M_o^-1 h) / 2,   r = x_o - mu_o   (Woodbury)
        ```

        Returns:
            `(x, observed, loc [B, K], covariance [B, K, K], log_density [B])`.
        """
        x = validation.check_incomplete_data(x, mask, self.data_dim, self.support, "float64")
        observed = ~np.isnan(x)
        w, mu, psi = self._parameters()
        precision = observed / psi  # Psi_o^-1, 0 at missing entries
        residual = np.where(observed, x - mu, 0.0)
        m = np.eye(self.latent_dim) + np.einsum("dk,bd,dl->bkl", w, precision, w)
        h = (precision * residual) @ w  # [B, K]
        covariance = np.linalg.inv(m)
        loc = np.einsum("bkl,bl->bk", covariance, h)
        log_density = -0.5 * (
            observed.sum(1) * np.log(2 * np.pi)
            + np.sum(np.where(observed, np.log(psi), 0.0), 1)
            + np.linalg.slogdet(m)[1]
            + np.sum(precision * residual**2, 1)
            - np.sum(h * loc, 1)
        )
        return x, observed, loc, covariance, log_density

    def exact_posterior(self, x):
        """p(z | x) = N(M^-1 W^T Psi^-1 (x - mu), M^-1) as a full-covariance TFP Gaussian."""
        x = self._check_x(x)
        w_over_psi = self.loadings / ops.expand_dims(self.noise_variance, -1)  # Psi^-1 W, [D, K]
        precision = ops.eye(self.latent_dim) + ops.matmul(ops.transpose(self.loadings), w_over_psi)
        covariance = ops.inv(precision)
        loc = ops.matmul(ops.matmul(x - self.mean, w_over_psi), covariance)  # [B, K]
        return tfd.MultivariateNormalTriL(loc=loc, scale_tril=ops.cholesky(covariance))

    def fit_em(self, x, max_iterations=500, tolerance=1e-6):
        """Fits W, mu and Psi by maximum likelihood with EM (Rubin & Thayer 1982; Ghahramani &
        Hinton 1996), then sets the amortised q(z | x) to the exact posterior's mean and
        marginal variances (a diagonal recognition model only).

        ```none
        S = cov(x),  beta = M^-1 W^T Psi^-1,  M = I + W^T Psi^-1 W
        E:  E[z | x] = beta (x - mu),   E[z z^T | x] = M^-1 + E[z | x] E[z | x]^T
        M:  W <- S beta^T (M^-1 + beta S beta^T)^-1,   Psi <- diag(S - W beta S)
        ```

        with mu the sample mean, in float64, starting from the principal components. Each
        iteration raises the exact log-likelihood; it stops when the mean log-likelihood per
        example gains less than `tolerance` nats. Psi is floored at the observation layer's
        `min_scale`^2.

        Args:
            x: float array `[N, D]`, the training data.
            max_iterations: int, the most EM iterations. Defaults to `500`.
            tolerance: float, the gain (nats per example) below which it stops. Defaults
                to `1e-6`.

        Returns:
            A list of float: the mean exact log-likelihood per example after each iteration.
        """
        x = np.asarray(self._check_x(x), dtype=np.float64)
        max_iterations = validation.check_positive_int(max_iterations, "max_iterations")
        num_examples, data_dim = x.shape
        k = self.latent_dim
        if num_examples < 2:
            raise ValueError(f"`x` must hold at least 2 examples. Received: {num_examples}")
        mu = x.mean(0)
        centred = x - mu
        covariance = centred.T @ centred / num_examples  # S, [D, D]
        floor = (self.observation.min_scale * 1.01) ** 2
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        top = np.argsort(eigenvalues)[::-1][:k]
        noise = max(float(np.mean(np.delete(eigenvalues, top))), floor)
        w = eigenvectors[:, top] * np.sqrt(np.maximum(eigenvalues[top] - noise, 1e-6))  # [D, K]
        psi = np.maximum(np.diag(covariance) - np.sum(w**2, 1), floor)
        history = []
        for _ in range(max_iterations):
            w_over_psi = w / psi[:, None]
            posterior_covariance = np.linalg.inv(np.eye(k) + w.T @ w_over_psi)  # M^-1
            beta = posterior_covariance @ w_over_psi.T  # [K, D]
            s_beta = covariance @ beta.T  # S beta^T, [D, K]
            w = s_beta @ np.linalg.inv(posterior_covariance + beta @ s_beta)
            psi = np.maximum(np.diag(covariance) - np.sum(w * s_beta, 1), floor)
            history.append(_mean_gaussian_log_density(covariance, w, psi))
            if len(history) > 1 and history[-1] - history[-2] < tolerance:
                break
        self.set_parameters(w, mu, psi)
        return history

    def set_parameters(self, loadings, mean, noise_variance):
        """Sets the model to W, mu and Psi and, for a diagonal q, sets q(z | x) to the exact
        posterior's mean map and marginal variances (a diagonal q cannot hold the posterior's
        correlations).

        Args:
            loadings: float array `[D, K]`, W.
            mean: float array `[D]`, mu.
            noise_variance: float array `[D]`, psi = diag(Psi), each above the observation
                layer's `min_scale`^2.
        """
        w, mu, psi = (np.asarray(v, dtype=np.float64) for v in (loadings, mean, noise_variance))
        d, k = self.data_dim, self.latent_dim
        if w.shape != (d, k) or mu.shape != (d,) or psi.shape != (d,):
            raise ValueError(
                f"`loadings`, `mean` and `noise_variance` must have shapes {(d, k)}, {(d,)} and "
                f"{(d,)}. Received: {w.shape}, {mu.shape}, {psi.shape}"
            )
        min_scale = self.observation.min_scale
        if not np.all(psi > min_scale**2):
            raise ValueError(
                f"`noise_variance` must exceed min_scale^2 = {min_scale**2:g} everywhere. "
                f"Received: minimum {psi.min():g}"
            )
        self.observation.loc.kernel.assign(w.T.astype("float32"))
        self.observation.loc.bias.assign(mu.astype("float32"))
        self.observation.raw_scale.assign(_inverse_softplus(np.sqrt(psi) - min_scale))
        if self.covariance != "diagonal":
            return
        w_over_psi = w / psi[:, None]
        posterior_covariance = np.linalg.inv(np.eye(self.latent_dim) + w.T @ w_over_psi)
        beta = posterior_covariance @ w_over_psi.T  # E[z | x] = beta (x - mu)
        posterior = self.posterior
        posterior.loc.kernel.assign(beta.T.astype("float32"))
        posterior.loc.bias.assign((-beta @ mu).astype("float32"))
        posterior.raw_scale.kernel.assign(np.zeros(posterior.raw_scale.kernel.shape, "float32"))
        marginal_scale = np.sqrt(np.diag(posterior_covariance)) - posterior.min_scale
        posterior.raw_scale.bias.assign(_inverse_softplus(marginal_scale))

    def get_config(self):
        config = super().get_config()
        for key in ("latent_dims", "likelihood"):
            del config[key]
        return {**config, "latent_dim": self.latent_dim, "covariance": self.covariance}


def _mean_gaussian_log_density(covariance, w, psi):
    """The mean over the data of log N(x; mu, W W^T + Psi), from the data's covariance S:
    -(D log 2 pi + log det C + tr(C^-1 S)) / 2 with C = W W^T + Psi."""
    model_covariance = w @ w.T + np.diag(psi)
    _, log_det = np.linalg.slogdet(model_covariance)
    trace = np.trace(np.linalg.solve(model_covariance, covariance))
    return float(-0.5 * (len(psi) * np.log(2 * np.pi) + log_det + trace))


def _inverse_softplus(y):
    """softplus^-1(y) = log(exp(y) - 1), for y > 0, as float32."""
    y = np.asarray(y, dtype=np.float64)
    return (y + np.log(-np.expm1(-y))).astype("float32")
