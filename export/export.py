"""Exports a training run to self-describing ONNX files, verified against PyTorch.

    python -m export runs/mnist --out models/mnist [--precision fp16]

Writes generator.onnx (noise + codes -> images), encoder.onnx (images -> Q's code posterior) and
model.json (the model card). The latent layout, label map and image format travel inside both ONNX
files as metadata, so a model file alone is enough to serve it. Nothing lands unless parity holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from torch import nn

from infogan.files import sha256
from infogan.images import framing
from infogan.latent import LatentLayout
from training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, load_networks
from training.model import Discriminator, Generator, sample_latents

OPSET = 18
PARITY_BATCHES = (1, 7, 64)
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
VALUE_RANGE = (-1.0, 1.0)  # pixel range of generator outputs and encoder inputs
# The exporter logs a warning per missing torchvision operator; this project has none to export.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


class ExportError(Exception):
    """The run cannot be exported, or the exported files disagree with PyTorch."""


class EncoderGraph(nn.Module):
    """D's trunk and Q's head: categorical probabilities (softmax per code) and continuous-code means."""

    def __init__(self, discriminator: Discriminator):
        super().__init__()
        self.discriminator = discriminator
        self.sizes = [code.size for code in discriminator.layout.categorical]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, logits, mean, _ = self.discriminator(images)
        probabilities = [part.softmax(1) for part in logits.split(self.sizes, dim=1)] if self.sizes else [logits]
        return torch.cat(probabilities, dim=1), mean


def store_weights_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Stores every float32 initialiser as float16 behind a Cast to float32.

    The file halves; onnxruntime folds the Casts once when the session loads, so the CPU runs the same
    float32 kernels at full speed and CUDA runs the graph unchanged.
    """
    graph = model.graph
    casts = []
    for initializer in list(graph.initializer):
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(initializer).astype(np.float16), initializer.name + "__fp16")
        graph.initializer.remove(initializer)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [initializer.name], to=onnx.TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def export_graph(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=OPSET,
                          dynamic_shapes=tuple({0: batch} for _ in args), dynamo=True, external_data=False,
                          verbose=False)


def finish_graph(path: Path, metadata: dict[str, str], precision: str) -> None:
    """Adds the metadata, applies the storage precision and checks the file."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    if precision == "fp16":
        model = store_weights_fp16(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def optimisation_report(path: Path) -> dict:
    """Runs onnxruntime's full optimiser over the file and reports what it made of it."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # the saved graph is only inspected, never shipped: skip the hardware warning
    with tempfile.TemporaryDirectory() as scratch:
        options.optimized_model_filepath = str(Path(scratch) / "optimised.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimised = onnx.load(options.optimized_model_filepath)
    before = [node.op_type for node in onnx.load(str(path)).graph.node]
    after = [node.op_type for node in optimised.graph.node]
    weights = {initializer.name for initializer in optimised.graph.initializer}
    leftover = [node.op_type for node in optimised.graph.node
                if node.op_type == "BatchNormalization" or (node.op_type == "Cast" and node.input[0] in weights)]
    if leftover:
        raise ExportError(f"{path.name}: onnxruntime left {sorted(set(leftover))} unfolded; the graph is not fully optimised")
    return {"nodes": len(before), "nodes_optimised": len(after), "ops_optimised": sorted(set(after))}


def check_parity(generator: Generator, encoder: EncoderGraph, model_dir: Path, precision: str, seed: int = 0) -> dict:
    """Max abs difference between onnxruntime and PyTorch over batches of 1, 7 and 64."""
    layout = generator.layout
    rng = torch.Generator().manual_seed(seed)
    sessions = {name: ort.InferenceSession(str(model_dir / name), providers=["CPUExecutionProvider"])
                for name in ("generator.onnx", "encoder.onnx")}
    worst = {"generator": 0.0, "encoder": 0.0}
    for batch in PARITY_BATCHES:
        noise, categorical, continuous = sample_latents(layout, batch, rng, "cpu")
        continuous = continuous * 2  # reach past the prior, as the service allows
        with torch.no_grad():
            images = generator(noise, categorical, continuous)
            expected = [images, *encoder(images)]
        feeds = {"noise": noise.numpy(), "categorical": categorical.numpy(), "continuous": continuous.numpy()}
        got = sessions["generator.onnx"].run(None, feeds) + sessions["encoder.onnx"].run(None, {"images": images.numpy()})
        worst["generator"] = max(worst["generator"], float(np.abs(got[0] - expected[0].numpy()).max()))
        for got_part, want in zip(got[1:], expected[1:]):
            if want.numel():
                worst["encoder"] = max(worst["encoder"], float(np.abs(got_part - want.numpy()).max()))
    tolerance = TOLERANCE[precision]
    for name, difference in worst.items():
        if not difference <= tolerance:
            raise ExportError(f"parity failed: {name} differs from PyTorch by {difference:.2e} > {tolerance:.0e} ({precision})")
    return {"batches": list(PARITY_BATCHES), "max_abs_diff": worst, "tolerance": tolerance}


def export_run(run_dir: Path, out_dir: Path, checkpoint: Path | None = None, precision: str = "fp32",
               name: str | None = None, version: str = "1", command: str = "") -> dict:
    """Exports, verifies and moves the files into out_dir; returns the model card."""
    if precision not in TOLERANCE:
        raise ExportError(f"--precision: unknown precision {precision!r}; use fp32 or fp16")
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: run directory not found")
    state = load_checkpoint(checkpoint or run_dir / CHECKPOINT_NAME)
    generator, discriminator = load_networks(state)
    layout: LatentLayout = state["layout"]
    generator.layout = discriminator.layout = layout  # the trained layout carries the label map
    encoder = EncoderGraph(discriminator).eval()
    config = state["config"]
    history = state.get("history") or []
    dataset = state.get("dataset", config.dataset)
    card = {
        "name": name or run_dir.resolve().name,
        "version": version,
        "dataset": dataset,
        "image": {"channels": config.image_channels, "height": config.image_size, "width": config.image_size,
                  "layout": "NCHW", "dtype": "float32", "value_range": list(VALUE_RANGE), "framing": framing(dataset)},
        "latent": layout.to_dict(),
        "training": {"config": asdict(config), "step": state["step"], "commands": state.get("commands", []),
                     "metrics": history[-1] if history else {}},
        "export": {"opset": OPSET, "precision": precision, "command": command, "torch": torch.__version__},
    }
    metadata = {
        "infogan.latent": layout.to_json(),
        "infogan.image": json.dumps(card["image"]),
        "infogan.model": json.dumps({k: card[k] for k in ("name", "version", "dataset")}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".export-"))
    try:
        noise, categorical, continuous = sample_latents(layout, 2, torch.Generator().manual_seed(0), "cpu")
        export_graph(generator, (noise, categorical, continuous), staging / "generator.onnx",
                     ["noise", "categorical", "continuous"], ["images"])
        images = torch.zeros(2, config.image_channels, config.image_size, config.image_size)
        export_graph(encoder, (images,), staging / "encoder.onnx", ["images"], ["categorical_probs", "continuous_mean"])
        card["files"] = {}
        for file_name in ("generator.onnx", "encoder.onnx"):
            finish_graph(staging / file_name, metadata, precision)
            card["files"][file_name] = {"sha256": sha256(staging / file_name),
                                        "bytes": (staging / file_name).stat().st_size,
                                        "optimisation": optimisation_report(staging / file_name)}
        card["export"]["parity"] = check_parity(generator, encoder, staging, precision)
        (staging / "model.json").write_text(json.dumps(card, indent=2) + "\n")
        for file_name in ("generator.onnx", "encoder.onnx", "model.json"):  # the card last: it vouches for the rest
            (staging / file_name).replace(out_dir / file_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="training run directory (holds checkpoint.pt)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to export (default: RUN_DIR/checkpoint.pt)")
    parser.add_argument("--precision", default="fp32", help="weight storage: fp32 (default) or fp16 (half the size)")
    parser.add_argument("--name", help="model name in the card (default: the run directory's name)")
    parser.add_argument("--version", default="1", help="model version in the card (default 1)")
    args = parser.parse_args(argv)
    try:
        card = export_run(args.run_dir, args.out, args.checkpoint, args.precision, args.name, args.version,
                          command="python -m export " + " ".join(argv if argv is not None else sys.argv[1:]))
    except (ExportError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    parity = card["export"]["parity"]["max_abs_diff"]
    print(f"wrote {args.out}/generator.onnx, encoder.onnx, model.json ({args.precision}); parity max abs diff "
          f"generator {parity['generator']:.1e}, encoder {parity['encoder']:.1e}")
    return 0
