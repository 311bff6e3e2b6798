"""Grouped horizontal bar charts with error bars, drawn with Pillow, for the benchmark reports.

Used by `benchmarks/report.py` (training throughput) and `benchmarks/likelihood_speed.py`
(L_5000 throughput); it measures nothing itself and has no command. Pillow is in the `dev` and
`bench` extras; without it `bar_chart` draws nothing and returns None.
"""

from __future__ import annotations

import math
import pathlib
import statistics

# One colour per implementation across every chart: ours in blues, the minimal Keras VAE in
# greens, the PyTorch peer in oranges; any other series takes the next of `_OTHERS`.
SERIES_COLOURS = {
    "tensorflow": (31, 90, 180),
    "tensorflow-xla": (90, 150, 220),
    "jax": (20, 40, 110),
    "minimal Keras (tensorflow)": (40, 140, 60),
    "minimal Keras (tensorflow-xla)": (120, 190, 110),
    "minimal Keras (jax)": (20, 90, 40),
    "torch-eager": (220, 110, 30),
    "torch-compile": (160, 60, 20),
}
_OTHERS = [(148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]
_CHAR_WIDTH, _LINE = 6, 12  # Pillow's default bitmap font
_BAR, _GROUP_GAP = 13, 12


def window_range(rate, window_seconds):
    """`(worst, best)` rates of the timed windows behind a median `rate`: every window holds
    the same work, `rate x median(window_seconds)`."""
    if not window_seconds:
        return rate, rate
    work = rate * statistics.median(window_seconds)
    return work / max(window_seconds), work / min(window_seconds)


def _nice_step(top, ticks=5):
    """A tick spacing of 1, 2 or 5 x 10^n giving about `ticks` ticks up to `top`."""
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _label(value):
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def bar_chart(path: pathlib.Path, title: str, axis_label: str, groups: list) -> pathlib.Path | None:
    """Writes a PNG of horizontal bars, one group per row label, one colour per series.

    Args:
        path: the PNG to write.
        title: the chart's title (what, where, when, which mode).
        axis_label: the value axis' label, with its unit.
        groups: `[(group label, [(series, median, worst, best), ...]), ...]`; each bar is the
            median with an error bar from the worst to the best value.

    Returns:
        `path`, or None without Pillow or bars.
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    bars = [bar for _, group in groups for bar in group]
    if not bars:
        return None
    series = list(dict.fromkeys(name for name, *_ in bars))
    others = iter(_OTHERS * len(series))
    colours = {name: SERIES_COLOURS.get(name) or next(others) for name in series}
    top = max(max(median, best) for _, median, _, best in bars)
    step = _nice_step(top)
    axis_max = step * math.ceil(top / step)

    label_width = 12 + _CHAR_WIDTH * max(len(label) for label, _ in groups)
    plot_width, right_margin = 460, 60
    width = label_width + plot_width + right_margin
    legend_rows, x = 1, 0
    for name in series:  # the legend wraps to the chart's width
        entry = 22 + _CHAR_WIDTH * len(name) + 14
        if x + entry > width - 10:
            legend_rows, x = legend_rows + 1, 0
        x += entry
    plot_top = 10 + _LINE + 8 + legend_rows * (_LINE + 6) + 6
    plot_height = sum(len(group) * _BAR + _GROUP_GAP for _, group in groups)
    height = plot_top + plot_height + 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black")

    x, y = 10, 10 + _LINE + 8
    for name in series:
        entry = 22 + _CHAR_WIDTH * len(name) + 14
        if x + entry > width - 10:
            x, y = 10, y + _LINE + 6
        draw.rectangle([x, y + 1, x + 16, y + _LINE - 1], fill=colours[name])
        draw.text((x + 22, y), name, fill="black")
        x += entry

    def at(value):
        return label_width + plot_width * value / axis_max

    bottom = plot_top + plot_height
    for i in range(round(axis_max / step) + 1):
        tick = at(i * step)
        draw.line([tick, plot_top, tick, bottom], fill=(225, 225, 225))
        draw.line([tick, bottom, tick, bottom + 4], fill="black")
        text = _label(i * step)
        draw.text((tick - _CHAR_WIDTH * len(text) / 2, bottom + 7), text, fill="black")
    draw.line([label_width, plot_top, label_width, bottom], fill="black")
    draw.line([label_width, bottom, label_width + plot_width, bottom], fill="black")
    axis_x = label_width + (plot_width - _CHAR_WIDTH * len(axis_label)) / 2
    draw.text((axis_x, bottom + 25), axis_label, fill="black")

    y = plot_top + _GROUP_GAP / 2
    for label, group in groups:
        draw.text((6, y + (len(group) * _BAR - _LINE) / 2), label, fill="black")
        for name, median, worst, best in group:
            draw.rectangle([label_width, y + 1, at(median), y + _BAR - 2], fill=colours[name])
            middle = y + (_BAR - 1) / 2
            if best > worst:
                draw.line([at(worst), middle, at(best), middle], fill="black")
                for end in (worst, best):
                    draw.line([at(end), middle - 3, at(end), middle + 3], fill="black")
            draw.text((max(at(median), at(best)) + 4, y), _label(median), fill="black")
            y += _BAR
        y += _GROUP_GAP
    image.save(path)
    return path
