"""Image grids as PNG files (and arrays, for TensorBoard), for benchmarks and model cards, and
the named patterns of missing pixels that `tfdlgm impute --mask` and the imputation benchmark
hide.

`png` is the one PNG encoder: `save_grid` writes its bytes, and the TensorBoard image summaries
(`tfdlgm.summaries`) hold them.
"""

from __future__ import annotations

import math
import os
import pathlib
import struct
import zlib

import numpy as np

# Missing pixels (NaN) are drawn in this colour, to tell them from grey levels.
MISSING_RGB = (70, 110, 200)
# The patterns of `missing_pixels`, as its errors name them.
PATTERNS = "bottom-half, top-half or random:P with 0 < P < 1 the fraction missing"


def check_pattern(pattern: str) -> str:
    """`pattern` if it names a pattern of `missing_pixels`, else a `ValueError` naming them."""
    if pattern in ("bottom-half", "top-half"):
        return pattern
    name, _, fraction = pattern.partition(":")
    try:
        missing = float(fraction)
    except ValueError:
        missing = -1.0
    if name != "random" or not 0 < missing < 1:
        raise ValueError(f"must be {PATTERNS}, got {pattern!r}")
    return pattern


def missing_pixels(pattern: str, shape, image_shape=(28, 28), seed: int = 0) -> np.ndarray:
    """The observed pixels (True) of flattened images, with the pixels `pattern` names missing.

    ```none
    "bottom-half"  the bottom floor(height / 2) rows missing
    "top-half"     the top floor(height / 2) rows missing
    "random:P"     each pixel missing with probability P, independently (drawn with `seed`)
    ```

    Args:
        pattern: str, one of the patterns above (`check_pattern`).
        shape: `(batch, height * width)`, the shape of the flattened images.
        image_shape: `(height, width)`. Defaults to `(28, 28)` (MNIST).
        seed: int, the random pattern's seed. Defaults to `0`.

    Returns:
        bool `np.ndarray` of `shape`, False where a pixel is missing.
    """
    check_pattern(pattern)
    height, width = (int(n) for n in image_shape)
    if pattern.startswith("random:"):
        return np.random.default_rng(seed).uniform(size=shape) >= float(pattern[7:])
    rows = np.arange(height)
    half = height // 2
    hidden = rows >= height - half if pattern == "bottom-half" else rows < half
    return np.broadcast_to(np.repeat(~hidden, width), tuple(shape)).copy()


def save_grid(
    images, path: str | os.PathLike, image_shape=(28, 28), scale: int = 2, padding: int = 2
) -> str:
    """Saves grey-level images as a PNG grid.

    `[N, height * width]` images are laid out row by row, ceil(sqrt(N)) per grid row (64
    samples give 8 x 8); `[rows, columns, height * width]` fixes the layout (e.g. one grid row
    each for originals, masked inputs and completions). The PNG is 8-bit grey, or RGB when some
    pixel is NaN.

    Args:
        images: float array `[N, height * width]`, `[rows, columns, height * width]` or
            `[rows, columns, height, width]` of grey levels in [0, 1] (1 = white); NaN marks a
            missing pixel, drawn in `MISSING_RGB`.
        path: str or path-like, the PNG file to write (its folder must exist).
        image_shape: `(height, width)` of each image. Defaults to `(28, 28)`.
        scale: int >= 1, each pixel becomes a `scale` x `scale` block. Defaults to `2`.
        padding: int >= 0, black pixels between and around images. Defaults to `2`.

    Returns:
        The path written, as a str.
    """
    pathlib.Path(path).write_bytes(png(grid(images, image_shape, scale, padding)))
    return os.fspath(path)


def grid(images, image_shape=(28, 28), scale: int = 1, padding: int = 2) -> np.ndarray:
    """Lays grey-level images out as one image: what `save_grid` writes, as an array.

    Args:
        images: as in `save_grid`.
        image_shape: `(height, width)` of each image. Defaults to `(28, 28)`.
        scale: int >= 1, each pixel becomes a `scale` x `scale` block. Defaults to `1`.
        padding: int >= 0, black pixels between and around images. Defaults to `2`.

    Returns:
        uint8 `np.ndarray` `[H, W, 1]` (grey levels 0-255), or `[H, W, 3]` (RGB) when some
        pixel is NaN.
    """
    images = np.asarray(images, dtype="float64")
    height, width = (int(n) for n in image_shape)
    original_shape = images.shape
    if images.ndim == 2:
        columns = math.ceil(math.sqrt(len(images)))
        rows = math.ceil(len(images) / columns)
        filler = np.zeros((rows * columns - len(images), images.shape[1]))
        images = np.concatenate([images, filler]).reshape(rows, columns, -1)
    if images.ndim == 3 and images.shape[2] == height * width:
        images = images.reshape(images.shape[:2] + (height, width))
    if images.ndim != 4 or images.shape[2:] != (height, width):
        raise ValueError(
            f"`images` must have shape [N, {height * width}], [rows, columns, {height * width}] "
            f"or [rows, columns, {height}, {width}]. Received: shape={original_shape}"
        )
    rows, columns = images.shape[:2]
    missing = np.isnan(images)
    grey = np.round(255 * np.clip(np.nan_to_num(images), 0, 1)).astype("uint8")
    tiles = grey[..., None]
    if missing.any():
        tiles = np.where(missing[..., None], np.array(MISSING_RGB, "uint8"), tiles)
    step_y, step_x = height + padding, width + padding
    canvas = np.zeros(
        (rows * step_y + padding, columns * step_x + padding, tiles.shape[-1]), dtype="uint8"
    )
    for r in range(rows):
        for c in range(columns):
            y, x = padding + r * step_y, padding + c * step_x
            canvas[y : y + height, x : x + width] = tiles[r, c]
    return canvas.repeat(scale, axis=0).repeat(scale, axis=1)


def png(image) -> bytes:
    """A uint8 image `[height, width, 1 or 3]` as PNG bytes (8-bit grey or RGB, no filter).

    PNG (ISO/IEC 15948): the signature, then chunks `length | type | data | CRC-32(type,
    data)`: IHDR (width, height, bit depth 8, colour type 0 grey or 2 RGB), IDAT (the zlib
    stream of the rows, each led by filter byte 0) and IEND.

    Raises:
        ValueError: if `image` is not a uint8 array `[height, width, 1 or 3]`.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            "`image` must be a uint8 array [height, width, 1 or 3]. Received: "
            f"dtype={image.dtype}, shape={image.shape}"
        )
    image = np.ascontiguousarray(image)
    height, width, channels = image.shape
    colour_type = {1: 0, 3: 2}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8), image.reshape(height, width * channels)], axis=1
    )
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes()))
        + chunk(b"IEND", b"")
    )
