"""A layout's prior: the one definition of what every part of a latent is drawn from (`draw_parts`), its numpy
draws (`sample`, `sweeps`; the service's per-image draws, service/latents.py), and the map between the codes a
model was trained with and the codes it presents. Training draws from the same definition with torch's
random numbers (training/model.py's `sample_latents`).

With an alignment (infogan/latent.py), the continuous codes a model presents are linear maps of the codes
it was trained with; draws take the trained codes from their own prior and map them, so generated images
stay on the distribution the generator was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

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


_MATRICES: dict[int, tuple[Alignment, np.ndarray]] = {}


def matrices(alignment: Alignment) -> np.ndarray:
    """The alignment's matrices as one (values, k, k) array, built once (the service maps every request's draws).
    Cached by identity, the alignment kept beside its array so its id is never reused: hashing the dataclass's
    nested tuples on every request cost more than the mapping itself."""
    cached = _MATRICES.get(id(alignment))
    if cached is None or cached[0] is not alignment:
        cached = _MATRICES[id(alignment)] = (alignment, np.asarray(alignment.matrices, dtype=np.float64))
    return cached[1]


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


Array = TypeVar("Array")


class Draws(Protocol, Generic[Array]):
    """The random numbers a prior needs, from one source (numpy's Generator here, torch's in training)."""

    def normal(self, shape: tuple[int, ...]) -> Array: ...

    def uniform(self, low: float, high: float, shape: tuple[int, ...] | None) -> Array: ...

    def integers(self, high: int, count: int | None) -> Array: ...


def draw_parts(layout: LatentLayout, count: int | None, draws: Draws[Array]) -> tuple[Array, list[Array], list[Array]]:
    """`count` draws from the prior, in this order: the noise (count, noise_dim), each categorical code's values
    (count,) uniform over its values, each continuous code's trained values (count,) uniform over its trained
    bounds; count None: one draw, the noise (noise_dim,) and each code a scalar. The order is part of the
    definition: the same source gives the same latents."""
    shape = (layout.noise_dim,) if count is None else (count, layout.noise_dim)
    noise = draws.normal(shape) if layout.noise == "normal" else draws.uniform(-1.0, 1.0, shape)
    categorical = [draws.integers(code.size, count) for code in layout.categorical]
    continuous = [draws.uniform(low, high, None if count is None else (count,)) for low, high in trained_bounds(layout)]
    return noise, categorical, continuous


class NumpyDraws:
    __slots__ = ("rng",)

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.standard_normal(shape)

    def uniform(self, low: float, high: float, shape: tuple[int, ...] | None) -> np.ndarray:
        return self.rng.uniform(low, high, shape)

    def integers(self, high: int, count: int | None) -> np.ndarray:
        return self.rng.integers(high, size=count)


def columns(parts: Sequence[np.ndarray], count: int) -> np.ndarray:
    return np.stack(parts, axis=1) if parts else np.zeros((count, 0))


def sample(layout: LatentLayout, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` draws of (noise float32, categorical int64, presented continuous float32) from the prior."""
    noise, categorical, trained = draw_parts(layout, count, NumpyDraws(rng))
    categorical = columns(categorical, count).astype(np.int64)
    return (noise.astype(np.float32), categorical,
            present(layout, categorical, columns(trained, count)).astype(np.float32))


def sweeps(layout: LatentLayout, index: int, values: np.ndarray, draws: int,
           seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`draws` prior draws (seeded by (seed, index)), each repeated along `values` of continuous code `index` with
    everything else held: the latents of `draws` sweeps, one after the other, as generate() takes them."""
    noise, categorical, continuous = sample(layout, draws, np.random.default_rng([seed, index]))
    steps = len(values)
    continuous = continuous.repeat(steps, axis=0)
    continuous[:, index] = np.tile(values, draws)
    return noise.repeat(steps, axis=0), categorical.repeat(steps, axis=0), continuous
