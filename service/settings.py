"""Every setting of the service, from flags or environment variables (flags win)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(Exception):
    """The service cannot start as configured: a bad setting, model directory, metrics folder or port. The
    message names the setting or file; `python -m service` prints it as one line and exits with status 2."""


DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "models"


class Settings(BaseSettings):
    """Read from the environment (e.g. MODEL_DIR=/models/x, REQUIRE_GPU=1); `python -m service` flags override."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in the container)")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    model_repository: Path = Field(DEFAULT_REPOSITORY, description="folder of model directories written by `python "
                                   "-m export`: each is served under its folder name (GET /models)")
    default_model: str = Field("mnist", min_length=1, description="the model the routes answer for when a request "
                               "names none (`?model=`)")
    model_poll_s: float = Field(0, ge=0, description="every this many seconds, load the repository's new and "
                                "changed models (0: only on POST /v2/repository/models/NAME/load)")
    model_dir: Path | None = Field(None, description="one model directory to serve instead of MODEL_REPOSITORY (under "
                                   "its folder name, as the default model)")
    require_gpu: bool = Field(False, description="fail start-up unless the CUDA execution provider is active")
    max_batch: int = Field(64, ge=1, le=1024, description="most images in one onnxruntime run")
    batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="longest wait to fill a batch (ends once the "
                                 "last run's load is queued again)")
    queue_size: int = Field(256, ge=1, description="requests waiting for inference before 503 + Retry-After")
    request_timeout_s: float = Field(10.0, gt=0, description="deadline of one request, queueing included; a client "
                                     "may ask for a shorter one with the X-Request-Timeout header")
    max_queue_wait_s: float = Field(0.5, gt=0, description="longest expected wait (queued work at the measured "
                                    "rate) a request is admitted with; beyond it, 503 + Retry-After at once")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body (413 beyond)")
    api_key: SecretStr | None = Field(None, description="when set, every API route needs `Authorization: Bearer "
                                      "<key>` (401 otherwise); probes, the playground's files and the docs stay open")
    read_timeout_s: float = Field(10.0, gt=0, description="a connection must deliver each request, headers and body, "
                                  "within this many seconds of its first byte (or of connecting); else it is closed")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="largest request line and headers together; beyond, "
                                  "431 and the connection closed")
    max_header_count: int = Field(100, ge=8, description="most request headers; beyond, 431 and the connection closed")
    max_requests_per_connection: int = Field(200, ge=0, description="requests a keep-alive connection may carry "
                                             "before it is closed (Connection: close), so clients reconnect and "
                                             "every worker, a replaced one too, gets its share; 0: no limit")
    max_connections: int = Field(1000, ge=1, description="open connections and requests per worker; beyond, 503")
    decode_concurrency: int = Field(2, ge=1, description="uploads a worker decodes at once (memory and CPU grow "
                                    "with each); more wait, and beyond four times as many waiting, 503")
    max_upload_bytes: int = Field(16 << 20, ge=1024, description="largest image body of POST /encode (413 beyond): "
                                  "phone photos are 2-8 MB")
    max_upload_pixels: int = Field(4096 * 4096, ge=1, description="largest image /encode decodes")
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="processes serving the port, each with its own onnxruntime session and batcher; auto: "
        "one per available core (cgroup CPU limit included) divided by INTRA_OP_THREADS when that is set")
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime threads per run (0: the available cores shared "
                                  "out among the workers)")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="serve /metrics on this port instead of the "
                                     "API's (same host), e.g. to scrape it from inside the cluster only")
    metrics_dir: Path | None = Field(None, description="with several workers, where they share their Prometheus "
                                     "series (PROMETHEUS_MULTIPROC_DIR; default: a fresh temporary directory)")
    watchdog_s: float = Field(5.0, ge=0.5, description="with several workers, a worker whose event loop has not "
                              "answered the supervisor's heartbeat for this long (stopped, or stuck) is killed and "
                              "replaced")
    shutdown_grace_s: float = Field(20.0, ge=0, description="on SIGTERM, how long in-flight requests may take to "
                                    "finish before the process exits (those still waiting for inference a second, at most "
                                    "half the grace, before it ends are answered 503; keep Kubernetes' "
                                    "terminationGracePeriodSeconds above it)")
    tracing: bool = Field(False, description="OpenTelemetry traces: a span per request (W3C traceparent continued) "
                          "with spans for admission, queue, batch and finish; exported over OTLP when "
                          "OTEL_EXPORTER_OTLP_ENDPOINT is set")
    telemetry: bool = Field(False, description="FastAPI's built-in OpenTelemetry spans, metrics and logs (off: the "
                            "service exports its own Prometheus metrics, and the per-request checks cost CPU)")
    log_level: str = Field("info", description="uvicorn log level")
    access_log: bool = Field(False, description="log every request (uvicorn's access log: about a sixth of the "
                             "event loop's time per request; /metrics counts requests either way)")

    def worker_count(self) -> int:
        if self.workers != "auto":
            return self.workers
        return max(1, available_cpus() // max(1, self.intra_op_threads))

    def threads_per_worker(self) -> int:
        """INTRA_OP_THREADS, or the available cores shared out among the workers (never oversubscribed)."""
        return self.intra_op_threads or max(1, available_cpus() // self.worker_count())


def available_cpus() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU limit (a container's `cpus`)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus
