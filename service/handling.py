"""What the routes share: the latents a /generate request asks for, its PNG answer, and the cancellation of a
request's work when its client goes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import TypeVar

import numpy as np
from starlette.types import Receive

from infogan.images import png_bytes, tile
from infogan.latent import LatentLayout
from service import schemas
from service.engine import Engine
from service.errors import ClientDisconnected
from service.latents import Latents, draw, label_code, parse_codes
from service.metrics import Metrics

T = TypeVar("T")


async def unless_disconnected(receive: Receive, metrics: Metrics, work: Awaitable[T]) -> T:
    """Awaits `work`, cancelling it (and so its place in the inference queue) if the client disconnects.

    One watcher task per request: on the ASGI `http.disconnect` it cancels the awaiting task itself."""
    waiting = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        waiting.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:  # cancelled from elsewhere (e.g. shutdown): not ours to translate
            raise
        metrics.disconnected.labels("disconnect").inc()
        raise ClientDisconnected from None
    finally:
        watcher.cancel()


def requested_codes(layout: LatentLayout, body: schemas.GenerateRequest) -> dict[str, int | float]:
    """The code values a /generate request pins, by name, its label resolved; CodeError names a bad field."""
    values = parse_codes(layout, body.codes)
    if body.label is not None:
        values.update(label_code(layout, body.label))
    return values


def requested_latents(engine: Engine, body: schemas.GenerateRequest,
                      values: dict[str, int | float] | None = None) -> tuple[Latents, int]:
    """The latents a /generate request asks for and its seed."""
    layout = engine.model.layout
    values = requested_codes(layout, body) if values is None else values
    seed = new_seed() if body.seed is None else body.seed
    return draw(layout, seed, range(body.n), values), seed


def new_seed() -> int:
    return secrets.randbelow(2**31)


def grid_columns(images: int) -> int:
    """Columns of the PNG grid /generate answers with: up to 8 images a row."""
    return min(images, 8)


def grid_png(images: np.ndarray, columns: int) -> bytes:
    return png_bytes(tile(images, columns)) if len(images) > 1 else png_bytes(images[0])
