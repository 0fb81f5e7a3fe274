"""The continuous codes' measured effects (infogan/effects.py) on a PyTorch generator, as training and
`python -m training.evaluate` measure them each epoch."""

from __future__ import annotations

import numpy as np
import torch

from infogan.effects import DRAWS, STEPS, measure_effects
from infogan.latent import LatentLayout


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
