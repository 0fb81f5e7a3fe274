"""Identity along a sweep: does moving a continuous code keep the digit?

Each continuous code is swept over a range with everything else fixed, and a supervised digit classifier (an
evaluation instrument, `python -m training.classifier`; never used in training or alignment) reads every
frame. Kept = the share of frames read as the same digit as the sweep's middle frame (code at 0), the middle
itself left out; over the prior's range [-1, 1] and over the paper's [-2, 2].
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from infogan.latent import LatentLayout
from infogan.prior import sweeps

RANGES = ((-1.0, 1.0), (-2.0, 2.0))
DRAWS, STEPS = 60, 9  # sweeps per code, frames per sweep (odd: the middle one is the code at 0)
GOAL = {"[-1, 1]": 0.98, "[-2, 2]": 0.90}  # the share of frames a range must keep to be offered by default
CLASSIFIER = Path(__file__).resolve().parent.parent / "bench" / "data" / "digit-classifier.onnx"

Generate = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (noise, categorical, continuous) -> images


class DigitClassifier:
    """The instrument's ONNX file, on onnxruntime's CPU provider: images (N, 1, 28, 28) in [-1, 1] -> digits."""

    def __init__(self, path: Path):
        import onnxruntime as ort  # only where a classifier is used: the core stays numpy and Pillow

        self.path = path
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.metadata = json.loads(self.session.get_modelmeta().custom_metadata_map.get("infogan.instrument", "{}"))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        return np.concatenate([self.session.run(None, {"images": images[i : i + 512]})[0].argmax(1)
                               for i in range(0, len(images), 512)])


def range_name(low: float, high: float) -> str:
    return f"[{low:g}, {high:g}]"


def identity_kept(generate: Generate, layout: LatentLayout, classify: Callable[[np.ndarray], np.ndarray],
                  draws: int = DRAWS, steps: int = STEPS, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per continuous code and range: the share of a sweep's frames that keep the middle frame's digit."""
    kept: dict[str, dict[str, float]] = {}
    for j, code in enumerate(layout.continuous):
        kept[code.name] = {}
        for low, high in RANGES:  # the same draws for every range
            digits = classify(generate(*sweeps(layout, j, np.linspace(low, high, steps), draws, seed)))
            kept[code.name][range_name(low, high)] = kept_share(digits.reshape(draws, steps))
    return kept


def kept_share(digits: np.ndarray) -> float:
    """digits (sweeps, frames), an odd number of frames: the share of frames whose digit is the middle frame's,
    the middle frames left out."""
    middle = digits.shape[1] // 2
    return float(np.delete(digits == digits[:, middle : middle + 1], middle, axis=1).mean())


def lowest(kept: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per range, the lowest share over the codes."""
    return {name: min(per_range[name] for per_range in kept.values()) for name in (range_name(*r) for r in RANGES)}


def supported_range(kept: dict[str, dict[str, float]]) -> list[float]:
    """The widest range whose lowest share meets its goal: the traversal range a model offers by default; the
    prior's [-1, 1] when none does."""
    worst = lowest(kept)
    met = [[low, high] for low, high in RANGES if worst[range_name(low, high)] >= GOAL[range_name(low, high)]]
    return max(met, key=lambda r: r[1] - r[0], default=[-1.0, 1.0])
