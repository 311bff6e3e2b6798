"""TensorBoard event files: scalars and images, with TensorFlow or without it.

`SummaryWriter` builds the records `tf.summary.scalar` and `tf.summary.image` write (a tensor
summary of the "scalars" or "images" plugin, in that plugin's layout; images are PNG bytes from
`tfdlgm.images.png`) and writes them through `tf.summary` where TensorFlow is installed, and
through the `tensorboard` package's own event writer otherwise (a JAX-only install), so
`tensorboard --logdir` reads the same runs either way.
"""

from __future__ import annotations

import os
import time

import numpy as np

from tfdlgm import backend, images


def _protos():
    """The `tensorboard` package's protocol buffer modules (a clear error without it)."""
    try:
        from tensorboard.compat.proto import (
            event_pb2,
            summary_pb2,
            tensor_pb2,
            tensor_shape_pb2,
            types_pb2,
        )
    except ImportError as error:
        raise ImportError(
            "Writing TensorBoard logs needs the `tensorboard` package (`pip install "
            f"tensorboard`), which could not be imported: {error}"
        ) from error
    return event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2


def check_available() -> None:
    """Raises the `ImportError` `SummaryWriter` would where `tensorboard` is not installed."""
    _protos()


class SummaryWriter:
    """Scalars and images into one TensorBoard run folder.

    Where TensorFlow is installed the records go through `tf.summary` (a file writer of its
    own, `tf.summary.experimental.write_raw_pb`); otherwise through the `tensorboard`
    package's `EventFileWriter`. The caller has no choice to make.

    Args:
        folder: str or path-like, the run's folder (e.g. `logs/train`); made if missing.

    Example:

    ```python
    writer = SummaryWriter("logs/train")
    writer.scalar("loss/total", 93.2, step=0)
    writer.image("samples", grid_uint8, step=0)   # [height, width, 1 or 3]
    writer.close()
    ```
    """

    def __init__(self, folder: str | os.PathLike):
        event, summary, tensor, shape, types = _protos()
        self._event, self._summary, self._tensor = event, summary, tensor
        self._shape, self._types = shape, types
        folder = os.fspath(folder)
        if backend.has_tensorflow():
            import tensorflow as tf

            self._tf = tf
            self._writer = tf.summary.create_file_writer(folder)
        else:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self._tf = None
            self._writer = EventFileWriter(folder)

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
        encoded = images.png(image)  # checks the image
        height, width = np.shape(image)[:2]
        tensor = self._tensor.TensorProto(
            dtype=self._types.DT_STRING,
            tensor_shape=self._shape.TensorShapeProto(
                dim=[self._shape.TensorShapeProto.Dim(size=3)]
            ),
            string_val=[str(width).encode(), str(height).encode(), encoded],
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
        summary = self._summary.Summary(value=[value])
        if self._tf is not None:
            with self._writer.as_default():
                self._tf.summary.experimental.write_raw_pb(
                    summary.SerializeToString(), step=int(step)
                )
            return
        event = self._event.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._writer.add_event(event)
