"""Micro-batching: concurrent requests merged into one onnxruntime run on a single inference thread.

A `Scheduler` owns that thread and the batchers that share it (one per ONNX session). Admission is by expected
wait, not by count alone: each batcher keeps a running estimate of the inference time of each batch size it
runs, and a request whose wait (the work queued and running ahead of it on the thread: its own batcher's, in the
batches they will be run in, and every other batcher's) would pass its budget is refused at once (`Overloaded`,
answered 503 with a Retry-After from the real queue) instead of being computed for a client that will have given
up. A request whose caller has gone (deadline or disconnect) is dropped from the queue before it is computed.
The batcher takes the first waiting request, lets the window of `wait_s` gather more, and runs up to `max_batch`
images together. With `pad` (on a GPU, where each new input shape costs the session a new plan) a batch is padded
to a power-of-two size, so that the session only ever sees the shapes warmed up at start-up; on the CPU a new
size costs nothing and padding would compute the extra images for nothing, so a batch runs at its own size.
Either way the time of each power-of-two size is what admission prices work with.
The window closes early once as many requests wait as were in flight when the last run ended (its own and those
queued meanwhile), or a full batch: when every busy client has already sent its request, waiting longer only
adds latency. Each batch's answers are finished (e.g. PNG-encoded) on the scheduler's finishing thread: the
inference thread itself, or a second one that lets it run the next batch meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("service.batcher")

Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
RATE_SMOOTHING = 0.1  # weight of the newest batch (request) in the time per batch size (mean request size)


class Overloaded(Exception):
    """The request cannot be answered in time; the client should retry after `retry_after_s`."""

    def __init__(self, message: str, reason: str, retry_after_s: float):
        super().__init__(message)
        self.reason, self.retry_after_s = reason, retry_after_s


class Timing(Protocol):
    """When an answered request passed each stage (perf_counter seconds), and the images of the run it joined."""

    queued_at: float
    started_at: float  # its batch's run began on the inference thread
    ran_at: float  # the run ended
    finished_at: float  # its answer was finished (e.g. PNG-encoded)
    batch_images: int


@dataclass
class _Request:
    feeds: dict[str, np.ndarray]
    size: int
    future: asyncio.Future
    finish: Callable[[list[np.ndarray]], Any]  # runs on the finishing thread, on this request's outputs
    queued_at: float
    started_at: float = 0.0
    ran_at: float = 0.0
    finished_at: float = 0.0
    batch_images: int = 0


@dataclass
class Observers:
    """Where the batcher reports what it does (the service's Prometheus series; no-ops by default)."""

    batch_size: Callable[[int], None] = lambda size: None
    depth: Callable[[int], None] = lambda depth: None
    queue_wait: Callable[[float], None] = lambda seconds: None  # of every request taken into a batch
    abandoned: Callable[[], None] = lambda: None  # a queued request dropped because its caller had gone


def bucket_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to max_batch (max_batch itself included)."""
    sizes = [1 << k for k in range(max_batch.bit_length()) if 1 << k < max_batch]
    return [*sizes, max_batch]


class Scheduler:
    """One inference thread and the batchers that share it; `finisher` is the thread each batch's answers are
    finished on (the inference thread itself, in the same hop, when None)."""

    def __init__(self, executor: Executor, finisher: Executor | None = None):
        self.executor, self.finisher = executor, finisher
        self.batchers: list[MicroBatcher] = []

    def idle(self) -> bool:
        return not any(batcher.busy for batcher in self.batchers)

    def backlog_s(self, besides: MicroBatcher) -> float:
        """Seconds of work queued and running on the thread in the other batchers than `besides`."""
        return sum(batcher.expected_wait(0, alone=True) for batcher in self.batchers
                   if batcher is not besides and batcher.busy)


class MicroBatcher:
    def __init__(self, run: Run, scheduler: Scheduler, max_batch: int, wait_s: float, queue_size: int,
                 observers: Observers | None = None, pad: bool = False):
        self.run, self.scheduler = run, scheduler
        scheduler.batchers.append(self)
        self.max_batch, self.wait_s, self.queue_size, self.pad = max_batch, wait_s, queue_size, pad
        self.buckets = bucket_sizes(max_batch)
        # the bucket of each batch size up to max_batch, looked up on every admission check
        self.bucket_of = [next(size for size in self.buckets if size >= images) for images in range(max_batch + 1)]
        self.observers = observers or Observers()
        self.waiting: collections.deque[_Request] = collections.deque()
        self.queued = 0  # images in `waiting`
        self.running = 0  # images in the batch on the inference thread
        # Seconds per run (and its requests' finish) for each bucket: a moving average, 0 until measured. Per
        # size, because a run's fixed cost dominates small batches: a queue of full batches priced at the time
        # per image of single requests would look several times longer than it is.
        self.batch_seconds = dict.fromkeys(self.buckets, 0.0)
        self.mean_request_images = 1.0  # moving average of the admitted requests' sizes
        self.next_return = 0.0  # the last return slot handed to a refused client (perf_counter time)
        self.expected = 1  # requests in flight when the last run ended (its own and those queued meanwhile)
        self.wakeup = asyncio.Event()  # set by every new request

    @property
    def busy(self) -> bool:
        """Has it images queued or running?"""
        return bool(self.queued or self.running)

    def padded(self, images: int) -> int:
        """The batch size a run of `images` takes: its bucket with `pad`, else its own (a request larger than
        max_batch runs alone, at its own size)."""
        return self.bucket_of[images] if self.pad and images <= self.max_batch else images

    def seconds_for(self, images: int) -> float:
        """Expected time to run `images` images: full batches, then one partial batch at its bucket's time per
        image ran, which never takes longer than a full one (a size that has not run lately keeps its old time,
        which under a load of full batches is never corrected: one measured during a busy start-up would shed
        requests for good)."""
        full, rest = divmod(images, self.max_batch)
        full_batch = self.batch_seconds[self.max_batch]
        if not rest:
            return full * full_batch
        bucket = self.bucket_of[rest]
        return full * full_batch + min(self.batch_seconds[bucket] * self.padded(rest) / bucket, full_batch)

    @property
    def seconds_per_image(self) -> float:
        """At full batches: the service rate when there is a queue."""
        return self.batch_seconds[self.max_batch] / self.max_batch

    def expected_wait(self, size: int = 0, alone: bool = False) -> float:
        """Seconds until `size` more images would be answered: the running batch, then the queue and them, and
        (unless `alone`) the other batchers' work on the same thread."""
        own = self.seconds_for(self.running) + self.seconds_for(self.queued + size)
        return own if alone else own + self.scheduler.backlog_s(besides=self)

    def admit(self, size: int, budget_s: float = math.inf) -> None:
        """Refuses (`Overloaded`) a request of `size` images when the queue holds `queue_size` requests, or when
        work is queued or running and the expected wait (that work and this request's own images) is over
        `budget_s`. A request that finds the thread idle is always taken: retrying could not make it faster."""
        idle = self.scheduler.idle()
        if idle:  # any flood is over, and the slots it handed out with it
            self.next_return = 0.0
        if len(self.waiting) >= self.queue_size:
            raise Overloaded(f"inference queue full ({self.queue_size} requests waiting)", "queue_full",
                             self.retry_after())
        wait = self.expected_wait(size)
        if not idle and wait > budget_s:
            raise Overloaded(f"the expected wait ({wait:.2f} s) is over this request's {budget_s:g} s budget",
                             "expected_wait", self.retry_after())

    def retry_after(self) -> float:
        """When a refused client should come back: a return slot in a virtual queue of refused clients, served
        at the rate the batcher can answer requests (their mean size at the time per image of a full batch), and
        never before the real queue has drained. Told "the queue drains in 1 s", a crowd comes back as a crowd
        every second, and refusing it again costs the CPU that inference needs; spaced out at the service
        rate, the clients come back about as fast as they can be answered."""
        now = time.perf_counter()
        self.next_return = max(self.next_return, now + self.expected_wait())
        self.next_return += self.mean_request_images * self.seconds_per_image
        return self.next_return - now

    async def submit(self, feeds: dict[str, np.ndarray], finish: Callable[[list[np.ndarray]], Any] = list,
                     budget_s: float = math.inf, on_timing: Callable[[Timing], None] | None = None) -> Any:
        """Queues one request (any number of images), once `admit` lets it in, and waits for finish(its outputs).

        `finish` (e.g. PNG encoding) runs on the scheduler's finishing thread, once per batch for all its
        requests, so the event loop never blocks on it. Cancelling the caller
        (a deadline, a disconnect) takes the request out of the queue: it is never computed. `on_timing` gets
        the answered request's Timing.
        """
        size = len(next(iter(feeds.values())))
        self.admit(size, budget_s)
        self.mean_request_images += RATE_SMOOTHING * (size - self.mean_request_images)
        loop = asyncio.get_running_loop()
        request = _Request(feeds, size, loop.create_future(), finish, time.perf_counter())
        self.waiting.append(request)
        self.queued += request.size
        self.observers.depth(len(self.waiting))
        self.wakeup.set()
        result = await request.future
        if on_timing is not None:
            on_timing(request)
        return result

    def warm_up(self, feeds: dict[str, np.ndarray]) -> None:
        """Runs every batch size the batcher will use three times, from a one-image example (blocking); the
        faster of the two warm runs is the first estimate of its time (workers warm up side by side, and one
        run can be slowed by the others)."""
        for size in self.buckets:
            batch = {name: np.repeat(value, size, axis=0) for name, value in feeds.items()}
            self.run(batch)
            timings = []
            for _ in range(2):
                started = time.perf_counter()
                self.run(batch)
                timings.append(time.perf_counter() - started)
            self.batch_seconds[size] = min(timings)

    def _take(self) -> list[_Request]:
        """Waiting requests (cancelled ones dropped) up to max_batch images; a larger one goes alone."""
        taken, count = [], 0
        while self.waiting:
            request = self.waiting[0]
            if taken and count + request.size > self.max_batch:
                break
            self.waiting.popleft()
            self.queued -= request.size
            if request.future.done():  # its caller gave up (deadline or disconnect): never computed
                self.observers.abandoned()
                continue
            taken.append(request)
            count += request.size
        now = time.perf_counter()
        for request in taken:
            self.observers.queue_wait(now - request.queued_at)
        self.observers.depth(len(self.waiting))
        return taken

    def _filling(self) -> bool:
        """Are fewer requests waiting than the last batch saw, and less than a full batch?"""
        return len(self.waiting) < self.expected and self.queued < self.max_batch

    async def _gather(self) -> None:
        """The window: waits while the batch is filling, at most `wait_s`."""
        try:
            async with asyncio.timeout(self.wait_s):
                while self._filling():
                    self.wakeup.clear()
                    await self.wakeup.wait()
        except TimeoutError:
            pass

    async def serve(self) -> None:
        """The batching loop; runs until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            if not self.waiting:
                self.wakeup.clear()
                await self.wakeup.wait()
            if self.wait_s and self._filling():  # a lone client (expected 1) is answered at once
                await self._gather()
            batch = self._take()
            if not batch:
                continue
            total = sum(request.size for request in batch)
            padded = self.padded(total)
            feeds = {}
            for name in batch[0].feeds:
                joined = np.concatenate([request.feeds[name] for request in batch])
                feeds[name] = np.concatenate([joined, np.repeat(joined[-1:], padded - total, axis=0)]) \
                    if padded > total else joined
            self.observers.batch_size(total)
            self.running = total
            started = time.perf_counter()
            try:
                outputs, results = await loop.run_in_executor(self.scheduler.executor, self._run_batch, feeds, batch)
            except Exception as error:  # one bad batch must not stop the loop; its requests get the error
                log.exception("inference failed")
                outputs, results = [], [error] * len(batch)
            self.running = 0
            # Under steady load the requests answered now come back while those that queued meanwhile wait:
            # waiting for both makes one batch of them rather than two half batches (a run's fixed cost, twice).
            self.expected = len(batch) + len(self.waiting)
            # the run's time scaled to its bucket (a larger lone request counts as full batches)
            bucket = self.bucket_of[min(total, self.max_batch)]
            seconds = (time.perf_counter() - started) * bucket / padded
            self.batch_seconds[bucket] += RATE_SMOOTHING * (seconds - self.batch_seconds[bucket])
            if results is not None:
                self._deliver(batch, results)
            else:
                finished = loop.run_in_executor(self.scheduler.finisher, self._finish, outputs, batch)
                finished.add_done_callback(partial(self._finished, batch))

    def _run_batch(self, feeds: dict[str, np.ndarray], batch: list[_Request]) -> tuple[list[np.ndarray], list | None]:
        """On the inference thread: the run, and its requests' answers when no other thread finishes them."""
        started = time.perf_counter()
        outputs = self.run(feeds)
        ran, images = time.perf_counter(), len(next(iter(feeds.values())))
        for request in batch:
            request.started_at, request.ran_at, request.batch_images = started, ran, images
        return outputs, self._finish(outputs, batch) if self.scheduler.finisher is None else None

    def _finished(self, batch: list[_Request], done: asyncio.Future) -> None:
        if not done.cancelled():  # cancelled: the service is stopping
            self._deliver(batch, done.result())

    @staticmethod
    def _deliver(batch: list[_Request], results: list[Any]) -> None:
        for request, result in zip(batch, results):
            if request.future.done():
                continue
            if isinstance(result, Exception):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)

    @staticmethod
    def _finish(outputs: list[np.ndarray], batch: list[_Request]) -> list[Any]:
        """Each request's finish on its slice of the outputs (errors kept per request)."""
        results: list[Any] = []
        start = 0
        for request in batch:
            mine = [output[start : start + request.size] for output in outputs]
            start += request.size
            try:
                results.append(request.finish(mine))
            except Exception as error:
                results.append(error)
            request.finished_at = time.perf_counter()
        return results
