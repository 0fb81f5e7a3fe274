"""Morpho-MNIST's shape measurements of a digit (Castro et al., "Morpho-MNIST: Quantitative Assessment and
Diagnostics for Representation Learning", JMLR 2019, section 3.1), written from the paper's definitions:

- the image is upscaled 4x (bicubic pyramid expansion) and binarised at half-way between its darkest and
  brightest pixel; the skeleton is the binary shape's medial axis, with each skeleton pixel's distance to
  the background;
- area: pixels of the binary shape; length: the skeleton's length (neighbours 1 apart side by side, sqrt 2
  diagonally); thickness: twice the mean distance along the skeleton; all in original pixels;
- slant: arctan(-mu11 / mu02), from the upscaled image's intensity-weighted central moments (radians;
  positive leans right);
- width and height: of the bounding parallelogram sheared by the slant that holds all but 2% of the mass
  (1% each side) along each direction.

Images are (H, W) arrays, white strokes on black, of any range; scikit-image and SciPy do the morphology.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage import transform

# scikit-image's medial axis, step by step, with its two 512-entry lookup tables built once instead of on every
# call (building them is most of its time on a digit). Its private helpers are checked against the public
# skimage.morphology.medial_axis, pixel for pixel, by tests/test_morpho.py.
from skimage.morphology._skeletonize import _pattern_of, _table_lookup
from skimage.morphology._skeletonize_various_cy import _skeletonize_loop

SCALE = 4  # upscaling factor for sub-pixel measurement
THRESHOLD = 0.5  # binarisation, as a fraction of the way from the image's minimum to its maximum
BOUND_FRACTION = 0.02  # the mass the bounding parallelogram leaves out along each direction
FACTORS = ("area", "length", "thickness", "slant", "width", "height")
# Edge weights of a skeleton pixel to the neighbours after it in scan order (right, and the row below), so each
# edge between two skeleton pixels is counted once.
_FORWARD_NEIGHBOURS = ((0, 1, 1.0), (1, -1, np.sqrt(2.0)), (1, 0, 1.0), (1, 1, np.sqrt(2.0)))


class Morphometrics(NamedTuple):
    area: float
    length: float
    thickness: float
    slant: float
    width: float
    height: float


@cache
def _medial_axis_tables() -> tuple[np.ndarray, np.ndarray]:
    """A pixel's fate by its 3x3 neighbourhood: removable unless it is background, its removal changes the
    neighbourhood's connectivity, or it has fewer than 3 pixels; and its cornerness (background neighbours)."""
    eight = np.ones((3, 3), bool)
    keep = np.array([bool(index & 16) and (ndimage.label(_pattern_of(index), eight)[1]
                                           != ndimage.label(_pattern_of(index & ~16), eight)[1]
                                           or _pattern_of(index).sum() < 3) for index in range(512)])
    cornerness = np.array([9 - _pattern_of(index).sum() for index in range(512)])
    return np.ascontiguousarray(keep, np.uint8), cornerness


def medial_axis(binary: np.ndarray, rng: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The medial axis of a binary image (the ridges of its distance transform, thinned in order of distance,
    cornerness and a seeded tie-break) and the distance transform: skimage.morphology.medial_axis(binary,
    return_distance=True, rng=rng), exactly."""
    keep, cornerness = _medial_axis_tables()
    binary = binary.astype(bool)
    distance = ndimage.distance_transform_edt(binary)
    corner_score = _table_lookup(binary, cornerness)
    rows, columns = np.nonzero(binary)
    tiebreaker = np.random.default_rng(rng).permutation(np.arange(binary.sum()))
    order = np.lexsort((tiebreaker, corner_score[binary], distance[binary]))
    result = np.ascontiguousarray(binary, np.uint8)
    _skeletonize_loop(result, np.ascontiguousarray(rows, np.intp), np.ascontiguousarray(columns, np.intp),
                      np.ascontiguousarray(order, np.int32), keep)
    return result.astype(bool), distance


def upscaled(image: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """The image in [0, 255] at `scale` times its size, quantised back to whole grey levels."""
    unit = np.asarray(image, dtype=np.float64)
    top = unit.max()
    unit = unit / top if top > 0 else unit
    return np.floor(255.0 * np.clip(transform.pyramid_expand(unit, upscale=scale, order=3, channel_axis=None), 0, 1))


def skeleton_length(skeleton: np.ndarray) -> float:
    """Sum over pairs of neighbouring skeleton pixels of their distance (1 or sqrt 2)."""
    padded = np.pad(skeleton, 1)
    rows, columns = skeleton.shape
    total = 0.0
    for dy, dx, weight in _FORWARD_NEIGHBOURS:
        neighbour = padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + columns]
        total += weight * np.count_nonzero(skeleton & neighbour)
    return total


def moments(image: np.ndarray) -> tuple[float, float, float]:
    """The centroid's row and the central moments mu11 and mu02 (x along columns, y along rows)."""
    y, x = np.indices(image.shape, dtype=np.float64)
    mass = image.sum()
    cx, cy = (x * image).sum() / mass, (y * image).sum() / mass
    return cy, ((x - cx) * (y - cy) * image).sum() / mass, ((y - cy) ** 2 * image).sum() / mass


def weighted_quantiles(positions: np.ndarray, weights: np.ndarray, fractions: tuple[float, float]) -> np.ndarray:
    order = np.argsort(positions, kind="stable")
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return np.interp(fractions, cumulative, positions[order])


def measure(image: np.ndarray) -> Morphometrics:
    """Area, length, thickness, slant, width and height of one digit; NaN for each of a blank image."""
    hires = upscaled(image)
    low, high = hires.min(), hires.max()
    if high <= low:
        return Morphometrics(*([float("nan")] * len(FACTORS)))
    binary = hires >= low + (high - low) * THRESHOLD
    skeleton, distance = medial_axis(binary)
    cy, mu11, mu02 = moments(hires)
    shear = mu11 / mu02 if mu02 > 0 else 0.0
    y, x = np.indices(hires.shape, dtype=np.float64)
    # Along each row, x measured from the sheared axis through the centroid; rows as they are.
    tail = BOUND_FRACTION / 2
    left, right = weighted_quantiles((x + 0.5 - shear * (y - cy)).ravel(), hires.ravel(), (tail, 1 - tail))
    top, bottom = weighted_quantiles(y.ravel(), hires.ravel(), (tail, 1 - tail))
    return Morphometrics(
        area=float(binary.sum()) / SCALE**2,
        length=skeleton_length(skeleton) / SCALE,
        thickness=2.0 * float(distance[skeleton].mean()) / SCALE if skeleton.any() else 0.0,
        slant=float(np.arctan(-shear)),
        width=float(right - left) / SCALE,
        height=float(bottom - top) / SCALE,
    )


def measure_all(images: np.ndarray, factors: tuple[str, ...] = FACTORS) -> dict[str, np.ndarray]:
    """`factors` of each (H, W) image of a stack (N, H, W), as arrays (N,)."""
    measured = [measure(image) for image in images]
    return {name: np.array([getattr(m, name) for m in measured]) for name in factors}
