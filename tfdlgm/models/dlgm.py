"""The deep latent Gaussian model of Rezende, Mohamed & Wierstra (2014)."""

import keras
from keras import ops

from tfdlgm import validation
from tfdlgm.backend import tfd, tfp_seed
from tfdlgm.distributions import POSTERIORS, SUPPORT_BINARY, posterior_layer, standard_normal
from tfdlgm.layers import MLP, Dense
from tfdlgm.models.base import LatentModel
from tfdlgm.trace import LatentTrace, Trace


@keras.saving.register_keras_serializable(package="tfdlgm")
class DLGM(LatentModel):
    """Deep latent Gaussian model (Rezende, Mohamed & Wierstra 2014, sec. 3 and 4.3).

    Generative model (eq. 2-4), L stochastic layers generated top down:

    ```none
    xi_l ~ N(0, I_{K_l}),                         l = 1..L
    h_L  = G_L xi_L
    h_l  = T_l(h_{l+1}) + G_l xi_l,               l = L-1..1
    v    ~ pi(v | T_0(h_1))
    ```

    where:
    * `K_l` is `latent_dims[l - 1]`, the size of `xi_l` and of `h_l`;
    * `G_l` is a `K_l x K_l` matrix, a `Dense` without bias (the paper's `G_l xi_l`; the
      offsets live in `T_l` and in pi's projection);
    * `T_l` (l >= 1) is an MLP of widths `hidden` followed by a linear `Dense` to `K_l`;
    * `T_0` is an MLP of widths `hidden`; pi (`likelihood`) has its own linear projection.

    The latent variables of the `Trace` are the xi_l, each with prior N(0, I), so every KL
    term is analytic (also for the rank-one posterior). Recognition model (sec. 4.3,
    eq. 15-16): one deterministic MLP of widths `hidden` reads v (with noise when training,
    see `input_noise`) and feeds one Gaussian per layer,

    ```none
    q(xi | v) = prod_l N(xi_l | mu_l(r), C_l(r)),      r = MLP_rec(v)
    C_l^-1 = diag(sigma_l^-2)       (covariance="diagonal")
    C_l^-1 = D_l + u_l u_l^T        (covariance="rank_one")
    ```

    Free energy (eq. 13), divided by the number of training examples N so that it matches
    the per-example mean loss of `LatentModel.compute_loss`:

    ```none
    F(V) / N = (1/N) sum_n (-E_q[log p(v_n | h(xi))] + KL[q(xi | v_n) || N(0, I)])
               + ||theta_g||^2 / (2 kappa N)
    ```

    The last term, the Gaussian prior N(0, kappa I) on the generative weights theta_g (the
    kernels and biases of every `G_l`, `T_l` and of pi's projection; not a Gaussian
    likelihood's noise scale), is an L2 regulariser with factor `1 / (2 kappa N)` on each of
    those weights, so it shows in `model.losses`; `num_train_examples` is N.

    Args:
        latent_dims: tuple of positive ints, `(K_1, ..., K_L)`, bottom layer first.
            Defaults to `(200,)`.
        hidden: tuple of positive ints, the widths of every `T_l`'s MLP and of the
            recognition MLP; `()` makes them linear. Defaults to `(200, 200)`.
        covariance: `"diagonal"` or `"rank_one"`, the recognition covariance C_l.
            Defaults to `"diagonal"`.
        likelihood: `"bernoulli"`, `"gaussian"` or `"gaussian_per_example"`, pi(v | .).
            Defaults to `"bernoulli"`.
        kappa: positive float or None, the variance of the Gaussian prior on each generative
            weight; None for no prior. Defaults to `None`.
        num_train_examples: positive int or None, N, the number of training examples the
            paper's F sums over; required with `kappa`. Defaults to `None`.
        input_noise: float in (0, 1) or None, noise at the recognition input when training
            (sec. 4.4): each bit flipped with this probability for a Bernoulli likelihood,
            inverted drop-out at this rate otherwise. Defaults to `None` (no noise).
        activation: str, the hidden activation. Defaults to `"relu"` (rectifiers, sec. 6).
        **kwargs: `LatentModel` arguments: `data_dim`, `objective`, `seed`.

    Example:

    ```python
    model = tfdlgm.models.DLGM(latent_dims=(200,), hidden=(200, 200), covariance="rank_one")
    model.compile(optimizer="adam")
    model.fit(tfdlgm.datasets.mnist("train", batch_size=200), epochs=1)
    model.log_likelihood(x_test, num_samples=5000)
    ```
    """

    short_name = "dlgm"
    standard_normal_prior = True

    def __init__(
        self,
        latent_dims=(200,),
        hidden=(200, 200),
        covariance="diagonal",
        likelihood="bernoulli",
        kappa=None,
        num_train_examples=None,
        input_noise=None,
        activation="relu",
        **kwargs,
    ):
        super().__init__(latent_dims=latent_dims, likelihood=likelihood, **kwargs)
        hidden = validation.check_sizes(hidden, "hidden", allow_empty=True)
        if covariance not in POSTERIORS:
            raise ValueError(
                f"`covariance` must be one of {tuple(POSTERIORS)}. "
                f"Received: covariance={covariance!r}"
            )
        if kappa is not None:
            if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or kappa <= 0:
                raise ValueError(
                    f"`kappa` must be a positive float or None. Received: kappa={kappa!r}"
                )
            if num_train_examples is None:
                raise ValueError(
                    "`kappa` needs `num_train_examples` (N): the prior ||theta||^2 / (2 kappa) "
                    "enters the per-example loss divided by N. Received: "
                    f"kappa={kappa!r}, num_train_examples=None"
                )
        if num_train_examples is not None:
            validation.check_positive_int(num_train_examples, "num_train_examples")
        if input_noise is not None and (
            isinstance(input_noise, bool)
            or not isinstance(input_noise, (int, float))
            or not 0 < input_noise < 1
        ):
            raise ValueError(
                "`input_noise` must be None or a float in (0, 1). "
                f"Received: input_noise={input_noise!r}"
            )
        self.hidden = hidden
        self.covariance = covariance
        self.kappa = None if kappa is None else float(kappa)
        self.num_train_examples = num_train_examples
        self.input_noise = None if input_noise is None else float(input_noise)
        self.activation = activation
        dims = self.latent_dims
        self.generative_matrices = [
            Dense(k, use_bias=False, name=f"G_{i + 1}") for i, k in enumerate(dims)
        ]
        # transitions[i] is T_{i+1}: h_{i+2} [K_{i+2}] -> [K_{i+1}]
        self.transitions = [
            MLP(hidden, activation, name=f"T_{i + 1}") for i in range(len(dims) - 1)
        ]
        self.transition_outputs = [
            Dense(dims[i], name=f"T_{i + 1}_output") for i in range(len(dims) - 1)
        ]
        self.decoder = MLP(hidden, activation, name="T_0")
        self.encoder = MLP(hidden, activation, name="recognition")
        self.posteriors = [
            posterior_layer(covariance, k, name=f"posterior_{i + 1}") for i, k in enumerate(dims)
        ]
        self.build()
        if self.kappa is not None:
            prior = keras.regularizers.L2(1.0 / (2.0 * self.kappa * self.num_train_examples))
            for weight in self.generative_weights:
                weight.regularizer = prior

    def build(self, input_shape=None):
        dims = self.latent_dims
        for dense, k in zip(self.generative_matrices, dims, strict=True):
            dense.build((None, k))
        for i, (mlp, dense) in enumerate(
            zip(self.transitions, self.transition_outputs, strict=True)
        ):
            mlp.build((None, dims[i + 1]))
            dense.build(mlp.compute_output_shape((None, dims[i + 1])))
        self.decoder.build((None, dims[0]))
        self.observation.build(self.decoder.compute_output_shape((None, dims[0])))
        self.encoder.build((None, self.data_dim))
        for posterior in self.posteriors:
            posterior.build(self.encoder.compute_output_shape((None, self.data_dim)))

    @property
    def generative_weights(self):
        """theta_g: the kernels and biases of every G_l, T_l and pi's projection."""
        layers = [
            *self.generative_matrices,
            *self.transitions,
            *self.transition_outputs,
            self.decoder,
            self.observation,
        ]
        return [
            weight
            for layer in layers
            for weight in layer.trainable_weights
            if weight.name in ("kernel", "bias")
        ]

    def infer(self, x, num_samples, seed_generator, training=False):
        r = self.encoder(self._recognition_input(x, seed_generator, training), training=training)
        latents = []
        for k, posterior_layer_l in zip(self.latent_dims, self.posteriors, strict=True):
            posterior = posterior_layer_l(r)
            xi = posterior.sample(num_samples, seed=tfp_seed(seed_generator))  # [S, B, K_l]
            latents.append(LatentTrace(posterior, standard_normal(k, self.variable_dtype), xi))
        return Trace(latents, self.decode([layer.sample for layer in latents], training))

    def decode(self, latents, training=False):
        """pi(v | T_0(h_1)) for xi given as a list `[..., K_l]` bottom first (or one tensor when
        L = 1): eq. 2-4 top down, `h_L = G_L xi_L`, `h_l = T_l(h_{l+1}) + G_l xi_l`."""
        if not isinstance(latents, (list, tuple)):
            latents = [latents]
        h = self.generative_matrices[-1](latents[-1])  # h_L
        for i in reversed(range(len(self.transitions))):
            transition = self.transition_outputs[i](self.transitions[i](h, training=training))
            h = transition + self.generative_matrices[i](latents[i])
        return self.observation(self.decoder(h, training=training))

    def _recognition_input(self, x, seed_generator, training):
        """v with bit-flip (binary data) or drop-out noise at rate `input_noise` when training."""
        if not training or self.input_noise is None:
            return x
        hit = tfd.Bernoulli(probs=ops.cast(self.input_noise, x.dtype), dtype="bool").sample(
            ops.shape(x), seed=tfp_seed(seed_generator)
        )
        if self.support == SUPPORT_BINARY:
            return ops.where(hit, 1.0 - x, x)
        return ops.where(hit, ops.zeros_like(x), x / (1.0 - self.input_noise))

    def get_config(self):
        return {
            **super().get_config(),
            "hidden": self.hidden,
            "covariance": self.covariance,
            "kappa": self.kappa,
            "num_train_examples": self.num_train_examples,
            "input_noise": self.input_noise,
            "activation": self.activation,
        }
