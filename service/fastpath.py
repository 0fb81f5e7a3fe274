"""The hot path: a valid `POST /generate` that wants a PNG, answered without FastAPI's routing and dependency
machinery, which was about half of the event loop's time per request (docs/PERFORMANCE.md).

Only the plain success case is taken here, through the same pieces the route uses (the request schema,
`requested_latents`, the engine, `grid_png`), so the bytes are the route's. Anything else (a JSON answer, a
body or header the schema refuses, a bad code) goes on to the route unchanged, which gives the documented
answer and error message; refusals and disconnects are answered as the app's handlers answer them.
"""

from __future__ import annotations

from functools import partial

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import schemas
from service.batcher import Overloaded
from service.engine import DeadlineExceeded
from service.latents import CodeError
from service.middleware import client_timeout, unavailable_response
from service.routes import ClientDisconnected, grid_png, requested_latents, unless_disconnected


class Route:
    """What MetricsMiddleware reads from scope["route"]: the route template."""

    path = "/generate"


class GenerateFastPath:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/generate" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        engine = getattr(scope["app"].state, "engine", None)
        raw_timeout = headers.get(b"x-request-timeout")
        timeout_s = client_timeout(raw_timeout)
        if (engine is None or b"application/json" in headers.get(b"accept", b"")
                or not headers.get(b"content-type", b"").startswith(b"application/json")
                or (raw_timeout is not None and timeout_s is None)):  # a header the route refuses with 422
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        try:
            request = schemas.GenerateRequest.model_validate_json(body)
            latents, seed = requested_latents(engine, request, timeout_s)
        except (ValidationError, CodeError):  # the route answers with FastAPI's 422 and its messages
            await self.app(scope, replay, send)
            return
        except Overloaded as error:
            await self._answer(scope, receive, send, unavailable_response(error))
            return
        scope["route"] = Route
        columns = min(request.n, 8)
        try:
            png = await unless_disconnected(receive, scope["app"].state.metrics,
                                            engine.generate(latents, partial(grid_png, columns=columns), timeout_s))
        except DeadlineExceeded as error:
            await self._answer(scope, receive, send, unavailable_response(error))
            return
        except ClientDisconnected:
            await send({"type": "http.response.start", "status": 499, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(png)).encode()), (b"content-type", b"image/png"),
            (b"x-seed", str(seed).encode())]})
        await send({"type": "http.response.body", "body": png})

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send, response) -> None:
        scope["route"] = Route
        await response(scope, receive, send)

