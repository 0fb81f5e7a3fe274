"""What each continuous code measurably does: how far sweeping it moves a digit's slant and its stroke thickness,
measured as Morpho-MNIST measures them (infogan/morpho.py). Torch-free: training, the aligner and the benchmarks
share it.

For each continuous code: `draws` random draws of (categorical codes, noise, the other continuous codes from
their prior); the code swept over `steps` evenly spaced values across its prior, everything else fixed. Each
factor is divided by its standard deviation over real digits. A code's effect on a factor is the absolute
least-squares slope over its sweep times the prior's width, averaged over the draws; its share is the larger of
its two effects over their sum (1 = it moves one factor only, 0.5 = both equally).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from infogan.latent import LatentLayout
from infogan.morpho import measure_all
from infogan.prior import sweeps

FACTORS = ("slant", "thickness")
DRAWS, STEPS = 30, 9  # random draws per code, values of the code in each sweep
REFERENCE_DIGITS = 2_000  # real digits whose spread is the unit of the effects
EFFECTS_HEADING = "what the continuous codes do (real-digit SDs over the prior):"
GOAL_SHARE = 0.8  # a code "moves one thing" when at least this share of its effect is on one factor
MIN_EFFECT = 1.0  # ... and moves that factor by at least this many real-digit SDs across its prior

Generate = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (noise, categorical, continuous) -> images


def factors(images: np.ndarray) -> dict[str, np.ndarray]:
    """Slant (radians, positive leaning right) and thickness (pixels) of (N, C, H, W) images in [0, 1], measured
    on their channel mean; a blank image, which has neither, counts 0 for both."""
    measured = measure_all(np.asarray(images, dtype=np.float64).mean(axis=1), FACTORS)
    return {name: np.nan_to_num(values) for name, values in measured.items()}


def reference_scale(real_images: np.ndarray, limit: int = REFERENCE_DIGITS) -> dict[str, float]:
    """Each factor's standard deviation over (a fixed sample of at most `limit` of) the real uint8 images: the
    unit effects are measured in."""
    if len(real_images) > limit:
        real_images = real_images[np.random.default_rng(0).choice(len(real_images), limit, replace=False)]
    measured = factors(real_images.astype(np.float64) / 255.0)
    return {name: float(values.std()) for name, values in measured.items()}


def sweep_slopes(values: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of responses (draws, steps) against the swept values (steps,)."""
    centred = values - values.mean()
    return (responses - responses.mean(axis=1, keepdims=True)) @ centred / (centred @ centred)


def measure_effects(generate: Generate, layout: LatentLayout, scale: dict[str, float], draws: int = DRAWS,
                    steps: int = STEPS, seed: int = 0) -> dict[str, dict]:
    """Per continuous code: its effect on each factor (in real-digit SDs over its prior), share and main factor.

    `generate` maps numpy latents to images in [-1, 1]; the draws come from the layout's prior (infogan/prior.py),
    so an aligned model is measured on the codes it presents, as its users sweep them.
    """
    results = {}
    for j, code in enumerate(layout.continuous):
        values = np.linspace(code.low, code.high, steps)
        images = generate(*sweeps(layout, j, values, draws, seed))
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
