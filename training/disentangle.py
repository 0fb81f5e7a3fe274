"""What each continuous code measurably does: how far sweeping it moves a digit's slant and its stroke thickness.

For each continuous code: `draws` random draws of (categorical codes, noise, the other continuous codes from
their prior); the code swept over `steps` evenly spaced values across its prior, everything else fixed. Per
image (white on black, [0, 1]):

- slant = mu11 / mu02, intensity-weighted central moments: the horizontal shift per row (shear);
- thickness = 2 A / P: A pixels above 0.5, P 4-neighbour edges between a pixel above 0.5 and one not
  (outside the image counts as not): a stroke of width w and length L has A = wL, P ~ 2L.

Each factor is divided by its standard deviation over real digits. A code's effect on a factor is the
absolute least-squares slope over its sweep times the prior's width, averaged over the draws; its share is
the larger of its two effects over their sum (1 = it moves one factor only, 0.5 = both equally).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from infogan.latent import LatentLayout
from infogan.prior import sample

FACTORS = ("slant", "thickness")
DRAWS, STEPS = 30, 9  # random draws per code, values of the code in each sweep
EFFECTS_HEADING = "what the continuous codes do (real-digit SDs over the prior):"
GOAL_SHARE = 0.8  # a code "moves one thing" when at least this share of its effect is on one factor
MIN_EFFECT = 1.0  # ... and moves that factor by at least this many real-digit SDs across its prior


def grey(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W): the channel mean, so RGB images are measured too."""
    return images.mean(axis=1)


def slant(images: np.ndarray) -> np.ndarray:
    """mu11 / mu02 of each (H, W) image in [0, 1]; 0 for a blank image."""
    _, height, width = images.shape
    rows = np.arange(height, dtype=np.float64)[None, :, None]
    columns = np.arange(width, dtype=np.float64)[None, None, :]
    mass = images.sum(axis=(1, 2))
    safe_mass = np.where(mass > 0, mass, 1.0)
    row_mean = (images * rows).sum(axis=(1, 2)) / safe_mass
    column_mean = (images * columns).sum(axis=(1, 2)) / safe_mass
    dy = rows - row_mean[:, None, None]
    dx = columns - column_mean[:, None, None]
    mu11 = (images * dx * dy).sum(axis=(1, 2))
    mu02 = (images * dy * dy).sum(axis=(1, 2))
    return np.where(mu02 > 0, mu11 / np.where(mu02 > 0, mu02, 1.0), 0.0)


def thickness(images: np.ndarray) -> np.ndarray:
    """2 A / P of each (H, W) image in [0, 1]; 0 for a blank image."""
    ink = np.pad(images > 0.5, ((0, 0), (1, 1), (1, 1)))  # outside the image counts as background
    area = ink.sum(axis=(1, 2))
    perimeter = (ink[:, 1:, :] != ink[:, :-1, :]).sum(axis=(1, 2)) + (ink[:, :, 1:] != ink[:, :, :-1]).sum(axis=(1, 2))
    return np.where(perimeter > 0, 2.0 * area / np.maximum(perimeter, 1), 0.0)


def factors(images: np.ndarray) -> dict[str, np.ndarray]:
    """Slant and thickness of (N, C, H, W) images in [0, 1]."""
    plane = grey(images.astype(np.float64))
    return {"slant": slant(plane), "thickness": thickness(plane)}


def reference_scale(real_images: np.ndarray, limit: int = 10_000) -> dict[str, float]:
    """Each factor's standard deviation over (at most `limit` of) the real uint8 images: the unit effects are
    measured in. A fixed sample of a large set keeps the float64 copy small."""
    if len(real_images) > limit:
        real_images = real_images[np.random.default_rng(0).choice(len(real_images), limit, replace=False)]
    measured = factors(real_images.astype(np.float64) / 255.0)
    return {name: float(values.std()) for name, values in measured.items()}


def sweep_slopes(values: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of responses (draws, steps) against the swept values (steps,)."""
    centred = values - values.mean()
    return (responses - responses.mean(axis=1, keepdims=True)) @ centred / (centred @ centred)


Generate = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (noise, categorical, continuous) -> images


def measure_effects(generate: Generate, layout: LatentLayout, scale: dict[str, float], draws: int = DRAWS,
                    steps: int = STEPS, seed: int = 0) -> dict[str, dict]:
    """Per continuous code: its effect on each factor (in real-digit SDs over its prior), share and main factor.

    `generate` maps numpy latents to images in [-1, 1]; the draws come from the layout's prior (infogan/prior.py),
    so an aligned model is measured on the codes it presents, as its users sweep them.
    """
    results = {}
    for j, code in enumerate(layout.continuous):
        noise, categorical, continuous = sample(layout, draws, np.random.default_rng([seed, j]))
        values = np.linspace(code.low, code.high, steps)
        continuous = continuous.repeat(steps, axis=0)
        continuous[:, j] = np.tile(values, draws)
        images = generate(noise.repeat(steps, axis=0), categorical.repeat(steps, axis=0), continuous)
        measured = factors((np.asarray(images, dtype=np.float64) + 1.0) / 2.0)
        effects = {}
        for name in FACTORS:
            responses = measured[name].reshape(draws, steps) / scale[name]
            effects[name] = float(np.abs(sweep_slopes(values, responses)).mean() * (code.high - code.low))
        results[code.name] = {**effects, **main_factor(effects)}
    return results


def main_factor(effects: dict[str, float]) -> dict:
    """The share of the larger effect, and its factor: None when even that stays under MIN_EFFECT (the code moves
    nothing measurable, whatever the ratio of two tiny numbers says)."""
    main = max(FACTORS, key=lambda name: effects[name])
    total = sum(effects[name] for name in FACTORS)
    return {"share": effects[main] / total if total > 0 else 0.0, "factor": main if effects[main] >= MIN_EFFECT else None}


@torch.no_grad()
def code_effects(generator: torch.nn.Module, layout: LatentLayout, scale: dict[str, float], device: str = "cpu",
                 draws: int = DRAWS, steps: int = STEPS, seed: int = 0) -> dict[str, dict]:
    """measure_effects on a PyTorch generator, in eval mode for the measurement."""
    was_training = generator.training
    generator.eval()

    def generate(noise: np.ndarray, categorical: np.ndarray, continuous: np.ndarray) -> np.ndarray:
        tensors = (torch.from_numpy(part).to(device) for part in (noise, categorical, continuous))
        return generator(*tensors).float().cpu().numpy()

    try:
        return measure_effects(generate, layout, scale, draws, steps, seed)
    finally:
        generator.train(was_training)


def separated(effects: dict[str, dict], goal: float = GOAL_SHARE) -> bool:
    """Every factor has its own code, and every such code puts at least `goal` of its effect on it."""
    mains = [result["factor"] for result in effects.values() if result["share"] >= goal and result["factor"]]
    return len(effects) >= len(FACTORS) and set(mains) == set(FACTORS) and len(mains) == len(set(mains))


def effects_table(effects: dict[str, dict]) -> str:
    """The Markdown table the README and the model card show."""
    lines = ["| code | slant effect | thickness effect | share of its main factor | main factor |", "|---|---|---|---|---|"]
    for name, result in effects.items():
        factor = result["factor"] or f"none (each < {MIN_EFFECT:g} SD)"
        lines.append(f"| {name} | {result['slant']:.2f} SD | {result['thickness']:.2f} SD | {result['share']:.2f} "
                     f"| {factor} |")
    return "\n".join(lines)
