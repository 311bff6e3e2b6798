"""Bad input at every public entry point: the exception type and the words of its message.

One table, one row per case: wrong shape, dtype, NaN, inf, values outside the likelihood's
support, an empty batch, absurd sizes, wrong types and unknown names, for the model
constructors, the bounds, `sample`, `active_units`, `impute`, `datasets.mnist`, `zoo.load`,
`training.train`, `evaluation.evaluate_protocol` and the command line (in process:
`tfdlgm.cli.main`, its exit status and its one line on stderr; the bad tables given to
`tfdlgm impute --input` are in `test_impute_files.py`). The bad-data table of the
core bounds (every bad array at `elbo`, `iwae_bound`, `log_likelihood`, `reconstruct`,
`encode`) is in `test_validation.py`, beside the property-based tests of the validators.
"""

# ruff: noqa: E501  (the tables keep one case per line, its message in full, to be read down)

import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from tfdlgm import cli, datasets, evaluation, training, zoo
from tfdlgm.models import DLGM, VAE, FactorAnalysis, LadderVAE

D = 6
GOOD = np.array([[0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 0]], "float32")
MASK = np.array([[True, True, True, False, False, False]] * 2)  # bottom half missing
NAN = np.where(np.eye(2, D, 2, dtype=bool), np.nan, GOOD).astype("float32")
INF = np.where(np.eye(2, D, 0, dtype=bool), np.inf, GOOD).astype("float32")


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    """What the cases need: small models of each family and a scratch folder."""
    folder = tmp_path_factory.mktemp("bad_input")
    (folder / "not-a-model.keras").write_text("not a zip archive")
    (folder / "empty").mkdir()
    return types.SimpleNamespace(
        vae=VAE(latent_dim=2, hidden=(8,), data_dim=D, seed=0),
        dlgm=DLGM(latent_dims=(3, 2), hidden=(8,), data_dim=D, seed=0),
        lvae=LadderVAE(latent_dims=(3, 2), hidden=(8, 4), data_dim=D, seed=0),
        fa=FactorAnalysis(latent_dim=1, data_dim=D),
        folder=folder,
    )


def _compiled():
    model = VAE(latent_dim=2, hidden=(8,), data_dim=D, seed=0)
    model.compile(optimizer="adam")
    return model


V = ValueError
CASES = [
    # -- model constructors ------------------------------------------------------------------
    ("VAE latent_dim str", lambda c: VAE(latent_dim="50"), V, r"`latent_dim` must be a positive int. Received: latent_dim='50'"),
    ("VAE latent_dim None", lambda c: VAE(latent_dim=None), V, r"Received: latent_dim=None"),
    ("VAE latent_dim float", lambda c: VAE(latent_dim=2.5), V, r"`latent_dim` must be a positive int. Received: latent_dim=2.5"),
    ("VAE latent_dim 0", lambda c: VAE(latent_dim=0), V, r"Received: latent_dim=0"),
    ("VAE hidden None", lambda c: VAE(hidden=None), V, "`hidden` must be a tuple of positive ints. Received: hidden=None"),
    ("VAE hidden negative", lambda c: VAE(hidden=(8, -1)), V, r"`hidden` must be a tuple of positive ints. Received: hidden=\(8, -1\)"),
    ("VAE data_dim -1", lambda c: VAE(data_dim=-1), V, r"`data_dim` must be a positive int \(>= 1\). Received: data_dim=-1"),
    ("VAE data_dim dict", lambda c: VAE(data_dim={}), V, r"`data_dim` must be a positive int. Received: data_dim=\{\}"),
    ("VAE likelihood unknown", lambda c: VAE(likelihood="poisson"), V, "`likelihood` must be one of .*Received: likelihood='poisson'"),
    ("VAE likelihood None", lambda c: VAE(likelihood=None), V, "`likelihood` must be one of .*Received: likelihood=None"),
    ("VAE covariance unknown", lambda c: VAE(covariance="full"), V, "`covariance` must be one of .*'rank_one'.*Received: covariance='full'"),
    ("VAE objective unknown", lambda c: VAE(objective="reinforce"), V, "`objective` must be one of .*Received: objective='reinforce'"),
    ("VAE objective dict without name", lambda c: VAE(objective={}), V, r"a config dict with one of those names.*Received: objective=\{\}"),
    ("VAE objective k 0", lambda c: VAE(objective={"name": "iwae", "num_samples": 0}), V, "`num_samples` must be a positive int"),
    ("VAE seed float", lambda c: VAE(seed=1.5), V, "`seed` must be None or a non-negative int. Received: seed=1.5"),
    ("VAE seed negative", lambda c: VAE(seed=-3), V, "Received: seed=-3"),
    ("VAE activation unknown", lambda c: VAE(activation="nope"), V, "activation function identifier: nope"),
    ("DLGM latent_dims empty", lambda c: DLGM(latent_dims=()), V, r"non-empty tuple of positive ints. Received: latent_dims=\(\)"),
    ("DLGM latent_dims negative", lambda c: DLGM(latent_dims=(5, -1)), V, r"Received: latent_dims=\(5, -1\)"),
    ("DLGM latent_dims str", lambda c: DLGM(latent_dims="200"), V, "`latent_dims` must be a non-empty tuple"),
    ("DLGM hidden 0", lambda c: DLGM(hidden=(0,)), V, r"`hidden` must be a tuple of positive ints. Received: hidden=\(0,\)"),
    ("DLGM kappa negative", lambda c: DLGM(kappa=-1.0, num_train_examples=10), V, "`kappa` must be a positive float or None. Received: kappa=-1.0"),
    ("DLGM kappa without N", lambda c: DLGM(kappa=1.0), V, "`kappa` needs `num_train_examples`.*Received: kappa=1.0, num_train_examples=None"),
    ("DLGM num_train_examples 0", lambda c: DLGM(num_train_examples=0), V, "`num_train_examples` must be a positive int"),
    ("DLGM input_noise 1", lambda c: DLGM(input_noise=1.0), V, r"`input_noise` must be None or a float in \(0, 1\). Received: input_noise=1.0"),
    ("DLGM input_noise str", lambda c: DLGM(input_noise="0.1"), V, "Received: input_noise='0.1'"),
    ("LadderVAE hidden of another length", lambda c: LadderVAE(latent_dims=(4, 2), hidden=(8,)), V, r"one width per stochastic layer \(len\(latent_dims\) = 2\). Received: hidden=\(8,\)"),
    ("LadderVAE hidden None", lambda c: LadderVAE(hidden=None), V, "Received: hidden=None"),
    ("LadderVAE latent_dims dict", lambda c: LadderVAE(latent_dims={"a": 1}), V, "`latent_dims` must be a non-empty tuple"),
    ("LadderVAE layers_per_block 0", lambda c: LadderVAE(latent_dims=(4, 2), hidden=(8, 4), layers_per_block=0), V, r"`layers_per_block` must be a positive int \(>= 1\). Received: layers_per_block=0"),
    ("FactorAnalysis latent_dim 0", lambda c: FactorAnalysis(latent_dim=0), V, r"Received: latent_dim=0"),
    ("LadderVAE ladder str", lambda c: LadderVAE(latent_dims=(4, 2), hidden=(8, 4), ladder="no"), V, r"`ladder` must be a bool. Received: ladder='no'"),
    ("LadderVAE batch_norm str", lambda c: LadderVAE(latent_dims=(4, 2), hidden=(8, 4), batch_norm="false"), V, r"`batch_norm` must be a bool. Received: batch_norm='false'"),
    ("objective name a list", lambda c: VAE(objective={"name": ["elbo"]}), V, r"`objective` must be one of .* Received: objective=\{'name': \['elbo'\]\}"),
    ("objective unknown option", lambda c: VAE(objective={"name": "elbo", "k": 5}), V, r"`objective` 'elbo' does not take the options \['k'\]"),
    ("FactorAnalysis data_dim str", lambda c: FactorAnalysis(data_dim="5"), V, "`data_dim` must be a positive int. Received: data_dim='5'"),
    ("FactorAnalysis likelihood", lambda c: FactorAnalysis(likelihood="bernoulli"), V, "`likelihood` of FactorAnalysis is always 'gaussian'.*Received: likelihood='bernoulli'"),
    # -- bounds (the bad-data table is in test_validation.py) ------------------------------------
    ("elbo row of NaN", lambda c: c.vae.elbo(np.full_like(GOOD, np.nan)), V, r"`x` must have at least one observed \(not NaN\) entry in every row. Received: 2 rows without one, e.g. row 0"),
    ("elbo inf, DLGM", lambda c: c.dlgm.elbo(INF), V, "`x` must be finite. Received: inf"),
    ("elbo dict", lambda c: c.vae.elbo({"x": GOOD}), V, "`x` must be an array of numbers. Received: type dict"),
    ("elbo strings", lambda c: c.vae.elbo([["a"] * D]), V, "`x` must have a floating dtype. Received: dtype=<U1"),
    ("elbo num_samples 0", lambda c: c.vae.elbo(GOOD, num_samples=0), V, r"`num_samples` must be a positive int \(>= 1\). Received: num_samples=0"),
    ("elbo grey levels, LadderVAE", lambda c: c.lvae.elbo(GOOD * 0.5), V, r"binary values \(0 or 1\) for a Bernoulli likelihood.*use likelihood='gaussian'"),
    ("iwae_bound k None", lambda c: c.vae.iwae_bound(GOOD, None), V, "`num_samples` must be a positive int. Received: num_samples=None"),
    ("iwae_bound k str", lambda c: c.vae.iwae_bound(GOOD, "5"), V, "Received: num_samples='5'"),
    ("iwae_bound batch_size 0", lambda c: c.vae.iwae_bound(GOOD, 5, batch_size=0), V, "`batch_size` must be a positive int.*Received: batch_size=0"),
    ("iwae_bound empty batch", lambda c: c.vae.iwae_bound(GOOD[:0], 5), V, r"`x` must hold at least one example. Received: shape=\(0, 6\)"),
    ("iwae_bound wrong width, DLGM", lambda c: c.dlgm.iwae_bound(GOOD[:, :5], 5), V, r"`x` must have shape \[batch, 6\].*Received: shape=\(2, 5\)"),
    ("log_likelihood k 0", lambda c: c.vae.log_likelihood(GOOD, num_samples=0), V, "Received: num_samples=0"),
    ("log_likelihood k -1", lambda c: c.vae.log_likelihood(GOOD, num_samples=-1), V, "Received: num_samples=-1"),
    ("log_likelihood grey float64", lambda c: c.vae.log_likelihood(GOOD.astype("float64") * 0.3, 5), V, "6 values outside {0, 1}, e.g. .*0.3"),
    ("log_likelihood inf, factor analysis", lambda c: c.fa.log_likelihood(INF, 5), V, "`x` must be finite. Received: inf"),
    ("log_likelihood uint8 images", lambda c: c.vae.log_likelihood((GOOD * 255).astype("uint8"), 5), V, r"floating dtype \(for images: x.astype\('float32'\) / 255\)"),
    # -- sample, active_units -----------------------------------------------------------------
    ("sample None", lambda c: c.vae.sample(None), V, "`num_examples` must be a positive int. Received: num_examples=None"),
    ("sample 0", lambda c: c.vae.sample(0), V, r"positive int \(>= 1\). Received: num_examples=0"),
    ("sample -1", lambda c: c.dlgm.sample(-1), V, "Received: num_examples=-1"),
    ("sample float", lambda c: c.vae.sample(2.0), V, "Received: num_examples=2.0"),
    ("sample absurd size", lambda c: c.vae.sample(10**12), V, "`num_examples` must be at most 357,913,941 for one call.*draw in several calls. Received: num_examples=1000000000000"),
    ("sample mean str", lambda c: c.vae.sample(2, mean="yes"), V, "`mean` must be a bool. Received: mean='yes'"),
    ("sample seed str", lambda c: c.lvae.sample(2, seed="0"), V, "`seed` must be None or a non-negative int. Received: seed='0'"),
    ("active_units threshold inf", lambda c: c.vae.active_units(GOOD, threshold=float("inf")), V, r"`threshold` must be a finite number \(Burda et al. use 0.01\). Received: threshold=inf"),
    ("active_units threshold None", lambda c: c.vae.active_units(GOOD, threshold=None), V, "Received: threshold=None"),
    ("active_units threshold str", lambda c: c.vae.active_units(GOOD, threshold="0.01"), V, "Received: threshold='0.01'"),
    ("active_units threshold NaN", lambda c: c.vae.active_units(GOOD, threshold=float("nan")), V, "Received: threshold=nan"),
    ("active_units num_samples 0", lambda c: c.dlgm.active_units(GOOD, num_samples=0), V, "`num_samples` must be a positive int.*Received: num_samples=0"),
    ("active_units batch_size 0", lambda c: c.vae.active_units(GOOD, batch_size=0), V, "Received: batch_size=0"),
    ("active_units NaN", lambda c: c.lvae.active_units(NAN), V, "`x` must be finite"),
    ("active_units wrong width", lambda c: c.vae.active_units(GOOD[:, :3]), V, r"Received: shape=\(2, 3\)"),
    # -- impute -------------------------------------------------------------------------------
    ("impute method unknown", lambda c: c.vae.impute(GOOD, MASK, method="gibbs"), V, "`method` must be one of .*Received: method='gibbs'"),
    ("impute steps 0", lambda c: c.vae.impute(GOOD, MASK, steps=0), V, "`steps` must be a positive int.*Received: steps=0"),
    ("impute num_chains -1", lambda c: c.vae.impute(GOOD, MASK, num_chains=-1), V, "Received: num_chains=-1"),
    ("impute float mask", lambda c: c.vae.impute(GOOD, MASK.astype("float32")), V, r"`mask` must be a bool array.*\(e.g. `~np.isnan\(x\)`\). Received: mask with dtype=float32"),
    ("impute mask of another shape", lambda c: c.vae.impute(GOOD, MASK[:, :3]), V, r"`mask` must have the shape of `x`, \(2, 6\). Received: mask.shape=\(2, 3\)"),
    ("impute nothing missing", lambda c: c.vae.impute(GOOD, np.ones_like(MASK), "pseudo_gibbs"), V, r"at least one missing \(False\) entry in every row. Received: 2 rows"),
    ("impute nothing observed", lambda c: c.fa.impute(GOOD, np.zeros_like(MASK)), V, r"at least one observed \(True\) entry in every row"),
    ("impute NaN where observed", lambda c: c.vae.impute(NAN, MASK), V, r"`x` must not hold NaN in observed entries.*NaN at index \(0, 2\), where mask is True"),
    ("impute grey levels observed", lambda c: c.vae.impute(GOOD * 0.5, MASK), V, "binary values .*Received: 3 values outside"),
    ("impute mask None", lambda c: c.vae.impute(GOOD, None), V, "`mask` must be an array of numbers. Received: type NoneType"),
    ("impute return_chain str", lambda c: c.vae.impute(GOOD, MASK, return_chain="yes"), V, "`return_chain` must be a bool. Received: return_chain='yes'"),
    ("impute seed -1", lambda c: c.vae.impute(GOOD, MASK, seed=-1), V, "Received: seed=-1"),
    ("impute int data", lambda c: c.vae.impute(GOOD.astype(int), MASK), V, "`x` must have a floating dtype. Received: dtype=int"),
    # -- datasets.mnist ---------------------------------------------------------------------------
    ("mnist split unknown", lambda c: datasets.mnist("training"), V, "`split` must be one of .*'validation'.*Received: split='training'"),
    ("mnist split None", lambda c: datasets.mnist(None), V, "Received: split=None"),
    ("mnist binarize unknown", lambda c: datasets.mnist("test", binarize="random"), V, "`binarize` must be one of .*Received: binarize='random'"),
    ("mnist batch_size 0", lambda c: datasets.mnist("test", batch_size=0), V, r"`batch_size` must be a positive int \(>= 1\). Received: batch_size=0"),
    ("mnist batch_size -1", lambda c: datasets.mnist("test", batch_size=-1), V, "Received: batch_size=-1"),
    ("mnist batch_size float", lambda c: datasets.mnist("test", batch_size=10.0), V, "Received: batch_size=10.0"),
    ("mnist seed -1", lambda c: datasets.mnist("test", seed=-1), V, r"`seed` must be a non-negative int \(>= 0\). Received: seed=-1"),
    ("mnist shuffle str", lambda c: datasets.mnist("test", shuffle="yes"), V, "`shuffle` must be a bool or None. Received: shuffle='yes'"),
    ("mnist drop_remainder str", lambda c: datasets.mnist("test", drop_remainder="no"), V, "`drop_remainder` must be a bool"),
    ("mnist path missing", lambda c: datasets.mnist("test", path=c.folder / "none.npz"), FileNotFoundError, r"none.npz \(from the `path` argument\) does not exist"),
    ("mnist path a folder", lambda c: datasets.mnist("test", path=c.folder), FileNotFoundError, "is a directory"),
    ("mnist path not an npz", lambda c: datasets.mnist("test", path=c.folder / "not-a-model.keras"), V, r"is not a valid .npz file \(it is not a zip archive\). Expected the layout of keras.datasets.mnist"),
    # -- zoo.load ---------------------------------------------------------------------------------
    ("zoo unknown name", lambda c: zoo.load("vae-mnst"), V, "Unknown preset 'vae-mnst'. Did you mean 'vae-mnist'\\? Known presets: \\[.*'vae-mnist'"),
    ("zoo empty name", lambda c: zoo.load(""), V, "Unknown preset ''"),
    ("zoo None", lambda c: zoo.load(None), V, "`name_or_path` must be a preset name or a folder path. Received: type NoneType"),
    ("zoo int", lambda c: zoo.load(3), V, "Received: type int"),
    ("zoo folder without metadata", lambda c: zoo.load(c.folder / "empty"), V, "is not a preset folder: it has no metadata.json"),
    ("zoo card unknown", lambda c: zoo.card("nope"), V, "Unknown preset 'nope'"),
    # -- training.train ---------------------------------------------------------------------------
    ("train epochs 0", lambda c: training.train(_compiled(), GOOD, epochs=0), V, r"`epochs` must be a positive int \(>= 1\). Received: epochs=0"),
    ("train epochs str", lambda c: training.train(_compiled(), GOOD, epochs="3"), V, "Received: epochs='3'"),
    ("train epochs None", lambda c: training.train(_compiled(), GOOD, epochs=None), V, "Received: epochs=None"),
    ("train warm-up 0", lambda c: training.train(_compiled(), GOOD, epochs=1, warm_up_epochs=0), V, "Received: warm_up_epochs=0"),
    ("train grey data", lambda c: training.train(_compiled(), GOOD * 0.5, epochs=1, verbose=0), V, "binary values"),
    ("train NaN data", lambda c: training.train(_compiled(), NAN, epochs=1, verbose=0), V, "`x` must be finite. Received: nan"),
    ("train wrong width", lambda c: training.train(_compiled(), GOOD[:, :3], epochs=1, verbose=0), V, r"must have shape \[batch, 6\]"),
    ("train uncompiled", lambda c: training.train(VAE(latent_dim=2, hidden=(8,), data_dim=D), GOOD, epochs=1), V, r"`model` must be compiled before training, e.g. `model.compile\(optimizer='adam'\)`"),
    ("train model str", lambda c: training.train("vae", GOOD, epochs=1), V, "`model` must be a compiled tfdlgm LatentModel.*Received: type str"),
    ("train resume without folder", lambda c: training.train(_compiled(), GOOD, epochs=1, resume=True), V, "`resume=True` needs `checkpoint_dir`.*Received: checkpoint_dir=None"),
    ("train callbacks None", lambda c: training.train(_compiled(), GOOD, epochs=1, callbacks=None), V, "`callbacks` must be a list of keras.callbacks.Callback. Received: type NoneType"),
    # -- evaluation.evaluate_protocol ---------------------------------------------------------------
    ("protocol k 0", lambda c: evaluation.evaluate_protocol(c.vae, GOOD, k=0), V, "`k` must be a positive int.*Received: k=0"),
    ("protocol ks with 0", lambda c: evaluation.evaluate_protocol(c.vae, GOOD, ks=(1, 0)), V, r"`ks` must be a tuple of positive ints. Received: ks=\(1, 0\)"),
    ("protocol ks int", lambda c: evaluation.evaluate_protocol(c.vae, GOOD, ks=5), V, "Received: ks=5"),
    ("protocol seed None", lambda c: evaluation.evaluate_protocol(c.vae, GOOD, k=2, seed=None), V, "`seed` must be a non-negative int: the protocol's figures are reproducible"),
    ("protocol seed -1", lambda c: evaluation.evaluate_protocol(c.vae, GOOD, seed=-1), V, "Received: seed=-1"),
    ("protocol NaN", lambda c: evaluation.evaluate_protocol(c.vae, NAN, k=2), V, "`x` must be finite"),
    ("protocol empty", lambda c: evaluation.evaluate_protocol(c.vae, GOOD[:0], k=2), V, "at least one example"),
    ("protocol x str", lambda c: evaluation.evaluate_protocol(c.vae, "x", k=2), V, "`x` must be an array of numbers. Received: type str"),
    ("protocol model str", lambda c: evaluation.evaluate_protocol("vae", GOOD, k=2), V, "`model` must be a tfdlgm LatentModel. Received: type str"),
    ("protocol k_examples 0", lambda c: evaluation.evaluate_protocol(c.vae, GOOD, k=2, k_examples=0), V, "Received: k_examples=0"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_raises_a_clear_error(c, call, error, message):
    with pytest.raises(error, match=message):
        call(c)


TRAIN = ["train", "--model", "vae", "--epochs", "1"]
CLI_CASES = [
    ("no verb", [], 2, "usage: tfdlgm"),
    ("unknown backend", ["--backend", "theano", "zoo", "list"], 2, "invalid choice: 'theano'"),
    ("unknown verb", ["fit"], 2, "invalid choice: 'fit'"),
    ("unknown model", ["train", "--model", "gan", "--epochs", "1"], 2, r"tfdlgm train: error: --model: Unknown model 'gan'. Registered models: dlgm, fa, lvae, vae\."),
    ("epochs negative", ["train", "--model", "vae", "--epochs", "-3"], 2, "argument --epochs: must be a positive int, got '-3'"),
    ("learning rate negative", [*TRAIN, "--learning-rate", "-0.1"], 2, "must be a positive finite number, got '-0.1'"),
    ("num samples 0", [*TRAIN, "--num-samples", "0"], 2, "argument --num-samples: must be a positive int, got '0'"),
    ("devices 0", [*TRAIN, "--devices", "0"], 2, "argument --devices: must be a positive int, got '0'"),
    ("more train examples than the split", [*TRAIN, "--train-examples", "1000000"], 2, "--train-examples 1,000,000: the MNIST train split has 50,000 images"),
    ("more validation examples than the split", [*TRAIN, "--validation-examples", "1000000"], 2, "--validation-examples 1,000,000: the MNIST validation split has 10,000 images"),
    ("k examples beyond examples", ["eval", "vae-mnist", "--examples", "10", "--k-examples", "20"], 2, "--k-examples 20 is more than --examples 10"),
    ("eval more examples than the split", ["eval", "vae-mnist", "--examples", "1000000", "--k", "2"], 2, "--examples 1,000,000: the MNIST test split has 10,000 images"),
    ("impute more examples than the split", ["impute", "vae-mnist", "--examples", "1000000", "-o", "x.png"], 2, "--examples 1,000,000: the MNIST test split has 10,000 images"),
    ("sample output not png", ["sample", "vae-mnist", "-o", "x.jpg"], 2, "argument -o/--output: must be a .png file name, got 'x.jpg'"),
    ("impute output without suffix", ["impute", "vae-mnist", "-o", "completed"], 2, "must be a .png file name, got 'completed'"),
    ("zoo card folder without metadata", ["zoo", "card", "./tests"], 1, "tfdlgm zoo card: error: tests is not a preset folder: it has no metadata.json"),
    ("epochs 0", ["train", "--model", "vae", "--epochs", "0"], 2, "argument --epochs: must be a positive int, got '0'"),
    ("batch size 0", [*TRAIN, "--batch-size", "0"], 2, "argument --batch-size: must be a positive int, got '0'"),
    ("batch size str", [*TRAIN, "--batch-size", "many"], 2, "must be a positive int, got 'many'"),
    ("learning rate NaN", [*TRAIN, "--learning-rate", "nan"], 2, "argument --learning-rate: must be a positive finite number, got 'nan'"),
    ("learning rate inf", [*TRAIN, "--learning-rate", "inf"], 2, "must be a positive finite number, got 'inf'"),
    ("seed -1", [*TRAIN, "--seed", "-1"], 2, "argument --seed: must be a non-negative int, got '-1'"),
    ("hidden 0", [*TRAIN, "--hidden", "200,0"], 2, "must be positive ints separated by commas .*got '200,0'"),
    ("output not .keras", [*TRAIN, "--output", "model.h5"], 2, "must be a .keras file name, got 'model.h5'"),
    ("resume without folder", [*TRAIN, "--resume"], 2, "tfdlgm train: error: --resume needs --checkpoint-dir"),
    ("hidden for fa", ["train", "--model", "fa", "--epochs", "1", "--hidden", "8"], 2, "--hidden does not apply to --model fa"),
    ("two latent layers for vae", [*TRAIN, "--latent-dims", "2,3"], 2, "--model vae has one latent layer.*Received: 2,3"),
    ("unknown covariance", [*TRAIN, "--covariance", "full"], 2, "tfdlgm train: error: `covariance` must be one of"),
    ("eval unknown preset", ["eval", "vae-mnst"], 1, "tfdlgm eval: error: Unknown preset 'vae-mnst'. Did you mean 'vae-mnist'"),
    ("eval k 0", ["eval", "vae-mnist", "--k", "0"], 2, "argument --k: must be a positive int, got '0'"),
    ("eval missing file", ["eval", "missing/model.keras"], 1, "missing/model.keras: no such file"),
    ("eval split unknown", ["eval", "vae-mnist", "--split", "dev"], 2, "argument --split: invalid choice: 'dev'"),
    ("sample n -1", ["sample", "vae-mnist", "-n", "-1", "-o", "x.png"], 2, "argument -n: must be a positive int, got '-1'"),
    ("impute mask out of range", ["impute", "vae-mnist", "--mask", "random:1.5", "-o", "x.png"], 2, r"must be bottom-half, top-half or random:P with 0 < P < 1 .*got 'random:1.5'"),
    ("impute unknown method", ["impute", "vae-mnist", "--method", "gibbs", "-o", "x.png"], 2, "argument --method: invalid choice: 'gibbs'"),
    ("impute input and mask", ["impute", "vae-mnist", "--input", "t.csv", "--mask", "bottom-half"], 2, "argument --mask: not allowed with argument --input"),
    ("impute input not a table", ["impute", "vae-mnist", "--input", "t.txt"], 2, r"argument --input: must be a .csv or .npy file name, got 't.txt'"),
    ("impute mask without output", ["impute", "vae-mnist", "--mask", "bottom-half"], 2, "tfdlgm impute: error: -o/--output is required with --mask: the PNG file to write"),
    ("impute samples for a chain", ["impute", "vae-mnist", "--method", "pseudo_gibbs", "--num-samples", "10", "-o", "x.png"], 2, "--num-samples applies to --method importance only; this run does not use it"),
    ("impute steps for importance", ["impute", "vae-mnist", "--input", "t.csv", "--steps", "5"], 2, r"--steps applies to a chain method \(pseudo_gibbs, metropolis_within_gibbs\) only"),
    ("impute examples for a table", ["impute", "vae-mnist", "--input", "t.csv", "--examples", "5"], 2, r"--examples applies to --mask \(MNIST test images\) only"),
    ("impute chains for images", ["impute", "vae-mnist", "--num-chains", "4", "-o", "x.png"], 2, "--num-chains applies to --input with a chain method only"),
    ("impute overwrite for images", ["impute", "vae-mnist", "--overwrite", "-o", "x.png"], 2, "--overwrite applies to --input only"),
    ("impute one chain for a table", ["impute", "vae-mnist", "--input", "t.csv", "--method", "pseudo_gibbs", "--num-chains", "1"], 2, "argument --num-chains: must be an int >= 2, got '1'"),
    ("zoo card unknown", ["zoo", "card", "nope"], 1, "tfdlgm zoo card: error: Unknown preset 'nope'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "argv, status, message", [case[1:] for case in CLI_CASES], ids=[case[0] for case in CLI_CASES]
)
def test_bad_command_lines_fail_with_a_status_and_one_message(capsys, argv, status, message):
    try:
        received = cli.main(argv)
    except SystemExit as exit:  # argparse's usage errors
        received = exit.code
    err = capsys.readouterr().err
    assert received == status, err
    assert re.search(message, err), err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert all(line.startswith("tfdlgm") for line in errors) and len(errors) <= 1, err
    if status == 1:
        assert len(err.strip().splitlines()) == 1, err  # one line, no traceback


def test_a_computation_the_machine_cannot_run_is_one_line(tmp_path, capsys, monkeypatch):
    """Out of memory (or any error of TensorFlow's or JAX's runtime) in the middle of a verb:
    one line naming the error, with a hint, exit status 1."""

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 313. GiB for an array with shape (784, 100000000)")

    monkeypatch.setattr(training, "train", out_of_memory)
    argv = ["train", "--model", "fa", "--latent-dims", "2", "--epochs", "1"]
    assert cli.main([*argv, "--train-examples", "20", "--validation-examples", "0"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "tfdlgm train: error: the computation failed (MemoryError: Unable to allocate 313. GiB "
        "for an array with shape (784, 100000000)): the machine ran out of memory; ask for "
        "less (--batch-size, --num-samples, --hidden, --examples, -n, --k)\n"
    )
    tf = pytest.importorskip("tensorflow")
    error = tf.errors.ResourceExhaustedError(
        None, None, "{{function_node __wrapped__X}} OOM when allocating tensor\nline 2"
    )
    assert cli._machine_error_message(error).startswith(
        "the computation failed (ResourceExhaustedError: OOM when allocating tensor): the "
        "machine ran out of memory"
    )


# `tfdlgm train --logdir logs` in a process whose files may not grow past 4,000 bytes
# (RLIMIT_FSIZE; Python ignores SIGXFSZ, so the write fails with EFBIG as on a full disk).
_EVENTS_OVER_THE_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))
from tfdlgm.cli import main
sys.exit(main(["train", "--model", "fa", "--latent-dims", "2", "--epochs", "2",
               "--train-examples", "50", "--validation-examples", "10", "--logdir", "logs"]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
def test_an_events_file_over_a_size_limit_is_one_line(tmp_path):
    pytest.importorskip("tensorboard")
    process = subprocess.run(
        [sys.executable, "-c", _EVENTS_OVER_THE_LIMIT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert process.returncode == 1, process.stderr[-3000:]
    assert "Traceback" not in process.stderr, process.stderr[-3000:]
    errors = [line for line in process.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, process.stderr[-3000:]
    assert errors[0].startswith("tfdlgm train: error: a file could not be written (logs/"), errors
    assert "File too large" in errors[0] and "raise the file-size limit" in errors[0], errors


def test_bad_files_given_to_the_command_line(c, capsys):
    assert cli.main(["eval", str(c.folder / "not-a-model.keras")]) == 1
    assert "is not a model file: a .keras file is the zip archive model.save writes" in (
        capsys.readouterr().err
    )
    output = str(c.folder / "no-such-folder" / "x.png")
    assert cli.main(["sample", "vae-mnist", "-n", "2", "-o", output]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {output}: the folder" in err and "does not exist" in err


def test_a_missing_optional_package_is_one_line_from_the_command_line(
    tmp_path, capsys, monkeypatch
):
    """tensorboard (logs without TensorFlow) is optional: where it is not installed, the
    command that needs it says so in one line, exit status 1."""
    for name in {"tensorboard", *(n for n in sys.modules if n.startswith("tensorboard."))}:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails
    argv = ["train", "--model", "fa", "--latent-dims", "2", "--epochs", "1"]
    argv += ["--train-examples", "20", "--logdir", str(tmp_path / "logs")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "needs the `tensorboard` package" in err, err
