"""The hot path: a valid `POST /generate` that wants a PNG, answered in front of FastAPI's middleware stack,
routing and dependency machinery, which together were most of the event loop's time per one-image request
(docs/PERFORMANCE.md).

Only the plain success case is taken here, through the same pieces the route uses (the request schema,
`requested_latents`, the engine, `grid_png`), so the bytes are the route's, and it is counted in the same
request metrics. Anything else (a JSON answer, a body or header the schema refuses, a bad code, a body over
the limit or of unknown length) goes on to the full stack unchanged, which gives the documented answer and
error message; refusals and disconnects are answered as the app's handlers answer them.
"""

from __future__ import annotations

import time
from functools import partial

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from service import schemas
from service.batcher import Overloaded
from service.engine import DeadlineExceeded
from service.errors import ClientDisconnected, unavailable_response
from service.latents import CodeError
from service.middleware import (
    accepts_json,
    authorized,
    buffer_body,
    cancelled,
    client_timeout,
    json_content_type,
    request_headers,
    send_499,
)
from service.routes import grid_columns, grid_png, requested_latents, unless_disconnected

ROUTE = "/generate"


class ServiceApp(FastAPI):
    """FastAPI, with the PNG /generate answered before its middleware stack when it can be."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == ROUTE and scope["method"] == "POST":
            await self.generate_png(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def generate_png(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        engine = getattr(self.state, "engine", None)
        raw_timeout, declared = headers.get(b"x-request-timeout"), headers.get(b"content-length", b"")
        timeout_s = client_timeout(raw_timeout)
        if (engine is None or accepts_json(headers.get(b"accept"))
                or not authorized(headers, self.state.api_key)  # the full stack answers 401
                or not json_content_type(headers.get(b"content-type"))
                or (raw_timeout is not None and timeout_s is None)  # a header the route refuses with 422
                or not declared.isdigit() or int(declared) > self.state.settings.max_body_bytes):
            await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        try:  # at the door, before reading the body, as ShedMiddleware does for the other routes
            engine.shed_at_door(timeout_s)
        except Overloaded as error:
            await unavailable_response(error, scope["path"])(scope, receive, send)
            self.state.metrics.observe_request(ROUTE, "POST", 503, time.perf_counter() - started)
            return
        try:
            body, replay = await buffer_body(receive, self.state.settings.max_body_bytes)
        except ClientDisconnected:
            await cancelled(scope, send)
            self.state.metrics.observe_request(ROUTE, "POST", 499, time.perf_counter() - started)
            return
        status: int | None = 500  # what the metrics say if this dies before answering
        try:
            request = schemas.GenerateRequest.model_validate_json(body)
            status = await self.answer(scope, receive, send, request, timeout_s)
        except (ValidationError, CodeError):  # nothing sent yet: the route answers 422 naming the field
            status = None  # and the full stack counts it
            await super().__call__(scope, replay, send)
        finally:
            if status is not None:
                self.state.metrics.observe_request(ROUTE, "POST", status, time.perf_counter() - started)

    async def answer(self, scope: Scope, receive: Receive, send: Send, request: schemas.GenerateRequest,
                     timeout_s: float | None) -> int:
        """Answers a request the schema accepted and returns the status sent. A bad code raises CodeError
        before anything is sent."""
        engine = self.state.engine
        try:
            latents, seed = requested_latents(engine, request)
            png = await unless_disconnected(receive, self.state.metrics, engine.generate(
                latents, partial(grid_png, columns=grid_columns(request.n)), timeout_s))
        except (Overloaded, DeadlineExceeded) as error:
            await unavailable_response(error, scope["path"])(scope, receive, send)
            return 503
        except ClientDisconnected:  # counted as cancelled where it was noticed (unless_disconnected)
            await send_499(send)
            return 499
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(png)).encode()), (b"content-type", b"image/png"),
            (b"x-seed", str(seed).encode())]})
        await send({"type": "http.response.body", "body": png})
        return 200
