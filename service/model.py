"""Loads a model directory written by `python -m export` into onnxruntime sessions.

Everything the service knows about the model comes from the ONNX metadata (the latent layout, label map,
image format) and model.json; nothing is configured twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from infogan.files import sha256
from infogan.images import FRAMING_KINDS, framing
from infogan.latent import LatentLayout
from service.latents import CONTINUOUS_LIMIT
from service.settings import ConfigurationError

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class ModelError(ConfigurationError):
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

    @property
    def traverse_range(self) -> tuple[float, float]:
        """The continuous range /traverse sweeps by default: the widest one along which the model was measured to
        keep the digit (model.json's traverse_range, infogan/identity.py); the prior's [-1, 1] when unmeasured."""
        low, high = self.card.get("traverse_range", (-1.0, 1.0))
        return float(low), float(high)

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
        layout, image, card = (LatentLayout.from_json(meta["infogan.latent"]), json.loads(meta["infogan.image"]),
                               json.loads(meta["infogan.model"]))
    except (KeyError, ValueError) as error:
        raise ModelError(f"{path}: no InfoGAN metadata ({error}); export it with `python -m export`") from None
    if not (isinstance(image, dict) and all(isinstance(image.get(k), int) and image[k] > 0
                                            for k in ("channels", "height", "width"))):
        raise ModelError(f"{path}: its infogan.image metadata must give positive channels, height and width")
    if not isinstance(card, dict):
        raise ModelError(f"{path}: its infogan.model metadata must be a JSON object")
    image.setdefault("framing", framing(card.get("dataset")))  # files exported before the exporter wrote it
    if image["framing"] not in FRAMING_KINDS:
        raise ModelError(f"{path}: its infogan.image framing must be one of {', '.join(FRAMING_KINDS)}, "
                         f"got {image['framing']!r}")
    return layout, image, card


def _card(path: Path) -> dict:
    """model.json, checked to be what the exporter writes: an object whose optional name, version and dataset are
    strings and whose "files" maps file names to {"sha256": hex digest}."""
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    except ValueError as error:
        raise ModelError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(card, dict):
        raise ModelError(f"{path}: must be a JSON object as `python -m export` writes, got {type(card).__name__}")
    for key in ("name", "version", "dataset"):
        if not isinstance(card.get(key, ""), str):
            raise ModelError(f"{path}: \"{key}\" must be a string")
    span = card.get("traverse_range", [-1.0, 1.0])
    if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                               and abs(v) <= CONTINUOUS_LIMIT for v in span)
            and span[0] < span[1]):
        raise ModelError(f"{path}: \"traverse_range\" must be [low, high] with -{CONTINUOUS_LIMIT:g} <= low < high <= "
                         f"{CONTINUOUS_LIMIT:g}")
    files = card.get("files", {})
    if not (isinstance(files, dict) and all(isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                                            for entry in files.values())):
        raise ModelError(f"{path}: \"files\" must map each file name to {{\"sha256\": \"<hex digest>\"}}")
    return card


def _verify(directory: Path, card: dict, card_path: Path) -> None:
    """Each ONNX file model.json lists has the checksum it records (a damaged or swapped file is refused)."""
    for name, entry in card.get("files", {}).items():
        path = directory / name
        if path.suffix != ".onnx":
            continue
        if not path.is_file():
            raise ModelError(f"{path}: {card_path} lists it, but it is {'not a file' if path.exists() else 'missing'}")
        if sha256(path) != entry["sha256"]:
            raise ModelError(f"{path}: its SHA-256 differs from the one {card_path} records (damaged or replaced; "
                             "export the model again)")


def load_model(directory: Path, threads: int = 0) -> Model:
    """The generator (required), the encoder (optional) and the card of `directory`."""
    generator_path = directory / "generator.onnx"
    if not directory.is_dir():
        raise ModelError(f"{directory}: {'not a directory' if directory.exists() else 'model directory not found'}")
    if not generator_path.is_file():
        raise ModelError(f"{generator_path}: not found; a model directory holds generator.onnx (and encoder.onnx)")
    card_path = directory / "model.json"
    card = _card(card_path) if card_path.exists() else None
    if card is not None:  # before any session: a damaged file may still load
        _verify(directory, card, card_path)
    generator = _session(generator_path, threads)
    layout, image, embedded_card = _metadata(generator, generator_path)
    if card is None:  # a model file alone is enough: derive the checksums the card would have held
        card = {**embedded_card, "files": {p.name: {"sha256": sha256(p)}
                                           for p in (generator_path, directory / "encoder.onnx") if p.is_file()}}
    encoder_path = directory / "encoder.onnx"
    encoder = _session(encoder_path, threads) if encoder_path.is_file() else None
    if encoder is not None and _metadata(encoder, encoder_path)[0] != layout:
        raise ModelError(f"{encoder_path}: its latent layout differs from generator.onnx's")
    return Model(directory, generator, encoder, layout, image, card)
