"""Image handling: /encode's preprocessing frames uploads the way the model's data set frames its images (MNIST's
digits, Fashion-MNIST's products, or the whole image); PNG encoding."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from infogan.images import png_bytes
from service.imaging import to_model_input


def drawn_digit(size: int, dark_on_light: bool) -> Image.Image:
    """A '7'-like stroke, off-centre, on a large canvas."""
    image = Image.new("L", (size, size), 255 if dark_on_light else 0)
    pen = ImageDraw.Draw(image)
    ink = 0 if dark_on_light else 255
    scale = size / 280
    pen.line([(60 * scale, 40 * scale), (160 * scale, 40 * scale), (90 * scale, 200 * scale)], fill=ink,
             width=max(1, round(20 * scale)))
    return image


def test_content_is_scaled_to_20_pixels_and_centred_by_mass():
    array = to_model_input(drawn_digit(280, dark_on_light=False), 1, 28)[0, 0]
    assert array.shape == (28, 28)
    ink = (array + 1) / 2
    rows, cols = np.nonzero(ink > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21)
    centre = [(np.indices(ink.shape)[axis] * ink).sum() / ink.sum() for axis in (0, 1)]
    assert np.allclose(centre, 13.5, atol=1.0)


def test_paper_drawings_and_jpegs_frame_like_their_clean_original():
    clean = to_model_input(drawn_digit(280, dark_on_light=False), 1, 28)
    buffer = io.BytesIO()
    drawn_digit(560, dark_on_light=True).convert("RGB").save(buffer, format="JPEG", quality=80)
    photo = to_model_input(Image.open(buffer), 1, 28)
    assert np.abs(photo - clean).mean() < 0.05


def test_blank_page_gives_an_empty_frame():
    assert np.all(to_model_input(Image.new("L", (50, 50), 255), 1, 28) == -1)


def garment(canvas: tuple[int, int], box: tuple[int, int, int, int], dark_on_light: bool = False) -> Image.Image:
    """A filled, textured shape (left, top, right, bottom) on a plain canvas, as a product photo."""
    pixels = np.full(canvas[::-1], 255 if dark_on_light else 0, np.uint8)
    left, top, right, bottom = box
    shade = np.random.default_rng(1).integers(90, 200, (bottom - top, right - left))
    pixels[top:bottom, left:right] = 255 - shade if dark_on_light else shade
    return Image.fromarray(pixels)


def test_fill_framing_keeps_a_fashion_mnist_image_as_it_is():
    image = garment((28, 28), (6, 0, 22, 28))  # as Fashion-MNIST frames a dress: its height fills the frame
    array = to_model_input(image, 1, 28, "fill")[0, 0]
    assert np.abs((array + 1) * 127.5 - np.asarray(image, np.float32)).max() < 0.01


def test_fill_framing_scales_the_longer_side_to_the_frame_and_centres_the_box():
    array = to_model_input(garment((400, 300), (10, 20, 110, 220), dark_on_light=True), 1, 28, "fill")[0, 0]
    rows, cols = np.nonzero(array > -1)
    assert (rows.min(), rows.max()) == (0, 27) and (cols.min(), cols.max()) == (7, 20)  # 200 x 100 -> 28 x 14


def test_resize_framing_takes_the_whole_image():
    array = to_model_input(garment((56, 56), (0, 0, 28, 28)), 1, 28, "resize")[0, 0]
    assert np.all(array[:14, :14] > -1) and np.all(array[14:, :] == -1) and np.all(array[:, 14:] == -1)


def test_mnist_framing_shrinks_what_fill_framing_keeps():
    image = garment((28, 28), (6, 0, 22, 28))
    rows = np.nonzero(to_model_input(image, 1, 28, "mnist")[0, 0] > -1)[0]
    assert rows.max() - rows.min() + 1 == 20


def test_rgb_models_get_a_plain_resize():
    image = Image.new("RGB", (64, 48), (255, 0, 0))
    array = to_model_input(image, 3, 32)
    assert array.shape == (1, 3, 32, 32) and np.allclose(array[0, 0], 1) and np.allclose(array[0, 1:], -1)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (28, 28, 1), (32, 32, 3), (302, 152, 1), (5, 7, 3)])
def test_png_bytes_decodes_to_the_same_pixels(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(pixels))))
    expected = pixels.transpose(1, 2, 0) if shape[0] in (1, 3) and shape[-1] not in (1, 3) else pixels
    assert np.array_equal(decoded, expected[..., 0] if expected.shape[-1] == 1 else expected)


def test_png_bytes_refuses_what_png_cannot_hold_as_is():
    with pytest.raises(ValueError, match="uint8 with 1 or 3 channels"):
        png_bytes(np.zeros((28, 28, 1), np.float32))
