"""Draws from a layout's prior, in numpy, for every part that samples codes outside the training loop.

With an alignment (infogan/latent.py), the continuous codes a model presents are linear maps of the codes
it was trained with; draws take the trained codes from their own prior and map them, so generated images
stay on the distribution the generator was trained on.
"""

from __future__ import annotations

import functools

import numpy as np

from infogan.latent import Alignment, LatentLayout


def trained_bounds(layout: LatentLayout) -> list[tuple[float, float]]:
    """The uniform prior of each continuous code as training drew it."""
    if layout.alignment is not None:
        return [tuple(bounds) for bounds in layout.alignment.trained_bounds]
    return [(code.low, code.high) for code in layout.continuous]


def alignment_index(layout: LatentLayout, categorical: np.ndarray) -> np.ndarray:
    """Which of the alignment's matrices applies to each row: the value of its `by` code, or 0 for all."""
    by = layout.alignment.by if layout.alignment is not None else None
    if by is None:
        return np.zeros(len(categorical), dtype=np.int64)
    return categorical[:, layout.categorical.index(layout.code(by))].astype(np.int64)


@functools.cache
def matrices(alignment: Alignment) -> np.ndarray:
    """The alignment's matrices as one (values, k, k) array, built once (the service maps every request's draws)."""
    return np.asarray(alignment.matrices, dtype=np.float64)


def present(layout: LatentLayout, categorical: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Trained continuous codes (B, k) -> the codes the model presents (the same without an alignment)."""
    if layout.alignment is None:
        return trained
    chosen = matrices(layout.alignment)[alignment_index(layout, categorical)]
    return np.einsum("bij,bj->bi", chosen, trained).astype(trained.dtype)


def to_trained(layout: LatentLayout, categorical: np.ndarray, presented: np.ndarray) -> np.ndarray:
    """The inverse of `present`: the codes the generator was trained with, for presented ones (B, k)."""
    if layout.alignment is None:
        return presented
    chosen = np.linalg.inv(matrices(layout.alignment))[alignment_index(layout, categorical)]
    return np.einsum("bij,bj->bi", chosen, presented.astype(np.float64)).astype(presented.dtype)


def sample(layout: LatentLayout, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` draws of (noise float32, categorical int64, presented continuous float32) from the prior."""
    if layout.noise == "normal":
        noise = rng.standard_normal((count, layout.noise_dim))
    else:
        noise = rng.uniform(-1, 1, (count, layout.noise_dim))
    categorical = np.stack([rng.integers(code.size, size=count) for code in layout.categorical], axis=1) \
        if layout.categorical else np.zeros((count, 0), np.int64)
    bounds = trained_bounds(layout)
    trained = np.stack([rng.uniform(low, high, count) for low, high in bounds], axis=1) \
        if bounds else np.zeros((count, 0))
    return (noise.astype(np.float32), categorical.astype(np.int64),
            present(layout, categorical, trained).astype(np.float32))


def sweeps(layout: LatentLayout, index: int, values: np.ndarray, draws: int,
           seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`draws` prior draws (seeded by (seed, index)), each repeated along `values` of continuous code `index` with
    everything else held: the latents of `draws` sweeps, one after the other, as generate() takes them."""
    noise, categorical, continuous = sample(layout, draws, np.random.default_rng([seed, index]))
    steps = len(values)
    continuous = continuous.repeat(steps, axis=0)
    continuous[:, index] = np.tile(values, draws)
    return noise.repeat(steps, axis=0), categorical.repeat(steps, axis=0), continuous
