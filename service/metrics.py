"""The service's Prometheus series, and where several workers keep them so that one scrape counts all."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)

from service.settings import ConfigurationError

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by serve() before the workers start; read at import time

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
disable_created_metrics()  # the *_created series double the output and nobody graphs them


METRIC_FILE = re.compile(r"[a-z_]+_\d+\.db")  # what prometheus_client's multiprocess mode writes, per process
OWN_FOLDER = "infogan-serve-metrics"  # inside METRICS_DIR: the only place the service deletes files
MARKER = ".made-by-infogan-serve"  # in OWN_FOLDER: proof that the service made it


class MetricsSetupError(ConfigurationError):
    """The metrics cannot be set up as configured: METRICS_DIR cannot be made or written, or holds a folder of
    the service's name that the service did not make, or METRICS_PORT cannot be listened on."""


def prepare_metrics_dir(directory: Path | None) -> Path:
    """An empty folder for the workers' metric files (old files would add a past run's counts).

    Without METRICS_DIR: a new temporary folder (serve() removes it at exit). With it: its sub-folder OWN_FOLDER,
    made and marked by the service, and emptied of the metric files an earlier run left there. Nothing outside
    a folder the service marked as its own is ever deleted.
    """
    try:
        if directory is None:
            own = Path(tempfile.mkdtemp(prefix="infogan-metrics-"))
        else:
            own = directory / OWN_FOLDER
            own.mkdir(parents=True, exist_ok=True)
            if not (own / MARKER).is_file() and any(own.iterdir()):
                raise MetricsSetupError(f"METRICS_DIR {directory}: {own} holds files this service did not write; "
                                        "remove that folder or choose another METRICS_DIR")
        (own / MARKER).touch()
        for stale in own.iterdir():
            if stale.is_file() and METRIC_FILE.fullmatch(stale.name):
                stale.unlink()
    except OSError as error:
        where = error.filename or directory
        raise MetricsSetupError(f"METRICS_DIR {directory}: cannot use {where}: {error.strerror or error}") from None
    return own


SESSION_LABELS = ["model", "session"]  # the served model's name, and its generator or encoder


class Metrics:
    """The Prometheus series of one app (its own registry, so several apps can live in one process).

    Under several workers (PROMETHEUS_MULTIPROC_DIR set) every series is also written to a per-process file,
    and /metrics renders the sum over all workers' files: a scrape counts every request, whichever worker
    served it. Gauges then add up over live workers (queue depth) or take their maximum (provider).
    """

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency by route and status",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("inference_batch_size", "images per onnxruntime run (before padding)",
                                    SESSION_LABELS, buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("inference_queue_depth", "requests waiting for inference", SESSION_LABELS,
                                 registry=self.registry, multiprocess_mode="livesum")
        self.queue_wait = Histogram("inference_queue_wait_seconds", "time a request waited before its batch ran",
                                    SESSION_LABELS, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.shed = Counter("requests_shed_total", "requests refused or given up by the service, by reason: "
                            "queue_full, expected_wait (could not be answered within its budget), deadline, "
                            "decode_queue (too many uploads waiting to be decoded), shutdown (still waiting as "
                            "SHUTDOWN_GRACE_S ended)",
                            ["reason"], registry=self.registry)
        self.abandoned = Counter("inference_abandoned_total", "queued requests dropped unrun: the caller had gone "
                                 "(deadline or disconnect)", SESSION_LABELS, registry=self.registry)
        self.disconnected = Counter("requests_cancelled_total", "requests whose client disconnected before the "
                                    "answer", ["reason"], registry=self.registry)
        self.request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.provider = Gauge("inference_provider", "1 for the execution provider the session runs on",
                              ["provider"], registry=self.registry, multiprocess_mode="livemax")

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Counts and times one answered request (route template, not raw path)."""
        series = self.request_series.get((route, method, status))
        if series is None:  # the labelled children, looked up once per label set rather than per request
            labels = (route, method, str(status))
            series = self.request_series[route, method, status] = (self.requests.labels(*labels),
                                                                   self.latency.labels(*labels))
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)

    def close(self) -> None:
        """At a worker's exit: its live gauges leave the sums."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())


def workers_registry(directory: Path) -> CollectorRegistry:
    """A registry that reads every worker's metric files at each scrape."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return registry


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> None:
    """/metrics on a port of its own (METRICS_PORT), from a background thread: Prometheus scrapes it there,
    and the API port need not expose it."""
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise MetricsSetupError(f"METRICS_PORT: cannot listen on {host}:{port}: {error.strerror}") from None
