"""The benchmark suite (`benchmarks/run.py`, `goals.py`, `workers.py`) end to end, through
`tfdlgm bench`.

`--smoke` (the active backend, a tiny model, one window; ~15 s) runs in the fast suite; the
`--quick` run CI uses (every backend and the peer, ~3 min) is marked slow.
"""

import argparse
import importlib
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import pytest

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"
TIMEOUT = 600
TINY_TRAIN_FLOPS = 3 * 2 * (784 * 16 + 2 * 16 * 2 + 2 * 16 + 16 * 784)  # enc, mu+sigma, dec


def _suite(name="run"):
    """A module of benchmarks/ (scripts, not part of the package), imported the way the
    suite's modules import each other."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.mark.parametrize(
    "gpus, counts, virtual",
    [(0, [1, 2], True), (1, [1], False), (2, [1, 2], False), (6, [1, 2, 4, 6], False)],
)
def test_scaling_runs_the_devices_the_machine_has(gpus, counts, virtual):
    found, is_virtual, meaning = _suite().scaling_device_counts({"gpu_count": gpus})
    assert (found, is_virtual) == (counts, virtual)
    assert ("not a speed-up" in meaning) == virtual
    assert ("no scaling figure" in meaning) == (gpus == 1)


def test_the_gpu_session_script_parses_and_names_files_that_exist():
    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "gpu_session.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for path in ("benchmarks/run.py", "tools/train.py", "../shared/tools/device-wheels.sh"):
        assert path in text and (script.parents[1] / path).exists(), path


@pytest.mark.parametrize("gpu", ["NVIDIA H200", None])
def test_gpu_goals_judge_batch_1000_against_torch_compile_and_the_test_set_time(gpu):
    goals = _suite("goals")
    model = "VAE 784-200-200-50 (zoo)"
    results = {
        "device": {"gpu": gpu},
        "derived": [
            {"model": model, "batch_size": 100, "variant": "jax", "vs_torch-compile": 1.0},
            {
                "model": model,
                "batch_size": 1000,
                "variant": "jax",
                "vs_torch-compile": 1.5,
                "best_vs_torch-compile": 1.6,
            },
            {"model": model, "batch_size": 1000, "variant": "tensorflow", "vs_torch-compile": 1.1},
        ],
        "variants": {
            "jax": {
                "log_likelihood": [
                    {"model": model, "images": 10, "k": 5000, "seconds": 0.5},
                    {
                        "preset": "vae-mnist",
                        "images": 10_000,
                        "k": 5000,
                        "seconds": 12.5,
                        "data": "random binary images (MNIST not found)",
                    },
                ]
            }
        },
    }
    versus_compile, test_set = goals.goals(results)[3:]
    if gpu is None:
        assert versus_compile["status"] == test_set["status"] == "not measured (no GPU in this run)"
        return
    assert versus_compile["status"] == "met"  # the fastest variant at batch 1000 only
    assert [(c["case"], c["value"]) for c in versus_compile["cases"]] == [
        (f"{model}, batch 1000 (jax; fastest windows 1.60x)", 1.5)
    ]
    assert test_set["status"] == "missed" and test_set["cases"][0]["text"] == "12.5 s"
    assert "10,000 test images in < 10 s" in test_set["goal"]


class _RecordingModel:
    """Stands in for a Keras model in `time_fit`: records its turn, takes `seconds` an epoch."""

    jit_compile = False

    def __init__(self, name, seconds, turns):
        self.name, self.seconds, self.turns = name, seconds, turns

    def compile(self, **kwargs):
        pass

    def fit(self, x, batch_size, epochs, shuffle, verbose, callbacks):
        for epoch in range(epochs):
            self.turns.append(self.name)
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            time.sleep(self.seconds)
            for callback in callbacks:
                callback.on_epoch_end(epoch)


def test_time_fit_takes_turns_in_an_order_that_reverses_every_epoch():
    turns = []
    models = [_RecordingModel("ours", 0.05, turns), _RecordingModel("minimal", 0.01, turns)]
    ours, minimal = _suite("workers").time_fit(
        models, batch_size=10, steps=3, windows=3, jit_compile=False
    )
    assert turns == ["ours", "minimal", "minimal", "ours", "ours", "minimal", "minimal", "ours"]
    for rates, seconds in ((ours, 0.05), (minimal, 0.01)):
        assert len(rates["window_seconds"]) == 3  # the warm-up epoch is left out
        assert all(seconds <= window < seconds + 0.5 for window in rates["window_seconds"])
        median = statistics.median(rates["window_seconds"])
        assert rates["examples_per_second"] == pytest.approx(30 / median)
    assert ours["examples_per_second"] < minimal["examples_per_second"]


def _stopping_child(partial):
    """A stand-in for subprocess.run: the worker saves `partial` (None: nothing), then the
    budget runs out. Records the timeout it was given."""
    given = []

    def run(command, env, capture_output, text, timeout):
        given.append(timeout)
        if partial is not None:
            spec = json.loads(command[-1])
            pathlib.Path(spec["output"]).write_text(json.dumps(partial))
        raise subprocess.TimeoutExpired(command, timeout)

    return run, given


@pytest.mark.parametrize("partial", [{"train": [{"examples_per_second": 5.0}]}, None])
def test_a_child_stopped_by_the_budget_keeps_what_it_had_saved(monkeypatch, partial):
    suite = _suite()
    run, given = _stopping_child(partial)
    monkeypatch.setattr(suite.subprocess, "run", run)
    result = suite._run_child(
        {"kind": "torch", "plan": {}}, {}, suite.Budget(time.perf_counter(), 60)
    )
    assert 50 < given[0] <= 60
    stopped = result["stopped"] if partial else result["error"]
    assert "the --max-seconds budget ran out" in stopped
    assert result.get("train") == (partial or {}).get("train")


def test_a_spent_budget_starts_no_child_and_a_partial_report_says_so(monkeypatch, tmp_path):
    suite = _suite()
    monkeypatch.setattr(suite.subprocess, "run", lambda *a, **k: pytest.fail("a child ran"))
    spent = suite.Budget(time.perf_counter() - 10, 5)
    assert spent.spent() and not suite.Budget(time.perf_counter(), None).spent()
    result = suite._run_child({"kind": "torch", "plan": {}}, {}, spent)
    assert result["error"] == "not run: the --max-seconds budget (5 s) was spent"
    results = {
        "command": "python benchmarks/run.py --max-seconds 5",
        "mode": "full",
        "date": "2026-12-04T00:00:00",
        "device": {"name": "cpu", "gpu": None, "cpu_cores": 2},
        "load_average_start": [0.0, 0.0, 0.0],
        "variants": {
            "jax": {
                "stopped": "stopped after 5 s",
                "train": [],
                "versions": {"keras": "3"},
                "backend": "jax",
                "jit_compile": "auto",
                "accelerator": "cpu",
            }
        },
        "peer": {"status": "not run"},
        "zoo": None,
    }
    suite._save(results, tmp_path / "partial.json", time.perf_counter(), complete=False)
    text = (tmp_path / "partial.md").read_text()
    assert "**Partial results**" in text
    assert (
        "jit_compile='auto', steps_per_execution=1 (cpu); keras 3; stopped after 5 s (what" in text
    )
    assert json.loads((tmp_path / "partial.json").read_text())["complete"] is False
    suite._save(results, tmp_path / "whole.json", time.perf_counter(), complete=True)
    assert "Partial" not in (tmp_path / "whole.md").read_text()


def test_step_cost_compares_the_compiled_steps_and_ours_takes_no_extra_transcendentals():
    """benchmarks/step_cost.py on the tiny VAE: the same FLOPs to 2% (ours adds the metrics'
    updates) and the same exponentials and logarithms to 1% (TFP's Bernoulli would add a
    second softplus on every pixel: +33% here)."""
    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "step_cost.py"
    process = subprocess.run(
        [sys.executable, str(script), "--model", "tiny VAE 784-16-2", "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    ours, minimal = result["ours"], result["minimal"]
    assert 1.0 <= ours["flops"] / minimal["flops"] < 1.02
    assert 1.0 <= ours["transcendentals"] / minimal["transcendentals"] < 1.01
    for figures in (ours, minimal):
        assert figures["fused kernels"] > 0 and len(figures["turn_seconds"]) == 6
    assert result["ratio"] == pytest.approx(ours["ms_per_step"] / minimal["ms_per_step"])


def _bench(tmp_path, *args):
    process = subprocess.run(
        [sys.executable, "-m", "tfdlgm.cli", "bench", *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    (json_path,) = tmp_path.glob("*.json")
    (md_path,) = tmp_path.glob("*.md")
    return json.loads(json_path.read_text()), md_path.read_text()


def test_smoke_writes_json_and_markdown(tmp_path):
    results, text = _bench(tmp_path, "--smoke", "--steps-per-execution", "2")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    assert results["mode"] == "smoke"
    assert results["variants"][backend]["steps_per_execution"] == 2
    assert "steps_per_execution=2" in text
    assert list(results["variants"]) == [backend]
    assert len(results["load_average_start"]) == 3
    assert {"name", "slug", "cpu", "cpu_cores", "gpu"} <= set(results["device"])
    variant = results["variants"][backend]
    assert variant["backend"] == backend
    (train,) = variant["train"]
    assert train["model"] == "tiny VAE 784-16-2" and train["batch_size"] == 100
    assert train["examples_per_second"] > 0 and len(train["window_seconds"]) == 1
    assert train["train_flops_per_example"] == TINY_TRAIN_FLOPS
    (row,) = results["derived"]
    ratio = train["minimal_examples_per_second"] / train["examples_per_second"]
    assert row["overhead"] == pytest.approx(ratio - 1)
    assert variant["sample"][0]["examples_per_second"] > 0
    assert variant["log_likelihood"][-1]["images_per_second"] > 0
    assert results["peer"]["status"].startswith("skipped")
    assert [goal["status"] for goal in results["goals"]][:2] == ["not measured"] * 2
    assert [goal["status"] for goal in results["goals"]][3:] == [
        "not measured (no GPU in this run)"
    ] * 2
    whole = variant["log_likelihood"][0]  # the smoke plan's stand-in for the GPU goal's run
    assert (whole["preset"], whole["images"], whole["k"]) == ("vae-mnist", 2, 10)
    assert whole["seconds"] > 0
    if os.environ.get("TFDLGM_MNIST"):  # else it may be random binary images
        assert whole["data"] == "MNIST test images, binarised once (seed 0)"
    assert f"log_likelihood(k=10), 2 images ({whole['data']}; " in text
    assert {row["preset"] for row in results["zoo"]} >= {"vae-mnist"}
    assert all(len(row["load_seconds"]) == 2 for row in results["zoo"])
    assert all(0 < seconds for row in results["zoo"] for seconds in row["load_seconds"])
    scaling = results["scaling"]
    assert scaling["status"] == "measured"
    assert [(r["backend"], r["devices"]) for r in scaling["runs"]] == [(backend, 1), (backend, 2)]
    one, two = scaling["runs"]
    assert (one["replicas"], one["engine"]) == (1, "none")
    expected = "DataParallel" if backend == "jax" else "MirroredStrategy"
    assert (two["replicas"], two["engine"], two["virtual"]) == (2, expected, True)
    assert two["speed_up"] == pytest.approx(two["examples_per_second"] / one["examples_per_second"])
    assert "## Data-parallel scaling" in text and "virtual CPU devices" in text
    for heading in ("## Goals", "## Training throughput", "## Likelihood"):
        assert heading in text
    assert "| vae-mnist | VAE |" in text
    assert list(tmp_path.glob("*.png")) or importlib.util.find_spec("PIL") is None


@pytest.mark.slow
def test_quick_covers_every_backend_and_the_peer(tmp_path):
    results, text = _bench(tmp_path, "--quick")
    assert set(results["variants"]) == {"tensorflow", "tensorflow-xla", "jax"}
    for name, variant in results["variants"].items():
        assert "error" not in variant, (name, variant.get("error"))
        assert all(entry["examples_per_second"] > 0 for entry in variant["train"])
    assert results["peer"]["status"] in ("measured", "not installed (pip install -e '.[bench]')")
    assert len(results["goals"]) == 5
    assert "## Sampling and log-likelihood" in text


def _ab():
    """benchmarks/ab.py as a module."""
    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "ab.py"
    spec = importlib.util.spec_from_file_location("benchmarks_ab", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ab_runs_each_variant_for_its_cpu_budget_and_writes_a_table_json_and_plot(tmp_path):
    import numpy as np

    import tfdlgm

    ab = _ab()
    assert ab.parse_variant("b20:batch_size=20,gradient=dreg") == {
        "name": "b20",
        "batch_size": 20,
        "gradient": "dreg",
    }
    with pytest.raises(ValueError, match="unknown key 'epochs'"):
        ab.parse_variant("x:epochs=3")
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(200, 12)) < 0.3).astype("float32")

    def start(variant):
        objective = {
            "name": "iwae",
            "num_samples": 3,
            "gradient": variant.get("gradient", "standard"),
        }
        model = tfdlgm.models.VAE(
            latent_dim=2, hidden=(4,), data_dim=12, seed=0, objective=objective
        )
        return model, {"class_name": "Adam", "config": {"learning_rate": 0.01}}

    variants = [
        {"name": "b50", "batch_size": 50},
        {"name": "b10-dreg", "batch_size": 10, "gradient": "dreg"},
    ]
    report = ab.compare(
        "smoke",
        variants,
        start,
        lambda batch_size: tfdlgm.datasets.NumpyBatches(x, batch_size=batch_size),
        x[:20],
        minutes=0.01,
        every=0.01,
        out_dir=tmp_path,
        info={
            "start": "a tiny VAE",
            "examples_word": "rows",
            "device": "CPU",
            "backend": "any",
            "command": "test",
        },
    )
    for variant in report["variants"]:
        rows = variant["rows"]
        assert rows[0]["cpu_minutes"] == 0 and rows[-1]["cpu_minutes"] >= 0.01
        assert all(a["steps"] < b["steps"] for a, b in zip(rows, rows[1:]))
        assert all(np.isfinite(r["L_50"]) for r in rows)
    table = (tmp_path / "ab-smoke.md").read_text()
    assert "| b10-dreg | batch_size=10, gradient=dreg |" in table and "0.01 CPU-min" in table
    assert json.loads((tmp_path / "ab-smoke.json").read_text())["variants"][1]["name"] == "b10-dreg"
    assert (tmp_path / "ab-smoke.png").read_bytes()[:4] == b"\x89PNG"


def test_ab_variants_freeze_batch_norm_when_told_and_refuse_other_flag_words():
    from tfdlgm.layers import normalises_by_batch

    ab = _ab()
    assert ab.parse_variant("f:freeze_batch_norm=true,gradient=dreg") == {
        "name": "f",
        "freeze_batch_norm": True,
        "gradient": "dreg",
    }
    with pytest.raises(ValueError, match="A flag is true or false. Received: 'yes'"):
        ab.parse_variant("f:freeze_batch_norm=yes")
    start = ab.preset_start("lvae-mnist")
    model, _ = start({"name": "f", "freeze_batch_norm": True, "gradient": "dreg"})
    assert not normalises_by_batch(model) and model.objective.gradient == "dreg"
    assert normalises_by_batch(start({"name": "plain"})[0])


def test_the_pytorch_likelihood_peer_computes_our_log_weights_from_the_presets_weights():
    """benchmarks/peers/torch_likelihood.py on vae-mnist: at the same noise eps, its log
    importance weights equal ours (log p(x, z) - log q(z | x) at z = mu + sigma eps) to
    float32 rounding, and its estimate combines our chunks of samples into their log-mean-exp."""
    torch = pytest.importorskip("torch")
    import numpy as np
    from keras import ops

    from tfdlgm import zoo
    from tfdlgm.models import base

    peer = _suite("peers.torch_likelihood")
    assert peer.ROWS_PER_CHUNK == base._ROWS_PER_CHUNK
    ours = zoo.load("vae-mnist")
    theirs = peer.from_preset(BENCHMARKS.parent / "zoo" / "vae-mnist")
    rng = np.random.default_rng(0)
    x = (rng.random((3, 784)) < 0.2).astype("float32")
    eps = rng.standard_normal((2, 3, 50)).astype("float32")
    (q,) = ours.encode(x)
    z = ops.convert_to_numpy(q.mean()) + ops.convert_to_numpy(q.stddev()) * eps
    expected = ops.convert_to_numpy(ours.joint_log_prob(x, [z]) - q.log_prob(z))
    with torch.no_grad():
        got = theirs.log_weights(torch.from_numpy(x), torch.from_numpy(eps)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-3)

    drawn = []

    def counted_weights(batch, size):  # log w = 0.01 s for the s-th sample drawn
        drawn.append(size)
        start = sum(drawn[:-1])
        return 0.01 * torch.arange(start, start + size, dtype=torch.float32)[:, None].expand(
            size, len(batch)
        )

    values = peer.log_likelihood(counted_weights, x, 1200)
    assert drawn == [500, 500, 200]  # 50,000 rows per chunk at batch 100, as ours
    expected = np.log(np.mean(np.exp(0.01 * np.arange(1200))))
    np.testing.assert_allclose(values, [expected] * 3, rtol=1e-6)


def _likelihood_speed():
    return _suite("likelihood_speed")


def test_the_likelihood_speed_report_readme_block_and_chart_come_from_the_committed_json(
    tmp_path,
):
    """README.md's L_5000 block and benchmarks/results/likelihood-speed.md are what
    benchmarks/likelihood_speed.py writes from the committed JSON (re-write them with its
    `--render ... --readme README.md` when they differ)."""
    speed = _likelihood_speed()
    results = BENCHMARKS / "results"
    result = json.loads((results / "likelihood-speed.json").read_text())
    readme = (BENCHMARKS.parent / "README.md").read_text()
    assert speed.readme_section(readme) == speed.readme_block(result)
    assert (results / "likelihood-speed.md").read_text() == speed.markdown(result)
    assert speed.put_readme_block(readme, speed.readme_block(result)) == readme
    png = speed.chart(result, tmp_path / "chart.png")
    assert png is None or png.read_bytes()[:4] == b"\x89PNG"


def test_likelihood_speed_goals_and_peer_check():
    """The goals met, missed and not measured from a made-up result, and a peer whose mean is
    6 standard errors off flagged as wrong."""
    speed = _likelihood_speed()

    def row(rate, mean=-90.0, error=0.1):
        return {
            "images_per_second": rate,
            "window_seconds": [1.0, 1.2, 0.9],
            "mean_log_likelihood": mean,
            "standard_error": error,
            "gflops_upper_bound": rate,
            "share_of_peak": rate / 100,
        }

    def variant(**presets):
        return {"versions": {}, "matmul_gflops": 100.0, "presets": presets}

    result = {
        "date": "2026-12-07",
        "machine": "x86_64, 2 CPU cores",
        "mode": "full",
        "examples": 20,
        "num_samples": 5000,
        "windows": 3,
        "presets": ["vae-mnist", "dlgm-mnist"],
        "variants": {
            "tensorflow": variant(**{"vae-mnist": row(30.0), "dlgm-mnist": row(18.0)}),
            "jax": variant(**{"vae-mnist": row(60.0), "dlgm-mnist": row(20.0)}),
            "torch-eager": variant(**{"vae-mnist": row(32.0, mean=-90.1)}),
            "torch-compile": variant(**{"vae-mnist": row(50.0, mean=-90.0 + 6 * 2**0.5 * 0.1)}),
        },
    }
    found = {g["goal"]: (g["status"], g["figures"]) for g in speed.goals(result)}
    assert found == {
        "vae-mnist L_5000, default backend (tensorflow) >= 1.0x PyTorch eager": (
            "missed",
            "0.94x: 30.0 against 32.0 images/s",
        ),
        "vae-mnist L_5000, best backend >= 1.4x PyTorch eager": (
            "met",
            "jax, 1.88x: 60.0 against 32.0 images/s",
        ),
        "L_5000, TensorFlow (default) >= 0.8x JAX per preset": (
            "met in 1 of 2",
            "vae-mnist 0.50x, dlgm-mnist 0.90x",
        ),
        "vae-mnist L_5000, best backend >= 50% of the measured matmul peak": (
            "met",
            "jax: 60% of 100 GFLOP/s, 60 GFLOP/s by the upper-bound count",
        ),
        "vae-mnist L_5000 on the 10,000 test images in < 5 min on the default install": (
            "missed",
            "projected 5.6 min: 10,000 / 30.0 images/s",
        ),
    }
    eager, compiled = speed.peer_checks(result)
    assert eager["agree"] is True and compiled["agree"] is False
    assert "**disagree: the peer is wrong**" in speed.readme_block(result)
    del result["variants"]["torch-eager"]
    statuses = [g["status"] for g in speed.goals(result)]
    assert statuses[:2] == ["not measured"] * 2


@pytest.mark.parametrize(
    "kind, missing_rows, suffix",
    [("bottom-half", range(14, 28), ""), ("top-half", range(0, 14), "-top-half")],
)
def test_the_imputation_benchmark_hides_the_half_its_mask_names(kind, missing_rows, suffix):
    mask, missing, stem_suffix = _suite("imputation").mnist_mask(kind, (3, 784))
    rows = mask.reshape(3, 28, 28).all(axis=(0, 2))  # a row observed in every image
    assert [r for r in range(28) if not rows[r]] == list(missing_rows)
    assert not mask.reshape(3, 28, 28)[:, list(missing_rows)].any()
    assert stem_suffix == suffix and missing.endswith("14 rows")


def test_the_imputation_benchmarks_random_mask_hides_each_pixel_with_its_probability():
    imputation = _suite("imputation")
    mask, missing, suffix = imputation.mnist_mask("random:0.5", (500, 784), seed=0)
    assert abs((~mask).mean() - 0.5) < 0.005  # 392,000 draws: 6 standard errors
    assert (mask == imputation.mnist_mask("random:0.5", (500, 784), seed=0)[0]).all()
    assert suffix == "-random-50" and missing == "each pixel with probability 0.5"
    for bad in ("random:1", "random:x", "left-half"):
        with pytest.raises(ValueError, match="must be bottom-half, top-half or random:P"):
            imputation.mnist_mask(bad, (1, 784))


def test_ab_shows_a_preset_folder_as_preset_and_leaves_out_the_output_folder():
    ab = _ab()
    words = ["x", "--preset", "/runs/iwae-476", "--out", "/runs/out", "--minutes", "4"]
    shown = ab.shown_command(words, argparse.Namespace(preset="/runs/iwae-476"))
    assert shown == "python benchmarks/ab.py x --preset PRESET --minutes 4"
    words = ["x", "--preset", "vae-mnist", "--out=/runs/out"]
    shown = ab.shown_command(words, argparse.Namespace(preset="vae-mnist"))
    assert shown == "python benchmarks/ab.py x --preset vae-mnist"
