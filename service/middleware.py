"""Pure ASGI middleware (no per-request task switching): request metrics, the API key, load shedding at the door,
HEAD requests and the body-size limit."""

from __future__ import annotations

import hmac
import time
from typing import NamedTuple
from urllib.parse import parse_qs

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.batcher import Overloaded
from service.docs import DOCS_PATHS
from service.engine import SESSIONS, Session, split_v2_name
from service.errors import (
    BodyTooLarge,
    ClientDisconnected,
    too_large_response,
    unauthorized_response,
    unavailable_response,
)
from service.metrics import Metrics


def query_model(scope: Scope) -> str | None:
    """The model a request names in its query string (`?model=`; "" when left empty), None when it names none."""
    query = scope["query_string"]
    if b"model=" not in query:
        return None
    return parse_qs(query.decode("latin-1"), keep_blank_values=True).get("model", [None])[0]


class InferenceRoute(NamedTuple):
    session: Session  # the session it runs on
    template: str  # its route's path template, the label of its metrics

    def model(self, scope: Scope) -> str:
        """The served model the request is for: a V2 path names it, the service's routes take `?model=`."""
        name = split_v2_name(scope["path"].split("/")[3])[0] if self.template.startswith("/v2/") else query_model(scope)
        return name or scope["app"].state.repository.default


SERVICE_ROUTES = {path: InferenceRoute(session, path) for path, session in
                  (("/generate", "generator"), ("/traverse", "generator"), ("/encode", "encoder"))}
V2_INFER = {5: "/v2/models/{name}/infer", 7: "/v2/models/{name}/versions/{version}/infer"}  # by path parts


def inference_route(path: str) -> InferenceRoute | None:
    """The inference route a path belongs to, found before routing (to shed, to label a refusal)."""
    found = SERVICE_ROUTES.get(path)
    if found is not None or not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return found
    parts = path.split("/")
    session = split_v2_name(parts[3])[1]
    if len(parts) not in V2_INFER or session not in SESSIONS:
        return None
    return InferenceRoute(session, V2_INFER[len(parts)])


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
            self.metrics.observe_request(route_label(scope), scope["method"], status, time.perf_counter() - started)


def route_label(scope: Scope) -> str:
    """The path template of the route that answered; for a request refused before routing (401, 413, shed),
    the template of the route it was for; "unmatched" when no route has its path and method."""
    if "route" in scope:
        return scope["route"].path
    known = inference_route(scope["path"])
    if known is not None:
        return known.template
    matched = next((route for route in scope["app"].router.routes if route.matches(scope)[0] == Match.FULL), None)
    return getattr(matched, "path", "unmatched")


class HeadMiddleware:
    """HEAD is GET without the body (RFC 9110, 9.3.2): the app answers a GET, and uvicorn, which sees the
    request's own method, sends the head only. The route the router matched is kept for the metrics."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send)
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]


class ShedMiddleware:
    """Refuses inference requests at the door, before any parsing, while the queue is already past every
    budget (the work queued and running cannot be answered within MAX_QUEUE_WAIT_S or the request's own
    X-Request-Timeout). Under overload most requests are refused, so a refusal must cost next to nothing: the
    routes check admission again with the request's own size."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = inference_route(scope["path"]) if scope["type"] == "http" else None
        engine = scope["app"].state.repository.find(route.model(scope)) if route else None
        if engine is not None:  # an unknown model goes on to the route, which names it
            try:
                engine.shed_at_door(client_timeout(request_headers(scope).get(b"x-request-timeout")), route.session)
            except Overloaded as error:
                await unavailable_response(error, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


HEADERS_KEY = "infogan.headers"


def request_headers(scope: Scope) -> dict[bytes, bytes]:
    """A request's headers by (lower-case) name, the first of repeated ones: what Starlette's `headers.get` and so
    FastAPI's header parameters read, so every path reads the same value. Built once per request, kept in the
    scope for the layers after the first."""
    found = scope.get(HEADERS_KEY)
    if found is None:
        found = {}
        for name, value in scope["headers"]:
            found.setdefault(name, value)
        scope[HEADERS_KEY] = found
    return found


def accepts_json(accept: bytes | None) -> bool:
    """Content negotiation for image answers: JSON when the Accept header names application/json, else PNG."""
    return b"application/json" in (accept or b"")


def json_content_type(value: bytes | None) -> bool:
    """Whether FastAPI (strict_content_type, its default) parses a body with this Content-Type as JSON:
    application/json or application/*+json, parameters allowed; none given is not JSON."""
    if not value:
        return False
    kind = value.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


def client_timeout(raw: bytes | None) -> float | None:
    """An X-Request-Timeout header as the routes accept it (a number, at least 1 s); None when absent or not."""
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 1 else None


# Open without the API key: what probes, the playground page and the API documentation fetch.
OPEN_PATHS = {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/", "/app.js", "/style.css",
              "/openapi.json"} | DOCS_PATHS


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
        if (self.key is not None and scope["type"] == "http" and scope["path"] not in OPEN_PATHS
                and not authorized(request_headers(scope), self.key)):
            await unauthorized_response(scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)


UPLOAD_ROUTES = {"/encode"}  # image uploads: up to MAX_UPLOAD_BYTES, every other body MAX_BODY_BYTES


class BodyLimitMiddleware:
    """Refuses a request body over its limit (`limit`, or `upload_limit` for the image uploads of
    UPLOAD_ROUTES): at once when its Content-Length says so, else as it streams in, counted chunk by chunk as
    the app reads it (BodyTooLarge, answered 413 by service/errors.py), so no body is held twice. A client
    that goes before its body ends is counted as cancelled (ClientDisconnected, 499), never a 4xx or 5xx."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int):
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in UPLOAD_ROUTES else self.limit
        declared = request_headers(scope).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large_response(scope["path"], BodyTooLarge(limit))(scope, receive, send)
            return
        read, ended = 0, False

        async def counted() -> Message:
            nonlocal read, ended
            message = await receive()
            if ended:  # after the body, the app only listens for the disconnect
                return message
            if message["type"] == "http.disconnect":
                scope["app"].state.metrics.disconnected.labels("disconnect").inc()
                raise ClientDisconnected
            read += len(message.get("body", b""))
            if read > limit:
                raise BodyTooLarge(limit)
            ended = not message.get("more_body", False)
            return message

        await self.app(scope, counted, send)
