"""OpenTelemetry traces (TRACING=1, off by default): a server span per request, continuing the caller's W3C
`traceparent`, and below it one span per stage of the request's inference: `admission`, `queue` (waiting for
its batch), `batch` (the run it joined: its size, the model and version, the session) and `finish` (encoding its
answer). The stages are recorded from the batcher's timestamps once the answer is there, so the inference
thread never touches the tracer. Spans go to the OTLP endpoint of OTEL_EXPORTER_OTLP_ENDPOINT when it is set
(`pip install '.[tracing]'`), or to whatever tracer provider the process configured before the app started.
"""

from __future__ import annotations

import os
import time

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.batcher import Timing
from service.settings import ConfigurationError

TRACER_NAME = "infogan-serve"
EPOCH_OFFSET_NS = time.time_ns() - time.perf_counter_ns()  # perf_counter readings -> Unix time in ns


def configure() -> None:
    """The SDK's tracer provider, exporting over OTLP where an endpoint is configured, unless the process has
    set a provider of its own."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError("TRACING=1 needs the OpenTelemetry SDK: pip install '.[tracing]'") from None
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                     TRACER_NAME)}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigurationError("OTEL_EXPORTER_OTLP_ENDPOINT needs the OTLP exporter: pip install "
                                     "'.[tracing]'") from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


class TracingMiddleware:
    """The server span of every HTTP request, current while the app answers it."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.tracer = trace.get_tracer(TRACER_NAME)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        parent = propagate.extract(carrier)
        span = self.tracer.start_span(scope["method"], context=parent, kind=SpanKind.SERVER, attributes={
            "http.request.method": scope["method"], "url.path": scope["path"]})
        token = context.attach(trace.set_span_in_context(span, parent))

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                span.set_attribute("http.response.status_code", message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if "route" in scope:
                span.update_name(f"{scope['method']} {scope['route'].path}")
                span.set_attribute("http.route", scope["route"].path)
            span.end()
            context.detach(token)


def record_stages(timing: Timing, submitted: float, attributes: dict[str, str | int]) -> None:
    """The stages of one answered request as children of the current span (its server span)."""
    tracer = trace.get_tracer(TRACER_NAME)
    for name, start, end in (("admission", submitted, timing.queued_at), ("queue", timing.queued_at, timing.started_at),
                             ("batch", timing.started_at, timing.ran_at), ("finish", timing.ran_at, timing.finished_at)):
        span = tracer.start_span(name, start_time=EPOCH_OFFSET_NS + int(start * 1e9),
                                 attributes={**attributes, "batch.images": timing.batch_images} if name == "batch"
                                 else None)
        span.end(end_time=EPOCH_OFFSET_NS + int(end * 1e9))
