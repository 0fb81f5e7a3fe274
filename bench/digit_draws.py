"""Does each value of the categorical code draw its own digit? A check for merged digits that does not use Q.

    python bench/digit_draws.py MODEL_DIR... [--draws 500] [--data-dir ../shared/data/mnist-9k]

For each value of c1, `--draws` images from the prior through the model's generator.onnx, each read by the
project's digit classifier (bench/data/digit-classifier.onnx, an evaluation instrument: infogan/identity.py) or,
with `--data-dir`, by a vote of its 3 nearest labelled digits there (cosine similarity of the pixels, no training;
the instrument of docs/RESULTS-9k.md, which predates the classifier). Prints, per label, the share of its draws
read as that label and the digit most of the others are read as. A merge (two values drawing the same digit)
shows as a low share whose rest goes to one other digit.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infogan.identity import CLASSIFIER, DigitClassifier
from infogan.latent import LatentLayout
from infogan.prior import sample
from training.data import load_dataset

NEIGHBOURS = 3


def unit_rows(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.float32)
    return flat / np.linalg.norm(flat, axis=1, keepdims=True).clip(1e-6)


def nearest_digits(data_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Reads images in [-1, 1] by a vote of their nearest labelled digits of data_dir."""
    dataset = load_dataset("mnist", data_dir, 1, 28)
    real, labels = unit_rows(dataset.images / 255.0), dataset.labels

    def read(fakes: np.ndarray) -> np.ndarray:
        nearest = np.argsort(-(unit_rows((fakes + 1) / 2) @ real.T), axis=1)[:, :NEIGHBOURS]
        return np.array([np.bincount(labels[row], minlength=10).argmax() for row in nearest])

    return read


def draws_by_label(model_dir: Path, read: Callable[[np.ndarray], np.ndarray], draws: int) -> dict[str, dict]:
    layout = LatentLayout.from_dict(json.loads((model_dir / "model.json").read_text())["latent"])
    code = layout.categorical[0]
    if not code.labels:
        raise SystemExit(f"error: {model_dir}: its categorical code has no labels to check against")
    session = ort.InferenceSession(str(model_dir / "generator.onnx"), providers=["CPUExecutionProvider"])
    result = {}
    for value in range(code.size):
        noise, categorical, continuous = sample(layout, draws, np.random.default_rng(value))
        categorical[:, 0] = value
        images = session.run(None, {"noise": noise, "categorical": categorical, "continuous": continuous})[0]
        counts = np.bincount(read(images), minlength=10) / draws
        own = int(code.labels[value])
        other = max((digit for digit in range(10) if digit != own), key=lambda digit: counts[digit])
        result[code.labels[value]] = {"share": float(counts[own]), "other": str(other),
                                      "other_share": float(counts[other])}
    return dict(sorted(result.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="model directories written by python -m export")
    parser.add_argument("--data-dir", type=Path, help="read the draws by their nearest labelled digits (IDX) here "
                        "instead of the digit classifier")
    parser.add_argument("--draws", type=int, default=500, help="images per value of c1 (default 500)")
    args = parser.parse_args()
    read = nearest_digits(args.data_dir) if args.data_dir else DigitClassifier(CLASSIFIER)
    for model in args.models:
        shares = draws_by_label(model, read, args.draws)
        lowest = min(shares, key=lambda label: shares[label]["share"])
        worst = shares[lowest]
        print(f"{model}: lowest {lowest} {worst['share']:.2f} (else {worst['other']} {worst['other_share']:.2f}); "
              + " ".join(f"{label}:{s['share']:.2f}" for label, s in shares.items()))


if __name__ == "__main__":
    main()
