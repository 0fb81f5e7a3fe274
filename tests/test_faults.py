"""Faults an operator and a hostile client find: header floods, bad Host headers, V2 edge values, HEAD, damaged
model directories and metrics folders, bad settings, and workers that stop, die or outlive their supervisor.
Each is the real fault against the real service (`python -m service` in a subprocess)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infogan.files import sha256
from tests.conftest import Server, free_port, run, scraped
from tests.test_service import worker_pids


def exchange(port: int, data: bytes, then: bytes | None = None) -> list[bytes]:
    """Sends `data` on one connection (then `then` on the same one) and returns each answer's head and body."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for request in (data, then) if then else (data,):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused mid-send: the answer waits
                sock.sendall(request)
            answers.append(read_answer(sock))
    return answers


def read_answer(sock: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


def body_of(answer: bytes) -> dict:
    return json.loads(answer.partition(b"\r\n\r\n")[2], parse_constant=lambda name: pytest.fail(f"bare {name}"))


def get(path: bytes, *headers: bytes, version: bytes = b"1.1") -> bytes:
    return b"GET " + path + b" HTTP/" + version + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


# --- what arrives before the app: headers and Host ----------------------------------------------------------

def test_a_header_flood_is_431_and_the_connection_closed(shipped_server):
    port = shipped_server.port
    huge = exchange(port, get(b"/healthz", b"Host: x", b"X-Big: " + b"a" * (1 << 20)))[0]
    assert status_of(huge) == 431 and "bytes" in body_of(huge)["detail"]
    many = exchange(port, get(b"/healthz", b"Host: x", *(b"X-%d: y" % i for i in range(200))))[0]
    assert status_of(many) == 431 and "100 request headers" in body_of(many)["detail"]
    assert b"connection: close" in huge.lower() and b"connection: close" in many.lower()
    assert status_of(exchange(port, get(b"/healthz", b"Host: x", *(b"X-%d: y" % i for i in range(90))))[0]) == 200


def test_header_limits_are_settings(model_dir):
    server = Server(model_dir, WORKERS="1", MAX_HEADER_BYTES="2048", MAX_HEADER_COUNT="10")
    try:
        assert status_of(exchange(server.port, get(b"/healthz", b"Host: x", b"X: " + b"a" * 3000))[0]) == 431
        assert status_of(exchange(server.port, get(b"/healthz", b"Host: x", *(b"X-%d: y" % i for i in range(10))))[0]) == 431
        assert status_of(exchange(server.port, get(b"/healthz", b"Host: x", b"X: " + b"a" * 1000))[0]) == 200
        # A head under the limit that arrives in pieces is counted once, not once per piece and again when parsed.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            head = get(b"/healthz", b"Host: x", b"X: " + b"a" * 1500)
            for start in range(0, len(head), 400):
                sock.sendall(head[start : start + 400])
                time.sleep(0.05)
            assert status_of(read_answer(sock)) == 200
    finally:
        server.stop()


def test_a_connection_is_closed_after_its_request_limit_so_clients_rebalance(model_dir):
    server = Server(model_dir, WORKERS="1", MAX_REQUESTS_PER_CONNECTION="3")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            answers = []
            for _ in range(3):
                sock.sendall(get(b"/healthz", b"Host: x"))
                answers.append(read_answer(sock))
            assert [status_of(a) for a in answers] == [200, 200, 200]
            assert [b"connection: close" in a.lower() for a in answers] == [False, False, True]
            assert sock.recv(1) == b""  # closed by the server after the third answer
    finally:
        server.stop()


@pytest.mark.parametrize("headers, version, status", [
    ((), b"1.1", 400),
    ((b"Host: a", b"Host: b"), b"1.1", 400),
    ((b"Host: a", b"Host: b"), b"1.0", 400),
    ((), b"1.0", 200),
    ((b"Host: a",), b"1.1", 200),
])
def test_host_headers_follow_rfc_9112(shipped_server, headers, version, status):
    answer = exchange(shipped_server.port, get(b"/healthz", *headers, version=version))[0]
    assert status_of(answer) == status, answer
    if status == 400:
        assert "Host" in body_of(answer)["detail"]


# --- the Open Inference Protocol at its edges ---------------------------------------------------------------

def infer_request(body: bytes, model: str = "generator", **headers: bytes) -> bytes:
    lines = [b"POST /v2/models/" + model.encode() + b"/infer HTTP/1.1", b"Host: x", b"Content-Type: application/json",
             b"Content-Length: " + str(len(body)).encode()]
    lines += [name.replace("_", "-").encode() + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def generator_inputs(value: float = 0.5, batch: int | str = 1) -> list[dict]:
    return [{"name": "noise", "datatype": "FP32", "shape": [batch, 62], "data": [value] * 62},
            {"name": "categorical", "datatype": "INT64", "shape": [batch, 1], "data": [3]},
            {"name": "continuous", "datatype": "FP32", "shape": [batch, 2], "data": [0.0, 0.0]}]


def test_a_non_ascii_digit_in_the_header_length_is_a_400_and_the_connection_lives(shipped_server):
    body = json.dumps({"inputs": generator_inputs()}).encode()
    first, second = exchange(shipped_server.port, infer_request(body, Inference_Header_Content_Length="²".encode()),
                             then=infer_request(body))
    assert status_of(first) == 400 and "Inference-Header-Content-Length" in body_of(first)["error"]
    assert status_of(second) == 200  # the same keep-alive connection


@pytest.mark.parametrize("binary", [False, True])
def test_a_4300_digit_dimension_is_a_400(shipped_server, binary):
    inputs = generator_inputs(batch="BATCH")
    if binary:
        inputs[0] = {"name": "noise", "datatype": "FP32", "shape": [1, 62], "parameters": {"binary_data_size": 248}}
        inputs[0]["shape"][0] = "BATCH"
    header = json.dumps({"inputs": inputs}).replace('"BATCH"', "9" * 4300).encode()
    body = header + (np.zeros(62, "<f4").tobytes() if binary else b"")
    extra = {"Inference_Header_Content_Length": str(len(header)).encode()} if binary else {}
    answer = exchange(shipped_server.port, infer_request(body, **extra))[0]
    assert status_of(answer) == 400 and "batch size" in body_of(answer)["error"]


def test_inputs_that_overflow_the_generator_are_a_400_never_bare_nan(shipped_server):
    answer = exchange(shipped_server.port, infer_request(json.dumps({"inputs": generator_inputs(3e38)}).encode()))[0]
    assert status_of(answer) == 400
    assert "not finite" in body_of(answer)["error"]  # parsed strictly: a bare NaN fails the test


TENSOR = st.fixed_dictionaries({
    "name": st.sampled_from(["noise", "categorical", "continuous", "images", "x", ""]),
    "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "fp32"]),
    "shape": st.lists(st.integers(-2, 70) | st.sampled_from([10 ** 30, 2 ** 63]), max_size=3)
    | st.sampled_from([None, "1,62", [1.5, 62]]),
}, optional={
    "data": st.lists(st.floats(width=32) | st.integers(-(2 ** 70), 2 ** 70) | st.sampled_from([None, "1"]), max_size=130),
    "parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]),
                                  st.integers(-8, 600) | st.sampled_from([None, "248", 10 ** 40]), max_size=2),
})
OUTPUTS = st.none() | st.lists(st.fixed_dictionaries({"name": st.sampled_from(["images", "logits", "nope"])}, optional={
    "parameters": st.fixed_dictionaries({"binary_data": st.booleans()})}), max_size=2)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(model=st.sampled_from(["generator", "encoder"]), inputs=st.lists(TENSOR, max_size=4), outputs=OUTPUTS,
       binary=st.binary(max_size=600), header_length=st.none() | st.integers(-5, 2000).map(str) | st.just("²"))
def test_fuzzed_v2_requests_get_no_5xx_and_only_strict_json(shipped_server, model, inputs, outputs, binary, header_length):
    """The V2 JSON and binary paths: whatever the tensors, sizes and trailing bytes, a 2xx or 4xx whose JSON has
    no bare NaN or Infinity."""
    header = json.dumps({"inputs": inputs, **({"outputs": outputs} if outputs is not None else {})}).encode()
    extra = {}
    if header_length is not None:
        extra["Inference_Header_Content_Length"] = header_length.encode()
    answer = exchange(shipped_server.port, infer_request(header + binary if header_length else header, model, **extra))[0]
    assert 200 <= status_of(answer) < 500, answer[:300]
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"application/json" in head:
        json.loads(body, parse_constant=lambda name: pytest.fail(f"bare {name} in {body[:200]!r}"))


def test_fuzzed_generator_values_in_binary_never_reach_json_as_nan(shipped_server):
    """Every float32 bit pattern for the noise, sent as binary data, answered as JSON: finite numbers or a 400."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        noise = rng.integers(0, 2 ** 32, 62, dtype=np.uint64).astype(np.uint32).view("<f4")
        inputs = generator_inputs()
        inputs[0] = {"name": "noise", "datatype": "FP32", "shape": [1, 62], "parameters": {"binary_data_size": 248}}
        header = json.dumps({"inputs": inputs}).encode()
        answer = exchange(shipped_server.port, infer_request(
            header + noise.tobytes(), Inference_Header_Content_Length=str(len(header)).encode()))[0]
        assert status_of(answer) in (200, 400), answer[:300]
        body_of(answer)


# --- HEAD and the route labels of refused requests ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/info", "/metrics", "/", "/app.js", "/openapi.json",
                                  "/traverse?code=1&seed=1", "/generate?seed=1", "/v2", "/v2/models/generator"])
def test_head_answers_every_get_route_without_a_body(shipped_server, path):
    with httpx.Client(base_url=shipped_server.url, timeout=30) as http:
        head, got = http.head(path), http.get(path)
    assert head.status_code == got.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if "content-length" in head.headers and path not in ("/metrics", "/info"):  # those two change between calls
        assert head.headers["content-length"] == got.headers["content-length"]


def test_head_on_a_post_only_route_is_405_naming_the_methods(shipped_server):
    answer = httpx.head(shipped_server.url + "/encode")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert "HEAD" in httpx.request("DELETE", shipped_server.url + "/healthz").headers["allow"]


def test_shed_requests_keep_their_route_label(model_dir):
    server = Server(model_dir, WORKERS="1", MAX_QUEUE_WAIT_S="0.001", MAX_BATCH="1", BATCH_WAIT_MS="0")
    try:
        import asyncio

        async def flood() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                answers = await asyncio.gather(*(http.get("/traverse", params={"code": "2", "rows": 32, "steps": 32,
                                                                               "seed": i}) for i in range(30)))
            return [answer.status_code for answer in answers]

        assert 503 in asyncio.run(flood())
        assert scraped(server.url, "http_requests_total", method="GET", route="/traverse", status="503") >= 1
        assert scraped(server.url, "http_requests_total", route="unmatched", status="503") == 0
    finally:
        server.stop()


# --- start-up: model directories, metrics folders and settings give one line -----------------------------------

def one_line_failure(result) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def copy_model(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("damage, message", [
    (lambda m: (m / "model.json").write_text("[1, 2]"), "model.json: must be a JSON object"),
    (lambda m: (m / "model.json").write_text('{"files": ["generator.onnx"]}'), "model.json: \"files\" must map"),
    (lambda m: (m / "model.json").write_text('{"name": 3}'), "model.json: \"name\" must be a string"),
    (lambda m: (m / "model.json").write_text('{"traverse_range": [2, -2]}'), "model.json: \"traverse_range\" must be"),
    (lambda m: (m / "model.json").write_bytes(b"\xff\xfe{"), "model.json: cannot read"),
    (lambda m: (m / "model.json").write_text("{"), "model.json: not valid JSON"),
    (lambda m: (m / "generator.onnx").write_bytes((m / "generator.onnx").read_bytes()[:-5] + b"\x00" * 5),
     "generator.onnx: its SHA-256 differs"),
    (lambda m: (m / "encoder.onnx").write_bytes(b"garbage"), "encoder.onnx: its SHA-256 differs"),
    (lambda m: (m / "encoder.onnx").unlink() or (m / "encoder.onnx").mkdir(), "encoder.onnx"),
])
def test_a_damaged_model_directory_is_one_line_and_exit_2(model_dir, tmp_path, workers, damage, message):
    model = copy_model(model_dir, tmp_path / "model")
    damage(model)
    result = run("service", "--model", str(model), "--port", str(free_port()),
                 env={**os.environ, "WORKERS": workers}, timeout=60)
    assert message in one_line_failure(result)


def test_an_unknown_framing_in_the_files_metadata_is_one_line_and_exit_2(model_dir, tmp_path):
    model = copy_model(model_dir, tmp_path / "model")
    card = json.loads((model / "model.json").read_text())
    for name in ("generator.onnx", "encoder.onnx"):  # the metadata changed, the hashes kept true
        proto = onnx.load(str(model / name))
        (image,) = [prop for prop in proto.metadata_props if prop.key == "infogan.image"]
        image.value = json.dumps({**json.loads(image.value), "framing": "sideways"})
        onnx.save(proto, str(model / name))
        card["files"][name]["sha256"] = sha256(model / name)
    (model / "model.json").write_text(json.dumps(card))
    result = run("service", "--model", str(model), "--port", str(free_port()), timeout=60)
    assert "framing must be one of mnist, fill, resize, got 'sideways'" in one_line_failure(result)


def test_a_model_directory_that_is_a_file_is_named(tmp_path):
    (tmp_path / "model").write_text("x")
    assert "model: not a directory" in one_line_failure(run("service", "--model", str(tmp_path / "model"), "--port", "1"))


@pytest.mark.parametrize("env, message", [
    ({"PORT": "abc"}, "setting PORT"),
    ({"WORKERS": "-1"}, "setting WORKERS"),
    ({"MAX_HEADER_COUNT": "3"}, "setting MAX_HEADER_COUNT"),
    ({"WATCHDOG_S": "0"}, "setting WATCHDOG_S"),
])
def test_a_bad_setting_is_one_line_naming_it(model_dir, env, message):
    result = run("service", "--model", str(model_dir), env={**os.environ, **env}, timeout=60)
    assert message in one_line_failure(result)


@pytest.mark.parametrize("setup, message", [
    ("file", "METRICS_DIR"),
    ("under_a_file", "METRICS_DIR"),
    ("unwritable", "METRICS_DIR"),
    ("foreign_folder", "holds files this service did not write"),
])
def test_a_bad_metrics_dir_is_one_line_and_nothing_is_deleted(model_dir, tmp_path, setup, message):
    directory = tmp_path / "metrics"
    if setup == "file":
        directory.write_text("keep me")
    elif setup == "under_a_file":
        (tmp_path / "plain").write_text("keep me")
        directory = tmp_path / "plain" / "metrics"
    elif setup == "unwritable":
        directory = Path("/proc/infogan-metrics")  # not writable, even as root
    else:
        (directory / "infogan-serve-metrics").mkdir(parents=True)
        (directory / "infogan-serve-metrics" / "counter_1.db").write_text("someone's")
    result = run("service", "--model", str(model_dir), "--port", str(free_port()), "--workers", "2",
                 env={**os.environ, "METRICS_DIR": str(directory)}, timeout=60)
    assert message in one_line_failure(result)
    if setup == "foreign_folder":
        assert (directory / "infogan-serve-metrics" / "counter_1.db").read_text() == "someone's"
    if setup in ("file", "under_a_file"):
        assert "keep me" in (tmp_path / ("metrics" if setup == "file" else "plain")).read_text()


def test_metrics_dir_keeps_every_file_it_did_not_write(model_dir, tmp_path):
    (tmp_path / "customers_2024.db").write_text("data")
    (tmp_path / "precious.txt").write_text("keep me")
    server = Server(model_dir, WORKERS="2", METRICS_DIR=str(tmp_path))
    try:
        assert httpx.post(server.url + "/generate", json={"seed": 1}, timeout=30).status_code == 200
        own = tmp_path / "infogan-serve-metrics"
        assert any(own.glob("*.db"))  # the workers' files live in the service's own folder
    finally:
        server.stop()
    assert (tmp_path / "customers_2024.db").read_text() == "data" and (tmp_path / "precious.txt").read_text() == "keep me"
    again = Server(model_dir, WORKERS="2", METRICS_DIR=str(tmp_path))  # a second run empties only its own folder
    again.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers_2024.db", "infogan-serve-metrics", "precious.txt"]


def test_without_metrics_dir_the_temporary_folder_goes_with_the_service(model_dir, tmp_path):
    server = Server(model_dir, WORKERS="2", TMPDIR=str(tmp_path))
    try:
        assert len(list(tmp_path.glob("infogan-metrics-*/*.db"))) >= 2  # each worker's files
    finally:
        server.stop()
    assert list(tmp_path.glob("infogan-metrics-*")) == []


# --- workers: kill -9, SIGSTOP, and a supervisor that dies ----------------------------------------------------

def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_workers_die_with_a_killed_supervisor(model_dir):
    fleet = Server(model_dir, WORKERS="2", INTRA_OP_THREADS="1")
    workers = worker_pids(fleet.process.pid)
    os.kill(fleet.process.pid, signal.SIGKILL)
    assert len(workers) == 2
    fleet.process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "a worker outlived its supervisor by 5 s"
    with pytest.raises(httpx.TransportError):
        httpx.get(fleet.url + "/healthz", timeout=2)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_stopped_worker_is_replaced_after_the_watchdog(model_dir):
    fleet = Server(model_dir, WORKERS="2", INTRA_OP_THREADS="1", WATCHDOG_S="1")
    try:
        time.sleep(3)  # both workers past start-up: one may still be warming up when the other answers /readyz
        stopped = min(worker_pids(fleet.process.pid))
        os.kill(stopped, signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while alive(stopped) or len(worker_pids(fleet.process.pid)) < 2:
            assert time.monotonic() < deadline, "the stopped worker was not replaced"
            time.sleep(0.1)
        time.sleep(5)  # the new worker's start-up (model, warm-up) is not mistaken for a silence
        assert stopped not in worker_pids(fleet.process.pid) and len(worker_pids(fleet.process.pid)) == 2
        for seed in range(8):  # new connections, spread over both workers by the kernel
            assert httpx.post(fleet.url + "/generate", json={"seed": seed}, timeout=10).status_code == 200
    finally:
        if alive(stopped):
            os.kill(stopped, signal.SIGCONT)
        fleet.stop()


def test_workers_get_every_setting_made_in_code(model_dir):
    """A Settings built in code (no environment variable for the field) reaches each of several workers."""
    code = ("import sys; from pathlib import Path; from service.app import serve; "
            "from service.repository import open_models; from service.settings import Settings; "
            "settings = Settings(port=int(sys.argv[-1]), model_dir=Path(sys.argv[-3]), workers=2, max_header_count=12); "
            "serve(settings, open_models(settings))")
    server = Server(model_dir, launcher=("-c", code))  # given --model DIR --port PORT
    try:
        for _ in range(6):  # new connections, spread over both workers
            assert status_of(exchange(server.port, get(b"/healthz", b"Host: x", *(b"X-%d: y" % i for i in range(12))))[0]) == 431
    finally:
        server.stop()
