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

Incomplete data (Mattei & Frellsen 2019, MIWAE). When x has missing entries (NaN), the model
infers from x with its missing entries set to 0 and the trace carries the mask of observed
entries (`Trace.observed`); log p(x | z) then sums over the observed entries only, so every bound
above, with x_o for x, bounds log p(x_o), the marginal of the observed entries:

```none
log w_s = sum_{j observed} log p(x_j | z_s) + log p(z_s) - log q(z_s | x_o),   z_s ~ q(z | x_o)
L_k(x_o) = E[log (1/k) sum_s w_s] <= log p(x_o)                       (Mattei & Frellsen eq. 4)
```

The observation models factorise over features given z, so dropping an entry's factor
marginalises it out exactly. `MIWAE` trains on such data.

Objectives: `ELBO` and `ImportanceWeighted` (reparameterised gradients), `MIWAE` (the
importance-weighted bound of the observed entries), and the two baselines
Rezende et al. (2014) compare against: `WakeSleep` (Hinton et al. 1995) and `ScoreFunction`
(REINFORCE with an optional running-mean control variate). The last two score the model at
latents other than the trace's (`LatentModel.joint_log_prob`, `posterior_log_prob`, `dream`),
so `Objective.loss` receives the model.
"""

from keras import ops

from tfdlgm.backend import global_mean, log_mean_exp, tfd
from tfdlgm.layers import normalises_by_batch


def zero_filled(x):
    """`(x with NaN entries set to 0, the bool mask of observed (non-NaN) entries)`.

    What the encoder sees of incomplete data (MIWAE's zero imputation): for standardised
    features 0 is the feature's mean.
    """
    observed = ops.logical_not(ops.isnan(x))
    return ops.where(observed, x, ops.zeros_like(x)), observed


def reconstruction(trace, x):
    """log p(x | z_s) for each sample, `[S, B]`: over the observed entries only when the trace
    has a mask (`Trace.observed`), the sum of the per-feature log-densities of the observation
    model (an `Independent` distribution) where the mask is True."""
    if trace.observed is None:
        return trace.likelihood.log_prob(x)
    per_feature = trace.likelihood.distribution.log_prob(x)  # [S, B, D]
    return ops.sum(ops.where(trace.observed, per_feature, ops.zeros_like(per_feature)), axis=-1)


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
    """A training objective: `loss(trace, x, terms, kl_weight, model, training)` is a
    per-example surrogate loss, `[B]`.

    `LatentModel.call` passes the inference pass `trace` over the batch `x`, its ELBO `terms`
    (`elbo_terms`), the KL warm-up weight, the model itself (for objectives that score the
    model at other latents or dream from it) and whether this is a training step. An
    objective with state (e.g. a running baseline) creates its variables on the model in
    `build(model)`, which `LatentModel.__init__` calls; such an objective belongs to one model.

    Attributes:
        num_samples: int, samples of the latents per example in each training step.
    """

    name = None
    # Whether `fit` may give it data with missing entries (NaN): the bound it maximises is then
    # the bound of the observed entries (`Trace.observed`).
    accepts_missing = False

    def __init__(self, num_samples=1):
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(
                f"`num_samples` must be a positive int. Received: num_samples={num_samples!r}"
            )
        self.num_samples = num_samples

    def build(self, model):
        """Creates the objective's variables on `model`, if it has any. Defaults to none."""

    def loss(self, trace, x, terms, kl_weight, model=None, training=False):
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

    def loss(self, trace, x, terms, kl_weight, model=None, training=False):
        return -(terms["reconstruction"] - kl_weight * sum(terms["kl"]))


# The gradient estimators of `ImportanceWeighted`.
GRADIENTS = ("standard", "dreg")


class ImportanceWeighted(Objective):
    """Negative importance-weighted bound, `-L_k` with k = `num_samples` (Burda et al. eq. 8),
    with one of two gradient estimators of it.

    `gradient="standard"`: the importance-weighted reparameterised estimator (Burda et al.
    eq. 13) for every weight. `gradient="dreg"`: the doubly reparameterised estimator (DReG;
    Tucker, Lawson, Gu & Maddison 2019, sec. 3), which removes the score-function term of the
    inference network's gradient by a second reparameterisation and keeps the expected gradient:

    ```none
    w_s = p(x, z_s) / q(z_s | x),  w~_s = w_s / sum_t w_t,  z_s = z(eps_s; phi)   (s = 1 .. k)
    standard:  grad L_k = sum_s w~_s [d log w_s / d z_s  d z_s / d(theta, phi)
                                      + grad_theta log p(x, z_s) - grad_phi log q_phi(z_s | x)]
    DReG:      grad_theta L_k = sum_s w~_s   grad_theta log p(x, z_s)
               grad_phi   L_k = sum_s w~_s^2 d log w_s / d z_s  d z_s / d phi     (Tucker eq. 5)
    ```

    where `d log w_s / d z_s` is taken with the weights of q held fixed (a stop-gradient on
    the variational parameters inside log q): E[sum_s w~_s grad_phi log q_phi(z_s)] =
    E[sum_s (w~_s - w~_s^2) d log w_s / d z_s d z_s / d phi] by the reparameterisation of z_s.
    With the KL warm-up weight beta (`log w = log p(x | z) + beta log [p(z) / q(z)]`) the same
    identity gives the path weight `w~_s (1 - beta + beta w~_s)`, which is w~_s^2 at beta = 1.

    The surrogate scores the samples again at `z~_s`, equal to `z_s` in value but passing
    `(1 - beta + beta w~_s)` times the gradient to `z_s`:

    ```none
    surrogate = sum_s sg(w~_s) [log p(x | z~_s) + beta log p(z~_s)
                                - beta (log q(z~_s | x) - log q(sg(z_s) | x))]
    ```

    whose gradient for a weight psi is sum_s w~_s grad_psi log p(x, z_s) at fixed z plus the
    path terms above (`sg` is stop-gradient; the two log q cancel but for the path through z):
    the generative networks get the standard gradient, the inference network DReG's. A weight
    in both (the ladder VAE's top-down networks, which give the priors and the posteriors'
    merge) gets the sum, which is the same identity applied to it, so the estimator stays
    unbiased for every weight. A hierarchical q (the ladder VAE's, or the two-layer IWAE's
    q(z_2 | z_1)) is scored through `model.posterior_log_prob` at the given latents, so
    `d log q / d z` includes q's dependence on the samples it is conditioned on. It costs a
    second pass of the decoder over the k samples (about a third more per step). Batch
    normalisation in training mode couples the samples of a batch through its statistics,
    which the identity does not allow, so DReG refuses a model that normalises by batch
    statistics; frozen (`tfdlgm.layers.freeze_batch_norm`), each sample is its own again.

    Args:
        num_samples: int, k. Defaults to `5`.
        gradient: `"standard"` or `"dreg"`. Defaults to `"standard"`.
    """

    name = "iwae"

    def __init__(self, num_samples=5, gradient="standard"):
        super().__init__(num_samples)
        if gradient not in GRADIENTS:
            raise ValueError(
                f"`gradient` must be one of {GRADIENTS}. Received: gradient={gradient!r}"
            )
        self.gradient = gradient

    def loss(self, trace, x, terms, kl_weight, model=None, training=False):
        bound = log_mean_exp(log_importance_weights(trace, x, kl_weight), axis=0)  # [B]
        if self.gradient == "standard":
            return -bound
        surrogate = self._doubly_reparameterised(trace, x, kl_weight, model, training)
        return -(ops.stop_gradient(bound) + surrogate - ops.stop_gradient(surrogate))

    def _doubly_reparameterised(self, trace, x, kl_weight, model, training):
        """The DReG surrogate (class docstring), `[B]`; its value is not L_k."""
        if training and normalises_by_batch(model):
            raise ValueError(
                "`gradient='dreg'` needs each importance weight to depend on its own sample "
                f"only, and {type(model).__name__} with batch_norm=True couples the samples of "
                "a batch through the normalisation's batch statistics in training. Freeze them "
                "first (`tfdlgm.layers.freeze_batch_norm(model)`, then compile), or use "
                "gradient='standard' or a model with batch_norm=False."
            )
        log_w = ops.stop_gradient(log_importance_weights(trace, x, kl_weight))  # [S, B]
        weights = ops.softmax(log_w, axis=0)  # w~, [S, B]
        scale = ops.expand_dims(1.0 - kl_weight + kl_weight * weights, -1)  # [S, B, 1]
        samples = [layer.sample for layer in trace.latents]
        fixed = _stop_gradients(samples)
        scaled = [z0 + scale * (z - z0) for z, z0 in zip(samples, fixed, strict=True)]
        log_p = model.joint_log_prob(x, scaled, training=training) - (
            1.0 - kl_weight
        ) * model.prior_log_prob(scaled, training=training)
        log_q = recognition_log_prob(model, trace, x, scaled, training) - recognition_log_prob(
            model, trace, x, fixed, training
        )
        return ops.sum(weights * (log_p - kl_weight * log_q), axis=0)

    def get_config(self):
        """The config; `gradient` appears only where it is not the default `"standard"`, so
        the config of a model on Burda et al.'s estimator is `{"name", "num_samples"}`."""
        config = super().get_config()
        return config if self.gradient == "standard" else {**config, "gradient": self.gradient}

    def __repr__(self):
        return f"ImportanceWeighted(num_samples={self.num_samples}, gradient={self.gradient!r})"


class MIWAE(ImportanceWeighted):
    """Negative missing-data importance-weighted bound (Mattei & Frellsen 2019, eq. 4).

    ```none
    loss = -log (1/k) sum_s p(x_o | z_s) p(z_s) / q(z_s | x_o),   z_s ~ q(z | x_o)
    ```

    with k = `num_samples` and x_o the observed entries: `fit` trains on data whose missing
    entries are NaN (the encoder sees them as 0, log p(x | z) sums over the observed entries
    only; see the module docstring). On complete data it is the IWAE objective. Defaults to
    k = 5 (the paper uses 20 on UCI tables).
    """

    name = "miwae"
    accepts_missing = True


def posterior_log_prob(trace, latents):
    """log q(z | x) = sum_l log q(z_l | x) at given latents under the trace's posteriors.

    Scores latents other than the trace's own samples, e.g. `stop_gradient` of them, so the
    result carries gradients to the recognition weights only through q's parameters. It
    needs posteriors that depend on x alone (batch shape `[B]`: VAE, DLGM, factor
    analysis); a posterior that depends on samples of other layers would be scored at the
    wrong condition, so that raises.

    Args:
        trace: `Trace` over a batch `[B, D]`.
        latents: list of `[..., B, K_l]` tensors, bottom layer first.

    Returns:
        `[..., B]`.
    """
    total = 0.0
    for i, (layer, z) in enumerate(zip(trace.latents, latents, strict=True)):
        if len(layer.posterior.batch_shape) != 1:
            raise NotImplementedError(
                f"q(z_{i + 1} | .) depends on samples of other layers (batch shape "
                f"{layer.posterior.batch_shape}), so it cannot be scored at given latents "
                "from the trace. Override `posterior_log_prob` in the model."
            )
        total = total + layer.posterior.log_prob(z)
    return total


def recognition_log_prob(model, trace, x, latents, training=False):
    """log q(z | x) at given latents, `[..., B]`: from the trace's posteriors where each
    depends on x only (batch shape `[B]`), else from the model's `posterior_log_prob`, which
    conditions each layer on the given latents (a hierarchical or ladder q)."""
    if all(len(layer.posterior.batch_shape) == 1 for layer in trace.latents):
        return posterior_log_prob(trace, latents)
    return model.posterior_log_prob(x, latents, training=training)


def _stop_gradients(latents):
    return [ops.stop_gradient(z) for z in latents]


class WakeSleep(Objective):
    """The wake-sleep algorithm (Hinton et al. 1995), a baseline of Rezende et al. (sec. 6).

    One surrogate loss per example whose two terms touch disjoint sets of weights, so one
    optimiser step is a simultaneous wake and sleep update:

    ```none
    wake  = -(1/S) sum_s log p(x, z_s)     z_s = sg(sample of q(z | x))     generative weights
    sleep = -log q(z' | x')                (z', x') = sg(dream),  z' ~ p(z),  x' ~ p(x | z')
                                                                             recognition weights
    loss  = wake + sleep,   one dream per example of the batch
    ```

    where `sg` is `stop_gradient`. The wake phase fits p to the recognition model's
    explanations of the data; the sleep phase fits q to the generative model's own
    "dreams", minimising KL[p(z | x') || q(z | x')] averaged over dreams rather than the
    ELBO's KL[q || p]. It needs a model with `joint_log_prob`, `dream` and
    `posterior_log_prob` (every `LatentModel` with N(0, I) priors has them). The KL warm-up
    weight is ignored.
    """

    name = "wake_sleep"

    def wake_loss(self, trace, x, model, training=False):
        """-(1/S) sum_s log p(x, sg(z_s)), `[B]`: gradients to generative weights only."""
        latents = _stop_gradients(layer.sample for layer in trace.latents)
        return -ops.mean(model.joint_log_prob(x, latents, training=training), axis=0)

    def sleep_loss(self, model, num_examples, training=False):
        """-log q(z' | x') on `num_examples` dreams, `[num_examples]`: recognition weights only."""
        latents, x = model.dream(num_examples, model.seed_generator)
        x = ops.stop_gradient(x)
        return -model.posterior_log_prob(x, _stop_gradients(latents), training=training)

    def loss(self, trace, x, terms, kl_weight, model=None, training=False):
        return self.wake_loss(trace, x, model, training) + self.sleep_loss(
            model, ops.shape(x)[0], training
        )


class ScoreFunction(Objective):
    """Negative ELBO through the score-function (REINFORCE) estimator (Williams 1992),
    optionally with a running-mean baseline as control variate (Mnih & Gregor 2014, sec.
    3.1): the estimator the reparameterised one of Rezende et al. (sec. 3, eq. 6-9) beats.

    z is sampled from q with no path derivative; the surrogate's gradient is

    ```none
    f(z)      = log p(x, z) - log q(z | x)          evaluated at z = sg(z_s),  z_s ~ q(z | x)
    grad      = (1/S) sum_s [(f(z_s) - b) grad log q(z_s | x) + grad f(z_s)]
    surrogate = -(1/S) sum_s [sg(f_s - b) (log q_s - sg(log q_s)) + f_s]
    ```

    so the surrogate's value is the negative ELBO estimate and its expected gradient that of
    the ELBO, for any b independent of z_s. With `control_variate=True`, b is a scalar running
    mean of f over training batches, held in two non-trainable variables of the model
    (`score_baseline`, `score_baseline_steps`) and updated after each training step's use
    (never in evaluation):

    ```none
    b_t = b_{t-1} + max(1 - decay, 1/t) (mean_batch,s f - b_{t-1})
    ```

    i.e. the plain mean of the first 1 / (1 - decay) batches, then an exponential moving
    average. With `control_variate=False`, b = 0: the plain estimator. The KL warm-up weight
    is ignored.

    Args:
        num_samples: int, samples S per example. Defaults to `1`.
        control_variate: bool, use the running-mean baseline. Defaults to `True`.
        decay: float in [0, 1), the moving average's decay. Defaults to `0.9`.
    """

    name = "score_function"

    def __init__(self, num_samples=1, control_variate=True, decay=0.9):
        super().__init__(num_samples)
        if not isinstance(control_variate, bool):
            raise ValueError(
                f"`control_variate` must be a bool. Received: control_variate={control_variate!r}"
            )
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"`decay` must be a float in [0, 1). Received: decay={decay!r}")
        self.control_variate = control_variate
        self.decay = float(decay)
        self.baseline = None
        self._model = None

    def build(self, model):
        if not self.control_variate:
            return
        if self._model is not None and self._model is not model:
            raise ValueError(
                "A ScoreFunction objective with a control variate holds its baseline on one "
                "model and cannot be shared. Pass each model its own objective, e.g. "
                "objective={'name': 'score_function'}."
            )
        self._model = model
        self.baseline = model.add_weight(
            shape=(), initializer="zeros", trainable=False, name="score_baseline"
        )
        self.baseline_steps = model.add_weight(
            shape=(), initializer="zeros", trainable=False, name="score_baseline_steps"
        )

    def loss(self, trace, x, terms, kl_weight, model=None, training=False):
        latents = _stop_gradients(layer.sample for layer in trace.latents)
        log_q = posterior_log_prob(trace, latents)  # [S, B], gradients to q's parameters
        f = model.joint_log_prob(x, latents, training=training) - log_q  # [S, B]
        signal = ops.stop_gradient(f)
        if self.control_variate:
            signal = signal - ops.convert_to_tensor(self.baseline)
            if training:
                self._update_baseline(global_mean(ops.mean(ops.stop_gradient(f), axis=0)))
        score = signal * (log_q - ops.stop_gradient(log_q))
        return -ops.mean(score + f, axis=0)

    def _update_baseline(self, batch_mean):
        steps = ops.convert_to_tensor(self.baseline_steps) + 1.0
        baseline = ops.convert_to_tensor(self.baseline)
        rate = ops.maximum(1.0 - self.decay, 1.0 / steps)
        self.baseline.assign(baseline + rate * (batch_mean - baseline))
        self.baseline_steps.assign(steps)

    def get_config(self):
        return {
            **super().get_config(),
            "control_variate": self.control_variate,
            "decay": self.decay,
        }

    def __repr__(self):
        return (
            f"ScoreFunction(num_samples={self.num_samples}, "
            f"control_variate={self.control_variate}, decay={self.decay})"
        )


OBJECTIVES = {cls.name: cls for cls in (ELBO, ImportanceWeighted, MIWAE, WakeSleep, ScoreFunction)}


def get(identifier):
    """An `Objective` from a name (`"elbo"`, `"iwae"`, `"miwae"`, `"wake_sleep"`,
    `"score_function"`), a config dict or an instance."""
    if isinstance(identifier, Objective):
        return identifier
    config = {"name": identifier} if isinstance(identifier, str) else identifier
    name = config.get("name") if isinstance(config, dict) else None
    if isinstance(name, str) and name in OBJECTIVES:
        config = dict(config)
        cls = OBJECTIVES[config.pop("name")]
        try:
            return cls(**config)
        except TypeError as error:  # an option the objective does not take
            raise ValueError(
                f"`objective` {name!r} does not take the options {sorted(config)} ({error}). "
                f"Received: objective={identifier!r}"
            ) from error
    raise ValueError(
        f"`objective` must be one of {tuple(OBJECTIVES)}, a config dict with one of those "
        f"names, or an Objective. Received: objective={identifier!r}"
    )
