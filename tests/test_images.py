import io

import numpy as np
import pytest

from tfdlgm import images

Image = pytest.importorskip("PIL.Image")  # an independent PNG decoder


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_png_decodes_to_the_same_pixels(rng, channels, mode):
    image = rng.integers(0, 256, size=(5, 7, channels)).astype("uint8")
    decoded = Image.open(io.BytesIO(images.png(image)))
    assert decoded.mode == mode and decoded.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(decoded).reshape(image.shape), image)


def test_flat_images_make_a_square_greyscale_grid(tmp_path):
    path = images.save_grid(np.linspace(0, 1, 5 * 6).reshape(5, 6), tmp_path / "g.png", (2, 3))
    with Image.open(path) as image:
        assert image.mode == "L"
        assert image.size == (2 * (3 * 5 + 2), 2 * (2 * 4 + 2))  # 3 columns, 2 rows
        pixels = np.asarray(image)
    np.testing.assert_array_equal(pixels[4:8:2, 4:10:2], [[0, 9, 18], [26, 35, 44]])


def test_nan_pixels_are_drawn_in_colour(tmp_path):
    grid = np.zeros((2, 1, 4))
    grid[1, 0, 3] = np.nan
    path = images.save_grid(grid, tmp_path / "g.png", image_shape=(2, 2), scale=1, padding=0)
    with Image.open(path) as image:
        pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.shape == (4, 2, 3)
    np.testing.assert_array_equal(pixels[3, 1], images.MISSING_RGB)
    np.testing.assert_array_equal(pixels[3, 0], [0, 0, 0])


def test_a_wrong_image_size_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"\[N, 784\].*Received: shape=\(2, 5, 7\)"):
        images.save_grid(np.zeros((2, 5, 7)), tmp_path / "g.png")


@pytest.mark.parametrize(
    "pattern, hidden_rows",
    [("bottom-half", [3, 4]), ("top-half", [0, 1])],
)
def test_a_half_pattern_hides_the_floor_of_half_the_rows(pattern, hidden_rows):
    mask = images.missing_pixels(pattern, (2, 15), image_shape=(5, 3))
    assert mask.shape == (2, 15) and mask.dtype == bool
    rows = mask.reshape(2, 5, 3)
    assert [r for r in range(5) if not rows[:, r].any()] == hidden_rows
    assert rows[:, [r for r in range(5) if r not in hidden_rows]].all()


def test_the_random_pattern_hides_each_pixel_with_its_probability_and_its_seed():
    mask = images.missing_pixels("random:0.25", (400, 784), seed=3)
    assert abs((~mask).mean() - 0.25) < 0.004  # 313,600 draws: 5 standard errors
    assert (mask == images.missing_pixels("random:0.25", (400, 784), seed=3)).all()
    assert not (mask == images.missing_pixels("random:0.25", (400, 784), seed=4)).all()


@pytest.mark.parametrize("pattern", ["random:1", "random:0", "random:x", "left-half", "random"])
def test_an_unknown_pattern_is_a_clear_error(pattern):
    message = f"must be bottom-half, top-half or random:P .*{pattern!r}"
    with pytest.raises(ValueError, match=message):
        images.missing_pixels(pattern, (1, 784))
