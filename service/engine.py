"""The inference engines: a worker's one inference thread (`Inference`: the thread, the scheduler over every
batcher, the upload decode slots) and, per served model, an `Engine` (its two micro-batchers, generator and
encoder, on that thread)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Literal, get_args

import numpy as np

from infogan.images import to_uint8
from service.batcher import MicroBatcher, Observers, Overloaded, Run, Scheduler
from service.caching import model_key
from service.latents import Latents, draw
from service.metrics import Metrics
from service.model import CUDA, Model
from service.settings import Settings
from service.tracing import record_stages

Session = Literal["generator", "encoder"]  # the two ONNX sessions a model has, by the names V2 serves them under
SESSIONS: tuple[Session, ...] = get_args(Session)


def v2_name(model: str, session: Session) -> str:
    """The V2 model name of one model's session: MODEL.generator, MODEL.encoder."""
    return f"{model}.{session}"


def split_v2_name(name: str) -> tuple[str, str]:
    """A V2 model name as (model, session); the bare `generator` and `encoder` are the default model's (model
    ""). The session part is whatever follows the last dot: callers check it against SESSIONS."""
    model, _, session = name.rpartition(".")
    return model, session


class DeadlineExceeded(Exception):
    """A request waited longer than its deadline; the queue would take `retry_after_s` to drain."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


INFERENCE_NICENESS = 10
DECODE_QUEUE_PER_SLOT = 4
# The end of SHUTDOWN_GRACE_S kept to answer, with a 503, the requests that cannot finish in it: past the grace
# uvicorn cancels what is left, and a cancelled request reads as a 500.
SHUTDOWN_ANSWER_S = 1.0


def lower_priority() -> None:
    """Raises the calling thread's nice value (Linux schedules threads one by one; raising needs no privilege)."""
    with contextlib.suppress(AttributeError, OSError):  # no per-thread priority on this platform: run as is
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), INFERENCE_NICENESS)


class Inference:
    """The worker's inference thread, shared by every model it serves: one scheduler prices all their work."""

    def __init__(self, settings: Settings, provider: str):
        # One thread: no oversubscription. At a lower scheduling priority than the event loop's thread, so that
        # under full load health checks and 503s still get a core the moment they arrive.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="inference", initializer=lower_priority)
        # On a GPU the inference thread mostly waits for the device, and a second thread encodes the last batch's
        # PNGs meanwhile; on the CPU both compete for the same cores and the extra hop per batch only costs
        # (docs/PERFORMANCE.md), so the inference thread finishes its own batches.
        self.finisher = ThreadPoolExecutor(1, thread_name_prefix="finishing", initializer=lower_priority) \
            if provider == CUDA else None
        self.scheduler = Scheduler(self.executor, self.finisher)
        # On a GPU each new input shape costs the session a new plan: batches run at the sizes warmed up at start.
        self.pads_batches = provider == CUDA
        self.decode_slots = asyncio.Semaphore(settings.decode_concurrency)
        self.decodes_waiting = 0
        self.waits: set[asyncio.Timeout] = set()  # the deadlines of the requests waiting for inference, any model
        self.stops_at: float | None = None  # event-loop time by which a stopping worker has answered everything

    def stop_within(self, grace_s: float) -> None:
        """The worker stops in `grace_s` seconds: every request still waiting for inference shortly before then
        (and any that comes) is answered 503, and a client can retry it elsewhere, instead of being cut off."""
        self.stops_at = asyncio.get_running_loop().time() + max(0.0, grace_s - min(SHUTDOWN_ANSWER_S, grace_s / 2))
        for wait in self.waits:
            self.bound(wait)

    def bound(self, wait: asyncio.Timeout) -> None:
        """A request's deadline, no later than the stop once the worker is stopping (one that has just run out
        answers with its own)."""
        if self.stops_at is not None and not wait.expired():
            wait.reschedule(min(wait.when(), self.stops_at))

    def stop(self) -> None:
        for executor in filter(None, (self.executor, self.finisher)):
            executor.shutdown(wait=False, cancel_futures=True)


class Engine:
    """One served model: its sessions behind a batcher each, on the worker's inference thread."""

    def __init__(self, name: str, model: Model, settings: Settings, metrics: Metrics, inference: Inference):
        self.name, self.model, self.settings, self.inference = name, model, settings, inference
        card = model.info()
        self.key = model_key(card["sha256"])  # what its ETags are made from: a new version changes them
        self.version = str(card["version"])
        self.ready = False
        self.shed = metrics.shed
        self.in_flight = 0  # requests submitted and not yet answered: a retired version waits for them
        wait_s = settings.batch_wait_ms / 1000

        def batcher(session: Session, run: Run) -> MicroBatcher:
            labels = (name, session)
            observers = Observers(metrics.batch_size.labels(*labels).observe, metrics.queue_depth.labels(*labels).set,
                                  metrics.queue_wait.labels(*labels).observe, metrics.abandoned.labels(*labels).inc)
            return MicroBatcher(run, inference.scheduler, settings.max_batch, wait_s, settings.queue_size, observers,
                                pad=inference.pads_batches)

        # The generator's images become uint8 once per batch, not once per request (several numpy calls each);
        # the float images stay beside them for the Open Inference Protocol, which returns the tensor itself.
        self.generator = batcher("generator", lambda feeds: [images := model.generator.run(None, feeds)[0],
                                                             to_uint8(images)])
        encoder = model.encoder
        self.encoder = batcher("encoder", lambda feeds: encoder.run(None, feeds)) if encoder else None
        metrics.provider.labels(model.provider).set(1)
        self.tasks: list[asyncio.Task] = []

    def warm_up(self) -> None:
        """Runs every batch size the batchers use once (blocking; call from a thread)."""
        self.generator.warm_up(draw(self.model.layout, 0, [0]).feeds())
        if self.encoder:
            image = self.model.image
            self.encoder.warm_up({"images": np.zeros((1, image["channels"], image["height"], image["width"]), np.float32)})
        self.ready = True

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(b.serve()) for b in self.batchers()]
        await asyncio.get_running_loop().run_in_executor(self.inference.executor, self.warm_up)

    def batchers(self) -> list[MicroBatcher]:
        return [b for b in (self.generator, self.encoder) if b]

    def idle(self) -> bool:
        return not self.in_flight and not any(b.busy for b in self.batchers())

    async def stop(self) -> None:
        """Stops its batchers and takes them off the scheduler (the inference thread stays, for the others)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for batcher in self.batchers():
            self.inference.scheduler.batchers.remove(batcher)

    def deadline(self, timeout_s: float | None) -> float:
        """The server's REQUEST_TIMEOUT_S, or the client's shorter one."""
        return min(timeout_s or math.inf, self.settings.request_timeout_s)

    def batcher(self, session: Session) -> MicroBatcher | None:
        """The batcher of the named session (None for an encoder the model does not have); KeyError for a name
        that is neither."""
        return {"generator": self.generator, "encoder": self.encoder}[session]

    def budget(self, timeout_s: float | None) -> float:
        """The longest expected wait a request is admitted with: MAX_QUEUE_WAIT_S, or its deadline if shorter."""
        return min(self.deadline(timeout_s), self.settings.max_queue_wait_s)

    def shed_at_door(self, timeout_s: float | None = None, session: Session = "generator") -> None:
        """Refuses (Overloaded) a request before it is read while the work already queued could not be answered
        within its budget: under overload most requests are refused, and this costs next to nothing. Admission
        proper (with the request's own size) happens once, when it is queued (`_submit`)."""
        batcher = self.batcher(session)
        if batcher is None:  # no encoder: the route answers 404
            return
        try:
            batcher.admit(0, self.budget(timeout_s))
        except Overloaded as error:
            self.shed.labels(error.reason).inc()
            raise

    @contextlib.asynccontextmanager
    async def decoding(self) -> AsyncIterator[None]:
        """One of DECODE_CONCURRENCY decode slots: an upload's decoding costs memory and CPU in proportion to its
        pixels, so a worker decodes a few at a time. Admission counts the waiting ones: past four per slot, 503."""
        inference = self.inference
        limit = DECODE_QUEUE_PER_SLOT * self.settings.decode_concurrency
        if inference.decodes_waiting >= limit:
            self.shed.labels("decode_queue").inc()
            raise Overloaded(f"{inference.decodes_waiting} uploads are waiting to be decoded", "decode_queue", 1.0)
        inference.decodes_waiting += 1
        try:
            await inference.decode_slots.acquire()
        finally:
            inference.decodes_waiting -= 1
        try:
            yield
        finally:
            inference.decode_slots.release()

    async def _submit(self, session: Session, feeds: dict[str, np.ndarray], finish: Callable, timeout_s: float | None) -> Any:
        """Admits the request (its expected wait within its budget, else Overloaded) and queues it, with nothing
        awaited in between, then waits for its answer within its deadline."""
        deadline = self.deadline(timeout_s)
        batcher = self.batcher(session)
        on_timing = partial(record_stages, submitted=time.perf_counter(), attributes={
            "model": self.name, "model.version": self.version, "session": session}) if self.settings.tracing else None
        waits = self.inference.waits
        self.in_flight += 1
        try:
            async with asyncio.timeout(deadline) as wait:
                self.inference.bound(wait)
                waits.add(wait)
                try:
                    return await batcher.submit(feeds, finish, self.budget(timeout_s), on_timing)
                finally:
                    waits.discard(wait)
        except Overloaded as error:
            self.shed.labels(error.reason).inc()
            raise
        except TimeoutError:
            if wait.when() == self.inference.stops_at:
                self.shed.labels("shutdown").inc()
                raise DeadlineExceeded("the service is stopping and could not answer before it exits; retry", 1.0) \
                    from None
            self.shed.labels("deadline").inc()
            raise DeadlineExceeded(f"no answer within the {deadline:g} s deadline", batcher.retry_after()) from None
        finally:
            self.in_flight -= 1

    async def generate(self, latents: Latents, finish: Callable[[np.ndarray], Any], timeout_s: float | None = None) -> Any:
        """finish(uint8 images (B, C, H, W)), computed once the batch has run, off the event loop (e.g. PNG
        encoding)."""
        return await self._submit("generator", latents.feeds(), lambda outputs: finish(outputs[1]), timeout_s)

    async def infer(self, session: Session, feeds: dict[str, np.ndarray], timeout_s: float | None = None) -> list[np.ndarray]:
        """A session's own output tensors, in the ONNX file's order, for inputs already checked against it."""
        outputs = await self._submit(session, feeds, list, timeout_s)
        return outputs[:1] if session == "generator" else outputs  # the generator's uint8 copy is for PNGs

    async def encode(self, images: np.ndarray, timeout_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Q's categorical probabilities (B, sum of sizes) and continuous means (B, n_cont)."""
        return await self._submit("encoder", {"images": images}, tuple, timeout_s)
