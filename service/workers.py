"""Several worker processes serving one port, each with its own listening socket.

uvicorn's own supervisor shares one listening socket among its workers, and whichever worker wakes first
accepts every connection that is waiting: 16 clients connecting at once landed 13/3, 15/1 and 16/0 on two
workers, so one event loop was saturated while the other idled (docs/PERFORMANCE.md). Here each worker binds
the port itself with SO_REUSEPORT, and Linux spreads new connections over the listening sockets by a hash of
their addresses. A worker listens only once its app has started (model loaded, every batch size warmed up),
so no connection waits on a cold worker. Elsewhere than Linux, SO_REUSEPORT does not balance: uvicorn's
supervisor serves instead. One caution that comes with SO_REUSEPORT: a second copy of the service started by
the same user on the same port joins the group silently and takes a share of the connections (the start-up
check refuses a port held by any other kind of listener).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn
from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE  # a worker's exit status when its app failed to start

from service.metrics import MULTIPROCESS_ENV

log = logging.getLogger("service.workers")
BALANCED_BY_KERNEL = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port that other sockets with SO_REUSEPORT may bind too (not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(options: dict[str, Any]) -> None:
    """One worker process: the app from the environment the supervisor prepared, on its own socket."""
    config = uvicorn.Config("service.app:create_app", factory=True, **options)
    uvicorn.Server(config).run(sockets=[reuse_port_socket(config.host, config.port)])


def forget_worker(pid: int | None) -> None:
    """Drops a dead worker's live gauges (queue depth, ...) from the shared Prometheus files; its counters stay,
    as they count requests that were answered. What the worker does itself at a clean exit."""
    if pid is not None and os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid)


def supervise(workers: int, options: dict[str, Any]) -> None:
    """Runs `workers` worker processes until SIGTERM or SIGINT, which it passes on as SIGTERM (each worker then
    finishes its in-flight requests); a worker that dies is replaced, unless its app failed to start, which
    would fail again: then all stop and the exit status says so."""
    try:  # fail here, naming the port, rather than in every worker
        reuse_port_socket(options["host"], options["port"]).close()
    except OSError as error:
        raise SystemExit(f"error: cannot listen on {options['host']}:{options['port']}: {error.strerror}") from None
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def start() -> BaseProcess:
        process = context.Process(target=run_worker, args=(options,), name="infogan-serve-worker")
        process.start()
        return process

    processes = [start() for _ in range(workers)]
    failed = False
    while not stop.wait(0.5):
        for index, process in enumerate(processes):
            if process.exitcode is None:
                continue
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %s failed to start; stopping", process.pid)
                failed = True
                stop.set()
                break
            log.warning("worker %s exited with status %s; starting another", process.pid, process.exitcode)
            forget_worker(process.pid)
            processes[index] = start()
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    for process in processes:
        process.join()
    if failed:
        raise SystemExit(STARTUP_FAILURE)
