"""HTTP routes: parse, hand to the engine, format. The rules live in latents.py, imaging.py and engine.py."""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import partial
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from infogan.images import png_bytes
from infogan.latent import LatentLayout
from service import caching, schemas
from service.engine import Engine
from service.fastpath import GenerateRoute
from service.handling import grid_columns, grid_png, new_seed, requested_codes, requested_latents, unless_disconnected
from service.imaging import ACCEPTED_TYPES, decode, to_model_input
from service.latents import (
    CONTINUOUS_LIMIT,
    CodeError,
    Latents,
    check_value,
    parse_number,
    read_encoding,
    traversal,
)
from service.middleware import accepts_json, request_headers
from service.responses import JSONResponse

router = APIRouter()
MAX_ROWS = MAX_STEPS = 32
MAX_UPLOAD_SIDE = 4096
PNG = {200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
             "description": "PNG by default; JSON with `Accept: application/json`"}}
ERRORS = {code: {"model": schemas.ErrorResponse} for code in (404, 413, 415, 422, 503)}  # 404: an unknown model


# A client's own deadline, under the server's REQUEST_TIMEOUT_S. At least a second: less than one batch of the
# largest request could take would turn an idle server's answer into a 503. (Typed float, defaulting to None:
# the schema says "a number, optional", not "a number or the string null".)
RequestTimeout = Annotated[float, Header(
    ge=1, alias="X-Request-Timeout", description="seconds this client will wait (capped by the server's "
    "REQUEST_TIMEOUT_S): queued work that cannot be answered in time is refused at once with 503 and Retry-After")]


def query_codes(layout: LatentLayout, request: Request, parameters: set[str], target: str | None = None) -> dict:
    """Codes pinned in the query string by name (&c1=7&slant=0.5); any other name than `parameters` is an error."""
    pins = {}
    for name, raw in request.query_params.items():
        if name in {c.name for c in layout.codes}:
            if name == target:
                raise CodeError(name, f"{name} is the traversed code; it cannot also be pinned")
            pins[name] = check_value(layout.code(name), parse_number(raw, name), name)
        elif name not in parameters:
            raise CodeError(name, f"unknown query parameter {name!r}; codes are {', '.join(c.name for c in layout.codes)}")
    return pins


def cache_headers(request: Request, route: str, seed: int | None, normalised: dict) -> tuple[dict, str | None]:
    """(headers, ETag): immutable with a strong tag when the seed is given, no-store when it is drawn."""
    if seed is None:
        return caching.UNCACHEABLE, None
    tag = caching.entity_tag(engine_of(request).key, route,
                             {**normalised, "seed": seed, "format": "json" if wants_json(request) else "png"})
    return caching.fixed_headers(tag), tag


# The served model a request is for (GET /models); FastAPI checks it and documents it, engine_of reads it.
ModelName = Annotated[str | None, Query(alias="model", min_length=1, description="the served model to use "
                                        "(`GET /models`); default: DEFAULT_MODEL's")]


def engine_of(request: Request) -> Engine:
    """The served version of the model the request names (UnknownModel, answered 404, for none such)."""
    return request.app.state.repository.engine(request.query_params.get("model"))


def wants_json(request: Request) -> bool:
    return accepts_json(request_headers(request.scope).get(b"accept"))


def b64_pngs(images: np.ndarray) -> list[str]:
    return [base64.b64encode(png_bytes(image)).decode() for image in images]


async def images_response(request: Request, latents: Latents, columns: int, seed: int, timeout_s: float | None,
                          json_body: Callable[[list[str]], dict], cache: dict | None = None) -> Response:
    """One PNG (a grid of `columns` when several images), or with `Accept: application/json` json_body(PNGs)."""
    engine, headers = engine_of(request), {"X-Seed": str(seed), **(cache or {})}
    if wants_json(request):
        pngs = await unless_disconnected(request.receive, request.app.state.metrics,
                                         engine.generate(latents, b64_pngs, timeout_s))
        return JSONResponse(json_body(pngs), headers=headers)
    png = await unless_disconnected(request.receive, request.app.state.metrics,
                                    engine.generate(latents, partial(grid_png, columns=columns), timeout_s))
    return Response(png, media_type="image/png", headers=headers)


async def generate(body: schemas.GenerateRequest, request: Request, timeout_s: RequestTimeout = None,
                   model: ModelName = None) -> Response:
    engine = engine_of(request)
    layout = engine.model.layout
    latents, seed = requested_latents(engine, body)
    return await images_response(request, latents, grid_columns(body.n), seed, timeout_s, generate_json(layout, latents, seed))


# The plain PNG answer is taken by GenerateRoute's own ASGI app (service/fastpath.py), this function the rest.
# The first route, so the hot request is matched first.
router.add_api_route("/generate", generate, methods=["POST"], route_class_override=GenerateRoute,
                     summary="Images for given code values",
                     responses={**ERRORS, 200: {**PNG[200], "model": schemas.GenerateResponse}})


@router.get("/healthz", summary="Liveness: 200 while the process lives")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: 200 once the model is loaded and warmed up", responses={503: {}})
async def readyz(request: Request) -> Response:
    repository = request.app.state.repository
    if repository.draining:
        return JSONResponse({"status": "shutting down"}, status_code=503)
    ready = repository.ready
    return JSONResponse({"status": "ready" if ready else "warming up"}, status_code=200 if ready else 503)


@router.get("/models", response_model=schemas.ModelsResponse, summary="The served models (MODEL_REPOSITORY)")
async def models(request: Request) -> dict:
    repository = request.app.state.repository
    return {"default": repository.default, "models": [
        {**engine.model.info(), "name": name, "ready": engine.ready} for name, engine in sorted(repository.engines.items())]}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    port = request.app.state.settings.metrics_port
    if port:
        raise HTTPException(404, f"metrics are served on port {port} (METRICS_PORT)")
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/info", response_model=schemas.InfoResponse, responses={404: ERRORS[404]},
            summary="The model, its codes and the request limits")
async def info(request: Request, model: ModelName = None) -> dict:
    engine = engine_of(request)
    model, settings = engine.model, engine.settings
    alignment = model.layout.alignment
    codes = [
        {"index": i, "name": c.name, "kind": c.kind, **(
            {"size": c.size, "labels": c.labels} if c.kind == "categorical" else {"low": c.low, "high": c.high})}
        for i, c in enumerate(model.layout.codes, start=1)
    ]
    return {
        "model": model.info(), "image": model.image, "noise_dim": model.layout.noise_dim, "codes": codes,
        "alignment": alignment and {"by": alignment.by, "method": alignment.method},
        "provider": model.provider, "encoder": model.encoder is not None,
        "traverse_range": list(model.traverse_range), "identity": model.card.get("identity", {}).get("codes"),
        "limits": {"max_images_per_request": schemas.MAX_IMAGES, "max_traverse_rows": MAX_ROWS,
                   "max_traverse_steps": MAX_STEPS, "continuous_range": [-CONTINUOUS_LIMIT, CONTINUOUS_LIMIT],
                   "max_body_bytes": settings.max_body_bytes, "max_upload_bytes": settings.max_upload_bytes,
                   "max_upload_side": MAX_UPLOAD_SIDE},
    }


def generate_json(layout: LatentLayout, latents: Latents, seed: int) -> Callable[[list[str]], dict]:
    return lambda pngs: {"seed": seed, "images": [
        {"png_base64": png, "codes": latents.codes(layout, i)} for i, png in enumerate(pngs)]}


@router.get("/generate", summary="Images for given code values, as a cacheable GET (e.g. for <img src>)",
            responses={**ERRORS, 200: {**PNG[200], "model": schemas.GenerateResponse}, 304: {}})
async def generate_get(
    request: Request,
    n: int = Query(1, ge=1, le=schemas.MAX_IMAGES, description="number of images; they share the given codes"),
    seed: int | None = Query(None, ge=0, le=schemas.MAX_SEED, description="reproducible draws; with it the answer "
                             "never changes and may be cached (ETag, immutable); without it, no-store"),
    label: str | None = Query(None, min_length=1, description="a class label of the model's label map"),
    timeout_s: RequestTimeout = None,
    model: ModelName = None,
) -> Response:
    """As POST /generate, with the codes pinned by name in the query string: `?c1=3&slant=0.5&seed=7`."""
    engine = engine_of(request)
    layout = engine.model.layout
    body = schemas.GenerateRequest(codes=query_codes(layout, request, {"n", "seed", "label", "model"}) or None, label=label,
                                   n=n, seed=seed)
    values = requested_codes(layout, body)
    cache, tag = cache_headers(request, "generate", seed, {"codes": values, "n": n})
    if tag and caching.matches(request.headers.get("if-none-match"), tag):
        return caching.not_modified(tag)
    latents, seed = requested_latents(engine, body, values)
    return await images_response(request, latents, grid_columns(n), seed, timeout_s, generate_json(layout, latents, seed),
                                 cache)


@router.get("/traverse", summary="A traversal grid: one code's values across, independent draws down",
            responses={**ERRORS, 200: {**PNG[200], "model": schemas.TraverseResponse}})
async def traverse(
    request: Request,
    code: str = Query(..., min_length=1, description="the code to traverse: its index from 1 or its name"),
    steps: int = Query(10, ge=2, le=MAX_STEPS, description="values of a continuous code (ignored for categorical)"),
    rows: int = Query(10, ge=1, le=MAX_ROWS, description="independent draws of the noise and the other codes"),
    low: float | None = Query(None, ge=-CONTINUOUS_LIMIT, le=CONTINUOUS_LIMIT,
                              description="first continuous value (default: the start of the model's "
                              "`traverse_range` in /info, the range along which its codes keep the digit)"),
    high: float | None = Query(None, ge=-CONTINUOUS_LIMIT, le=CONTINUOUS_LIMIT,
                               description="last continuous value (below `low`: the sweep runs backwards; default: "
                               "the end of the model's `traverse_range`)"),
    seed: int | None = Query(None, ge=0, le=schemas.MAX_SEED, description="reproducible draws, as in /generate"),
    timeout_s: RequestTimeout = None,
    model: ModelName = None,
) -> Response:
    engine = engine_of(request)
    layout = engine.model.layout
    try:
        target = layout.code(code)
    except KeyError as error:
        raise CodeError("code", error.args[0]) from None
    pins = query_codes(layout, request, {"code", "steps", "rows", "low", "high", "seed", "model"}, target.name)
    default_low, default_high = engine.model.traverse_range
    low, high = default_low if low is None else low, default_high if high is None else high
    values = list(range(target.size)) if target.kind == "categorical" else [
        float(v) for v in np.linspace(low, high, steps)]
    cache, tag = cache_headers(request, "traverse", seed, {"code": target.name, "values": values, "rows": rows,
                                                           "pins": pins})
    if tag and caching.matches(request.headers.get("if-none-match"), tag):
        return caching.not_modified(tag)
    seed = new_seed() if seed is None else seed
    grid, base = traversal(layout, target, values, rows, seed, pins)

    def json_body(pngs: list[str]) -> dict:
        fixed = [{k: v for k, v in base.codes(layout, r).items() if k != target.name} for r in range(rows)]
        return {"code": target.name, "seed": seed, "values": values, "rows": [
            {"codes": fixed[r], "images": pngs[r * len(values) : (r + 1) * len(values)]} for r in range(rows)]}

    return await images_response(request, grid, len(values), seed, timeout_s, json_body, cache)


@router.post("/encode", response_model=schemas.EncodeResponse, responses=ERRORS,
             summary="Q's reading of an image: the codes (and label) that would have produced it",
             openapi_extra={"requestBody": {"required": True, "content": {
                 t: {"schema": {"type": "string", "format": "binary"}} for t in ACCEPTED_TYPES}}})
async def encode(request: Request, timeout_s: RequestTimeout = None, model: ModelName = None) -> dict:
    engine = engine_of(request)
    if engine.encoder is None:
        raise HTTPException(404, "this model directory has no encoder.onnx")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        raise HTTPException(415, f"Content-Type must be image/png or image/jpeg, got {content_type or 'none'!r}")
    image_info = engine.model.image
    body = await request.body()
    async with engine.decoding():
        array = await run_in_threadpool(lambda: to_model_input(
            decode(body, content_type, engine.settings.max_upload_pixels, MAX_UPLOAD_SIDE),
            image_info["channels"], image_info["height"], image_info["framing"]))
    probabilities, means = await unless_disconnected(request.receive, request.app.state.metrics,
                                                     engine.encode(array, timeout_s))
    return read_encoding(engine.model.layout, probabilities[0], means[0])
