"""`LatentModel`: the machinery every model of the zoo shares.

A model file says only how its layers make an inference pass (`infer`) and a generative
pass (`decode`, `generate`); this class turns those into training through plain Keras
`compile`/`fit`/`evaluate` on every backend, the bounds (ELBO, L_k, the k = 5000
log-likelihood estimate), sampling, reconstruction and (de)serialisation.
"""

import math

import keras
import numpy as np
from keras import ops

from tfdlgm import objectives, validation
from tfdlgm.backend import StreamingLogMeanExp, tfp_seed
from tfdlgm.distributions import OBSERVATIONS, observation_layer

# Rows of [samples x examples] pushed through the decoder at once by the bound estimators.
_ROWS_PER_CHUNK = 50_000


class LatentModel(keras.Model):
    """Base class of latent variable models trained by a variational objective.

    Subclasses build their layers in `__init__`, then call `self.build()`, and implement:

    - `infer(x, num_samples, seed_generator, training)` -> `Trace` (see `tfdlgm.trace`);
    - `decode(latents, training)` -> p(x | latents) as a TFP distribution;
    - `generate(num_examples, seed_generator)` -> p(x | z) for z drawn from the prior;
    - `build(input_shape=None)` building every sublayer.

    Calling the model on a batch `x` `[B, D]` returns the per-example terms of its objective:
    a dict with `loss`, `elbo`, `reconstruction` and `kl_1 ... kl_L` (each `[B]`, in nats).
    `compile(optimizer=...)` needs no loss: the objective is a model argument.

    Args:
        latent_dims: tuple of positive ints, the size of each stochastic layer, bottom first.
        data_dim: int, the number of observed features. Defaults to `784` (MNIST).
        likelihood: `"bernoulli"`, `"gaussian"` (one learned scale per feature) or
            `"gaussian_per_example"`. Defaults to `"bernoulli"`.
        objective: `"elbo"`, `"iwae"`, an `objectives.Objective` or its config. Defaults to
            `"elbo"`.
        seed: int or None, seeds the model's own random stream.
    """

    def __init__(
        self,
        latent_dims,
        data_dim=784,
        likelihood="bernoulli",
        objective="elbo",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        latent_dims = tuple(latent_dims) if isinstance(latent_dims, (list, tuple)) else None
        if not latent_dims or not all(
            isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in latent_dims
        ):
            raise ValueError(
                "`latent_dims` must be a non-empty tuple of positive ints. "
                f"Received: latent_dims={latent_dims!r}"
            )
        if likelihood not in OBSERVATIONS:
            raise ValueError(
                f"`likelihood` must be one of {tuple(OBSERVATIONS)}. "
                f"Received: likelihood={likelihood!r}"
            )
        self.latent_dims = latent_dims
        self.data_dim = validation.check_positive_int(data_dim, "data_dim")
        self.likelihood = likelihood
        self.objective = objectives.get(objective)
        self.seed = validation.check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.observation = observation_layer(likelihood, self.data_dim)
        self.kl_weight = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="kl_weight"
        )
        self.elbo_tracker = keras.metrics.Mean(name="elbo")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_trackers = [keras.metrics.Mean(name=f"kl_{i + 1}") for i in range(len(latent_dims))]

    # -- what a model file implements ------------------------------------------------------

    def infer(self, x, num_samples, seed_generator, training=False):
        raise NotImplementedError

    def decode(self, latents, training=False):
        raise NotImplementedError

    def generate(self, num_examples, seed_generator):
        raise NotImplementedError

    # -- Keras training --------------------------------------------------------------------

    def call(self, x, training=False):
        trace = self.infer(x, self.objective.num_samples, self.seed_generator, training=training)
        terms = objectives.elbo_terms(trace, x)
        outputs = {
            "loss": self.objective.loss(trace, x, terms, ops.convert_to_tensor(self.kl_weight)),
            "elbo": terms["elbo"],
            "reconstruction": terms["reconstruction"],
        }
        outputs.update({f"kl_{i + 1}": kl for i, kl in enumerate(terms["kl"])})
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean per-example surrogate loss plus weight losses (e.g. a prior on weights)."""
        loss = ops.mean(y_pred["loss"])
        for weight_loss in self.losses:
            loss = loss + self._aggregate_additional_loss(weight_loss)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.elbo_tracker.update_state(y_pred["elbo"])
        self.reconstruction_tracker.update_state(y_pred["reconstruction"])
        for i, tracker in enumerate(self.kl_trackers):
            tracker.update_state(y_pred[f"kl_{i + 1}"])
        return self.get_metrics_result()

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`; array data is validated first (shape, dtype, support)."""
        return super().fit(self._check_if_array(x), *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate`: loss, ELBO, reconstruction and KL per layer (nats)."""
        return super().evaluate(self._check_if_array(x), *args, **kwargs)

    def _check_if_array(self, x):
        if isinstance(x, np.ndarray):
            return self._check_x(x)
        return x

    # -- bounds ----------------------------------------------------------------------------

    def elbo(self, x, num_samples=1, batch_size=1000, seed=None):
        """The evidence lower bound per example (K&W eq. 3; Rezende et al. eq. 13), nats.

        ```none
        ELBO(x) = E_q[log p(x | z)] - sum_l KL[q(z_l | .) || p(z_l | z_l+1)]
        ```

        Args:
            x: float array `[batch, data_dim]` in the likelihood's support.
            num_samples: int, Monte Carlo samples for the expectation. Defaults to `1`.
            batch_size: int, examples per pass. Defaults to `1000`.
            seed: int or None, for a reproducible estimate.

        Returns:
            `np.ndarray` `[batch]`.
        """
        x = self._check_x(x)
        num_samples = validation.check_positive_int(num_samples, "num_samples")
        batch_size = validation.check_positive_int(batch_size, "batch_size")
        generator = self._seed_generator(seed)
        out = []
        for batch in _batches(x, batch_size):
            trace = self.infer(batch, num_samples, generator)
            out.append(ops.convert_to_numpy(objectives.elbo_terms(trace, batch)["elbo"]))
        return np.concatenate(out)

    def iwae_bound(self, x, num_samples, batch_size=100, seed=None):
        """The importance-weighted bound L_k per example, k = `num_samples` (Burda et al. eq. 8).

        ```none
        L_k(x) = log (1/k) sum_s p(x, z_s) / q(z_s | x),    z_s ~ q(z | x)
        ```

        The k samples are drawn in chunks and combined by a streaming log-mean-exp, so memory
        does not grow with k.

        Returns:
            `np.ndarray` `[batch]`, nats.
        """
        x = self._check_x(x)
        num_samples = validation.check_positive_int(num_samples, "num_samples")
        batch_size = validation.check_positive_int(batch_size, "batch_size")
        generator = self._seed_generator(seed)
        chunk = max(1, min(num_samples, _ROWS_PER_CHUNK // batch_size))
        out = []
        for batch in _batches(x, batch_size):
            accumulator = StreamingLogMeanExp()
            for start in range(0, num_samples, chunk):
                trace = self.infer(batch, min(chunk, num_samples - start), generator)
                accumulator.update(objectives.log_importance_weights(trace, batch))
            out.append(ops.convert_to_numpy(accumulator.result()))
        return np.concatenate(out)

    def log_likelihood(self, x, num_samples=5000, batch_size=100, seed=None):
        """The importance-sampled estimate of log p(x): L_k with k = `num_samples`.

        The evaluation protocol's log-likelihood (Burda et al. 2015, sec. 5): k = 5000,
        computed in chunks in memory independent of k. It is a stochastic lower bound that
        tightens as k grows.

        Returns:
            `np.ndarray` `[batch]`, nats.
        """
        return self.iwae_bound(x, num_samples, batch_size=batch_size, seed=seed)

    # -- using the model -------------------------------------------------------------------

    def encode(self, x, seed=None):
        """The recognition distributions q(z_l | .) for each latent layer, bottom first.

        For layers whose posterior depends on samples of other layers, the distribution is
        the one of a single sample. Returns a list of TFP distributions, batch shape `[B]`.
        """
        x = self._check_x(x)
        trace = self.infer(x, 1, self._seed_generator(seed))
        return [
            layer.posterior[0] if len(layer.posterior.batch_shape) == 2 else layer.posterior
            for layer in trace.latents
        ]

    def sample(self, num_examples, seed=None, mean=False):
        """Ancestral samples x ~ p(x) (Rezende et al. sec. 2: one pass, no Markov chain).

        Args:
            num_examples: int, how many.
            seed: int or None.
            mean: bool, return E[x | z] (e.g. pixel probabilities) instead of a draw of x.

        Returns:
            `np.ndarray` `[num_examples, data_dim]`.
        """
        num_examples = validation.check_positive_int(num_examples, "num_examples")
        generator = self._seed_generator(seed)
        likelihood = self.generate(num_examples, generator)
        x = likelihood.mean() if mean else likelihood.sample(seed=tfp_seed(generator))
        return ops.convert_to_numpy(x)

    def reconstruct(self, x, seed=None):
        """E[x | z] with z ~ q(z | x): the model's reconstruction of x, `[batch, data_dim]`."""
        x = self._check_x(x)
        trace = self.infer(x, 1, self._seed_generator(seed))
        return ops.convert_to_numpy(trace.likelihood.mean()[0])

    # -- helpers ---------------------------------------------------------------------------

    @property
    def support(self):
        """The support of p(x | z): `"binary"` or `"real"`."""
        return self.observation.support

    def _check_x(self, x, name="x", allow_nan=False):
        return validation.check_data(
            x, self.data_dim, self.support, self.compute_dtype, name, allow_nan=allow_nan
        )

    def _seed_generator(self, seed):
        seed = validation.check_seed(seed)
        return self.seed_generator if seed is None else keras.random.SeedGenerator(seed)

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dims": self.latent_dims,
            "data_dim": self.data_dim,
            "likelihood": self.likelihood,
            "objective": self.objective.get_config(),
            "seed": self.seed,
        }


def _batches(x, batch_size):
    for start in range(0, math.ceil(len(x) / batch_size) * batch_size, batch_size):
        yield x[start : start + batch_size]
