"""A/B comparison of training variants from the same preset: held-out L_50 against CPU-minutes.

```bash
KERAS_BACKEND=jax nice -n 10 python benchmarks/ab.py iwae-mnist-batch-gradient \
    --preset iwae-mnist --minutes 5 --every 1 \
    --variant b100:batch_size=100 --variant b20:batch_size=20 \
    --variant b100-dreg:batch_size=100,gradient=dreg --variant b20-dreg:batch_size=20,gradient=dreg
```

Each variant starts from the preset's weights (`--preset NAME` or a preset folder) with a fresh
Adam optimizer (the preset's, at its last learning rate unless the variant sets one) and trains
on the recipe's data set, training split only, for `--minutes` CPU-minutes (the process's CPU
time, `time.process_time`, all threads: what the machine spent, not the wall clock, which other
jobs on a shared machine stretch). Every `--every` CPU-minutes (at the end of a chunk of steps
sized from the last chunk's time per step) it measures L_50 (Burda et al. eq. 8, k = 50, seed 0)
on the first `--examples` images of the validation split, binarised (or dequantised) once with
seed 1, as `tools/train.py --validate-every` does; evaluation time is not counted.

A variant is `NAME:key=value,...` with keys `batch_size`, `learning_rate`, `num_samples`,
`gradient` (`"standard"` or `"dreg"`, `tfdlgm.objectives.ImportanceWeighted`) and
`freeze_batch_norm` (`true`: `tfdlgm.layers.freeze_batch_norm` before compiling). Writes
`benchmarks/results/ab-<name>.md` (one table: L_50 at each budget point per variant), `.json`
(every measurement) and `.png` (L_50 in nats against CPU-minutes, one line per variant).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import keras
import numpy as np

import tfdlgm
from tfdlgm import evaluation
from tfdlgm.layers import freeze_batch_norm

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _flag(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"A flag is true or false. Received: {text!r}")
    return text == "true"


KEYS = {
    "batch_size": int,
    "learning_rate": float,
    "num_samples": int,
    "gradient": str,
    "freeze_batch_norm": _flag,
}
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def parse_variant(text: str) -> dict:
    """`NAME:key=value,...` as `{"name": NAME, key: value, ...}` (keys of `KEYS`)."""
    name, _, settings = text.partition(":")
    if not name:
        raise ValueError(f"A variant is NAME:key=value,... Received: {text!r}")
    variant = {"name": name}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        if key not in KEYS:
            raise ValueError(f"Variant {name!r}: unknown key {key!r}; use one of {tuple(KEYS)}")
        variant[key] = KEYS[key](value)
    return variant


def run_variant(variant, start, data, x_valid, minutes, every, seed=0):
    """Trains one variant for `minutes` CPU-minutes; returns `[{cpu_minutes, steps, examples,
    L_50}]`, the first row at 0 (the start).

    Args:
        variant: dict from `parse_variant`.
        start: `() -> (model, optimizer config)`, the common starting point, compiled fresh.
        data: `(batch_size) -> dataset`, the training batches.
        x_valid: the held-out examples.
    """
    keras.utils.set_random_seed(seed)
    model, optimizer = start(variant)
    if "learning_rate" in variant:
        rate = variant["learning_rate"]
        optimizer = {**optimizer, "config": {**optimizer["config"], "learning_rate": rate}}
    model.compile(optimizer=keras.optimizers.get(optimizer))
    batch_size = variant.get("batch_size", 100)
    dataset = data(batch_size)

    def held_out():
        return float(np.mean(model.iwae_bound(x_valid, 50, seed=0, verbose=0)))

    rows = [{"cpu_minutes": 0.0, "steps": 0, "examples": 0, "L_50": held_out()}]
    spent, steps, chunk = 0.0, 0, min(20, len(dataset))
    while spent < minutes:
        began = time.process_time()
        model.fit(dataset, epochs=1, steps_per_epoch=chunk, verbose=0)
        used = (time.process_time() - began) / 60
        spent, steps = spent + used, steps + chunk
        rows.append(
            {
                "cpu_minutes": round(spent, 4),
                "steps": steps,
                "examples": steps * batch_size,
                "L_50": held_out(),
            }
        )
        per_step = used / chunk
        chunk = min(len(dataset), max(1, round(min(every, minutes - spent) / per_step)))
        print(f"{variant['name']}: {spent:.2f} CPU-min, {steps} steps, L_50 {rows[-1]['L_50']:.2f}")
    return rows


def markdown(report: dict) -> str:
    """One table: L_50 of each variant at each budget point (the last row at or before it)."""
    points = sorted({p for p in report["budget_points"]})
    header = "| variant | settings | " + " | ".join(f"{p:g} CPU-min" for p in points) + " |"
    lines = [
        f"# A/B: {report['name']}",
        "",
        f"From `{report['start']}`; held-out L_50 (nats, k = 50, seed 0) on the first "
        f"{report['examples']:,} validation {report['examples_word']} drawn once with seed 1, "
        f"against CPU-minutes of training (process CPU time, all threads; {report['device']}, "
        f"{report['backend']}). Command: `{report['command']}`"
        + (" (`PRESET`: a folder holding that preset)" if " PRESET" in report["command"] else ""),
        "",
        header,
        "|" + "---|" * (len(points) + 2),
    ]
    for variant in report["variants"]:
        rows = variant["rows"]
        cells = []
        for point in points:
            reached = [r for r in rows if r["cpu_minutes"] <= point + 1e-9]
            last = reached[-1]
            cells.append(f"{last['L_50']:.2f} ({last['steps']:,} steps)")
        settings = ", ".join(f"{k}={v}" for k, v in variant["settings"].items()) or "the preset's"
        lines.append(f"| {variant['name']} | {settings} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: pathlib.Path) -> pathlib.Path:
    """L_50 (nats) against CPU-minutes, a line and a legend entry per variant (Pillow)."""
    from PIL import Image, ImageDraw

    width, height, left, right, top, bottom = 720, 440, 80, 170, 40, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    rows = [r for v in report["variants"] for r in v["rows"]]
    x_max = max(r["cpu_minutes"] for r in rows) or 1.0
    y_min, y_max = min(r["L_50"] for r in rows), max(r["L_50"] for r in rows)
    pad = max(0.05, 0.05 * (y_max - y_min))
    y_min, y_max = y_min - pad, y_max + pad

    def at(x, y):
        return (
            left + (width - left - right) * x / x_max,
            height - bottom - (height - top - bottom) * (y - y_min) / (y_max - y_min),
        )

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):
        x, y = x_max * i / 4, y_min + (y_max - y_min) * i / 4
        px, _ = at(x, y_min)
        _, py = at(0, y)
        draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
        draw.text((px - 12, height - bottom + 8), f"{x:.2f}", fill="black")
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((left - 60, py - 6), f"{y:.2f}", fill="black")
    draw.text((left + 120, height - 25), "training time (CPU-minutes)", fill="black")
    draw.text((left, 5), f"A/B: {report['name']}, from {report['start']}", fill="black")
    draw.text((5, top - 16), "held-out L_50 (nats; higher is better)", fill="black")
    for i, variant in enumerate(report["variants"]):
        colour = COLOURS[i % len(COLOURS)]
        points = [at(r["cpu_minutes"], r["L_50"]) for r in variant["rows"]]
        draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        y = top + 10 + 18 * i
        draw.line([width - right + 10, y + 6, width - right + 35, y + 6], fill=colour, width=3)
        draw.text((width - right + 40, y), variant["name"], fill="black")
    image.save(path)
    return path


def compare(name, variants, start, data, x_valid, minutes, every, out_dir, info):
    """Runs every variant and writes `ab-<name>.{json,md,png}` into `out_dir`; returns the
    report."""
    report = {
        **info,
        "name": name,
        "minutes": minutes,
        "every": every,
        "examples": len(x_valid),
        "budget_points": [round(every * i, 4) for i in range(int(minutes / every + 1e-9) + 1)],
        "variants": [],
    }
    for variant in variants:
        rows = run_variant(variant, start, data, x_valid, minutes, every)
        settings = {k: v for k, v in variant.items() if k != "name"}
        report["variants"].append({"name": variant["name"], "settings": settings, "rows": rows})
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"ab-{name}"
    pathlib.Path(f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    pathlib.Path(f"{stem}.md").write_text(markdown(report))
    plot(report, pathlib.Path(f"{stem}.png"))
    return report


def preset_start(folder):
    """`variant -> (model, optimizer config)`: the preset's weights with the variant's
    objective (its `num_samples` and `gradient` over the preset's own objective), its batch
    normalisation frozen where the variant says so."""
    config = tfdlgm.zoo.config(folder)["config"]["objective"]
    optimizer = tfdlgm.zoo.metadata(folder)["training"]["optimizer"]

    def start(variant):
        chosen = {k: variant[k] for k in ("num_samples", "gradient") if k in variant}
        model = tfdlgm.zoo.load(folder, compile=False, objective={**config, **chosen})
        if variant.get("freeze_batch_norm"):
            freeze_batch_norm(model)
        return model, optimizer

    return start


def shown_command(words, args) -> str:
    """The command as the report shows it: a preset given as a folder outside the zoo as
    `PRESET` (the report names it by preset and epoch), without `--out`."""
    folder = args.preset not in tfdlgm.zoo.list()
    shown, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif word.startswith("--out="):
            continue
        else:
            shown.append("PRESET" if folder and word == args.preset else word)
    return "python benchmarks/ab.py " + " ".join(shown)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the comparison's name: benchmarks/results/ab-<name>.*")
    parser.add_argument("--preset", required=True, help="a zoo preset name or folder")
    parser.add_argument("--variant", action="append", required=True, type=parse_variant)
    parser.add_argument("--minutes", type=float, default=5.0, help="CPU-minutes per variant")
    parser.add_argument("--every", type=float, default=1.0, help="CPU-minutes between L_50s")
    parser.add_argument("--examples", type=int, default=1000, help="validation examples")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if len(args.variant) < 2 or not (0 < args.every <= args.minutes):
        parser.error("give two or more --variant, and 0 < --every <= --minutes")
    metadata = tfdlgm.zoo.metadata(args.preset)
    dataset = metadata.get("data", {}).get("dataset", "MNIST")
    key = "frey_faces" if dataset == "Frey faces" else "mnist"
    loader = getattr(tfdlgm.datasets, key)
    x_valid = evaluation.protocol_test_set(dataset=key, split="validation")[: args.examples]
    info = {
        "start": f"{metadata['name']} at epoch {metadata['training']['epochs']:,}",
        "examples_word": "images" if key == "mnist" else "frames",
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "backend": keras.backend.backend(),
        "command": shown_command(sys.argv[1:] if argv is None else argv, args),
    }
    compare(
        args.name,
        args.variant,
        preset_start(args.preset),
        lambda batch_size: loader("train", batch_size=batch_size, seed=0),
        x_valid,
        args.minutes,
        args.every,
        args.out,
        info,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
