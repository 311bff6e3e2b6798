"""TensorBoard event files written with the `tensorboard` package alone, without TensorFlow.

Keras' TensorBoard callback writes through `tf.summary`, so it needs TensorFlow under every
backend. A JAX-only install (the GPU machine's: JAX and `tensorboard`, no TensorFlow) writes
with `SummaryWriter` instead: the same records `tf.summary.scalar` and `tf.summary.image`
write (a tensor summary of the "scalars" or "images" plugin, in that plugin's layout), so
`tensorboard --logdir` shows them as it shows Keras' own.
"""

from __future__ import annotations

import os
import struct
import time
import zlib

import numpy as np


class SummaryWriter:
    """Scalars and images into one TensorBoard run folder, without TensorFlow.

    Args:
        folder: str or path-like, the run's folder (e.g. `logs/train`); made if missing.

    Example:

    ```python
    writer = SummaryWriter("logs/train")
    writer.scalar("epoch_loss", 93.2, step=0)
    writer.image("samples", grid_uint8, step=0)   # [height, width, 1 or 3]
    writer.close()
    ```
    """

    def __init__(self, folder: str | os.PathLike):
        try:
            from tensorboard.compat.proto import (
                event_pb2,
                summary_pb2,
                tensor_pb2,
                tensor_shape_pb2,
                types_pb2,
            )
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as error:
            raise ImportError(
                "Writing TensorBoard logs needs the `tensorboard` package (`pip install "
                f"tensorboard`), which could not be imported: {error}"
            ) from error
        self._event, self._summary, self._tensor = event_pb2, summary_pb2, tensor_pb2
        self._shape, self._types = tensor_shape_pb2, types_pb2
        self._writer = EventFileWriter(os.fspath(folder))

    def scalar(self, tag: str, value: float, step: int):
        """A float32 scalar, as `tf.summary.scalar` writes it."""
        tensor = self._tensor.TensorProto(
            dtype=self._types.DT_FLOAT,
            tensor_shape=self._shape.TensorShapeProto(),
            float_val=[float(value)],
        )
        self._write(tag, tensor, "scalars", self._summary.DATA_CLASS_SCALAR, step)

    def image(self, tag: str, image, step: int):
        """One uint8 image `[height, width, channels]` (1: grey, 3: RGB), as
        `tf.summary.image` writes it: the string tensor `[width, height, png]`."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
            raise ValueError(
                "`image` must be a uint8 array [height, width, 1 or 3]. Received: "
                f"dtype={image.dtype}, shape={image.shape}"
            )
        height, width = image.shape[:2]
        tensor = self._tensor.TensorProto(
            dtype=self._types.DT_STRING,
            tensor_shape=self._shape.TensorShapeProto(
                dim=[self._shape.TensorShapeProto.Dim(size=3)]
            ),
            string_val=[str(width).encode(), str(height).encode(), png(image)],
        )
        self._write(tag, tensor, "images", self._summary.DATA_CLASS_BLOB_SEQUENCE, step)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()

    def _write(self, tag, tensor, plugin, data_class, step):
        metadata = self._summary.SummaryMetadata(
            plugin_data=self._summary.SummaryMetadata.PluginData(plugin_name=plugin),
            data_class=data_class,
        )
        value = self._summary.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)
        event = self._event.Event(
            wall_time=time.time(), step=int(step), summary=self._summary.Summary(value=[value])
        )
        self._writer.add_event(event)


def png(image) -> bytes:
    """A uint8 image `[height, width, 1 or 3]` as PNG bytes (8-bit grey or RGB, no filter).

    PNG (ISO/IEC 15948): the signature, then chunks `length | type | data | CRC-32(type,
    data)`: IHDR (width, height, bit depth 8, colour type 0 grey or 2 RGB), IDAT (the zlib
    stream of the rows, each led by filter byte 0) and IEND.
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
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
