"""What the continuous codes do, measured on a PyTorch generator each epoch and by `python -m training.evaluate`:
their effects on slant and thickness (infogan/effects.py) and whether they keep the digit (infogan/identity.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from infogan.effects import DRAWS, STEPS, measure_effects
from infogan.identity import CLASSIFIER, DigitClassifier, identity_kept
from infogan.latent import LatentLayout


@contextmanager
def numpy_generator(generator: torch.nn.Module, device: str) -> Iterator[Callable[..., np.ndarray]]:
    """The generator as a function of numpy latents, in eval mode while the block runs."""
    was_training = generator.training
    generator.eval()

    @torch.no_grad()
    def generate(noise: np.ndarray, categorical: np.ndarray, continuous: np.ndarray) -> np.ndarray:
        tensors = (torch.from_numpy(part).to(device) for part in (noise, categorical, continuous))
        return generator(*tensors).float().cpu().numpy()

    try:
        yield generate
    finally:
        generator.train(was_training)


def code_effects(generator: torch.nn.Module, layout: LatentLayout, scale: dict[str, float], device: str = "cpu",
                 draws: int = DRAWS, steps: int = STEPS, seed: int = 0) -> dict[str, dict]:
    with numpy_generator(generator, device) as generate:
        return measure_effects(generate, layout, scale, draws, steps, seed)


def digit_classifier(dataset: str, layout: LatentLayout) -> DigitClassifier | None:
    """The instrument that reads generated digits, for MNIST runs with continuous codes (None otherwise, or when
    its file is missing)."""
    usable = dataset == "mnist" and layout.continuous and CLASSIFIER.is_file()
    return DigitClassifier(CLASSIFIER) if usable else None


def code_identity(generator: torch.nn.Module, layout: LatentLayout, classifier: DigitClassifier, device: str = "cpu",
                  seed: int = 0) -> dict[str, dict[str, float]]:
    with numpy_generator(generator, device) as generate:
        return identity_kept(generate, layout, classifier, seed=seed)
