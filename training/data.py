"""Datasets: IDX files (MNIST, Fashion-MNIST), their official download, and image folders.

Every loader returns a `Dataset`: uint8 images (N, C, H, W) and, when known, labels and class names.
Problems with the files raise `DataError` with a one-line message that names the file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class DataError(Exception):
    """A dataset file is missing, corrupt or of the wrong shape."""


@dataclass
class Dataset:
    images: np.ndarray  # uint8, (N, C, H, W)
    labels: np.ndarray | None  # int64, (N,), or None for unlabelled data
    class_names: list[str] | None
    name: str


# The official files and their MD5s (as published by the dataset authors and used by torchvision).
IDX_DATASETS = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"],
        "classes": [str(digit) for digit in range(10)],
        "files": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "fashion-mnist": {
        "mirrors": [
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "files": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (gzipped or not) of unsigned bytes into an array of its declared shape."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic number {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: truncated or padded: {len(raw) - header} bytes of data, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(data_dir: Path, stem: str) -> Path:
    """`stem` or `stem.gz`, whichever exists (the gzipped name is reported when neither does)."""
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.exists():
            return candidate
    raise DataError(f"{data_dir / (stem + '.gz')}: file not found (pass --download to fetch it)")


def load_idx_dataset(data_dir: Path, name: str, split: str = "train") -> Dataset:
    """MNIST-style IDX images and labels from `data_dir` (train or t10k split)."""
    prefix = "train" if split == "train" else "t10k"
    images_path = _find_idx(data_dir, f"{prefix}-images-idx3-ubyte")
    images = read_idx(images_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected images of shape (N, 28, 28), got {images.shape}")
    labels_path = _find_idx(data_dir, f"{prefix}-labels-idx1-ubyte")
    labels = read_idx(labels_path)
    if labels.shape != (images.shape[0],):
        raise DataError(f"{labels_path}: {labels.shape[0] if labels.ndim else 0} labels for {images.shape[0]} images")
    classes = IDX_DATASETS.get(name, {}).get("classes") or [str(i) for i in range(int(labels.max()) + 1)]
    if labels.max() >= len(classes):
        raise DataError(f"{labels_path}: label {labels.max()} out of range for {len(classes)} classes")
    return Dataset(images[:, None].copy(), labels.astype(np.int64), list(classes), name)


def load_image_folder(root: Path, channels: int, size: int) -> Dataset:
    """Every PNG/JPEG under `root`, converted to `channels` and resized to size x size.

    When every image sits in a sub-folder, the sub-folder names are the class labels.
    """
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DataError(f"{root}: no PNG or JPEG images found")
    mode = "L" if channels == 1 else "RGB"
    images = np.empty((len(paths), channels, size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert(mode).resize((size, size), Image.Resampling.LANCZOS))
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path}: not a readable image ({error})") from None
        images[i] = pixels.reshape(size, size, channels).transpose(2, 0, 1)
    folders = [p.parent.relative_to(root) for p in paths]
    if all(folder != Path(".") for folder in folders):
        class_names = sorted({str(folder) for folder in folders})
        labels = np.array([class_names.index(str(folder)) for folder in folders], dtype=np.int64)
        return Dataset(images, labels, class_names, root.name)
    return Dataset(images, None, None, root.name)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(name: str, data_dir: Path, mirrors: list[str] | None = None, timeout: float = 60.0) -> None:
    """Fetches the official IDX files into `data_dir`, verifying each MD5; files already present and valid are kept.

    Each file is tried on every mirror in turn and lands atomically (temporary name, then rename).
    """
    spec = IDX_DATASETS[name]
    data_dir.mkdir(parents=True, exist_ok=True)
    for filename, expected_md5 in spec["files"].items():
        target = data_dir / filename
        if target.exists() and _md5(target) == expected_md5:
            continue
        failures = []
        for mirror in mirrors or spec["mirrors"]:
            url = mirror.rstrip("/") + "/" + filename
            print(f"downloading {url}", file=sys.stderr)
            handle, temp_name = tempfile.mkstemp(dir=data_dir, prefix=f".{filename}.")
            try:
                with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                actual_md5 = _md5(Path(temp_name))
                if actual_md5 != expected_md5:
                    failures.append(f"{url}: checksum mismatch (md5 {actual_md5}, expected {expected_md5})")
                    continue
                os.replace(temp_name, target)
                break
            except OSError as error:
                failures.append(f"{url}: {error}")
            finally:
                if os.path.exists(temp_name):
                    os.unlink(temp_name)
        else:
            raise DataError(f"{target}: download failed; " + "; ".join(failures))


def load_dataset(kind: str, data_dir: Path, channels: int, size: int) -> Dataset:
    """The training set for a preset's dataset kind: an IDX dataset name, or "folder"."""
    if kind == "folder":
        return load_image_folder(data_dir, channels, size)
    dataset = load_idx_dataset(data_dir, kind)
    if (channels, size) != (1, 28):
        raise DataError(f"{data_dir}: {kind} images are 1x28x28, the preset needs {channels}x{size}x{size}")
    return dataset
