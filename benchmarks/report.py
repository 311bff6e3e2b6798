"""The Markdown tables and the PNG bar chart of a `benchmarks/run.py` result.

Used by `python benchmarks/run.py` (see its docstring for the commands); it measures nothing
itself. The chart is drawn with Pillow (`charts.py`; the `dev` extra); without it the chart is
skipped.
"""

from __future__ import annotations

import pathlib

import charts


def _fmt(value, digits=0):
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(_fmt(v, digits) for v in value)
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _load(values):
    return "/".join(f"{v:.1f}" for v in values) if values else "-"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """The report: set-up, goals, training, sampling, L_5000, likelihood tables."""
    device = results["device"]
    peak = device.get("peak_tflops_fp32")
    out = [
        f"# Benchmarks: {device['name']}, {results['date'][:10]} ({results['mode']} mode)",
        "",
        f"Command: `{results['command']}` ({results['seconds']:.0f} s). Device: "
        f"{device['name']}; GPU: {device['gpu'] or 'none'}. Load average (1/5/15 min) at "
        f"start {_load(results['load_average_start'])}, at end "
        f"{_load(results['load_average_end'])} on {device['cpu_cores']} cores"
        + (
            ": the machine was shared, so timings are noisy (every window's time is in the JSON)."
            if results["load_average_start"][0] > 0.5 * device["cpu_cores"]
            else "."
        ),
        "",
    ]
    if results.get("complete") is False:
        out += [
            "**Partial results**: the run stopped (or was still running) before every "
            "measurement was made; what is missing below was not measured.",
            "",
        ]
    out += ["Versions and settings per process:", ""]
    for name, variant in results["variants"].items():
        if "error" in variant:
            out.append(f"- `{name}`: failed: {variant['error'][:300]}")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in variant["versions"].items() if v)
        stopped = variant.get("stopped")
        out.append(
            f"- `{name}`: Keras backend {variant['backend']}, jit_compile="
            f"{variant['jit_compile']!r}, steps_per_execution="
            f"{variant.get('steps_per_execution', 1)} ({variant['accelerator']}); {versions}"
            + (f"; {stopped} (what it measured before is kept)" if stopped else "")
        )
    peer = results["peer"]
    if peer.get("versions"):
        out.append(
            f"- peer: PyTorch {peer['versions']['torch']} ({peer.get('device')}, "
            f"{peer['versions']['threads']} threads, float32 matmul precision "
            f"{peer['versions'].get('float32_matmul_precision', 'highest')!r}), eager and "
            "`torch.compile`" + (f"; {peer['stopped']}" if "stopped" in peer else "")
        )
    else:
        out.append(f"- peer: PyTorch {peer.get('status')}")
    out += ["", "## Goals", ""]
    for goal in results["goals"]:
        cases = "; ".join(
            f"{c['case']}: {c['text']} ({'met' if c['met'] else 'missed'})" for c in goal["cases"]
        )
        out.append(f"- **{goal['status']}**: {goal['goal']}" + (f". {cases}" if cases else ""))

    out += [
        "",
        "## Training throughput",
        "",
        "Examples/s of `fit` (median window after a warm-up window; compile excluded; "
        "'best window' is the fastest one, the least disturbed by other load), Adam, "
        "one-sample ELBO. Ratios are ours / peer at the same model and batch; overhead is the "
        "minimal Keras VAE's throughput / ours - 1. GFLOP/s counts dense layers only "
        "(2 in out per layer, x3 for forward + backward).",
        "",
    ]
    header = ["model", "batch", "variant", "examples/s", "best window", "/ torch eager"]
    header += ["/ torch compile"]
    header += ["overhead vs minimal Keras", "GFLOP/s"] + (["% of FP32 peak"] if peak else [])
    rows = []
    for r in results["derived"]:
        row = [r["model"], r["batch_size"], r["variant"], r["examples_per_second"]]
        row += [r["best_examples_per_second"]]
        row += [_ratio(r.get("vs_torch-eager")), _ratio(r.get("vs_torch-compile"))]
        row += [_percent(r.get("overhead")), _fmt(r["gflops"], 1)]
        row += [_percent(r.get("fraction_of_peak"))] if peak else []
        rows.append(row)
    for entry in peer.get("train", []):
        if "examples_per_second" in entry:
            rows.append(
                [entry["model"], entry["batch_size"], entry["variant"]]
                + [entry["examples_per_second"], entry.get("best_examples_per_second"), "1", "-"]
                + ["-", "-"]
                + (["-"] if peak else [])
            )
    out.append(_table(header, rows))
    failed = [
        f"- {name}: {e['model']}, batch {e['batch_size']}: {e['error'][:300]}"
        for name, variant in [*results["variants"].items(), ("peer", peer)]
        for e in variant.get("train", [])
        if "error" in e
    ]
    if failed:
        out += ["", "Failed measurements:", "", *failed]

    out += ["", "## Sampling and log-likelihood", ""]
    rows = []
    for name, variant in results["variants"].items():
        for s in variant.get("sample", []):
            rows.append(
                [s["model"], name, f"sample({s['examples']})", s.get("examples_per_second")]
                + [_fmt(s.get("gflops"), 1), _of_peak(s, peak), s.get("error", "")[:120]]
            )
        for s in variant.get("log_likelihood", []):
            call = f"log_likelihood(k={s['k']}), {s['images']:,} images"
            if "data" in s:  # a preset on the test set: what the images were, and the time
                call += f" ({s['data']}" + (f"; {s['seconds']:.1f} s)" if "seconds" in s else ")")
            rows.append(
                [s["model"], name, call]
                + [s.get("images_per_second"), _fmt(s.get("gflops"), 1), _of_peak(s, peak)]
                + [s.get("error", "")[:120]]
            )
    out.append(
        "Both run eagerly (outside `jit_compile`), so the XLA variant is not measured apart. "
        "Rates are examples/s (sampling) and test images/s (L_k)."
    )
    header = ["model", "variant", "call", "per second", "GFLOP/s", "% of FP32 peak", "error"]
    out += ["", _table(header, rows)]

    out += ["", "## Data-parallel scaling", "", _scaling_markdown(results.get("scaling"))]

    out += ["", "## Likelihood: the zoo against the papers", ""]
    out.append(_zoo_markdown(results.get("zoo")))
    return "\n".join(out) + "\n"


def _scaling_markdown(scaling):
    if not scaling or scaling.get("status") != "measured":
        return "Not run in this mode (full and smoke modes run it)."
    settings = scaling["settings"]
    text = (
        f"`fit` examples/s of {settings['model']} at a global batch of {settings['batch_size']} "
        "split across the devices (`tfdlgm.distribute.data_parallel`; one device: no block). "
        f"{scaling['meaning']}\n\n"
    )
    header = ["backend", "devices", "engine", "examples/s", "best window", "vs 1 device", "error"]
    rows = []
    for run in scaling["runs"]:
        kind = (
            "virtual CPU"
            if run["virtual"]
            else "GPU"
            if "gpu" in run.get("accelerator", "")
            else ""
        )
        rows.append(
            [run["backend"], f"{run['devices']} {kind}".strip(), run.get("engine", "-")]
            + [run.get("examples_per_second"), run.get("best_examples_per_second")]
            + [_ratio(run.get("speed_up")), run.get("error", "")[:200]]
        )
    return text + _table(header, rows)


def _of_peak(entry, peak):
    """Achieved / peak FLOP/s on a GPU whose peak is known; '-' on a CPU."""
    if not peak or entry.get("gflops") is None:
        return "-"
    return _percent(entry["gflops"] / (peak * 1e3))


def _ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def _percent(value):
    return "-" if value is None else f"{value:+.1%}" if value < 0 else f"{value:.1%}"


def _zoo_markdown(zoo):
    if not zoo:
        return "No zoo presets found (or the likelihood table was not run)."
    header = ["preset", "model", "epochs", "ELBO", "L_1", "L_5", "L_50", "L_5000 (images)"]
    header += ["KL per layer", "active units", "published L_5000", "gap", "source", "load s"]
    rows = []
    for row in zoo:
        rec = row["recorded"]
        ll = rec["log_likelihood"]
        gap = None if ll is None or row["published"] is None else ll - row["published"]
        rows.append(
            [row["preset"], row["class"], row["epochs"]]
            + [_fmt(rec[k], 2) for k in ("elbo", "L_1", "L_5", "L_50")]
            + [f"{_fmt(ll, 2)} ({_fmt(row['log_likelihood_examples'])})"]
            + [_fmt(rec["kl"], 2), _fmt(rec["active_units"]), _fmt(row["published"], 2)]
            + [_fmt(gap, 2), row["published_source"] or "-", _fmt(row.get("load_seconds"), 2)]
        )
    text = "Recorded figures (nats, `zoo/<name>/config.json`) by the evaluation protocol.\n\n"
    text += _table(header, rows)
    remeasured = [r for r in zoo if r.get("remeasured")]
    if remeasured:
        header = ["preset", "images", "ELBO", "L_1", "L_5", "L_50", "L_5000", "KL", "active"]
        rows = []
        for r in remeasured:
            m = r["remeasured"]
            if "error" in m:
                rows.append([r["preset"], m["error"]] + ["-"] * 7)
                continue
            rows.append(
                [r["preset"], m["examples"]]
                + [_fmt(m.get(k), 2) for k in ("elbo", "L_1", "L_5", "L_50", "L_5000")]
                + [_fmt(m["kl"], 2), _fmt(m["active_units"])]
            )
        text += "\n\nRe-measured now on the first test images (fixed binarisation, seed 0):\n\n"
        text += _table(header, rows)
    return text


def training_chart(results: dict, path: pathlib.Path) -> pathlib.Path | None:
    """Training examples/s per model and batch (`charts.bar_chart`): each Keras variant with
    the minimal Keras VAE measured in its process beside it, then the PyTorch peer; bars are
    median windows, whiskers the slowest and fastest windows."""
    groups = {}

    def add(entry, series, rate_key, windows_key):
        rate = entry.get(rate_key)
        if rate is not None:
            label = f"{entry['model']}, batch {entry['batch_size']}"
            worst, best = charts.window_range(rate, entry.get(windows_key))
            groups.setdefault(label, []).append((series, rate, worst, best))

    for name, variant in results["variants"].items():
        for entry in variant.get("train", []):
            add(entry, name, "examples_per_second", "window_seconds")
            minimal = f"minimal Keras ({name})"
            add(entry, minimal, "minimal_examples_per_second", "minimal_window_seconds")
    for entry in results["peer"].get("train", []):
        add(entry, entry["variant"], "examples_per_second", "window_seconds")
    title = (
        f"Training throughput, {results['device']['name']}, {results['date'][:10]} "
        f"({results['mode']} mode)"
    )
    axis = "examples/s (fit, Adam; bar: median window, whiskers: slowest-fastest window)"
    return charts.bar_chart(path, title, axis, list(groups.items()))
