"""POST /generate's route, with its hot path as raw ASGI.

The route is FastAPI's (its schema, its documentation, its error answers) and sits behind the same middleware
stack as every other route (key, metrics, shedding, body limit). Its ASGI app answers the common case, a valid
body that wants a PNG, without FastAPI's request and dependency machinery, which was most of the event loop's
time per one-image request (docs/PERFORMANCE.md); anything else (a JSON answer, a body or header the schema
refuses) goes to FastAPI's own handler for the route, the body it read replayed. Errors raised here (a bad
code, overload, a client gone) are answered by service/errors.py's handlers, as the route's are.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import schemas
from service.handling import grid_columns, grid_png, requested_latents, unless_disconnected
from service.middleware import accepts_json, client_timeout, json_content_type, query_model, request_headers


class GenerateRoute(APIRoute):
    """FastAPI's route whose ASGI app takes the plain PNG request itself."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.app = partial(generate_png, routed=self.app)


async def generate_png(scope: Scope, receive: Receive, send: Send, routed: ASGIApp) -> None:
    headers = request_headers(scope)
    raw_timeout = headers.get(b"x-request-timeout")
    timeout_s = client_timeout(raw_timeout)
    if (accepts_json(headers.get(b"accept")) or not json_content_type(headers.get(b"content-type"))
            or (raw_timeout is not None and timeout_s is None)):  # a header the route refuses with 422
        await routed(scope, receive, send)
        return
    body = await read_body(receive)
    try:
        request = schemas.GenerateRequest.model_validate_json(body)
    except ValidationError:  # FastAPI's own 422, naming the field
        await routed(scope, replaying(body, receive), send)
        return
    state = scope["app"].state
    engine = state.repository.find(query_model(scope))
    if engine is None:  # FastAPI's handler names the bad or unknown model
        await routed(scope, replaying(body, receive), send)
        return
    latents, seed = requested_latents(engine, request)
    png = await unless_disconnected(receive, state.metrics, engine.generate(
        latents, partial(grid_png, columns=grid_columns(request.n)), timeout_s))
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-length", str(len(png)).encode()), (b"content-type", b"image/png"),
        (b"x-seed", str(seed).encode())]})
    await send({"type": "http.response.body", "body": png})


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already once more, as one message, then reads on."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
