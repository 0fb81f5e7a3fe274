"""Image handling: /encode's preprocessing frames uploads the way MNIST frames its digits; PNG encoding."""

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
