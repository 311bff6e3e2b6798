import numpy as np
import pytest

from tfdlgm.images import png
from tfdlgm.summaries import SummaryWriter


def test_scalars_and_images_read_back_with_tensorboards_reader(tensorboard_writer, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    writer = SummaryWriter(tmp_path / "train")
    for step, value in enumerate([3.5, -1.25]):
        writer.scalar("loss/total", value, step=step)
    writer.image("samples", np.full((2, 3, 1), 200, "uint8"), step=1)
    writer.close()
    reader = event_accumulator.EventAccumulator(
        str(tmp_path / "train"), size_guidance={"tensors": 0}
    )
    reader.Reload()
    loss = [tensor_util.make_ndarray(e.tensor_proto) for e in reader.Tensors("loss/total")]
    assert [float(v) for v in loss] == [3.5, -1.25]
    assert [e.step for e in reader.Tensors("loss/total")] == [0, 1]
    assert reader.SummaryMetadata("loss/total").plugin_data.plugin_name == "scalars"
    (event,) = reader.Tensors("samples")
    width, height, encoded = tensor_util.make_ndarray(event.tensor_proto)
    assert (event.step, int(width), int(height), encoded) == (
        1,
        3,
        2,
        png(np.full((2, 3, 1), 200, "uint8")),
    )
    assert reader.SummaryMetadata("samples").plugin_data.plugin_name == "images"


@pytest.mark.parametrize(
    "image",
    [np.zeros((2, 3, 1), "float32"), np.zeros((2, 3), "uint8"), np.zeros((2, 3, 2), "uint8")],
)
def test_an_image_that_is_not_uint8_grey_or_rgb_is_refused(tensorboard_writer, tmp_path, image):
    writer = SummaryWriter(tmp_path)
    with pytest.raises(
        ValueError, match=r"`image` must be a uint8 array \[height, width, 1 or 3\]"
    ):
        writer.image("bad", image, step=0)
    writer.close()
