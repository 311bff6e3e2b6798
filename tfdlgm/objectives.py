"""Training objectives and the bounds they are built from.

Every objective is a surrogate loss: a per-example tensor whose gradient is the estimator
it names, so `LatentModel.compute_loss` averages it and Keras' own train step serves every
backend. Objectives read a `Trace` (see `tfdlgm.trace`) and are written once for all models.

```none
log w_s   = log p(x | z_s) + sum_l [log p(z_l,s | z_l+1,s) - log q(z_l,s | .)]     z_s ~ q
ELBO      = E_q[log p(x | z)] - sum_l KL[q(z_l | .) || p(z_l | z_l+1)]              (K&W eq. 3)
L_k       = E[log (1/k) sum_s w_s]                                   (Burda et al. eq. 8)
ELBO = L_1 <= L_k <= L_k' <= log p(x)   for k <= k'                (Burda et al. thm. 1)
```
"""

from keras import ops

from tfdlgm.backend import log_mean_exp, tfd


def reconstruction(trace, x):
    """log p(x | z_s) for each sample, `[S, B]`."""
    return trace.likelihood.log_prob(x)


def kl_divergence(layer, sample_shape):
    """KL[q(z_l | .) || p(z_l | .)] per sample, `[S, B]`.

    Analytic (`tfd.kl_divergence`) where TFP has it for the pair, else the one-sample Monte
    Carlo estimate `log q(z) - log p(z)` at the layer's own samples.
    """
    try:
        kl = tfd.kl_divergence(layer.posterior, layer.prior)
    except NotImplementedError:
        kl = layer.posterior.log_prob(layer.sample) - layer.prior.log_prob(layer.sample)
    return ops.broadcast_to(kl, sample_shape)


def log_importance_weights(trace, x, kl_weight=1.0):
    """log w_s = log p(x | z_s) + kl_weight * sum_l [log p(z_l,s) - log q(z_l,s)], `[S, B]`.

    With `kl_weight = 1` these are the importance weights of Burda et al. (eq. 8); a smaller
    weight tempers the latent terms during KL warm-up.
    """
    log_w = reconstruction(trace, x)
    for layer in trace.latents:
        log_w = log_w + kl_weight * (
            layer.prior.log_prob(layer.sample) - layer.posterior.log_prob(layer.sample)
        )
    return log_w


def elbo_terms(trace, x):
    """The ELBO and its parts per example, averaged over the trace's S samples.

    Returns:
        dict with `reconstruction` `[B]` (E_q log p(x|z)), `kl` (list of `[B]`, one per
        latent layer, bottom first) and `elbo` `[B]` = reconstruction - sum(kl).
    """
    rec = reconstruction(trace, x)  # [S, B]
    kls = [ops.mean(kl_divergence(layer, ops.shape(rec)), axis=0) for layer in trace.latents]
    rec = ops.mean(rec, axis=0)
    return {"reconstruction": rec, "kl": kls, "elbo": rec - sum(kls)}


def iwae_bound(trace, x):
    """L_k = log (1/k) sum_s w_s per example, `[B]`, over the trace's k = S samples."""
    return log_mean_exp(log_importance_weights(trace, x), axis=0)


class Objective:
    """A training objective: `loss(trace, x, terms, kl_weight)` is a per-example surrogate.

    Attributes:
        num_samples: int, samples of the latents per example in each training step.
    """

    name = None

    def __init__(self, num_samples=1):
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(
                f"`num_samples` must be a positive int. Received: num_samples={num_samples!r}"
            )
        self.num_samples = num_samples

    def loss(self, trace, x, terms, kl_weight):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "num_samples": self.num_samples}

    def __repr__(self):
        return f"{type(self).__name__}(num_samples={self.num_samples})"


class ELBO(Objective):
    """Negative evidence lower bound with analytic KL where it exists (K&W eq. 10;
    Rezende et al. eq. 13 without the parameter prior, which models add as a weight loss).

    ```none
    loss = -(1/S sum_s log p(x | z_s) - beta sum_l KL_l),   beta = kl_weight (warm-up)
    ```
    """

    name = "elbo"

    def loss(self, trace, x, terms, kl_weight):
        return -(terms["reconstruction"] - kl_weight * sum(terms["kl"]))


class ImportanceWeighted(Objective):
    """Negative importance-weighted bound, `-L_k` with k = `num_samples` (Burda et al. eq. 8).

    Its gradient is the importance-weighted reparameterised estimator (Burda et al. eq. 13).
    Defaults to k = 5.
    """

    name = "iwae"

    def __init__(self, num_samples=5):
        super().__init__(num_samples)

    def loss(self, trace, x, terms, kl_weight):
        return -log_mean_exp(log_importance_weights(trace, x, kl_weight), axis=0)


OBJECTIVES = {cls.name: cls for cls in (ELBO, ImportanceWeighted)}


def get(identifier):
    """An `Objective` from a name (`"elbo"`, `"iwae"`), a config dict or an instance."""
    if isinstance(identifier, Objective):
        return identifier
    config = {"name": identifier} if isinstance(identifier, str) else identifier
    if isinstance(config, dict) and config.get("name") in OBJECTIVES:
        config = dict(config)
        return OBJECTIVES[config.pop("name")](**config)
    raise ValueError(
        f"`objective` must be one of {tuple(OBJECTIVES)}, a config dict with one of those "
        f"names, or an Objective. Received: objective={identifier!r}"
    )
