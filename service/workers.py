"""Several worker processes serving one port, each with its own listening socket, under a supervisor.

uvicorn's own supervisor shares one listening socket among its workers, and whichever worker wakes first
accepts every connection that is waiting, so one event loop can be saturated while another idles. Here each
worker binds the port itself with SO_REUSEPORT, and Linux spreads new connections over the listening sockets
by a hash of their addresses. A worker listens only once its app has started (model loaded, every batch size
warmed up), so no connection waits on a cold worker. Elsewhere than Linux, SO_REUSEPORT does not balance:
uvicorn's supervisor serves instead. One caution that comes with SO_REUSEPORT: a second copy of the service
started by the same user on the same port joins the group silently and takes a share of the connections (the
start-up check refuses a port held by any other kind of listener).

The supervisor replaces a worker that dies or whose event loop stops answering (a heartbeat through shared
memory, WATCHDOG_S), and the workers die with the supervisor (PR_SET_PDEATHSIG), so no worker outlives it.
A worker that has changed its models (a load or unload through the API) tells the supervisor (SIGUSR1), which
tells every worker (SIGHUP) to follow the repository, so all of them serve the same versions.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing.context import BaseContext
from multiprocessing.sharedctypes import Synchronized
from types import FrameType
from typing import Any

import uvicorn
from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE  # a worker's exit status when its app failed to start

from service.metrics import MULTIPROCESS_ENV
from service.settings import ConfigurationError, Settings

log = logging.getLogger("service.workers")
BALANCED_BY_KERNEL = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
STARTUP_S = 120.0  # the longest a worker may take to load and warm up its model before its first heartbeat
SUPERVISOR_TICK_S = 0.1  # how often the supervisor looks at its workers: a dead one is replaced within this
MODELS_CHANGED, FOLLOW_REPOSITORY = signal.SIGUSR1, signal.SIGHUP  # worker -> supervisor, supervisor -> workers
UNLOADED_BYTES = 8192  # room for the names of the models unloaded through the API, as JSON
FOLLOW_TIMEOUT_S = 60.0  # the longest a load waits for the other workers to serve the same version


@dataclass
class Fleet:
    """What a supervisor shares with its workers about their models, in shared memory."""

    supervisor: int  # its pid
    unloaded: Any  # the names of the models unloaded through the API, as JSON (an Array of chars)
    generation: Any  # how many loads and unloads were made through the API (a Value)
    reached: Any  # per worker (by index), the generation it has followed up to (an Array)
    index: int = 0  # the worker's own


fleet: Fleet | None = None  # in a supervised worker
local_unloaded: set[str] = set()  # in a single process: the unloaded names, kept here


def unloaded_models() -> set[str]:
    """The models unloaded through the API, which every worker leaves unserved until one loads them again."""
    if fleet is None:
        return set(local_unloaded)
    with fleet.unloaded.get_lock():
        return set(json.loads(fleet.unloaded.value.decode() or "[]"))


def record_unloaded(names: set[str]) -> None:
    global local_unloaded
    if fleet is None:
        local_unloaded = set(names)
        return
    text = json.dumps(sorted(names)).encode()
    if len(text) >= UNLOADED_BYTES:
        raise ConfigurationError(f"too many unloaded models to share among the workers ({len(names)})")
    with fleet.unloaded.get_lock():
        fleet.unloaded.value = text


def generation() -> int:
    return fleet.generation.value if fleet is not None else 0


def followed(reached: int) -> None:
    """This worker serves what the API decided up to generation `reached`."""
    if fleet is not None:
        fleet.reached[fleet.index] = max(fleet.reached[fleet.index], reached)


async def tell_siblings() -> None:
    """After a load or unload here: every worker follows the repository (through the supervisor), and this
    returns once they all have, or after FOLLOW_TIMEOUT_S. Nothing to do in a single process."""
    if fleet is None:
        return
    with fleet.generation.get_lock():
        fleet.generation.value += 1
        reached = fleet.generation.value
    followed(reached)
    os.kill(fleet.supervisor, MODELS_CHANGED)
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while min(fleet.reached[:]) < reached:
        if time.monotonic() > deadline:
            log.warning("a worker has not followed the model change within %g s", FOLLOW_TIMEOUT_S)
            return
        await asyncio.sleep(0.02)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port that other sockets with SO_REUSEPORT may bind too (not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class WatchedServer(uvicorn.Server):
    """uvicorn's server, whose event loop stamps `heartbeat` (time.monotonic(), shared with the supervisor) every
    `interval` seconds once the app has started: a worker whose loop is stopped or blocked stops stamping."""

    def __init__(self, config: uvicorn.Config, heartbeat: Synchronized, interval: float):
        super().__init__(config)
        self.heartbeat, self.interval = heartbeat, interval

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        beating = asyncio.ensure_future(self.beat())
        try:
            await super().serve(sockets)
        finally:
            beating.cancel()

    async def beat(self) -> None:
        while True:
            if self.started:
                self.heartbeat.value = time.monotonic()
            await asyncio.sleep(self.interval)


def die_with_parent(parent: int) -> None:
    """The kernel sends this process SIGTERM (a graceful stop) when the supervisor dies, kill -9 included."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def check_port(host: str, port: int) -> None:
    """Fails at start-up, naming the address, rather than in every worker."""
    try:
        reuse_port_socket(host, port).close()
    except OSError as error:
        raise ConfigurationError(f"cannot listen on {host}:{port} (HOST, PORT): {error.strerror or error}") from None


def run_worker(settings: Settings, options: dict[str, Any], heartbeat: Synchronized, shared: Fleet) -> None:
    """One worker process: the app built from the supervisor's settings, on its own socket."""
    from service.app import create_app  # the app module imports this one

    global fleet
    fleet = shared
    die_with_parent(shared.supervisor)
    # Until the app listens for it (service/app.py), news of a model change must not end the process (SIGHUP's
    # default); a change made meanwhile is caught up then (Repository.catch_up).
    signal.signal(FOLLOW_REPOSITORY, signal.SIG_IGN)
    config = uvicorn.Config(partial(create_app, settings), factory=True, **options)
    server = WatchedServer(config, heartbeat, interval=settings.watchdog_s / 5)
    server.run(sockets=[reuse_port_socket(config.host, config.port)])


def forget_worker(pid: int | None) -> None:
    """Drops a dead worker's live gauges (queue depth, ...) from the shared Prometheus files; its counters stay,
    as they count requests that were answered. What the worker does itself at a clean exit."""
    if pid is not None and os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid)


class Worker:
    """A worker process and its heartbeat."""

    def __init__(self, context: BaseContext, settings: Settings, options: dict[str, Any], shared: Fleet):
        self.started = time.monotonic()
        self.heartbeat = context.Value("d", 0.0, lock=False)
        self.process = context.Process(target=run_worker, args=(settings, options, self.heartbeat, shared),
                                       name="infogan-serve-worker")
        self.process.start()

    def unresponsive(self, now: float, watchdog_s: float) -> bool:
        """No heartbeat for watchdog_s, or none at all STARTUP_S after the process started."""
        if self.heartbeat.value:
            return now - self.heartbeat.value > watchdog_s
        return now - self.started > STARTUP_S


def supervise(settings: Settings, options: dict[str, Any]) -> None:
    """Runs the workers until SIGTERM or SIGINT, which it passes on as SIGTERM (each worker then finishes its
    in-flight requests). A worker that dies, or whose event loop misses its heartbeat for WATCHDOG_S (stopped,
    or stuck), is killed and replaced; one whose app failed to start would fail again: then all stop and the
    exit status says so. Workers get SIGTERM from the kernel if the supervisor itself dies."""
    context = multiprocessing.get_context("spawn")
    stopping = models_changed = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # Plain flags, not a threading.Event: the handler runs on the main thread between two bytecodes, and
        # Event.set from there deadlocks if the signal lands while that thread holds the Event's lock in wait().
        nonlocal stopping
        stopping = True

    def note_models_changed(signum: int, frame: FrameType | None) -> None:
        nonlocal models_changed
        models_changed = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    signal.signal(MODELS_CHANGED, note_models_changed)
    count = settings.worker_count()
    shared = Fleet(os.getpid(), context.Array("c", UNLOADED_BYTES), context.Value("q", 0), context.Array("q", count))
    workers = [Worker(context, settings, options, replace(shared, index=i)) for i in range(count)]
    failed = False
    while not stopping:
        time.sleep(SUPERVISOR_TICK_S)
        if models_changed:
            models_changed = False
            for worker in workers:
                if worker.process.pid is not None and worker.process.exitcode is None:
                    os.kill(worker.process.pid, FOLLOW_REPOSITORY)
        now = time.monotonic()
        for index, worker in enumerate(workers):
            process = worker.process
            if process.exitcode is None and worker.unresponsive(now, settings.watchdog_s):
                log.warning("worker %s has not answered its heartbeat for %g s; replacing it", process.pid,
                            settings.watchdog_s)
                process.kill()
                process.join()
            if process.exitcode is None:
                continue
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %s failed to start; stopping", process.pid)
                failed = stopping = True
                break
            log.warning("worker %s exited with status %s; starting another", process.pid, process.exitcode)
            forget_worker(process.pid)
            workers[index] = Worker(context, settings, options, replace(shared, index=index))
    for worker in workers:
        if worker.process.exitcode is None:
            worker.process.terminate()
    for worker in workers:
        worker.process.join()
    if failed:
        raise SystemExit(STARTUP_FAILURE)
