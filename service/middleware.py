"""Pure ASGI middleware (no per-request task switching): request metrics and the body-size limit."""

from __future__ import annotations

import hmac
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.batcher import Overloaded
from service.responses import JSONResponse

INFERENCE_ROUTES = {"/generate": "generator", "/traverse": "generator", "/encode": "encoder"} | {
    f"/v2/models/{model}{version}/infer": model for model in ("generator", "encoder") for version in ("", "/versions/1")}
V2_PREFIX = "/v2"  # the Open Inference Protocol's paths, whose errors read {"error": "..."}
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by serve() before the workers start; read at import time

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
disable_created_metrics()  # the *_created series double the output and nobody graphs them


METRIC_FILE = re.compile(r"[a-z_]+_\d+\.db")  # what prometheus_client's multiprocess mode writes, per process


class MetricsDirError(Exception):
    """METRICS_DIR holds files this service did not write: emptying it could delete someone's data."""


def prepare_metrics_dir(directory: Path | None) -> Path:
    """An empty directory for the workers' metric files (old files would add a past run's counts): a new one,
    or the given one emptied of the files an earlier run left, refusing a directory that holds anything else."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="infogan-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    entries = list(directory.iterdir())
    foreign = [entry.name for entry in entries if not (entry.is_file() and METRIC_FILE.fullmatch(entry.name))]
    if foreign:
        raise MetricsDirError(f"METRICS_DIR {directory} holds files this service did not write ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); give it an empty directory or one only it uses")
    for stale in entries:
        stale.unlink()
    return directory


class Metrics:
    """The Prometheus series of one app (its own registry, so several apps can live in one process).

    Under several workers (PROMETHEUS_MULTIPROC_DIR set) every series is also written to a per-process file,
    and /metrics renders the sum over all workers' files: a scrape counts every request, whichever worker
    served it. Gauges then add up over live workers (queue depth) or take their maximum (provider).
    """

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency by route and status",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("inference_batch_size", "images per onnxruntime run (before padding)",
                                    ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("inference_queue_depth", "requests waiting for inference", ["model"],
                                 registry=self.registry, multiprocess_mode="livesum")
        self.queue_wait = Histogram("inference_queue_wait_seconds", "time a request waited before its batch ran",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.shed = Counter("requests_shed_total", "requests refused or given up by the service, by reason: "
                            "queue_full, expected_wait (could not be answered within its budget), deadline, "
                            "decode_queue (too many uploads waiting to be decoded)",
                            ["reason"], registry=self.registry)
        self.abandoned = Counter("inference_abandoned_total", "queued requests dropped unrun: the caller had gone "
                                 "(deadline or disconnect)", ["model"], registry=self.registry)
        self.disconnected = Counter("requests_cancelled_total", "requests whose client disconnected before the "
                                    "answer", ["reason"], registry=self.registry)
        self.provider = Gauge("inference_provider", "1 for the execution provider the session runs on",
                              ["provider"], registry=self.registry, multiprocess_mode="livemax")

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Counts and times one answered request (route template, not raw path)."""
        labels = (route, method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)

    def close(self) -> None:
        """At a worker's exit: its live gauges leave the sums."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())


class MetricsMiddleware:
    """Counts every request and times it, labelled by route template (not raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app dies before answering

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)


class ShedMiddleware:
    """Refuses inference requests at the door, before any parsing, while the queue is already past every
    budget (the work queued and running cannot be answered within MAX_QUEUE_WAIT_S or the request's own
    X-Request-Timeout). Under overload most requests are refused, so a refusal must cost next to nothing: the
    routes check admission again with the request's own size."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = INFERENCE_ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        engine = getattr(scope["app"].state, "engine", None) if model else None
        if engine is not None:
            try:
                engine.admit(0, client_timeout(dict(scope["headers"]).get(b"x-request-timeout")), model=model)
            except Overloaded as error:
                await unavailable_response(error, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def client_timeout(raw: bytes | None) -> float | None:
    """An X-Request-Timeout header as the routes accept it (a number, at least 1 s); None when absent or not."""
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 1 else None


def is_v2(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_body(path: str, message: str, detail: object = None) -> dict:
    """An error in the shape of the API the path belongs to: V2's {"error"} or the service's {"detail"}."""
    return {"error": message} if is_v2(path) else {"detail": message if detail is None else detail}


def unavailable_response(error: Exception, path: str) -> JSONResponse:
    """503 with a Retry-After (whole seconds, >= 1) for an error that carries `retry_after_s`."""
    return JSONResponse(error_body(path, str(error)), status_code=503,
                        headers={"Retry-After": str(max(1, math.ceil(error.retry_after_s)))})


class ClientDisconnected(Exception):
    """The client closed its connection before the answer was ready (its work, if any, was cancelled)."""


async def buffer_body(receive: Receive, limit: int) -> tuple[bytes, Receive]:
    """Reads a request body to its end, or until it is past `limit` bytes; returns what was read and a
    `receive` that replays the messages read, then reads on (for the app behind, which reads it again).
    ClientDisconnected if the client goes (or is cut off by READ_TIMEOUT_S) before the body ends."""
    messages, chunks, size = [], [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        messages.append(message)
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit or message["type"] != "http.request" or not message.get("more_body"):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return b"".join(chunks), replay


# Open without the API key: what probes, the playground page and the API documentation fetch.
OPEN_PATHS = {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/", "/app.js", "/style.css", "/docs",
              "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def authorized(headers: dict[bytes, bytes], key: bytes | None) -> bool:
    """No key configured, or `Authorization: Bearer <key>` (compared in constant time)."""
    if key is None:
        return True
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)


class ApiKeyMiddleware:
    """With API_KEY set, 401 + WWW-Authenticate for any request to a guarded path without the bearer token."""

    def __init__(self, app: ASGIApp, key: bytes | None):
        self.app, self.key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and not authorized(dict(scope["headers"]), self.key):
            message = "missing or wrong API key: send Authorization: Bearer <key>"
            await JSONResponse(error_body(scope["path"], message), status_code=401,
                               headers={"WWW-Authenticate": 'Bearer realm="infogan-serve"'})(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def cancelled(scope: Scope, send: Send) -> None:
    """A request whose client went mid-body: counted as cancelled, and 499 (nginx's "client closed request",
    which nobody reads) for the request metrics; never a 5xx."""
    scope["app"].state.metrics.disconnected.labels("disconnect").inc()
    await send({"type": "http.response.start", "status": 499, "headers": []})
    await send({"type": "http.response.body", "body": b""})


UPLOAD_ROUTES = {"/encode"}  # image uploads: up to MAX_UPLOAD_BYTES, every other body MAX_BODY_BYTES


class BodyLimitMiddleware:
    """Answers 413 to any request body over its limit, declared or streamed, before the app reads it: `limit`,
    or `upload_limit` for the image uploads of UPLOAD_ROUTES."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int):
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in UPLOAD_ROUTES else self.limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        try:
            body, replay = await buffer_body(receive, limit)
        except ClientDisconnected:
            await cancelled(scope, send)
            return
        if len(body) > limit:
            await self._refuse(scope, send, limit)
            return
        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        message = f"request body over {limit} bytes"
        body = json.dumps(error_body(scope["path"], message, [{"loc": ["body"], "msg": message, "type": "too_large"}])).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
