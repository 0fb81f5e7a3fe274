"""Uploads for /encode: decoded safely and turned into the encoder's input."""

from __future__ import annotations

import contextlib
import ctypes
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
DRAFT_SIDE = 512  # uploads are reduced to this many pixels a side (JPEGs decoded at 1/2, 1/4 or 1/8 towards it)
LARGE_PIXELS = 4 << 20  # decoding more than this leaves freed memory in the allocator: hand it back to the system


class UploadError(ValueError):
    """The upload is not a usable image; the message says why."""


def decode(data: bytes, content_type: str, max_pixels: int, max_side: int = 4096) -> Image.Image:
    """PNG or JPEG bytes -> a loaded PIL image at most DRAFT_SIDE a side, upright as its EXIF orientation says,
    refusing oversized images before decoding their pixels. A JPEG (a phone photo of a digit) is decoded at
    reduced size (its DCT scaling), which costs a fraction of the time and memory of the full image; an
    animated image gives its first frame."""
    if not data:
        raise UploadError("body is empty: send one PNG or JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[ACCEPTED_TYPES[content_type]])
            width, height = image.size
            if width > max_side or height > max_side or width * height > max_pixels:
                raise UploadError(f"image is {width} x {height}; the limit is {max_side} x {max_side}")
            if image.format == "JPEG":
                image.draft(image.mode, (DRAFT_SIDE, DRAFT_SIDE))
            image.load()
            if image.mode.startswith("I;16"):  # 16-bit grey: values kept, in a mode Pillow can resize
                image = image.convert("I")
            # The model sees 28 x 28: everything after this works on a small copy, and the full-size pixels
            # are freed here rather than dragged through the float conversions.
            image.thumbnail((DRAFT_SIDE, DRAFT_SIDE), Image.Resampling.BOX)
            ImageOps.exif_transpose(image, in_place=True)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError("image is too large to decode (decompression bomb guard)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, UploadError):
            raise
        raise UploadError(f"body is not a readable {content_type} image") from None
    if width * height > LARGE_PIXELS:
        release_memory()
    return image


def release_memory() -> None:
    """Returns the allocator's free memory to the system (glibc's malloc_trim; a no-op elsewhere): the pixels of
    a large upload, once freed, would otherwise stay in the process's RSS."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _flatten(image: Image.Image) -> Image.Image:
    """Transparent pixels become white, as on paper."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image


def _gray(image: Image.Image) -> np.ndarray:
    """(H, W) float32 in [0, 255] of any mode: 16- and 32-bit greys scaled from their own range (Pillow's
    convert("L") would clip them to white), CMYK and palettes through RGB."""
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        return (np.clip(values, 0, top) * (255.0 / top)).astype(np.float32)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32)


def to_model_input(image: Image.Image, channels: int, size: int, framing: str = "mnist") -> np.ndarray:
    """(1, C, size, size) float32 in [-1, 1].

    Grey models were trained on light content on black: a dark drawing on a light background (border brighter
    than mid-grey) is inverted against the paper's own shade and stretched to full contrast, then framed as the
    model's data set frames its images (`framing`, infogan/images.py): "mnist" fits the content into 20/28 of
    the frame and centres its mass, "fill" scales it until its longer side fills the frame and centres it,
    "resize" resizes the whole image. RGB images are only resized.
    """
    if channels != 1:
        rgb = _flatten(image).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        return (np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0)[None].astype(np.float32)
    gray = _gray(_flatten(image))
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    pixels = gray
    if border.mean() > 127:  # ink on paper: the paper (rarely pure white in a photo) becomes black
        paper = np.median(border)
        pixels = np.clip(paper - gray, 0, None)
        pixels *= 255 / max(float(pixels.max()), 1.0)
    if framing != "resize":
        rows, cols = np.nonzero(pixels > 32)  # ignore faint noise (JPEG ringing, paper texture) around the content
        if len(rows):
            pixels = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    array = np.zeros((1, size, size), dtype=np.float32)
    if pixels.max() > 0:
        if framing == "mnist":
            array[0] = _mnist_frame(pixels, size)
        elif framing == "fill":
            array[0] = _fill_frame(pixels, size)
        else:
            array[0] = _resized(pixels, size, size)
    return (array / 127.5 - 1.0)[None].astype(np.float32)


def _resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """The pixels resized with a box filter, as float32."""
    return np.asarray(Image.fromarray(pixels.astype(np.uint8)).resize((width, height), Image.Resampling.BOX),
                      dtype=np.float32)


def _scaled(pixels: np.ndarray, longer_side: int) -> np.ndarray:
    """The pixels resized, aspect kept, so that their longer side is `longer_side`."""
    scale = longer_side / max(pixels.shape)
    return _resized(pixels, max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))


def _placed(box: np.ndarray, size: int, top: int, left: int) -> np.ndarray:
    frame = np.zeros((size, size), dtype=np.float32)
    frame[top : top + box.shape[0], left : left + box.shape[1]] = box
    return frame


def _fill_frame(pixels: np.ndarray, size: int) -> np.ndarray:
    """Fashion-MNIST's framing: the content scaled until its longer side fills the frame, its box centred."""
    box = _scaled(pixels, size)
    return _placed(box, size, (size - box.shape[0]) // 2, (size - box.shape[1]) // 2)


def _mnist_frame(pixels: np.ndarray, size: int) -> np.ndarray:
    """MNIST's normalisation: the content scaled to fit a 20/28 box (aspect kept), then placed so that its
    centre of mass is the frame's centre."""
    box = _scaled(pixels, round(size * 20 / 28))
    rows, cols = np.indices(box.shape)
    mass = box.sum() or 1.0
    top = int(np.clip(round(size / 2 - (rows * box).sum() / mass), 0, size - box.shape[0]))
    left = int(np.clip(round(size / 2 - (cols * box).sum() / mass), 0, size - box.shape[1]))
    return _placed(box, size, top, left)
