"""Hostile clients: whatever bytes, headers or query strings arrive, the answer is never a 5xx."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    assert 200 <= status < 500 or status == 0 and tail.startswith(b"\x00"), (method, route, tail, body[:80], status)


@pytest.mark.parametrize("body", [b'{"codes": {"\\ud800": 1}}', b'{"codes": {"c1": 3, "\\udfff": 0.5}}'])
@pytest.mark.parametrize("accept", ["image/png", "application/json"])
def test_a_lone_surrogate_is_a_422_naming_it(shipped_server, body, accept):
    answer = httpx.post(shipped_server.url + "/generate", content=body,
                        headers={"Content-Type": "application/json", "Accept": accept})
    assert answer.status_code == 422 and "unknown code" in answer.json()["detail"][0]["msg"]
