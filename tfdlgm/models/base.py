"""`LatentModel`: the machinery every model of the zoo shares.

A model file says only how its layers make an inference pass (`infer`) and a generative
pass (`decode`, `generate`); this class turns those into training through plain Keras
`compile`/`fit`/`evaluate` on every backend, the bounds (ELBO, L_k, the k = 5000
log-likelihood estimate), sampling, reconstruction and (de)serialisation.

Incomplete data (Mattei & Frellsen 2019, MIWAE) is handled here once for every model: the
bounds take a `mask` (or NaN for missing entries) and `_trace` runs `infer` on the data with its
missing entries set to 0 and marks the trace's observed entries, so log p(x | z) sums over them
only (`tfdlgm.objectives`); the `"miwae"` objective trains on such data through `fit`.
"""

import contextlib
import inspect
import math

import keras
import numpy as np
from keras import ops

from tfdlgm import impute as imputation
from tfdlgm import objectives, validation
from tfdlgm.backend import (
    SeedStream,
    StreamingLogMeanExp,
    add_export_endpoint,
    check_export_supported,
    compile_model_function,
    global_mean,
    multi_worker_logs,
    tfp_seed,
    variables_kept_on_failure,
)
from tfdlgm.distributions import OBSERVATIONS, observation_layer, standard_normal
from tfdlgm.metrics import MeanTerms
from tfdlgm.progress import Progress

# The key of the random stream's state among the model's own saved variables.
_SEED_STATE = "seed_generator_state"
# The most values one sampled tensor may hold (the backends index with int32).
_MAX_ELEMENTS = 2**31 - 1
# Rows of [samples x examples] a bound estimator computes per compiled call (the ELBO's at
# once, L_k's in passes of `_ROWS_PER_PASS`): the progress bar moves after each call.
_ROWS_PER_CHUNK = 50_000
# Rows of [samples x examples] per pass of L_k's loop inside a compiled call: enough rows for
# the matmuls to run at speed, a fifth of a call's memory per pass. On 2 CPU cores both backends
# ran fastest at 10,000 of 2,000-20,000 (`benchmarks/likelihood_speed.py`; smaller passes cost
# TensorFlow's graph loop up to a quarter).
_ROWS_PER_PASS = 10_000


class LatentModel(keras.Model):
    """Base class of latent variable models trained by a variational objective.

    Subclasses build their layers in `__init__`, then call `self.build()`, and implement:

    - `infer(x, num_samples, seed_generator, training)` -> `Trace` (see `tfdlgm.trace`);
    - `decode(latents, training)` -> p(x | latents) as a TFP distribution;
    - `build(input_shape=None)` building every sublayer.

    `generate` (ancestral sampling), `dream` and `joint_log_prob` follow from `sample_prior`,
    `prior_log_prob` and `decode`.

    Calling the model on a batch `x` `[B, D]` returns the per-example terms of its objective:
    a dict with `loss`, `elbo`, `reconstruction` and `kl_1 ... kl_L` (each `[B]`, in nats).
    `compile(optimizer=...)` needs no loss: the objective is a model argument.

    A model whose latent layers are independent N(0, I) a priori sets the class attribute
    `standard_normal_prior = True`, which gives it `sample_prior`, `prior_log_prob`, `dream`
    and `joint_log_prob` (used by the wake-sleep, score-function and DReG objectives). A model
    family sets `short_name` (`"vae"`), the name `tfdlgm.models.get` and `tfdlgm train
    --model` know it by.

    Args:
        latent_dims: tuple of positive ints, the size of each stochastic layer, bottom first.
        data_dim: int, the number of observed features. Defaults to `784` (MNIST).
        likelihood: `"bernoulli"`, `"gaussian"` (one learned scale per feature) or
            `"gaussian_per_example"`. Defaults to `"bernoulli"`.
        objective: `"elbo"`, `"iwae"`, `"miwae"` (trains on data with missing entries, NaN),
            `"wake_sleep"`, `"score_function"`, an `objectives.Objective` or its config.
            Defaults to `"elbo"`.
        seed: int or None, seeds the model's own random stream.
    """

    standard_normal_prior = False
    short_name = None

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
        # The data and the model's own variables (the KL weight) stay in the variable dtype
        # under a mixed-precision policy: the networks cast their inputs to the compute dtype
        # themselves, and the densities and bounds are computed in float32 (`distributions`).
        self.autocast = False
        latent_dims = validation.check_sizes(latent_dims, "latent_dims")
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
        self.objective.build(self)
        self.terms_tracker = MeanTerms(
            ("elbo", "reconstruction", *(f"kl_{i + 1}" for i in range(len(latent_dims))))
        )

    # -- what a model file implements ------------------------------------------------------

    def infer(self, x, num_samples, seed_generator, training=False):
        raise NotImplementedError

    def decode(self, latents, training=False):
        raise NotImplementedError

    def generate(self, num_examples, seed_generator):
        """p(x | z) for z ~ p(z) drawn by `sample_prior`: one ancestral pass."""
        return self.decode(_decoder_input(self.sample_prior(num_examples, seed_generator)))

    # -- Keras training --------------------------------------------------------------------

    def call(self, x, training=False):
        trace, x = self._trace(
            x,
            self.objective.num_samples,
            self.seed_generator,
            training=training,
            missing=self.objective.accepts_missing,
        )
        terms = objectives.elbo_terms(trace, x)
        outputs = {
            "loss": self.objective.loss(
                trace,
                x,
                terms,
                ops.convert_to_tensor(self.kl_weight),
                model=self,
                training=training,
            ),
            "elbo": terms["elbo"],
            "reconstruction": terms["reconstruction"],
        }
        outputs.update({f"kl_{i + 1}": kl for i, kl in enumerate(terms["kl"])})
        return outputs

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        **kwargs,
    ):
        """`keras.Model.compile` without a loss or metrics: the objective is a model argument.

        The model trains on its `objective` (`objective=` at construction: `"elbo"`, `"iwae"`,
        ...) and logs that objective's terms itself (`loss`, `elbo`, `reconstruction`,
        `kl_1 ... kl_L`); there are no targets for a Keras loss or metric to compare with, so
        a `loss`, `loss_weights`, `metrics` or `weighted_metrics` is refused rather than
        silently ignored. Every other argument is Keras' (`optimizer`, `jit_compile`,
        `steps_per_execution`, ...).

        Raises:
            ValueError: for a `loss`, `loss_weights`, `metrics` or `weighted_metrics`.
        """
        for name, value in (
            ("loss", loss),
            ("loss_weights", loss_weights),
            ("metrics", metrics),
            ("weighted_metrics", weighted_metrics),
        ):
            if value is not None:
                raise ValueError(
                    f"`{name}` must be None: {type(self).__name__} trains on its objective, a "
                    "model argument (e.g. `objective='elbo'` or `objective={'name': 'iwae', "
                    "'num_samples': 10}` at construction), and logs its terms (loss, elbo, "
                    "reconstruction, kl_1 ...) itself; it has no targets for a Keras loss or "
                    f"metric. Received: {name}={value!r}"
                )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Keras' `compile_from_config` (what `keras.models.load_model` calls), which skips a
        model whose `compile` is its own; this `compile` takes Keras' saved configuration."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean per-example surrogate loss plus weight losses (e.g. a prior on weights).

        The mean is over the global batch when training data-parallel (`backend.global_mean`).
        With `sample_weight` (`fit(x, sample_weight=w)`, `w` `[N]`) each example's loss is
        weighted, and the weighted losses are averaged over the batch, as Keras' own losses
        do: `sum_n w_n loss_n / B`. The logged ELBO and KL terms stay unweighted means.
        """
        per_example = y_pred["loss"]  # [B]
        if sample_weight is not None:
            weights = ops.cast(sample_weight, per_example.dtype)
            per_example = per_example * ops.reshape(weights, ops.shape(per_example))
        loss = global_mean(per_example)
        for weight_loss in self.losses:
            loss = loss + self._aggregate_additional_loss(weight_loss)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.terms_tracker.update_state(y_pred)
        return multi_worker_logs(self.get_metrics_result())

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, with the data validated on the way in and a guard against a
        non-finite loss.

        Arrays and tensors are checked whole (shape, dtype, finite, the likelihood's
        support); every batch of a `tf.data.Dataset` or a `keras.utils.PyDataset` is checked
        as it is read (`tfdlgm.validation.checked_batches`), so NaN or non-binary data stops
        `fit` with a `ValueError` before it reaches the weights. A NaN or infinite loss stops it
        with `tfdlgm.callbacks.NonFiniteLossError` (`NonFiniteLossGuard`, added first unless
        `callbacks` holds one). Datasets (`tf.data`, `PyDataset` such as
        `tfdlgm.datasets.mnist`) shuffle themselves, so `shuffle` defaults to `False` for them
        and `True` for arrays.

        Every other argument is Keras' and works as there (`batch_size`, `epochs`,
        `validation_split`, `validation_data`, `initial_epoch`, `steps_per_epoch`, ...), but
        for the two the model has no use for, refused with a `ValueError`: `y` (the model is
        unsupervised: its objective reads `x` alone) and `class_weight` (there are no
        classes). `sample_weight` (`[N]`, finite and non-negative, with array data) weights
        each example's objective (`compute_loss`); `validation_data` is `x_val`, `(x_val,)`
        or `(x_val, None, sample_weight_val)`. With the `"miwae"` objective `x` may hold NaN for
        missing entries (every row needs an observed one); other objectives refuse NaN.
        """
        from tfdlgm.callbacks import NonFiniteLossGuard  # callbacks builds on this module

        arguments = self._keras_arguments(super().fit, x, args, kwargs)
        if not isinstance(x, np.ndarray) and "shuffle" not in arguments.arguments:
            arguments.arguments["shuffle"] = False
        callbacks = list(arguments.arguments.get("callbacks") or [])
        if not any(isinstance(c, NonFiniteLossGuard) for c in callbacks):
            arguments.arguments["callbacks"] = [NonFiniteLossGuard(), *callbacks]
        with validation.bad_batches_as_value_errors(), variables_kept_on_failure(self):
            return super().fit(*arguments.args, **arguments.kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate`: loss, ELBO, reconstruction and KL per layer (nats), the data
        and arguments checked as in `fit`.

        With `sample_weight` the loss is the weighted one (`compute_loss`).
        """
        if kwargs.get("_use_cached_eval_dataset"):  # `fit`'s validation, data checked there
            return super().evaluate(x, *args, **kwargs)
        arguments = self._keras_arguments(super().evaluate, x, args, kwargs)
        with validation.bad_batches_as_value_errors(), variables_kept_on_failure(self):
            return super().evaluate(*arguments.args, **arguments.kwargs)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`: what `call` returns (`loss`, `elbo`, `reconstruction`,
        `kl_1 ...`, each `[N]`, nats), the data checked as in `fit`."""
        arguments = self._keras_arguments(super().predict, x, args, kwargs)
        with validation.bad_batches_as_value_errors(), variables_kept_on_failure(self):
            return super().predict(*arguments.args, **arguments.kwargs)

    def train_on_batch(self, x, *args, **kwargs):
        """`keras.Model.train_on_batch`, the batch and arguments checked as in `fit`."""
        arguments = self._keras_arguments(super().train_on_batch, x, args, kwargs)
        return super().train_on_batch(*arguments.args, **arguments.kwargs)

    def test_on_batch(self, x, *args, **kwargs):
        """`keras.Model.test_on_batch`, the batch and arguments checked as in `fit`."""
        arguments = self._keras_arguments(super().test_on_batch, x, args, kwargs)
        return super().test_on_batch(*arguments.args, **arguments.kwargs)

    def predict_on_batch(self, x):
        """`keras.Model.predict_on_batch`, the batch checked as in `fit`."""
        return super().predict_on_batch(self._check_x(x))

    def _keras_arguments(self, keras_method, x, args, kwargs):
        """The arguments of Keras' `keras_method` (`fit`, `evaluate`, ...) bound by name, with
        the data validated and what the model has no use for refused.

        Keras' array adapter drops `sample_weight` when there is no `y`, so `x` then stands in
        for the targets (which the model does not read).
        """
        arguments = inspect.signature(keras_method).bind(x, *args, **kwargs)
        values = arguments.arguments
        for name, reason in (
            ("y", "the model is unsupervised: its objective reads `x` alone"),
            ("class_weight", "there are no classes; `sample_weight` weights examples"),
        ):
            if values.get(name) is not None:
                raise ValueError(
                    f"`{name}` must be None for {type(self).__name__}: {reason}. "
                    f"Received: {name} of type {type(values[name]).__name__}"
                )
        values["x"] = self._checked(x)
        if values.get("sample_weight") is not None:
            values["sample_weight"] = validation.check_sample_weight(
                values["sample_weight"], values["x"]
            )
            values["y"] = values["x"]
        if values.get("validation_data") is not None:
            values["validation_data"] = self._checked_validation_data(values["validation_data"])
        return arguments

    def _checked_validation_data(self, data):
        """`validation_data` as Keras reads it: `x_val`, `(x_val,)`, `(x_val, None)` or
        `(x_val, None, sample_weight_val)`, checked as `fit`'s `x` and `sample_weight`."""
        if not isinstance(data, tuple):
            return self._checked(data, "validation_data")
        if not 1 <= len(data) <= 3 or (len(data) > 1 and data[1] is not None):
            raise ValueError(
                "`validation_data` must be `x_val`, `(x_val,)` or `(x_val, None, "
                f"sample_weight_val)`: {type(self).__name__} is unsupervised and takes no "
                f"targets. Received: a tuple of {len(data)} items"
                + ("" if len(data) < 2 else f", the second of type {type(data[1]).__name__}")
            )
        x = self._checked(data[0], "validation_data")
        if len(data) < 3 or data[2] is None:
            return (x,)
        weights = validation.check_sample_weight(data[2], x, "validation_data's sample_weight")
        return (x, x, weights)

    def _checked(self, data, name="x"):
        """Arrays and tensors validated now; datasets validated batch by batch as read."""
        missing = self.objective.accepts_missing
        hint = (
            ""
            if missing
            else f"(NaN marks a missing entry; the objective {self.objective.name!r} needs "
            "complete data: train on incomplete data with objective={'name': 'miwae', "
            "'num_samples': 20}.)"
        )

        def check(batch):
            return validation.check_data(
                batch, self.data_dim, self.support, self.variable_dtype, name, missing, hint
            )

        if not validation.is_dataset(data):
            return check(data)

        def check_batch(batch):
            try:
                return check(batch)
            except ValueError as error:
                raise ValueError(f"A batch of `{name}` is not valid data: {error}") from None

        return validation.checked_batches(data, check_batch, name)

    # -- bounds ----------------------------------------------------------------------------

    def elbo(self, x, num_samples=1, batch_size=1000, seed=None, verbose="auto", mask=None):
        """The evidence lower bound per example (K&W eq. 3; Rezende et al. eq. 13), nats.

        ```none
        ELBO(x) = E_q[log p(x | z)] - sum_l KL[q(z_l | .) || p(z_l | z_l+1)]
        ```

        With missing entries (`mask`, or NaN in `x`) it bounds log p(x_o), the marginal of
        the observed entries: log p(x | z) sums over them only and q sees x with its missing
        entries set to 0 (Mattei & Frellsen 2019; `tfdlgm.objectives`).

        Args:
            x: float array `[batch, data_dim]` in the likelihood's support; NaN marks a
                missing entry.
            num_samples: int, Monte Carlo samples for the expectation, drawn in chunks so that
                memory does not grow with it. Defaults to `1`.
            batch_size: int, examples per pass. Defaults to `1000`.
            seed: int or None, for a reproducible estimate.
            verbose: `0` (silent), `1` (a progress bar over the examples), `2` (one line at
                the end) or `"auto"` (1 in a terminal, else 0; `tfdlgm.progress`). Defaults to
                `"auto"`.
            mask: None or a bool array of the shape of `x`, True where `x` is observed.
                Defaults to `None` (the entries of `x` that are not NaN).

        Returns:
            `np.ndarray` `[batch]`.

        Raises:
            ValueError: for bad data, a mask that is not bool or not of the shape of `x`, NaN
                where the mask is True, or a row with no observed entry.
        """
        x, missing = self._incomplete(x, mask)
        num_samples = validation.check_positive_int(num_samples, "num_samples")
        batch_size = validation.check_positive_int(batch_size, "batch_size")
        progress = Progress(len(x), verbose, unit_name="example")
        elbo = self._compiled("elbo", self._elbo_batch)
        out, done = [], 0
        with self._seeded(seed):
            for batch in _batches(x, batch_size):
                # The samples in chunks, so that memory does not grow with num_samples.
                chunk = max(1, min(num_samples, _ROWS_PER_CHUNK // len(batch)))
                total = 0.0
                for start in range(0, num_samples, chunk):
                    size = min(chunk, num_samples - start)
                    value = elbo(batch, size, missing)
                    total += ops.convert_to_numpy(value).astype(np.float64) * size
                out.append((total / num_samples).astype(np.float32))
                done += len(batch)
                progress.update(done)
        return np.concatenate(out)

    def iwae_bound(self, x, num_samples, batch_size=100, seed=None, verbose="auto", mask=None):
        """The importance-weighted bound L_k per example, k = `num_samples` (Burda et al. eq. 8).

        ```none
        L_k(x) = log (1/k) sum_s p(x, z_s) / q(z_s | x),    z_s ~ q(z | x)
        ```

        The k samples are drawn in passes of `_ROWS_PER_PASS` rows (samples x examples),
        looped inside compiled calls of up to `_ROWS_PER_CHUNK` rows, and combined by a
        streaming log-mean-exp, so memory does not grow with k. With missing entries (`mask`,
        or NaN in `x`) it is the MIWAE bound on log p(x_o) (Mattei & Frellsen 2019, eq. 4): x_o
        for x above, q fed x with its missing entries set to 0.

        Args:
            x: float array `[batch, data_dim]` in the likelihood's support; NaN marks a
                missing entry.
            num_samples: int, k.
            batch_size: int, examples per pass. Defaults to `100`.
            seed: int or None, for a reproducible estimate.
            verbose: `0` (silent), `1` (a progress bar over the examples, updated after every
                compiled call, with the time left and the time per example), `2` (one
                line at the end) or `"auto"` (1 in a terminal, else 0; `tfdlgm.progress`).
                Defaults to `"auto"`.
            mask: None or a bool array of the shape of `x`, True where `x` is observed.
                Defaults to `None` (the entries of `x` that are not NaN).

        Returns:
            `np.ndarray` `[batch]`, nats.

        Raises:
            ValueError: as `elbo`.
        """
        x, missing = self._incomplete(x, mask)
        num_samples = validation.check_positive_int(num_samples, "num_samples")
        batch_size = validation.check_positive_int(batch_size, "batch_size")
        progress = Progress(len(x), verbose, unit_name="example")
        logsumexp_of_log_weights = self._compiled("log_weights", self._log_weights_logsumexp)
        calls = _bound_calls(num_samples, batch_size)
        out, done = [], 0
        with self._seeded(seed):
            for batch in _batches(x, batch_size):
                accumulator = StreamingLogMeanExp()
                for pass_size, passes, remainder in calls:
                    # [B], over pass_size * passes + remainder samples
                    logsumexp = logsumexp_of_log_weights(
                        batch, pass_size, passes, remainder, missing
                    )
                    accumulator.update_logsumexp(logsumexp, pass_size * passes + remainder)
                    progress.update(done + len(batch) * accumulator.count / num_samples, logsumexp)
                out.append(ops.convert_to_numpy(accumulator.result()))
                done += len(batch)
        return np.concatenate(out)

    def _elbo_batch(self, x, num_samples, missing):
        trace, x = self._trace(x, num_samples, self.seed_generator, missing=missing)
        return objectives.elbo_terms(trace, x)["elbo"]

    def _log_weights_logsumexp(self, x, pass_size, passes, remainder, missing):
        """`_logsumexp_of_log_weights` drawing from the model's random stream."""
        stream = SeedStream(state=self.seed_generator.state.value)
        out = self._logsumexp_of_log_weights(x, stream, pass_size, passes, remainder, missing)
        self.seed_generator.state.assign(stream.value)
        return out

    def _logsumexp_of_log_weights(self, x, stream, pass_size, passes, remainder, missing):
        """logsumexp_s log w_s over `passes` passes of `pass_size` samples and one of
        `remainder`, `[B]` (log w_s: `objectives.log_importance_weights`).

        The passes are a loop (`keras.ops.fori_loop`) inside one compiled call, so a pass's
        tensors stay small (`_ROWS_PER_PASS` rows) without a round trip to the host per pass.
        The loop carries the state of `stream` (a `SeedStream`, advanced by the draws): the
        samples are those of the same passes drawn one after another.
        """

        def one_pass(size, stream):
            trace, x_observed = self._trace(x, size, stream, missing=missing)
            log_weights = objectives.log_importance_weights(trace, x_observed)  # [size, B]
            return ops.logsumexp(log_weights, axis=0)

        def body(_, carry):
            total, state = carry
            carried = SeedStream(state=state)
            return ops.logaddexp(total, one_pass(pass_size, carried)), carried.value

        total = ops.full(ops.shape(x)[:1], -math.inf, dtype=self.variable_dtype)
        if passes:
            total, stream.value = ops.fori_loop(0, passes, body, (total, stream.value))
        if remainder:
            total = ops.logaddexp(total, one_pass(remainder, stream))
        return total

    def _trace(self, x, num_samples, seed_generator, training=False, missing=False):
        """`(trace, x)`: `infer` on `x`; with `missing`, NaN entries of `x` are missing: `infer`
        sees them as 0 and the trace marks the observed entries (`Trace.observed`), so every
        bound computed from it is a bound on log p(x_o) (MIWAE)."""
        if missing:
            x, observed = objectives.zero_filled(x)
        trace = self.infer(x, num_samples, seed_generator, training=training)
        if missing:
            trace.observed = observed
        return trace, x

    def _incomplete(self, x, mask):
        """`(x, missing)`: `x` validated with NaN at its missing entries (those where `mask` is
        False, or NaN in `x`), and whether any entry is missing."""
        x = validation.check_incomplete_data(
            x, mask, self.data_dim, self.support, self.compute_dtype
        )
        return x, bool(np.isnan(x).any())

    def _compiled(self, key, fn, batch_axis=0):
        """`fn` compiled once per model (`backend.compile_model_function`)."""
        cache = self.__dict__.setdefault("_compiled_functions", {})
        if key not in cache:
            cache[key] = compile_model_function(self, fn, batch_axis)
        return cache[key]

    @contextlib.contextmanager
    def _seeded(self, seed):
        """Within the block the model's random stream starts from `seed` (if not None); the
        stream's state is restored after, so a seeded call leaves the model's stream as it was."""
        seed = validation.check_seed(seed)
        if seed is None:
            yield
            return
        state = self.seed_generator.state
        saved = ops.convert_to_numpy(state.value)
        state.assign(keras.random.SeedGenerator(seed).state.value)
        try:
            yield
        finally:
            state.assign(saved)

    def log_likelihood(
        self, x, num_samples=5000, batch_size=100, seed=None, verbose="auto", mask=None
    ):
        """The importance-sampled estimate of log p(x): L_k with k = `num_samples`.

        The evaluation protocol's log-likelihood (Burda et al. 2015, sec. 5): k = 5000,
        computed in chunks in memory independent of k. It is a stochastic lower bound that
        tightens as k grows. It takes minutes on a CPU (1,000 MNIST images: about 2), so in a
        terminal a progress bar shows the examples done, the time left and the time per
        example (`verbose`, as in `iwae_bound`). With missing entries (`mask`, or NaN in `x`)
        it estimates log p(x_o), the log-density of the observed entries (`iwae_bound`).

        Returns:
            `np.ndarray` `[batch]`, nats.
        """
        return self.iwae_bound(
            x, num_samples, batch_size=batch_size, seed=seed, verbose=verbose, mask=mask
        )

    # -- using the model -------------------------------------------------------------------

    def encode(self, x, seed=None):
        """The recognition distributions q(z_l | .) for each latent layer, bottom first.

        For layers whose posterior depends on samples of other layers, the distribution is
        the one of a single sample. Returns a list of TFP distributions, batch shape `[B]`,
        whose parameters one compiled call computes (not split across the devices of
        `tfdlgm.distribute.data_parallel`).
        """
        x = self._check_x(x)
        posteriors = self._compiled(
            "encode", lambda x: self._posteriors(x, self.seed_generator), batch_axis=None
        )
        with self._seeded(seed):
            return posteriors(x)

    def _posteriors(self, x, seed_generator):
        trace = self.infer(x, 1, seed_generator)
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
        largest = _MAX_ELEMENTS // max(self.data_dim, *self.latent_dims)
        if num_examples > largest:
            raise ValueError(
                f"`num_examples` must be at most {largest:,} for one call ({self.data_dim} "
                "features each; a tensor holds fewer than 2**31 values): draw in several "
                f"calls. Received: num_examples={num_examples}"
            )
        validation.check_bool(mean, "mean")
        samples = self._compiled("sample", self._samples)
        with self._seeded(seed):
            return ops.convert_to_numpy(samples(ops.zeros((num_examples, 0)), mean))

    def _samples(self, rows, mean):
        """x ~ p(x), or E[x | z], for as many examples as `rows` (`[num_examples, 0]`) has:
        an empty tensor whose shape is the count, so that one compiled function serves every
        count (a dynamic shape under TensorFlow; under JAX one compilation per count, as the
        ops of an eager call would be) and `data_parallel` splits the draws over devices."""
        likelihood = self.generate(ops.shape(rows)[0], self.seed_generator)
        return likelihood.mean() if mean else likelihood.sample(seed=tfp_seed(self.seed_generator))

    def reconstruct(self, x, seed=None):
        """E[x | z] with z ~ q(z | x): the model's reconstruction of x, `[batch, data_dim]`."""
        x = self._check_x(x)
        reconstruction = self._compiled(
            "reconstruct", lambda x: self._reconstruction(x, self.seed_generator)
        )
        with self._seeded(seed):
            return ops.convert_to_numpy(reconstruction(x))

    def _reconstruction(self, x, seed_generator):
        return self.infer(x, 1, seed_generator).likelihood.mean()[0]

    def active_units(self, x, threshold=0.01, num_samples=10, batch_size=1000, seed=None):
        """Active latent units per layer (Burda et al. 2015, sec. 5.2).

        ```none
        A_u = Cov_x(E_q(z|x)[z_u]) > threshold      (threshold 0.01)
        ```

        E_q[z_u] is the posterior mean, averaged over `num_samples` draws of the other layers
        where q(z_l | .) depends on them (hierarchical and ladder posteriors).

        Returns:
            list of ints, the number of active units of each layer, bottom first.
        """
        x = self._check_x(x)
        if (
            isinstance(threshold, (bool, np.bool_))
            or not isinstance(threshold, (int, float, np.integer, np.floating))
            or not math.isfinite(threshold)
        ):
            raise ValueError(
                "`threshold` must be a finite number (Burda et al. use 0.01). "
                f"Received: threshold={threshold!r}"
            )
        num_samples = validation.check_positive_int(num_samples, "num_samples")
        batch_size = validation.check_positive_int(batch_size, "batch_size")
        posterior_means = self._compiled("posterior_means", self._posterior_means)
        with self._seeded(seed):
            means = [
                ops.convert_to_numpy(posterior_means(batch, num_samples))
                for batch in _batches(x, batch_size)
            ]
        layers = np.split(np.concatenate(means), np.cumsum(self.latent_dims)[:-1], axis=1)
        return [int((m.var(axis=0) > threshold).sum()) for m in layers]

    def _posterior_means(self, x, num_samples):
        """E_q[z_l] of every layer side by side, `[B, sum_l K_l]`: the posterior mean,
        averaged over the `num_samples` draws of the other layers it depends on."""
        trace = self.infer(x, num_samples, self.seed_generator)
        means = [layer.posterior.mean() for layer in trace.latents]
        return ops.concatenate(
            [ops.mean(m, axis=0) if len(m.shape) == 3 else m for m in means], axis=-1
        )

    def impute(
        self,
        x,
        mask,
        method="importance",
        steps=None,
        num_chains=1,
        seed=None,
        return_chain=False,
        verbose="auto",
        num_samples=None,
        proposal=None,
        num_components=None,
    ):
        """Completes the missing entries of `x` (see `tfdlgm.impute.impute`).

        ```none
        "importance" (Mattei & Frellsen 2019): xi_i ~ r(xi), a_i oc p(v_o, xi_i) / r(xi_i);
            E[v_m | v_o] ~= sum_i a_i E[v_m | xi_i];  draws by resampling;
            r = (1/C) sum_c q(xi | v_o, v_m^c) over completions v_m^c ("mixture") or
            q(xi | v_o, 0) ("encoder")
        "pseudo_gibbs" (Rezende et al. app. E):   xi ~ q(xi | v_o, v_m);  v_m ~ p(v_m | xi)
        "metropolis_within_gibbs" (Mattei & Frellsen 2018): xi' ~ q(xi | v) accepted with
            probability min(1, w(xi') / w(xi)), w = p(v, xi) / q(xi | v);  v_m ~ p(v_m | xi)
        ```

        Args:
            x: float array `[batch, data_dim]`; missing entries may hold NaN.
            mask: bool array like `x`, True = observed, False = missing.
            method: `"importance"` (every model, no mixing), `"pseudo_gibbs"` or
                `"metropolis_within_gibbs"` (exact target p(v_m | v_o)). Defaults to
                `"importance"`.
            steps: int, sweeps of a chain, or of the chains that draw the mixture proposal's
                completions. Defaults to `100` for a chain, `3` for the mixture.
            num_chains: int, chains per example (> 1 adds predictive means and variances), or
                the multiple imputations of `"importance"`. Defaults to `1`.
            seed: int or None.
            return_chain: bool, keep every step's completion; chains only.
            verbose: `0`, `1` (a progress bar), `2` (one line at the end) or `"auto"` (1 in a
                terminal, else 0). Defaults to `"auto"`.
            num_samples: int, the importance samples K per example, a multiple of
                `num_components`. Defaults to `1000`; `"importance"` only.
            proposal: `"mixture"` or `"encoder"`. Defaults to `"mixture"`; `"importance"`
                only.
            num_components: int >= 2, C, the mixture's components. Defaults to `100`;
                `proposal="mixture"` only.

        Returns:
            `tfdlgm.impute.ImputationResult` (`completed`, `samples`, `mean`, `variance`,
            `acceptance_rate`, `chain`, `effective_sample_size`); observed entries are those
            of `x`, bit for bit.
        """
        return imputation.impute(
            self,
            x,
            mask,
            method,
            steps,
            num_chains,
            seed=seed,
            return_chain=return_chain,
            verbose=verbose,
            num_samples=num_samples,
            proposal=proposal,
            num_components=num_components,
        )

    # -- serving ---------------------------------------------------------------------------

    def export(
        self,
        filepath,
        format="tf_saved_model",
        verbose=None,
        input_signature=None,
        num_samples=5000,
        **kwargs,
    ):
        """Writes a TensorFlow SavedModel that serves the model where tfdlgm is not installed.

        `tf.saved_model.load(filepath)` gives five endpoints. Each takes a `seed` (an int32
        scalar >= 0) and returns the numbers of the Python method for that seed; `x` is
        float32 `[batch, data_dim]` in the likelihood's support (not checked when served):

        ```none
        log_likelihood(x, seed)     [batch]   model.log_likelihood(x, num_samples, seed=seed)
        elbo(x, seed)               [batch]   model.elbo(x, seed=seed)           (one sample)
        sample(num_examples, seed)  {"samples", "means"}, [num_examples, data_dim] each:
                                              model.sample(num_examples, seed=seed) and
                                              model.sample(num_examples, seed=seed, mean=True)
        reconstruct(x, seed)        [batch, data_dim]   model.reconstruct(x, seed=seed)
        encode(x, seed)             {"mean_1", "stddev_1", ..., "mean_L", "stddev_L"}: the
                                    mean and marginal standard deviations of each q(z_l | .)
                                    of model.encode(x, seed=seed), `[batch, K_l]`
        ```

        An endpoint evaluates its `x` in one call: `log_likelihood` equals the Python
        method's numbers for batches of up to 100 examples (the method's `batch_size`, whose
        samples it draws in the same passes); send larger data in batches of 100 (a larger
        batch gives an estimate of the same quantity from other draws, in more memory).

        It needs the TensorFlow backend: under JAX it raises a `ValueError` saying why
        (`backend.check_export_supported`); the weights are the same on every backend, so a
        model saved under JAX is exported by loading it under TensorFlow (`tfdlgm export`).

        Args:
            filepath: str or path, the SavedModel's folder.
            format: `"tf_saved_model"`, the one format whose endpoints can carry these
                computations. Defaults to `"tf_saved_model"`.
            verbose: bool, print the endpoints. Defaults to Keras' (`True`).
            input_signature: must be None: the signatures are the ones above.
            num_samples: int, k of `log_likelihood`. Defaults to `5000` (Burda et al.).

        Example:

        ```python
        model.export("served")
        served = tf.saved_model.load("served")    # any TensorFlow process
        served.log_likelihood(x, seed=0)           # == model.log_likelihood(x, seed=0)
        ```
        """
        from keras.export import ExportArchive

        if format != "tf_saved_model" or input_signature is not None or kwargs:
            raise ValueError(
                f"{type(self).__name__}.export writes a TensorFlow SavedModel with the "
                "endpoints log_likelihood, elbo, sample, reconstruct and encode, whose "
                "signatures are fixed: `format` must be 'tf_saved_model' and "
                "`input_signature` None, and it takes no other option than `num_samples`. "
                f"Received: format={format!r}, input_signature={input_signature!r}, "
                f"other options {sorted(kwargs)}"
            )
        num_samples = validation.check_positive_int(num_samples, "num_samples")
        check_export_supported()
        archive = ExportArchive()
        archive.track(self)
        for name, (fn, signature, compiled) in self._serving_endpoints(num_samples).items():
            add_export_endpoint(archive, name, fn, signature, compiled)
        archive.write_out(filepath, verbose=True if verbose is None else verbose)

    def _serving_endpoints(self, num_samples):
        """`{name: (fn, signature, compiled)}`: the functions `export` serves, their arguments
        as `(name, shape, dtype)`, and whether the Python method each serves runs through
        `compile_model_function` (the endpoint then compiles as it does:
        `backend.add_export_endpoint`)."""
        x = ("x", (None, self.data_dim), "float32")
        seed = ("seed", (), "int32")
        num_examples = ("num_examples", (), "int32")
        batch_size = inspect.signature(self.log_likelihood).parameters["batch_size"].default
        calls = _bound_calls(num_samples, batch_size)

        def log_likelihood(x, seed):
            x, stream = self._check_x(x), SeedStream(seed)
            accumulator = StreamingLogMeanExp()
            for pass_size, passes, remainder in calls:
                logsumexp = self._logsumexp_of_log_weights(
                    x, stream, pass_size, passes, remainder, False
                )
                accumulator.update_logsumexp(logsumexp, pass_size * passes + remainder)
            return accumulator.result()

        def elbo(x, seed):
            x = self._check_x(x)
            return objectives.elbo_terms(self.infer(x, 1, SeedStream(seed)), x)["elbo"]

        def sample(num_examples, seed):
            stream = SeedStream(seed)
            likelihood = self.generate(num_examples, stream)
            return {"samples": likelihood.sample(seed=tfp_seed(stream)), "means": likelihood.mean()}

        def reconstruct(x, seed):
            return self._reconstruction(self._check_x(x), SeedStream(seed))

        def encode(x, seed):
            posteriors = self._posteriors(self._check_x(x), SeedStream(seed))
            out = {}
            for i, q in enumerate(posteriors):
                out[f"mean_{i + 1}"], out[f"stddev_{i + 1}"] = q.mean(), q.stddev()
            return out

        return {
            "log_likelihood": (log_likelihood, [x, seed], True),
            "elbo": (elbo, [x, seed], True),
            "sample": (sample, [num_examples, seed], True),
            "reconstruct": (reconstruct, [x, seed], True),
            "encode": (encode, [x, seed], True),
        }

    # -- densities at given latents (wake-sleep, score-function objectives) ----------------

    def sample_prior(self, num_examples, seed_generator):
        """z_l ~ p(z_l) = N(0, I) for each layer: a list of `[num_examples, K_l]`, bottom first.

        The default for models whose latents are independent standard normals (those that set
        `standard_normal_prior = True`: VAE, DLGM, factor analysis); a model with a learned or
        hierarchical prior overrides it and `prior_log_prob`.
        """
        self._check_standard_normal_prior("sample_prior")
        return [
            standard_normal(k, self.variable_dtype).sample(
                num_examples, seed=tfp_seed(seed_generator)
            )
            for k in self.latent_dims
        ]

    def dream(self, num_examples, seed_generator):
        """Ancestral draws (z, x) ~ p(z) p(x | z): the sleep phase's dreams (Hinton et al. 1995).

        Returns:
            `(latents, x)`: a list of `[num_examples, K_l]` (bottom first) and
            `[num_examples, data_dim]`.
        """
        latents = self.sample_prior(num_examples, seed_generator)
        likelihood = self.decode(_decoder_input(latents))
        return latents, likelihood.sample(seed=tfp_seed(seed_generator))

    def joint_log_prob(self, x, latents, training=False):
        """log p(x, z) = log p(x | z) + log p(z) at given latents (`prior_log_prob`).

        Args:
            x: `[B, D]`.
            latents: list of `[..., B, K_l]`, bottom first.

        Returns:
            `[..., B]`; gradients reach the generative weights (and the latents).
        """
        log_likelihood = self.decode(_decoder_input(latents), training=training).log_prob(x)
        return log_likelihood + self.prior_log_prob(latents, training=training)

    def prior_log_prob(self, latents, training=False):
        """log p(z) = sum_l log p(z_l) at given latents, p(z_l) = N(0, I); a model with a
        learned or hierarchical prior overrides it.

        Args:
            latents: list of `[..., B, K_l]`, bottom first.

        Returns:
            `[..., B]`.
        """
        self._check_standard_normal_prior("prior_log_prob")
        return sum(
            standard_normal(k, self.variable_dtype).log_prob(z)
            for k, z in zip(self.latent_dims, latents, strict=True)
        )

    def posterior_log_prob(self, x, latents, training=False):
        """log q(z | x) = sum_l log q(z_l | x) at given latents (`objectives.posterior_log_prob`).

        Args:
            x: `[B, D]`.
            latents: list of `[..., B, K_l]`, bottom first.

        Returns:
            `[..., B]`; gradients reach the recognition weights (and the latents).
        """
        trace = self.infer(x, 1, self.seed_generator, training=training)
        return objectives.posterior_log_prob(trace, latents)

    # -- helpers ---------------------------------------------------------------------------

    def _check_standard_normal_prior(self, method):
        if not self.standard_normal_prior:
            raise NotImplementedError(
                f"{type(self).__name__}.{method} is not defined: the default assumes every "
                "latent layer has the prior N(0, I) (`standard_normal_prior = True`). Override "
                "`sample_prior` and `prior_log_prob` for this model's prior."
            )

    @property
    def support(self):
        """The support of p(x | z): `"binary"` or `"real"`."""
        return self.observation.support

    def _check_x(self, x, name="x", allow_nan=False):
        return validation.check_data(
            x, self.data_dim, self.support, self.variable_dtype, name, allow_nan=allow_nan
        )

    def _seed_generator(self, seed):
        seed = validation.check_seed(seed)
        return self.seed_generator if seed is None else keras.random.SeedGenerator(seed)

    def save_own_variables(self, store):
        """Keras' own variables plus the random stream's state, which Keras does not save.

        With it, a checkpoint (`model.save`) resumes the model's random stream where it
        stopped, so a resumed run draws the noise the uninterrupted run would have.
        """
        super().save_own_variables(store)
        store[_SEED_STATE] = ops.convert_to_numpy(self.seed_generator.state)

    def load_own_variables(self, store):
        """Loads what `save_own_variables` saved; files without the random stream's state
        (weights saved before it was saved) leave the stream at its seed."""
        keys = [key for key in store.keys() if key != _SEED_STATE]
        if len(keys) != len(store.keys()):
            self.seed_generator.state.assign(store[_SEED_STATE])
        super().load_own_variables({key: store[key] for key in keys})

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dims": self.latent_dims,
            "data_dim": self.data_dim,
            "likelihood": self.likelihood,
            "objective": self.objective.get_config(),
            "seed": self.seed,
        }


def _decoder_input(latents):
    """What `decode` takes: one tensor for a single latent layer, the list for several."""
    return latents[0] if len(latents) == 1 else latents


def _bound_calls(num_samples, batch_size):
    """The compiled calls of L_k over batches of `batch_size`: `(pass_size, passes,
    remainder)` each, `pass_size * passes + remainder` samples, `num_samples` in all.

    A pass has `_ROWS_PER_PASS` rows, a call `_ROWS_PER_CHUNK` (at least one pass each); the
    last call's `remainder` samples complete `num_samples`.
    """
    pass_size = max(1, min(num_samples, _ROWS_PER_PASS // batch_size))
    per_call = max(1, _ROWS_PER_CHUNK // (pass_size * batch_size))
    passes, remainder = divmod(num_samples, pass_size)
    calls = [(pass_size, per_call, 0)] * (passes // per_call)
    if passes % per_call or remainder:
        calls.append((pass_size, passes % per_call, remainder))
    return calls


def _batches(x, batch_size):
    for start in range(0, math.ceil(len(x) / batch_size) * batch_size, batch_size):
        yield x[start : start + batch_size]
