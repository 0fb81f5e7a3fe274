"""Image helpers shared by training and the service: numpy and Pillow only, no torch."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1], (N, C, H, W) float -> uint8 of the same shape."""
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def tile(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """uint8 (N, C, H, W) -> one (H', W', C) grid, `columns` images a row, `pad` pixels of black between."""
    count, channels, height, width = images.shape
    rows = -(-count // columns)
    grid = np.zeros((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), dtype=np.uint8)
    for index, image in enumerate(images):
        top, left = pad + (index // columns) * (height + pad), pad + (index % columns) * (width + pad)
        grid[top : top + height, left : left + width] = image.transpose(1, 2, 0)
    return grid


def png_bytes(pixels: np.ndarray) -> bytes:
    """(H, W, C) or (C, H, W) uint8 with C in {1, 3} -> PNG bytes (fast zlib level: these are tiny images)."""
    if pixels.shape[0] in (1, 3) and pixels.shape[-1] not in (1, 3):
        pixels = pixels.transpose(1, 2, 0)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
