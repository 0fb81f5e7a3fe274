"""Measures an exported model's continuous codes through onnxruntime and records them in its model card.

    python bench/card_effects.py models/mnist --data-dir ../shared/data/mnist-9k

The same measurement as training and `python -m training.evaluate` (infogan/effects.py, with Morpho-MNIST's measures), run on the
shipped generator.onnx itself, so the card states what the served model does. Prints the table and writes
`code_effects` (with the draws, steps and seed) into MODEL_DIR/model.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infogan.effects import DRAWS, STEPS, effects_table, reference_scale
from infogan.latent import LatentLayout
from training.checkpoint import atomic_write
from training.data import load_dataset
from training.disentangle import code_effects


class OnnxGenerator(torch.nn.Module):
    """generator.onnx behind the (noise, categorical, continuous) -> images call of the PyTorch generator."""

    def __init__(self, path: Path):
        super().__init__()
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.layout = LatentLayout.from_json(self.session.get_modelmeta().custom_metadata_map["infogan.latent"])

    def forward(self, noise: torch.Tensor, categorical: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        feeds = {"noise": noise.numpy(), "categorical": categorical.numpy(), "continuous": continuous.numpy()}
        return torch.from_numpy(np.asarray(self.session.run(None, feeds)[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True, help="real digits: each factor's unit is its SD there")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generator = OnnxGenerator(args.model_dir / "generator.onnx")
    card_path = args.model_dir / "model.json"
    card = json.loads(card_path.read_text())
    image = card["image"]
    dataset = load_dataset(card["dataset"], args.data_dir, image["channels"], image["height"])
    effects = code_effects(generator, generator.layout, reference_scale(dataset.images), seed=args.seed)
    print(effects_table(effects))
    card["code_effects"] = {"measured_on": str(args.data_dir), "draws": DRAWS, "steps": STEPS, "seed": args.seed,
                            "method": "infogan/effects.py (Morpho-MNIST slant and thickness)", "codes": effects}
    atomic_write(card_path, lambda out: out.write((json.dumps(card, indent=2) + "\n").encode()))


if __name__ == "__main__":
    main()
