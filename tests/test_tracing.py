"""TRACING=1: one trace per request that continues the caller's traceparent, with a span per stage of its
inference (admission, queue, batch, finish), read back from the SDK's in-memory exporter of a real uvicorn
serving in this process, and from a real OTLP/HTTP endpoint that `python -m service` exports to."""

import http.server
import itertools
import queue
import threading
import time

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.settings import Settings
from tests.conftest import Server, free_port

sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def exported(model_dir):
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the process's provider, so the app keeps it
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(model_dir=model_dir, tracing=True, workers=1)),
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", exporter
    server.should_exit = True
    thread.join(timeout=30)


def test_a_request_continues_the_callers_trace_with_a_span_per_stage(exported):
    url, exporter = exported
    exporter.clear()
    answer = httpx.post(url + "/generate", json={"n": 3, "seed": 1},
                        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, timeout=30)
    assert answer.status_code == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    server = spans["POST /generate"]
    assert format(server.context.trace_id, "032x") == TRACE_ID and format(server.parent.span_id, "016x") == PARENT_ID
    assert server.attributes["http.response.status_code"] == 200
    stages = [spans[name] for name in ("admission", "queue", "batch", "finish")]
    assert all(stage.parent.span_id == server.context.span_id for stage in stages)
    assert all(a.end_time <= b.start_time + 1000 for a, b in itertools.pairwise(stages))  # in order, 1 us of rounding
    assert server.start_time <= stages[0].start_time and stages[-1].end_time <= server.end_time
    assert stages[2].attributes["batch.images"] >= 3 and stages[2].attributes["session"] == "generator"
    assert stages[2].attributes["model"] == model_name(url)


def test_a_request_without_a_traceparent_starts_its_own_trace(exported):
    url, exporter = exported
    exporter.clear()
    assert httpx.get(url + "/info", timeout=30).status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /info" and span.parent is None


def model_name(url: str) -> str:
    return httpx.get(url + "/models", timeout=30).json()["default"]


class OtlpReceiver(http.server.BaseHTTPRequestHandler):
    """A collector's OTLP/HTTP traces endpoint: keeps every export request it is sent, answers 200."""

    received: "queue.Queue[tuple[str, str, bytes]]"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_spans_reach_an_otlp_http_collector_from_two_workers(model_dir):
    """`python -m service` with two workers, pointed at an OTLP/HTTP endpoint as the README says."""
    pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    handler = type("Receiver", (OtlpReceiver,), {"received": queue.Queue()})
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    served = Server(model_dir, TRACING="1", WORKERS="2", OTEL_SERVICE_NAME="infogan-test",
                    OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}",
                    OTEL_BSP_SCHEDULE_DELAY="100")
    try:
        for _ in range(8):  # fresh connections, spread over both workers
            answer = httpx.post(served.url + "/generate", json={"n": 2, "seed": 1},
                                headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, timeout=30)
            assert answer.status_code == 200
        spans, deadline = {}, time.monotonic() + 20
        while time.monotonic() < deadline and sum(name == "POST /generate" for name, _ in spans.values()) < 8:
            try:
                path, content_type, body = handler.received.get(timeout=1)
            except queue.Empty:
                continue
            assert path == "/v1/traces" and content_type == "application/x-protobuf"
            request = pb2.ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                names = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                assert names["service.name"] == "infogan-test"
                for scope_spans in resource_spans.scope_spans:
                    spans.update({span.span_id: (span.name, span) for span in scope_spans.spans})
    finally:
        served.stop()
        collector.shutdown()
    requests = [span for name, span in spans.values() if name == "POST /generate"]
    assert len(requests) == 8 and all(span.trace_id.hex() == TRACE_ID for span in requests)
    stages = [name for name, span in spans.values() if span.parent_span_id in {r.span_id for r in requests}]
    assert sorted(stages) == sorted(["admission", "queue", "batch", "finish"] * 8)
