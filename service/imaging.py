"""Uploads for /encode: decoded safely and turned into the encoder's input."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

ACCEPTED_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}


class UploadError(ValueError):
    """The upload is not a usable image; the message says why."""


def decode(data: bytes, content_type: str, max_pixels: int, max_side: int = 4096) -> Image.Image:
    """PNG or JPEG bytes -> a loaded PIL image, refusing oversized images before decoding their pixels."""
    if not data:
        raise UploadError("body is empty: send one PNG or JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[ACCEPTED_TYPES[content_type]])
            width, height = image.size
            if width > max_side or height > max_side or width * height > max_pixels:
                raise UploadError(f"image is {width} x {height}; the limit is {max_side} x {max_side}")
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError("image is too large to decode (decompression bomb guard)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, UploadError):
            raise
        raise UploadError(f"body is not a readable {content_type} image") from None
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """Transparent pixels become white, as on paper."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image


def to_model_input(image: Image.Image, channels: int, size: int) -> np.ndarray:
    """(1, C, size, size) float32 in [-1, 1].

    Grayscale models were trained on light strokes on black, framed like MNIST: a dark drawing on a light
    background (border brighter than mid-grey) is inverted, and the content is framed as MNIST frames its
    digits. RGB images are only resized.
    """
    if channels == 1:
        gray = np.asarray(_flatten(image).convert("L"), dtype=np.float32)
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        pixels = 255 - gray if border.mean() > 127 else gray
        rows, cols = np.nonzero(pixels > 32)  # ignore faint noise (JPEG ringing, paper texture) around the content
        if len(rows):
            pixels = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        array = np.zeros((1, size, size), dtype=np.float32)
        if pixels.max() > 0:
            array[0] = _mnist_frame(pixels, size)
    else:
        rgb = _flatten(image).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        array = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1)
    return (array / 127.5 - 1.0)[None].astype(np.float32)


def _mnist_frame(pixels: np.ndarray, size: int) -> np.ndarray:
    """MNIST's normalisation: the content scaled to fit a 20/28 box (aspect kept), then placed so that its
    centre of mass is the frame's centre."""
    side = round(size * 20 / 28)
    scale = side / max(pixels.shape)
    box = np.asarray(Image.fromarray(pixels.astype(np.uint8)).resize(
        (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale))), Image.Resampling.BOX),
        dtype=np.float32)
    rows, cols = np.indices(box.shape)
    mass = box.sum() or 1.0
    top = int(np.clip(round(size / 2 - (rows * box).sum() / mass), 0, size - box.shape[0]))
    left = int(np.clip(round(size / 2 - (cols * box).sum() / mass), 0, size - box.shape[1]))
    frame = np.zeros((size, size), dtype=np.float32)
    frame[top : top + box.shape[0], left : left + box.shape[1]] = box
    return frame
