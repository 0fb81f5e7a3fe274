"""What D and Q see of an image besides the image: the pixel scale, random shifts, random changes of style and
mirror images."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scaled(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1], the range of G's tanh output."""
    return pixels.float() / 127.5 - 1


def translate(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by its own random (dy, dx) in [-max_shift, max_shift], background (-1) filling in.

    Differentiable, so G's gradient flows through it; one gather, no Python loop over the batch.
    """
    batch, _, height, width = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (2, batch, 1, 1), generator=generator, device=images.device)
    padded = F.pad(images, [max_shift] * 4, value=-1.0)
    rows = torch.arange(height, device=images.device).view(1, height, 1) + max_shift + shifts[0]
    columns = torch.arange(width, device=images.device).view(1, 1, width) + max_shift + shifts[1]
    index = torch.arange(batch, device=images.device).view(batch, 1, 1)
    return padded.permute(0, 2, 3, 1)[index, rows, columns].permute(0, 3, 1, 2)


def jitter_style(images: torch.Tensor, max_shear: float, max_stroke: float, generator: torch.Generator) -> torch.Tensor:
    """Each image sheared by its own random amount in [-max_shear, max_shear] (horizontal shift per row, about
    the centre) and its strokes thickened or thinned: a blend of up to max_stroke towards a 3x3 dilation
    (positive) or erosion (negative). Differentiable; the background (-1) fills in."""
    batch = len(images)
    shear, stroke = (torch.rand(2, batch, generator=generator, device=images.device) * 2 - 1) * torch.tensor(
        [[max_shear], [max_stroke]], device=images.device)
    stroke = stroke.view(batch, 1, 1, 1)
    dilated, eroded = F.max_pool2d(images, 3, 1, 1), -F.max_pool2d(-images, 3, 1, 1)
    images = images + stroke.clamp(min=0) * (dilated - images) + (-stroke).clamp(min=0) * (eroded - images)
    theta = torch.zeros(batch, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 1] = shear
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, align_corners=False) - 1  # zero padding of images + 1 is background


def mirror(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left to right with probability one half."""
    flipped = torch.rand(len(images), generator=generator, device=images.device) < 0.5
    return torch.where(flipped.view(-1, 1, 1, 1), images.flip(3), images)


def second_view(images: torch.Tensor, max_shift: int, max_shear: float, max_stroke: float, mirrored: bool,
                generator: torch.Generator) -> torch.Tensor:
    """Another view of each image, changed only in ways that keep its class: a fresh shift, the style jitter
    where it is on and, with `mirrored`, a mirror image half of the time."""
    if max_shift:
        images = translate(images, max_shift, generator)
    if max_shear or max_stroke:
        images = jitter_style(images, max_shear, max_stroke, generator)
    return mirror(images, generator) if mirrored else images
