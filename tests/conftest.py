"""Shared fixtures: a tiny labelled IDX dataset, a trained tiny run, its export, and a live server."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ten recognisable classes: class k is a bright bar at row 2k+4, blurred, with noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, 40, (count, 28, 28))
    for image, label in zip(images, labels):
        image[2 * label + 4 : 2 * label + 7, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def run(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """A project CLI as a user runs it: `python -m ...` in the repository root."""
    return subprocess.run([PYTHON, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("digits")
    images, labels = make_digits(384)
    write_idx(directory / "train-images-idx3-ubyte.gz", images)
    write_idx(directory / "train-labels-idx1-ubyte.gz", labels)
    return directory


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, digits_dir) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = run("training", "--preset", "tiny", "--data-dir", str(digits_dir), "--out", str(out), "--epochs", "2",
                 "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, trained_run) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    result = run("export", str(trained_run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def dev_tool(name: str) -> str | None:
    """A command of the dev extra (hadolint, kubectl, podman-compose, ...): this venv's own first, then PATH."""
    return shutil.which(name, path=str(Path(PYTHON).parent)) or shutil.which(name)


def traversals_across_a_signal(url: str, clients: int, signal: Callable[[], object]) -> tuple[list[int], bool, float]:
    """`clients` traversals of 1,024 images each, on connections opened beforehand (as a load balancer's pooled
    ones are), with `signal()` called once the service holds them (all but two queued for inference, as its
    /metrics says: on a busy machine the service may read them late, and a request it has not read when the
    signal comes is rightly refused).

    Returns their statuses, whether any finished after the signal (it came while they were in flight), and when
    the signal was sent (time.monotonic()).
    """
    params = {"code": "2", "rows": 32, "steps": 32}
    connections = [httpx.Client(base_url=url, timeout=60) for _ in range(clients)]
    try:
        for http in connections:
            http.get("/healthz")

        def traverse(http: httpx.Client) -> tuple[int, float]:
            return http.get("/traverse", params=params).status_code, time.monotonic()

        with ThreadPoolExecutor(clients) as pool:
            answers = [pool.submit(traverse, http) for http in connections]
            deadline = time.monotonic() + 30
            while queued_for_inference(url) < clients - 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            signalled = time.monotonic()
            signal()
            results = [answer.result() for answer in answers]
    finally:
        for http in connections:
            http.close()
    return [status for status, _ in results], any(finished > signalled for _, finished in results), signalled


def queued_for_inference(url: str) -> float:
    """Requests waiting for inference, over every model, session and worker (`inference_queue_depth`)."""
    return scraped(url, "inference_queue_depth")


def samples(source: str | httpx.Client, name: str) -> list[Sample]:
    """The samples called `name` (e.g. `http_requests_total`) that `source`'s /metrics answers with, parsed as
    Prometheus parses them; `source` is a service's URL or a client with its base URL."""
    response = source.get("/metrics") if isinstance(source, httpx.Client) else httpx.get(source + "/metrics", timeout=30)
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples
            if sample.name == name]


def scraped(source: str | httpx.Client, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`, over every other label."""
    return sum(sample.value for sample in samples(source, name) if labels.items() <= sample.labels.items())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m service` in a subprocess on 127.0.0.1, waited on until /readyz says 200."""

    def __init__(self, model: Path | None, launcher: tuple[str, ...] = ("-m", "service"), **env: str):
        """`model`: the one model directory to serve (--model), or None for MODEL_REPOSITORY's models."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [PYTHON, *launcher, *(["--model", str(model)] if model else []), "--port", str(self.port)], cwd=ROOT,
            env={**os.environ, "ACCESS_LOG": "0", **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.process.stdout.read()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("service did not become ready in 60 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def server(model_dir) -> Server:
    live = Server(model_dir)
    yield live
    live.stop()


@pytest.fixture(scope="session")
def shipped_server() -> Server:
    """The shipped model (models/mnist: aligned, named codes), one worker."""
    live = Server(ROOT / "models" / "mnist", WORKERS="1")
    yield live
    live.stop()


@pytest.fixture()
def client(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
