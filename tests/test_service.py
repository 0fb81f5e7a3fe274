"""The HTTP contract, against the real app under uvicorn on 127.0.0.1 serving an exported tiny model."""

import asyncio
import base64
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import ROOT, Server, run, samples, scraped, traversals_across_a_signal

JSON = {"accept": "application/json"}


def png_image(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_health_ready_info(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    info = client.get("/info").json()
    assert info["image"] == {"channels": 1, "height": 28, "width": 28, "framing": "mnist"} and info["noise_dim"] == 8
    assert [(c["index"], c["name"], c["kind"]) for c in info["codes"]] == [
        (1, "c1", "categorical"), (2, "c2", "continuous"), (3, "c3", "continuous")]
    assert info["codes"][0]["size"] == 10 and sorted(info["codes"][0]["labels"]) == [str(d) for d in range(10)]
    assert (info["codes"][1]["low"], info["codes"][1]["high"]) == (-1.0, 1.0)
    assert info["alignment"] is None  # the codes as trained
    assert info["provider"] == "CPUExecutionProvider" and info["limits"]["max_images_per_request"] == 64
    assert len(info["model"]["sha256"]["generator.onnx"]) == 64


def test_generate_png_single_and_grid(client):
    single = png_image(client.post("/generate", json={"seed": 1}))
    assert single.size == (28, 28) and single.mode == "L"
    grid = png_image(client.post("/generate", json={"n": 16, "seed": 1}))
    assert grid.size == (8 * 30 + 2, 2 * 30 + 2)


def test_generate_json_reports_every_code(client):
    body = client.post("/generate", json={"codes": {"c1": 7, "c2": 1.5}, "n": 3, "seed": 5}, headers=JSON).json()
    assert body["seed"] == 5 and len(body["images"]) == 3
    for image in body["images"]:
        assert image["codes"]["c1"] == 7 and image["codes"]["c2"] == 1.5 and -1 <= image["codes"]["c3"] <= 1
        assert Image.open(io.BytesIO(base64.b64decode(image["png_base64"]))).size == (28, 28)
    assert len({image["codes"]["c3"] for image in body["images"]}) == 3  # codes not given differ per image


def test_same_body_same_bytes_and_one_code_moves_one_factor(client):
    body = {"codes": [4, 0.25, -0.5], "n": 4, "seed": 123}
    first, second = client.post("/generate", json=body), client.post("/generate", json=body)
    assert first.content == second.content
    drawn = client.post("/generate", json={"seed": 9, "n": 2}, headers=JSON).json()["images"]
    # Pinning a code to the value the prior drew changes nothing: the draws never depend on given codes.
    pinned = client.post("/generate", json={"seed": 9, "codes": {"c2": drawn[0]["codes"]["c2"]}}, headers=JSON).json()
    assert pinned["images"][0] == drawn[0]
    moved = client.post("/generate", json={"seed": 9, "n": 2, "codes": {"c2": -2.0}}, headers=JSON).json()["images"]
    for before, after in zip(drawn, moved):
        assert after["codes"] == {**before["codes"], "c2": -2.0}
        assert after["png_base64"] != before["png_base64"]


def test_label_selects_the_categorical_value(client):
    labels = client.get("/info").json()["codes"][0]["labels"]
    body = client.post("/generate", json={"label": "7", "n": 2}, headers=JSON).json()
    assert all(image["codes"]["c1"] == labels.index("7") for image in body["images"])
    assert client.post("/generate", json={"label": "seven"}).status_code == 422


@pytest.mark.parametrize("body, field", [
    ({"codes": [1, 0.5]}, "codes"),
    ({"codes": [1, 0.5, 0.1, 0.2]}, "codes"),
    ({"codes": {"c9": 1}}, "c9"),
    ({"codes": {"c1": 10}}, "c1"),
    ({"codes": {"c1": -1}}, "c1"),
    ({"codes": {"c1": 2.5}}, "c1"),
    ({"codes": {"c1": "3"}}, "codes"),
    ({"codes": {"c2": 5.5}}, "c2"),
    ({"codes": {"c2": True}}, "codes"),
    ({"n": 0}, "n"),
    ({"n": 65}, "n"),
    ({"n": 2.5}, "n"),
    ({"seed": -1}, "seed"),
    ({"seed": "abc"}, "seed"),
    ({"extra": 1}, "extra"),
    ({"label": 7}, "label"),
    ([1, 2], "body"),
])
def test_generate_rejects_bad_input_naming_the_field(client, body, field):
    response = client.post("/generate", json=body)
    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["detail"])


@pytest.mark.parametrize("raw", ['{"codes": [1, NaN, 0]}', '{"codes": {"c2": Infinity}}', '{"n": ', "not json"])
def test_generate_rejects_non_finite_and_malformed_json(client, raw):
    response = client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("path", "limit"), [("/generate", 1 << 20), ("/encode", 16 << 20)])
def test_the_body_limit_is_exact(client, streamed, path, limit):
    """MAX_BODY_BYTES (1 MiB) for a request, MAX_UPLOAD_BYTES (16 MiB) for an image upload: the limit itself is
    read (and refused for what it is, not its size), one byte more is 413."""
    def post(size: int) -> httpx.Response:
        body = b" " * size
        content = iter([body[: size // 2], body[size // 2 :]]) if streamed else body
        kind = "application/json" if path == "/generate" else "image/png"
        return client.post(path, content=content, headers={"content-type": kind})

    assert post(limit).status_code == 422
    over = post(limit + 1)
    assert over.status_code == 413 and f"over {limit} bytes" in over.text


def test_traverse_categorical_and_continuous(client):
    grid = png_image(client.get("/traverse", params={"code": 1, "rows": 3, "seed": 2}))
    assert grid.size == (10 * 30 + 2, 3 * 30 + 2)
    body = client.get("/traverse", params={"code": "c2", "steps": 5, "rows": 2, "seed": 2, "c1": 3},
                      headers=JSON).json()
    assert body["code"] == "c2" and body["values"] == [-1.0, -0.5, 0.0, 0.5, 1.0]  # unmeasured: the prior's range
    assert [len(row["images"]) for row in body["rows"]] == [5, 5]
    assert all(row["codes"]["c1"] == 3 and "c2" not in row["codes"] for row in body["rows"])
    assert len(set(body["rows"][0]["images"])) == 5  # each column a different value of c2
    again = client.get("/traverse", params={"code": "c2", "steps": 5, "rows": 2, "seed": 2, "c1": 3}, headers=JSON)
    assert again.json() == body


def test_traverse_row_equals_generate_of_the_same_seed_and_index(client):
    row = client.get("/traverse", params={"code": "c1", "rows": 2, "seed": 77}, headers=JSON).json()["rows"][1]
    generated = client.post("/generate", json={"seed": 77, "n": 2, "codes": {"c1": 4}}, headers=JSON).json()
    assert generated["images"][1]["png_base64"] == row["images"][4]


@pytest.mark.parametrize("params, field", [
    ({"code": "c7"}, "code"),
    ({"code": "0"}, "code"),
    ({}, "code"),
    ({"code": 2, "steps": 1}, "steps"),
    ({"code": 2, "steps": 33}, "steps"),
    ({"code": 2, "rows": 0}, "rows"),
    ({"code": ""}, "code"),
    ({"code": 2, "high": 9}, "high"),
    ({"code": 1, "c1": 3}, "c1"),
    ({"code": 2, "c1": 11}, "c1"),
    ({"code": 2, "c3": "wide"}, "c3"),
    ({"code": 2, "c3": "nan"}, "c3"),
    ({"code": 2, "c4": 1}, "c4"),
])
def test_traverse_rejects_bad_queries_naming_the_field(client, params, field):
    response = client.get("/traverse", params=params)
    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["detail"])


def test_traverse_runs_backwards_when_high_is_below_low(client):
    response = client.get("/traverse", params={"code": 2, "low": 1, "high": -1, "steps": 3, "rows": 1}, headers=JSON)
    assert response.status_code == 200 and response.json()["values"] == [1.0, 0.0, -1.0]


def test_the_schema_names_the_models_codes_and_labels(client):
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    by_name = next(s for s in request["codes"]["anyOf"] if s["type"] == "object")["properties"]
    assert by_name["c1"] == {**by_name["1"], "type": "integer", "minimum": 0, "maximum": 9}
    assert sorted(request["label"]["anyOf"][0]["enum"]) == [str(d) for d in range(10)]
    (code,) = [p for p in schema["paths"]["/traverse"]["get"]["parameters"] if p["name"] == "code"]
    assert code["schema"]["enum"] == ["c1", "c2", "c3", "1", "2", "3"]
    assert {"GenerateResponse", "TraverseResponse"} <= set(schema["components"]["schemas"])


def test_a_wrong_method_is_405_with_allow(client):
    response = client.request("OPTIONS", "/generate")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD, POST"


def encode_png(client, image: Image.Image, kind="PNG") -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    response = client.post("/encode", content=buffer.getvalue(), headers={"content-type": f"image/{kind.lower()}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_encode_reads_back_generated_images(client):
    generated = png_image(client.post("/generate", json={"seed": 3}))
    result = encode_png(client, generated)
    assert set(result["codes"]) == {"c1", "c2", "c3"}
    posterior = result["codes"]["c1"]
    assert len(posterior["probabilities"]) == 10 and abs(sum(posterior["probabilities"]) - 1) < 1e-4
    assert posterior["value"] == int(np.argmax(posterior["probabilities"]))
    labels = client.get("/info").json()["codes"][0]["labels"]
    assert result["label"] == labels[posterior["value"]]
    assert isinstance(result["codes"]["c2"], float)
    assert encode_png(client, generated.convert("RGB"), "JPEG")["codes"]["c1"]["probabilities"]


def test_encode_inverts_dark_drawings_on_light_paper(client):
    stroke = Image.new("L", (200, 200), 0)
    stroke.paste(255, (90, 30, 110, 170))  # a bright vertical bar: a "1" as MNIST stores it
    light_on_dark = encode_png(client, stroke)
    dark_on_light = encode_png(client, Image.eval(stroke, lambda v: 255 - v).convert("RGBA"))
    assert dark_on_light == light_on_dark


def bomb_png(width: int, height: int) -> bytes:
    """A valid grayscale PNG header and a tiny compressed body claiming width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * min(height, 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize("content, content_type, status, message", [
    (b"hello", "image/png", 422, "not a readable image/png"),
    (b"", "image/png", 422, "empty"),
    (b"{}", "application/json", 415, "Content-Type"),
    (bomb_png(4097, 16), "image/png", 422, "4097 x 16"),
    (bomb_png(30000, 30000), "image/png", 422, "too large to decode"),
])
def test_encode_rejects_bad_uploads(client, content, content_type, status, message):
    response = client.post("/encode", content=content, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert message in response.text


def test_concurrent_requests_are_merged_and_answered_correctly(client, server):
    def batch_stats():
        return tuple(scraped(client, f"inference_batch_size_{kind}", session="generator") for kind in ("count", "sum"))

    bodies = [{"seed": i, "codes": {"c1": i % 10}} for i in range(48)]
    expected = [client.post("/generate", json=body).content for body in bodies]
    count_before, sum_before = batch_stats()

    async def fire():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            return await asyncio.gather(*(http.post("/generate", json=body) for body in bodies))

    responses = asyncio.run(fire())
    assert [r.content for r in responses] == expected  # each answer is its own request's, batching or not
    count_after, sum_after = batch_stats()
    assert sum_after - sum_before == 48
    assert count_after - count_before < 48  # fewer onnxruntime runs than requests: they were merged


def test_metrics_are_prometheus_text(client):
    client.get("/healthz")
    assert scraped(client, "http_requests_total", method="GET", route="/healthz", status="200") >= 1
    assert samples(client, "http_request_duration_seconds_bucket") and samples(client, "inference_queue_depth")
    assert scraped(client, "inference_provider", provider="CPUExecutionProvider") == 1


def test_openapi_documents_every_route_with_examples(client):
    schema = client.get("/openapi.json").json()
    assert {"/healthz", "/readyz", "/metrics", "/info", "/generate", "/traverse", "/encode"} <= set(schema["paths"])
    assert schema["components"]["schemas"]["GenerateRequest"]["examples"]
    assert "image/png" in schema["paths"]["/encode"]["post"]["requestBody"]["content"]


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                           max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional={"codes": JSON_VALUES, "n": JSON_VALUES, "seed": JSON_VALUES,
                                                "label": JSON_VALUES}) | JSON_VALUES)
def test_no_generate_body_gives_a_500(client, body):
    response = client.post("/generate", content=json.dumps(body), headers={"content-type": "application/json", **JSON})
    assert response.status_code in (200, 422), response.text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["code", "steps", "rows", "low", "high", "seed", "c1", "c2", "c3", "x"]),
                              st.text(max_size=6) | st.integers(-50, 50).map(str), max_size=6))
def test_no_traverse_query_gives_a_500(client, params):
    response = client.get("/traverse", params=params)
    assert response.status_code in (200, 422), response.text


def test_full_queue_answers_503_at_once(model_dir):
    server = Server(model_dir, QUEUE_SIZE="1", MAX_BATCH="1", BATCH_WAIT_MS="0")
    try:
        async def flood():
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                return await asyncio.gather(*(http.post("/generate", json={"n": 64}) for _ in range(40)))

        statuses = [r.status_code for r in asyncio.run(flood())]
        assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) > 0
        busy = next(r for r in asyncio.run(flood()) if r.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "queue full" in busy.json()["detail"]
    finally:
        server.stop()


def test_request_past_its_deadline_gets_503(model_dir):
    server = Server(model_dir, REQUEST_TIMEOUT_S="0.0001")
    try:
        response = httpx.post(server.url + "/generate", json={"n": 64}, timeout=30)
        assert response.status_code == 503 and "deadline" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"
        bad = httpx.post(server.url + "/generate", json={}, headers={"X-Request-Timeout": "0.5"}, timeout=30)
        assert bad.status_code == 422 and "X-Request-Timeout" in bad.text
        assert scraped(server.url, "requests_shed_total", reason="deadline") == 1
        assert httpx.get(server.url + "/healthz").status_code == 200  # the service carries on
    finally:
        server.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), content_type=st.sampled_from(["image/png", "image/jpeg", "text/plain", ""]))
def test_no_encode_upload_gives_a_500(client, body, content_type):
    response = client.post("/encode", content=body, headers={"content-type": content_type})
    assert response.status_code in (200, 415, 422), response.text


@pytest.mark.parametrize("setup, message", [
    ("missing", "model directory not found"),
    ("empty", "generator.onnx: not found"),
    ("corrupt", "not a loadable ONNX model"),
])
def test_bad_model_directory_stops_start_up_with_one_line(tmp_path, setup, message):
    model = tmp_path / "model"
    if setup != "missing":
        model.mkdir()
    if setup == "corrupt":
        (model / "generator.onnx").write_bytes(b"garbage")
    result = run("service", "--model", str(model), "--port", "1", timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert message in result.stderr and str(model) in result.stderr


def test_require_gpu_fails_without_cuda(model_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a CUDA provider is available here")
    result = run("service", "--model", str(model_dir), "--port", "1", env={**os.environ, "REQUIRE_GPU": "1"})
    assert result.returncode == 2 and "REQUIRE_GPU" in result.stderr and "CPUExecutionProvider" in result.stderr


# `python -m service` with torch and the whole training package unimportable: what the service image holds.
WITHOUT_TRAINING = ("-c", "import sys; sys.modules['torch'] = sys.modules['training'] = None; "
                    "from service.__main__ import main; sys.exit(main(sys.argv[1:]))")


def test_the_service_stands_alone_without_torch_or_training(model_dir):
    alone = Server(model_dir, launcher=WITHOUT_TRAINING)
    try:
        response = httpx.post(alone.url + "/generate", json={"seed": 3, "n": 2}, timeout=30)
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
        assert httpx.get(alone.url + "/traverse", params={"code": "2", "rows": 1}, timeout=30).status_code == 200
    finally:
        alone.stop()


def worker_pids(supervisor: int) -> set[int]:
    """The worker processes a `python -m service` started (not multiprocessing's resource tracker)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if parent == supervisor and b"spawn_main" in command:
            pids.add(int(stat.parent.name))
    return pids


def generated_count(url: str) -> float:
    return scraped(url, "http_requests_total", method="POST", route="/generate", status="200")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_several_workers_share_the_port_count_every_request_and_a_dead_one_is_replaced(model_dir):
    fleet = Server(model_dir, WORKERS="2", INTRA_OP_THREADS="1")
    try:
        for seed in range(12):  # a new connection each time, so the kernel spreads them over the workers
            assert httpx.post(fleet.url + "/generate", json={"seed": seed}, timeout=30).status_code == 200
        assert all(generated_count(fleet.url) == 12 for _ in range(4))  # whichever worker answers the scrape
        workers = worker_pids(fleet.process.pid)
        assert len(workers) == 2
        os.kill(min(workers), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (len(worker_pids(fleet.process.pid) - workers) < 1 or
               any(httpx.get(fleet.url + "/readyz", timeout=30).status_code != 200 for _ in range(8))):
            assert time.monotonic() < deadline, "no worker replaced the dead one"
            time.sleep(0.2)
        for seed in range(12):
            assert httpx.post(fleet.url + "/generate", json={"seed": seed}, timeout=30).status_code == 200
        assert generated_count(fleet.url) == 24  # the dead worker's requests still count
        fleet.process.terminate()
        assert fleet.process.wait(timeout=30) == 0 and not worker_pids(fleet.process.pid)
    finally:
        if fleet.process.poll() is None:
            fleet.stop()


def test_a_port_in_use_is_named_at_start(model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "service", "--model", str(model_dir), "--port", str(port),
                                 "--workers", "2"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_schemathesis_finds_nothing_with_every_check(server, tmp_path):
    """The OpenAPI contract, fuzzed by a tool nobody here wrote: every check on, zero failures."""
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(schemathesis), "run", f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "60",
         "--seed", "1", "--no-color"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout


def test_sigterm_lets_in_flight_requests_finish_then_exits():
    # The shipped model, not the tiny one: on an idle machine the tiny model's traversals can all finish before
    # the signal, and the test would no longer see any request in flight.
    server = Server(ROOT / "models" / "mnist", WORKERS="1", SHUTDOWN_GRACE_S="20", MAX_QUEUE_WAIT_S="60",
                    REQUEST_TIMEOUT_S="60")  # on a busy machine the twelve take more than the default 10 s
    statuses, in_flight, signalled = traversals_across_a_signal(
        server.url, 12, lambda: server.process.send_signal(signal.SIGTERM))
    assert statuses == [200] * 12
    assert in_flight  # some were in flight when the signal came
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit reads as "terminated by SIGTERM"
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM) and time.monotonic() - signalled < 20
    assert "Finished server process" in server.process.stdout.read()
    with pytest.raises(httpx.TransportError):  # gone: no new connections
        httpx.get(server.url + "/healthz", timeout=2)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_requests_the_grace_cannot_finish_are_answered_503_not_cut_off(workers):
    # Sixteen traversals of 1,024 images, a second of grace: most are still queued when it ends. Past the grace
    # uvicorn cancels what is left, and a cancelled request reads as a 500.
    server = Server(ROOT / "models" / "mnist", WORKERS=workers, SHUTDOWN_GRACE_S="1", MAX_QUEUE_WAIT_S="60",
                    REQUEST_TIMEOUT_S="60")
    statuses, _, signalled = traversals_across_a_signal(
        server.url, 16, lambda: server.process.send_signal(signal.SIGTERM))
    assert 503 in statuses and set(statuses) <= {200, 503}, statuses
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM) and time.monotonic() - signalled < 5
    assert "timeout graceful shutdown exceeded" not in server.process.stdout.read()


def test_a_client_that_disconnects_takes_its_queued_work_with_it(model_dir):
    server = Server(model_dir, WORKERS="1", MAX_QUEUE_WAIT_S="60")  # every request admitted, so they queue up
    try:
        request = (b"GET /traverse?code=c2&rows=32&steps=32 HTTP/1.1\r\nHost: test\r\n\r\n")
        sockets = []
        for _ in range(8):  # 8 x 1,024 images: most of them still queued when their clients hang up
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(request)
            sockets.append(sock)
        time.sleep(0.1)
        for sock in sockets:
            sock.close()
        time.sleep(3)  # the batcher works through what is left
        cancelled = scraped(server.url, "requests_cancelled_total", reason="disconnect")
        abandoned = scraped(server.url, "inference_abandoned_total", session="generator")
        assert cancelled >= 1 and abandoned >= 1  # noticed, and queued work dropped without being computed
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()


def test_the_fast_png_path_and_the_route_agree_byte_for_byte(client):
    """A plain PNG /generate is answered by its route's own ASGI app (service/fastpath.py), the JSON answer by
    FastAPI's handler for the route. For one image both carry the same PNG, and both are counted."""
    body = {"codes": {"c1": 4, "c2": 0.5}, "seed": 21}
    fast = client.post("/generate", json=body)
    routed = client.post("/generate", json=body, headers=JSON)
    assert fast.headers["x-seed"] == routed.headers["x-seed"] == "21"
    assert fast.content == base64.b64decode(routed.json()["images"][0]["png_base64"])
    assert client.post("/generate", json={**body, "n": 0}).status_code == 422  # errors still come from the route
    assert scraped(client, "http_requests_total", method="POST", route="/generate", status="200") >= 1
