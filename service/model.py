"""Loads a model directory written by `python -m export` into onnxruntime sessions.

Everything the service knows about the model comes from the ONNX metadata (the latent layout, label map,
image format) and model.json; nothing is configured twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from infogan.latent import LatentLayout

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class ModelError(Exception):
    """The model directory is missing, corrupt or was not written by the exporter."""


@dataclass
class Model:
    directory: Path
    generator: ort.InferenceSession
    encoder: ort.InferenceSession | None
    layout: LatentLayout
    image: dict  # channels, height, width, value_range
    card: dict  # name, version, dataset and the rest of model.json

    @property
    def provider(self) -> str:
        """The provider the live session actually runs on (onnxruntime falls back to the CPU silently)."""
        return self.generator.get_providers()[0]

    def info(self) -> dict:
        return {
            "name": self.card.get("name"), "version": self.card.get("version"), "dataset": self.card.get("dataset"),
            "sha256": {name: entry["sha256"] for name, entry in self.card.get("files", {}).items()},
        }


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    providers = [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        raise ModelError(f"{path}: not a loadable ONNX model ({error})") from None


def _metadata(session: ort.InferenceSession, path: Path) -> tuple[LatentLayout, dict, dict]:
    meta = session.get_modelmeta().custom_metadata_map
    try:
        return (LatentLayout.from_json(meta["infogan.latent"]), json.loads(meta["infogan.image"]),
                json.loads(meta["infogan.model"]))
    except (KeyError, ValueError) as error:
        raise ModelError(f"{path}: no InfoGAN metadata ({error}); export it with `python -m export`") from None


def load_model(directory: Path, threads: int = 0) -> Model:
    """The generator (required), the encoder (optional) and the card of `directory`."""
    generator_path = directory / "generator.onnx"
    if not directory.is_dir():
        raise ModelError(f"{directory}: model directory not found")
    if not generator_path.is_file():
        raise ModelError(f"{generator_path}: not found; a model directory holds generator.onnx (and encoder.onnx)")
    generator = _session(generator_path, threads)
    layout, image, card = _metadata(generator, generator_path)
    card_path = directory / "model.json"
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except ValueError as error:
            raise ModelError(f"{card_path}: not valid JSON ({error})") from None
    else:  # a model file alone is enough: derive the checksums the card would have held
        card["files"] = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                         for p in (generator_path, directory / "encoder.onnx") if p.is_file()}
    encoder_path = directory / "encoder.onnx"
    encoder = _session(encoder_path, threads) if encoder_path.is_file() else None
    if encoder is not None and _metadata(encoder, encoder_path)[0] != layout:
        raise ModelError(f"{encoder_path}: its latent layout differs from generator.onnx's")
    return Model(directory, generator, encoder, layout, image, card)
