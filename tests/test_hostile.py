"""Hostile clients: whatever bytes, headers or query strings arrive, the answer is never a 5xx."""

from __future__ import annotations

import io
import json
import socket

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import Server, samples, scraped

ROUTES = ["/generate", "/traverse", "/encode", "/info", "/v2/models/generator/infer", "/v2/models/encoder/infer",
          "/v2/models/generator", "/healthz", "/nope"]


def raw_request(port: int, data: bytes) -> int:
    """Sends raw bytes as one HTTP/1.1 request and returns the status code the server answered (0: none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return 0
            head += chunk
    return int(head.split(b" ", 2)[1])


def request_bytes(method: str, target: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: x", b"Connection: close",
             b"Content-Length: " + str(len(body)).encode()]
    lines += [name + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
).map(json.dumps)
HOSTILE_JSON = st.sampled_from([
    b'{"codes": {"\\ud800": 1}}', b'{"label": "\\udfff"}', b'{"codes": {"c1": "\\ud800"}}', b'{"n": 1e999}',
    b'{"codes": [' * 5000 + b"]" * 5000, b'\xff\xfe\xfd', b'{"seed": -0}', b'{"codes": {"c1": 1e308}}',
    b'{"inputs": [{"name": "\\ud800", "datatype": "FP32", "shape": [1], "data": [1]}]}',
])
BODIES = st.one_of(st.binary(max_size=300), JSON_TEXT.map(str.encode), HOSTILE_JSON)
TARGET_TAILS = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b" ", b"%20").replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b"?code=%ED%A0%80", b"?code=c1&c1=%FF", b"?code=1&rows=1e9", b"?seed=-1", b"?c1=3&c1=4",
                     b"?code=2&low=nan", b"?%00=1"]),
)
HEADER_VALUES = st.sampled_from([b"application/json", b"application/jsonx", b"image/png", b"image/jpeg", b"\xff\xfe",
                                 b"", b"text/plain; charset=\xe9", b"-1", b"1e999", b"nan", b"9" * 40])


@pytest.fixture(scope="module")
def port(shipped_server) -> int:
    return shipped_server.port


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST", "PUT"]), route=st.sampled_from(ROUTES), tail=TARGET_TAILS,
       body=BODIES, content_type=HEADER_VALUES, accept=HEADER_VALUES, timeout=HEADER_VALUES,
       header_length=st.sampled_from([None, b"0", b"5", b"-3", b"99999", b"x"]))
def test_no_bytes_a_client_sends_get_a_5xx(port, method, route, tail, body, content_type, accept, timeout,
                                           header_length):
    headers = {b"Content-Type": content_type, b"Accept": accept, b"X-Request-Timeout": timeout}
    if header_length is not None:
        headers[b"Inference-Header-Content-Length"] = header_length
    status = raw_request(port, request_bytes(method, route.encode() + tail, headers, body))
    assert 200 <= status < 500 or (status == 0 and tail.startswith(b"\x00")), (method, route, tail, body[:80], status)


@pytest.mark.parametrize("body", [b'{"codes": {"\\ud800": 1}}', b'{"codes": {"c1": 3, "\\udfff": 0.5}}'])
@pytest.mark.parametrize("accept", ["image/png", "application/json"])
def test_a_lone_surrogate_is_a_422_naming_it(shipped_server, body, accept):
    answer = httpx.post(shipped_server.url + "/generate", content=body,
                        headers={"Content-Type": "application/json", "Accept": accept})
    assert answer.status_code == 422 and "unknown code" in answer.json()["detail"][0]["msg"]


def digit_image(shipped_server, label: str) -> Image.Image:
    png = httpx.post(shipped_server.url + "/generate", json={"label": label, "seed": 5}).content
    return Image.open(io.BytesIO(png)).convert("L")


def encode(shipped_server, data: bytes, kind: str = "png") -> dict:
    answer = httpx.post(shipped_server.url + "/encode", content=data, headers={"Content-Type": f"image/{kind}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def saved(image: Image.Image, kind: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_honoured(shipped_server, orientation):
    """A camera stores the pixels turned and says so in the EXIF Orientation tag; the digit is read upright."""
    upright = digit_image(shipped_server, "7").resize((280, 280), Image.Resampling.LANCZOS)
    turned = upright.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                                8: Image.Transpose.ROTATE_270}[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    for kind in ("JPEG", "PNG"):
        assert encode(shipped_server, saved(turned, kind, exif=exif), kind.lower())["label"] == "7", (orientation, kind)


def test_uncommon_modes_decode_like_the_plain_image(shipped_server):
    """16-bit grey, palette, CMYK and animated (first frame) uploads read as the same digit."""
    digit = digit_image(shipped_server, "3").resize((112, 112), Image.Resampling.LANCZOS)
    plain = encode(shipped_server, saved(digit))
    sixteen = Image.fromarray((np.asarray(digit, dtype=np.uint16) * 257).astype("<u2"))  # mode I;16
    other = Image.new("L", digit.size, 0)
    uploads = {"16-bit": (saved(sixteen), "png"), "palette": (saved(digit.convert("P")), "png"),
               "cmyk": (saved(digit.convert("CMYK"), "JPEG", quality=95), "jpeg"),
               "animated": (saved(digit, save_all=True, append_images=[other], duration=100), "png")}
    for name, (data, kind) in uploads.items():
        got = encode(shipped_server, data, kind)
        assert got["label"] == plain["label"] == "3", name
        assert abs(got["codes"]["slant"] - plain["codes"]["slant"]) < 0.3, name


def test_a_phone_photo_of_a_digit_is_accepted_and_read(shipped_server):
    """12 megapixels, a dark digit on light paper with some texture, as a JPEG: decoded at reduced size."""
    digit = np.asarray(digit_image(shipped_server, "2").resize((1800, 1800), Image.Resampling.LANCZOS), dtype=np.float32)
    paper = np.random.default_rng(0).normal(225, 6, (3024, 4032))
    paper[600:2400, 1100:2900] -= digit * 0.8  # dark ink on the paper
    photo = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).convert("RGB")
    data = saved(photo, "JPEG", quality=90)
    assert len(data) > 1_000_000
    assert encode(shipped_server, data, "jpeg")["label"] == "2"


def test_the_playground_sends_security_headers(shipped_server):
    page = httpx.get(shipped_server.url + "/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script src=" in page.text and "onsubmit=" not in page.text  # nothing inline for the policy to block


def test_an_api_key_guards_the_api_and_leaves_probes_open(model_dir):
    server = Server(model_dir, WORKERS="1", API_KEY="s3cret")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for method, path in (("GET", "/info"), ("POST", "/generate"), ("GET", "/metrics"),
                                 ("GET", "/traverse?code=1&seed=1"), ("POST", "/v2/models/generator/infer")):
                refused = http.request(method, path, json={"seed": 1}, headers={"Authorization": "Bearer wrong"})
                assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer"), path
                assert ("error" if path.startswith("/v2") else "detail") in refused.json()
            assert http.post("/generate", json={"seed": 1}).status_code == 401  # the PNG fast path too
            good = {"Authorization": "Bearer s3cret"}
            assert http.post("/generate", json={"seed": 1}, headers=good).headers["content-type"] == "image/png"
            assert http.get("/info", headers=good).status_code == 200
            for path in ("/healthz", "/readyz", "/v2/health/ready", "/", "/app.js"):
                assert http.get(path).status_code == 200, path
        with httpx.Client(base_url=server.url, timeout=30, headers=good) as authorised:  # refusals are requests too
            assert scraped(authorised, "http_requests_total", method="POST", route="/generate", status="401") == 2
            assert scraped(authorised, "http_requests_total", method="GET", route="/info", status="401") == 1
    finally:
        server.stop()


def test_slow_and_silent_connections_are_closed_and_a_cut_upload_is_cancelled_not_a_5xx(model_dir):
    """READ_TIMEOUT_S=1: a connection that never sends its headers, one that stops mid-headers and one that
    stops mid-body are all closed within the deadline; the cut upload counts as cancelled, never as a 5xx."""
    import time

    server = Server(model_dir, WORKERS="1", READ_TIMEOUT_S="1")
    try:
        silent = socket.create_connection(("127.0.0.1", server.port))
        partial = socket.create_connection(("127.0.0.1", server.port))
        partial.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        upload = socket.create_connection(("127.0.0.1", server.port))
        upload.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
                       + b"\x89PNG" + b"\x00" * 1000)
        started = time.monotonic()
        for sock in (silent, partial, upload):
            sock.settimeout(5)
            assert sock.recv(4096) == b""  # closed by the server, no answer
            sock.close()
        assert time.monotonic() - started < 3
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert scraped(http, "requests_cancelled_total", reason="disconnect") == 1
            assert sum(s.value for s in samples(http, "http_requests_total") if s.labels["status"].startswith("5")) == 0
            assert http.get("/healthz").status_code == 200  # a prompt client is unaffected
    finally:
        server.stop()


@pytest.mark.parametrize("accept", ["image/png", "application/json"])
def test_the_png_and_json_paths_read_a_request_alike(shipped_server, accept):
    """The PNG /generate is answered in front of FastAPI; it must decide every header as the JSON path does."""
    url = shipped_server.url + "/generate"

    def status(headers: list[tuple[str, str]]) -> int:
        return httpx.post(url, content=b'{"seed": 1}', headers=[("Accept", accept), *headers]).status_code

    assert status([("Content-Type", "application/jsonx")]) == 422
    assert status([("Content-Type", "application/vnd.infogan+json; charset=utf-8")]) == 200
    assert status([]) == 422  # no Content-Type: not JSON to FastAPI, so not to the fast path either
    assert status([("Content-Type", "application/json"), ("X-Request-Timeout", "0.5"), ("X-Request-Timeout", "5")]) == 422
    assert status([("Content-Type", "application/json"), ("X-Request-Timeout", "5"), ("X-Request-Timeout", "0.5")]) == 200


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_on_their_own_port(model_dir, workers):
    from tests.conftest import free_port

    metrics_port = free_port()
    server = Server(model_dir, WORKERS=workers, METRICS_PORT=str(metrics_port))
    try:
        httpx.post(server.url + "/generate", json={"seed": 1})
        assert httpx.get(server.url + "/metrics").status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'http_requests_total{method="POST",route="/generate",status="200"}' in scraped
    finally:
        server.stop()
