"""The Open Inference Protocol (KServe V2) with the stock Triton client against the live service."""

from __future__ import annotations

import gzip
import json

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from infogan.latent import LatentLayout
from infogan.prior import sample
from tests.conftest import ROOT, scraped

SHIPPED = ROOT / "models" / "mnist"


@pytest.fixture(scope="module")
def sessions() -> dict[str, ort.InferenceSession]:
    return {name: ort.InferenceSession(str(SHIPPED / f"{name}.onnx"), providers=["CPUExecutionProvider"])
            for name in ("generator", "encoder")}


@pytest.fixture(scope="module")
def client(shipped_server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(shipped_server.url.removeprefix("http://"))


def latents(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    layout = LatentLayout.from_dict(json.loads((SHIPPED / "model.json").read_text())["latent"])
    noise, categorical, continuous = sample(layout, count, np.random.default_rng(seed))
    return {"noise": noise, "categorical": categorical, "continuous": continuous}


def request(feeds: dict[str, np.ndarray], binary: bool, datatypes: dict | None = None) -> list[triton.InferInput]:
    inputs = []
    for name, array in feeds.items():
        datatype = (datatypes or {}).get(name, "FP32" if array.dtype == np.float32 else "INT64")
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_health_and_metadata_as_triton_would_serve_the_files(client, sessions):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("generator") and client.is_model_ready("encoder")
    assert not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert server["name"] == "infogan-serve" and "binary_tensor_data" in server["extensions"]
    kinds = {"tensor(float)": "FP32", "tensor(int64)": "INT64"}
    for name, session in sessions.items():
        metadata = client.get_model_metadata(name)
        assert metadata["name"] == name and metadata["platform"] == "onnxruntime_onnx"
        for side, args in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
            assert metadata[side] == [{"name": a.name, "datatype": kinds[a.type],
                                       "shape": [d if isinstance(d, int) else -1 for d in a.shape]} for a in args]
        assert metadata[side][0]["shape"][0] == -1  # the batch
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_generator_and_encoder_outputs_equal_onnxruntime(client, sessions, binary):
    feeds = latents(7, seed=3)
    outputs = [triton.InferRequestedOutput("images", binary_data=binary)]
    result = client.infer("generator", request(feeds, binary), outputs=outputs)
    images = result.as_numpy("images")
    expected = sessions["generator"].run(None, feeds)[0]
    assert images.shape == (7, 1, 28, 28) and images.dtype == np.float32
    assert np.abs(images - expected).max() < 1e-5
    encoded = client.infer("encoder", request({"images": expected}, binary),
                           outputs=[triton.InferRequestedOutput(n, binary_data=binary)
                                    for n in ("categorical_probs", "continuous_mean")])
    for got, want in zip((encoded.as_numpy("categorical_probs"), encoded.as_numpy("continuous_mean")),
                         sessions["encoder"].run(None, {"images": expected})):
        assert np.abs(got - want).max() < 1e-5


def test_the_default_request_of_the_stock_client(client, sessions):
    """No outputs named: the client asks for every output as binary data."""
    feeds = latents(64, seed=5)
    result = client.infer("generator", request(feeds, True))
    assert np.abs(result.as_numpy("images") - sessions["generator"].run(None, feeds)[0]).max() < 1e-5
    compressed = client.infer("generator", request(feeds, True), request_compression_algorithm="gzip")
    assert np.array_equal(compressed.as_numpy("images"), result.as_numpy("images"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: ({"noize": f["noise"], **{k: v for k, v in f.items() if k != "noise"}}, None), "unknown input 'noize'"),
    (lambda f: ({**f, "noise": f["noise"][:, :61]}, None), "does not fit the model's"),
    (lambda f: (f, {"categorical": "INT32"}), "datatype must be INT64"),
    (lambda f: ({**f, "categorical": f["categorical"] + 10}, None), "must be in [0, 10)"),
    (lambda f: ({k: np.repeat(v, 13, axis=0) for k, v in f.items()}, None), "batch size must be between 1 and 64"),
    (lambda f: ({**f, "continuous": f["continuous"][:4]}, None), "same batch size"),
    (lambda f: ({k: v for k, v in f.items() if k != "continuous"}, None), "missing input(s) continuous"),
], ids=["name", "shape", "datatype", "category", "oversized", "batches", "missing"])
def test_bad_requests_are_400_with_the_reason(client, change, message):
    feeds, datatypes = change(latents(5))
    if datatypes:
        feeds = {**feeds, "categorical": feeds["categorical"].astype(np.int32)}
    for binary in (True, False):
        with pytest.raises(InferenceServerException) as error:
            client.infer("generator", request(feeds, binary, datatypes))
        assert error.value.status() == "400" and message in error.value.message()


def test_raw_errors_have_the_v2_shape(shipped_server):
    url = shipped_server.url + "/v2/models/generator/infer"
    cases = [
        (b'{"inputs": [{"name": "\\ud800"}]}', {}, 400, "unknown input"),  # a lone surrogate: valid JSON
        (b"\xff\xfe{", {}, 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, {}, 400, "not valid JSON"),
        (b'{"inputs": 3}', {}, 400, "\"inputs\" must be a list"),
        (b"{}", {"Inference-Header-Content-Length": "99"}, 400, "Inference-Header-Content-Length"),
        (b"x" * ((1 << 20) + 1), {}, 413, "over"),
        (gzip.compress(b" " * (4 << 20)), {"Content-Encoding": "gzip"}, 413, "decompressed"),
        (b"{}", {"X-Request-Timeout": "0"}, 400, "X-Request-Timeout"),
    ]
    with httpx.Client(timeout=30) as http:
        for body, headers, status, message in cases:
            answer = http.post(url, content=body, headers=headers)
            assert answer.status_code == status and message in answer.json()["error"], (body[:30], answer.text[:200])
        assert http.get(shipped_server.url + "/v2/models/nope/ready").status_code == 404
        assert http.get(shipped_server.url + "/v2/nothing").json() == {"error": "Not Found"}
    assert scraped(shipped_server.url, "http_requests_total", route="/v2/models/{name}/infer", status="400") >= 6
