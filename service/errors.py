"""Every error answer of the service, shaped in one place: the service's own `{"detail": ...}` (FastAPI's format:
a list of {loc, msg, type} naming the field) and the Open Inference Protocol's `{"error": "..."}` on /v2 paths.
`install_handlers` maps each exception the routes raise to its answer."""

from __future__ import annotations

import json
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.batcher import Overloaded
from service.engine import DeadlineExceeded
from service.imaging import UploadError
from service.latents import CodeError
from service.repository import LoadRefused, UnknownModel
from service.responses import JSONResponse

V2_PREFIX = "/v2"  # the Open Inference Protocol's paths, whose errors read {"error": "..."}


class ClientDisconnected(StarletteHTTPException):
    """The client closed its connection before the answer was ready (its work, if any, was cancelled). An
    HTTPException, so that FastAPI lets it through its body parsing untranslated; answered with 499 (nginx's
    "client closed request"), which nobody reads and the request metrics count."""

    def __init__(self) -> None:
        super().__init__(499, "client closed request")


class BodyTooLarge(StarletteHTTPException):
    """A request body past its limit (declared or as it streams in); 413 naming the body."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit} bytes")


class V2Error(Exception):
    """A request the Open Inference Protocol answers with {"error": message} and `status`."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def is_v2(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_body(path: str, message: str, detail: object = None) -> dict:
    """An error in the shape of the API the path belongs to: V2's {"error"} or the service's {"detail"}."""
    return {"error": message} if is_v2(path) else {"detail": message if detail is None else detail}


def field_error(status: int, field: str, message: str) -> JSONResponse:
    """The service's answer naming a field, e.g. "body.codes.c1", in FastAPI's own format."""
    return JSONResponse({"detail": [{"loc": field.split("."), "msg": message, "type": "value_error"}]}, status_code=status)


def unavailable_response(error: Exception, path: str) -> JSONResponse:
    """503 with a Retry-After (whole seconds, >= 1) for an error that carries `retry_after_s`."""
    return JSONResponse(error_body(path, str(error)), status_code=503,
                        headers={"Retry-After": str(max(1, math.ceil(error.retry_after_s)))})


def unauthorized_response(path: str) -> JSONResponse:
    """401 naming what to send, with the challenge RFC 9110 asks for."""
    return JSONResponse(error_body(path, "missing or wrong API key: send Authorization: Bearer <key>"), status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="infogan-serve"'})


def connection_error_body(message: str) -> bytes:
    """The body of a refusal made before the request reached the app (service/protocol.py): the request line
    may be unread, so the service's own shape."""
    return json.dumps(error_body("", message)).encode()


def too_large_response(path: str, error: BodyTooLarge) -> JSONResponse:
    return JSONResponse(error_body(path, error.detail, [{"loc": ["body"], "msg": error.detail, "type": "too_large"}]),
                        status_code=413)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at `path` (asked of the routes themselves, included routers too); HEAD
    wherever GET is (HeadMiddleware answers it)."""
    def served(method: str) -> bool:
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)

    methods = [method for method in ("GET", "POST", "PUT", "PATCH", "DELETE") if served(method)]
    return ["GET", "HEAD", *methods[1:]] if "GET" in methods else methods


def install_handlers(app: FastAPI) -> None:
    """The answer to each exception a route may raise."""

    async def code_error(request: Request, error: CodeError) -> JSONResponse:
        return field_error(422, f"{'query' if request.method == 'GET' else 'body'}.{error.field}", str(error))

    async def upload_error(request: Request, error: UploadError) -> JSONResponse:
        return field_error(422, "body", str(error))

    async def unavailable(request: Request, error: Overloaded | DeadlineExceeded) -> JSONResponse:
        return unavailable_response(error, request.url.path)

    async def v2_error(request: Request, error: V2Error) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)

    async def gone(request: Request, error: ClientDisconnected) -> Response:
        return Response(status_code=error.status_code)

    async def unknown_model(request: Request, error: UnknownModel) -> JSONResponse:
        if is_v2(request.url.path):
            return JSONResponse(error_body(request.url.path, str(error)), status_code=404)
        return field_error(404, "query.model", str(error))

    async def load_refused(request: Request, error: LoadRefused) -> JSONResponse:
        return JSONResponse(error_body(request.url.path, str(error)), status_code=400)

    async def too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return too_large_response(request.url.path, error)

    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own format, minus the echoed input (which may be a 1 MiB body or contain NaN, not JSON)
        details = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in error.errors()]
        if is_v2(request.url.path):  # V2 says which field in words, with 400
            message = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
            return JSONResponse(error_body(request.url.path, message), status_code=400)
        return JSONResponse({"detail": details}, status_code=422)

    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = error.headers
        if error.status_code == 405:  # Starlette lists the first matching route's methods; a path may have several
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request.url.path))}
        if is_v2(request.url.path):
            return JSONResponse(error_body(request.url.path, str(error.detail)), status_code=error.status_code,
                                headers=headers)
        if error.status_code == 400:  # a body FastAPI could not parse at all: the same 422 as any bad body
            return field_error(422, "body", f"unreadable request body: {error.detail}")
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)

    for exception, handler in ((CodeError, code_error), (UploadError, upload_error), (Overloaded, unavailable),
                               (DeadlineExceeded, unavailable), (V2Error, v2_error), (ClientDisconnected, gone),
                               (BodyTooLarge, too_large), (UnknownModel, unknown_model), (LoadRefused, load_refused),
                               (RequestValidationError, invalid), (StarletteHTTPException, http_error)):
        app.add_exception_handler(exception, handler)
