"""The FastAPI app: built in a lifespan from one Settings object.

    uvicorn --factory service.app:create_app    (or: python -m service)
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import sys
import threading
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.telemetry import TelemetryConfig

from infogan import __version__
from service import v2
from service.contract import with_bearer_auth, with_model
from service.docs import add_docs
from service.errors import install_handlers
from service.metrics import MULTIPROCESS_ENV, Metrics, prepare_metrics_dir, serve_metrics, workers_registry
from service.middleware import (
    OPEN_PATHS,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    HeadMiddleware,
    MetricsMiddleware,
    ShedMiddleware,
)
from service.model import Model
from service.protocol import LIMITS_KEY, ConnectionLimits, LimitedHttpToolsProtocol
from service.repository import Repository
from service.responses import JSONResponse
from service.routes import router
from service.settings import Settings
from service.tracing import TracingMiddleware
from service.tracing import configure as configure_tracing
from service.workers import BALANCED_BY_KERNEL, FOLLOW_REPOSITORY, check_port, supervise

STATIC_DIR = Path(__file__).parent / "static"
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def serve(settings: Settings, models: dict[str, Model]) -> None:
    """Runs the app on uvicorn until interrupted (what `python -m service` does once the models are open).

    With several workers, each is a process on the same port (service/workers.py) that builds its own app (its
    own sessions and batchers) from these settings, and the Prometheus series go through files in one folder so
    that any worker's /metrics counts every request. Raises ConfigurationError before serving anything if the
    port or the metrics folder cannot be used.
    """
    workers = settings.worker_count()
    options = {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
               "access_log": settings.access_log, "timeout_graceful_shutdown": settings.shutdown_grace_s,
               "http": LimitedHttpToolsProtocol, "limit_concurrency": settings.max_connections}
    check_port(settings.host, settings.port)
    metrics_dir = prepare_metrics_dir(settings.metrics_dir) if workers > 1 else None
    provider = next(iter(models.values())).provider
    print(f"serving {', '.join(models)} on http://{settings.host}:{settings.port} ({provider}, {workers} "
          f"worker(s) x {settings.threads_per_worker()} onnxruntime thread(s))", file=sys.stderr)
    if metrics_dir is None:
        app = create_app(settings, models)
        if settings.metrics_port:
            serve_metrics(settings.host, settings.metrics_port, app.state.metrics.registry)
        uvicorn.run(app, **options)
        return
    try:
        if settings.metrics_port:  # this process only supervises: it serves the sum of the workers' files
            serve_metrics(settings.host, settings.metrics_port, workers_registry(metrics_dir))
        os.environ[MULTIPROCESS_ENV] = str(metrics_dir)  # read by prometheus_client as each worker imports it
        resolved = settings.model_copy(update={"workers": workers, "intra_op_threads": settings.threads_per_worker()})
        if BALANCED_BY_KERNEL:
            supervise(resolved, options)
        else:  # uvicorn's supervisor: its workers read their settings from the environment
            os.environ.update({"HOST": settings.host, "PORT": str(settings.port), "INTRA_OP_THREADS":
                               str(resolved.intra_op_threads), "WORKERS": str(workers),
                               "MODEL_REPOSITORY": str(settings.model_repository), "DEFAULT_MODEL": settings.default_model,
                               **({"MODEL_DIR": str(settings.model_dir)} if settings.model_dir else {})})
            uvicorn.run("service.app:create_app", factory=True, workers=workers, **options)
    finally:
        if settings.metrics_dir is None:  # the temporary folder made for this run
            shutil.rmtree(metrics_dir, ignore_errors=True)


def drain_on_sigterm(repository: Repository, grace_s: float) -> None:
    """On SIGTERM, /readyz turns 503 before uvicorn's own handler starts the graceful shutdown (in-flight
    requests finish within SHUTDOWN_GRACE_S, `grace_s`; those that cannot are answered 503 just before it ends).
    Chained, so uvicorn keeps doing the shutdown itself."""
    if threading.current_thread() is not threading.main_thread():  # signals can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()

    def handle(signum: int, frame: FrameType | None) -> None:
        repository.draining = True
        loop.call_soon_threadsafe(repository.inference.stop_within, grace_s)  # not from inside a signal handler
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handle)


def api_key(settings: Settings) -> bytes | None:
    return settings.api_key.get_secret_value().encode() if settings.api_key else None


# The playground runs only its own files: no inline script or style, no framing by other sites, no sniffing.
PLAYGROUND_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def static_file(path: Path):
    async def endpoint() -> FileResponse:
        return FileResponse(path, headers=PLAYGROUND_HEADERS)

    return endpoint


def served_schema(app: FastAPI) -> dict:
    """FastAPI's schema, completed with the loaded model's codes (service/contract.py) and, with API_KEY, the
    bearer scheme; kept once the model is loaded."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)  # caches the generic schema in app.openapi_schema
        repository = getattr(app.state, "repository", None)
        if repository is None:  # not started (no model yet): the generic schema, not kept
            app.openapi_schema = None
            return schema
        app.openapi_schema = with_model(schema, repository.engine().model.layout)
        if app.state.api_key:
            app.openapi_schema = with_bearer_auth(app.openapi_schema, OPEN_PATHS)
    return app.openapi_schema


def create_app(settings: Settings | None = None, models: dict[str, Model] | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        repository = Repository(settings, metrics)
        app.state.repository = repository
        # Warmed up before the first connection is accepted: a worker that shares the port takes traffic only
        # once every batch size of every model has run.
        await repository.start(models)
        drain_on_sigterm(repository, settings.shutdown_grace_s)
        if threading.current_thread() is threading.main_thread():  # SIGHUP: serve the repository's changes
            asyncio.get_running_loop().add_signal_handler(FOLLOW_REPOSITORY, repository.follow_soon)
            repository.catch_up()
        # The app, the model and the libraries live as long as the process: moved out of the collector's
        # reach, so that a full collection does not rescan them while requests wait (docs/PERFORMANCE.md).
        gc.freeze()
        # uvicorn hands the lifespan's state to every connection it makes (service/protocol.py).
        yield {LIMITS_KEY: ConnectionLimits(settings.read_timeout_s, settings.max_header_bytes, settings.max_header_count,
                                            settings.max_requests_per_connection)}
        await repository.stop()
        metrics.close()

    app = FastAPI(
        title="infogan-serve",
        summary="InfoGAN generator and Q encoder over onnxruntime",
        description="Generate images from InfoGAN's latent codes, traverse one code, encode an image back into "
        "codes. Code names and kinds come from the model: see `GET /info`.",
        version=__version__,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,  # service/docs.py serves /docs and /redoc without a CDN
        redoc_url=None,
        telemetry=None if settings.telemetry else TELEMETRY_OFF,
        # The routes themselves, not include_router: an included router is matched through a layer of
        # per-request route contexts, and it would answer POST /generate with FastAPI's handler instead of
        # GenerateRoute's own app.
        routes=[*router.routes, *v2.router.routes],
    )
    app.state.settings, app.state.metrics, app.state.api_key = settings, metrics, api_key(settings)

    install_handlers(app)

    app.openapi = partial(served_schema, app)  # type: ignore[method-assign]
    add_docs(app)
    # The playground's files by name, not a catch-all mount: other paths stay the API's (404, or 405 with Allow).
    for path in sorted(STATIC_DIR.glob("*")) if STATIC_DIR.is_dir() else []:
        route = "/" if path.name == "index.html" else f"/{path.name}"
        app.add_api_route(route, static_file(path), methods=["GET"], include_in_schema=False)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, upload_limit=settings.max_upload_bytes)
    app.add_middleware(ShedMiddleware)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(ApiKeyMiddleware, key=app.state.api_key)  # nothing below it runs for a stranger
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # every answer is counted, a 401 too
    if settings.tracing:
        configure_tracing()
        app.add_middleware(TracingMiddleware)  # outermost: the request's span covers all of it
    return app
