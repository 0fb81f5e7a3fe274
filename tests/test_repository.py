"""A model repository: several models in one service, picked by name, listed through Triton's repository
extension, reloaded under load without a failed request, a damaged version refused."""

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Server, run, scraped


@pytest.fixture(scope="module")
def second_version(tmp_path_factory, trained_run) -> Path:
    """The same run exported again with half-precision weights: other files, other hashes."""
    out = tmp_path_factory.mktemp("versions") / "beta"
    result = run("export", str(trained_run), "--out", str(out), "--precision", "fp16", "--version", "2")
    assert result.returncode == 0, result.stderr
    return out


def install(version: Path, directory: Path) -> None:
    """A new version of a served model copied over its directory, file by file, as an operator would."""
    for name in ("generator.onnx", "encoder.onnx", "model.json"):
        shutil.copy(version / name, directory / name)


@pytest.fixture()
def repository(tmp_path, model_dir) -> Path:
    """alpha and beta (two copies of the tiny model), and a folder that holds no model."""
    for name in ("alpha", "beta"):
        shutil.copytree(model_dir, tmp_path / name)
    (tmp_path / "notes").mkdir()
    return tmp_path


@pytest.fixture()
def served(repository):
    server = Server(None, MODEL_REPOSITORY=str(repository), DEFAULT_MODEL="alpha", WORKERS="1")
    yield server
    server.stop()


def test_every_model_in_the_repository_is_served_by_its_folder_name(served):
    with httpx.Client(base_url=served.url, timeout=30) as http:
        listed = http.get("/models").json()
        assert listed["default"] == "alpha"
        assert [m["name"] for m in listed["models"]] == ["alpha", "beta"] and all(m["ready"] for m in listed["models"])
        assert http.get("/info", params={"model": "beta"}).json()["model"]["sha256"] == listed["models"][1]["sha256"]
        for params in ({}, {"model": "beta"}):
            assert http.post("/generate", params=params, json={"seed": 3}).headers["content-type"] == "image/png"
            assert http.get("/traverse", params={"code": "1", "rows": 1, **params}).status_code == 200
        unknown = http.post("/generate", params={"model": "gamma"}, json={"seed": 3})
        assert unknown.status_code == 404
        assert unknown.json()["detail"][0]["loc"] == ["query", "model"] and "alpha, beta" in unknown.json()["detail"][0]["msg"]
        assert http.post("/generate", params={"model": ""}, json={}).status_code == 422
        assert scraped(http, "inference_batch_size_count", model="beta", session="generator") >= 1


def test_the_stock_triton_client_lists_every_model_and_infers_on_each(served):
    tritonclient = pytest.importorskip("tritonclient.http")
    client = tritonclient.InferenceServerClient(served.url.removeprefix("http://"))
    index = client.get_model_repository_index()
    names = sorted(entry["name"] for entry in index)
    assert names == ["alpha.encoder", "alpha.generator", "beta.encoder", "beta.generator"]
    assert all(entry["state"] == "READY" for entry in index)
    for name in names:
        metadata = client.get_model_metadata(name)
        inputs = []
        for spec in metadata["inputs"]:
            shape = [2, *spec["shape"][1:]]
            array = np.zeros(shape, np.int64) if spec["datatype"] == "INT64" else np.zeros(shape, np.float32)
            tensor = tritonclient.InferInput(spec["name"], shape, spec["datatype"])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = client.infer(name, inputs)
        assert all(result.as_numpy(spec["name"]).shape[0] == 2 for spec in metadata["outputs"]), name


def test_a_reload_under_load_fails_no_request_and_a_damaged_version_is_refused(served, repository, second_version):
    statuses: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    statuses.append(http.post("/generate", params={"model": "beta"}, json={"n": 4}).status_code)
                except httpx.HTTPError as error:
                    errors.append(repr(error))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        with httpx.Client(base_url=served.url, timeout=60) as http:
            before = http.get("/info", params={"model": "beta"}).json()["model"]["sha256"]
            tag_before = http.get("/generate", params={"model": "beta", "seed": 1}).headers["etag"]
            time.sleep(1)
            install(second_version, repository / "beta")
            loaded = http.post("/v2/repository/models/beta/load")
            assert loaded.status_code == 200, loaded.text
            after = http.get("/info", params={"model": "beta"}).json()["model"]["sha256"]
            card = json.loads((repository / "beta" / "model.json").read_text())
            assert after != before and after == {name: entry["sha256"] for name, entry in card["files"].items()}
            assert http.get("/generate", params={"model": "beta", "seed": 1}).headers["etag"] != tag_before
            time.sleep(1)

            damaged = repository / "beta" / "generator.onnx"
            damaged.write_bytes(damaged.read_bytes()[:-100] + b"\0" * 100)
            refused = http.post("/v2/repository/models/beta/load")
            assert refused.status_code == 400 and "generator.onnx" in refused.json()["error"]
            assert http.get("/info", params={"model": "beta"}).json()["model"]["sha256"] == after  # the old one serves
            time.sleep(1)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert not errors and len(statuses) > 20 and set(statuses) == {200}, (errors[:3], set(statuses))


def test_an_unloaded_model_is_listed_unavailable_and_can_be_loaded_again(served):
    with httpx.Client(base_url=served.url, timeout=30) as http:
        assert http.post("/v2/repository/models/beta.generator/unload").status_code == 200
        assert http.post("/generate", params={"model": "beta"}, json={}).status_code == 404
        index = {e["name"]: e["state"] for e in http.post("/v2/repository/index", json={}).json()}
        assert index["beta.generator"] == "UNAVAILABLE" and index["alpha.generator"] == "READY"
        assert [e["name"] for e in http.post("/v2/repository/index", json={"ready": True}).json()] == [
            "alpha.generator", "alpha.encoder"]
        assert http.post("/v2/repository/models/beta/load").status_code == 200
        assert http.post("/generate", params={"model": "beta"}, json={}).status_code == 200
        assert http.post("/v2/repository/models/gamma/load").status_code == 404


def test_with_polling_a_new_model_and_a_changed_one_are_served_without_a_request(repository, model_dir,
                                                                                  second_version):
    server = Server(None, MODEL_REPOSITORY=str(repository), DEFAULT_MODEL="alpha", WORKERS="1", MODEL_POLL_S="0.2")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            shutil.copytree(model_dir, repository / "gamma")
            install(second_version, repository / "beta")
            expected = json.loads((second_version / "model.json").read_text())["files"]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                served = {m["name"]: m["sha256"] for m in http.get("/models").json()["models"]}
                if "gamma" in served and served["beta"] == {n: e["sha256"] for n, e in expected.items()}:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"not picked up: {served}")
            assert http.post("/generate", params={"model": "gamma"}, json={}).status_code == 200
    finally:
        server.stop()


def answers_from_fresh_connections(url: str, path: str, count: int = 16) -> list[httpx.Response]:
    """`count` requests, each on a new connection, so that the kernel spreads them over the workers."""
    return [httpx.get(url + path, timeout=30) for _ in range(count)]


def test_every_worker_serves_a_load_and_an_unload_made_through_one_of_them_once_it_returns(repository,
                                                                                          second_version):
    server = Server(None, MODEL_REPOSITORY=str(repository), DEFAULT_MODEL="alpha", WORKERS="2")
    try:
        install(second_version, repository / "beta")
        assert httpx.post(server.url + "/v2/repository/models/beta/load", timeout=60).status_code == 200
        expected = {n: e["sha256"] for n, e in json.loads((second_version / "model.json").read_text())["files"].items()}
        served = [r.json()["model"]["sha256"] for r in answers_from_fresh_connections(server.url, "/info?model=beta")]
        assert all(hashes == expected for hashes in served)
        assert httpx.post(server.url + "/v2/repository/models/beta/unload", timeout=60).status_code == 200
        assert {r.status_code for r in answers_from_fresh_connections(server.url, "/info?model=beta")} == {404}
        assert httpx.post(server.url + "/v2/repository/models/beta/load", timeout=60).status_code == 200
        assert {r.status_code for r in answers_from_fresh_connections(server.url, "/info?model=beta")} == {200}
    finally:
        server.stop()
