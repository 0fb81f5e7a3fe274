"""Micro-batching: concurrent requests merged into one onnxruntime run on a single inference thread.

Requests wait in a bounded queue (full: `Overloaded`, answered 503 at once). The batcher takes the first
waiting request, lets the window of `wait_s` gather more, and runs up to `max_batch` images together,
padded to a power-of-two size so the session only ever sees the shapes warmed up at start-up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("service.batcher")

Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


class Overloaded(Exception):
    """The queue is full; the client should retry later."""


@dataclass
class _Request:
    feeds: dict[str, np.ndarray]
    size: int
    future: asyncio.Future


def bucket_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to max_batch (max_batch itself included)."""
    sizes = [1 << k for k in range(max_batch.bit_length()) if 1 << k < max_batch]
    return [*sizes, max_batch]


class MicroBatcher:
    def __init__(self, run: Run, executor: Executor, max_batch: int, wait_s: float, queue_size: int,
                 observe: Callable[[int], None] = lambda size: None):
        self.run, self.executor = run, executor
        self.max_batch, self.wait_s, self.queue_size = max_batch, wait_s, queue_size
        self.buckets = bucket_sizes(max_batch)
        self.observe = observe
        self.waiting: collections.deque[_Request] = collections.deque()
        self.concurrent = False  # did the last batch merge several requests? (then waiting pays off)
        self.wakeup = asyncio.Event()

    @property
    def depth(self) -> int:
        return len(self.waiting)

    async def submit(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Queues one request (any number of images) and waits for its outputs."""
        if len(self.waiting) >= self.queue_size:
            raise Overloaded(f"inference queue full ({self.queue_size} requests waiting)")
        request = _Request(feeds, len(next(iter(feeds.values()))), asyncio.get_running_loop().create_future())
        self.waiting.append(request)
        self.wakeup.set()
        return await request.future

    def warm_up(self, feeds: dict[str, np.ndarray]) -> None:
        """Runs every batch size the batcher will use once, from a one-image example (blocking)."""
        for size in self.buckets:
            self.run({name: np.repeat(value, size, axis=0) for name, value in feeds.items()})

    def _take(self) -> list[_Request]:
        """Waiting requests (cancelled ones dropped) up to max_batch images; a larger one goes alone."""
        taken, count = [], 0
        while self.waiting:
            request = self.waiting[0]
            if request.future.done():  # its client gave up (deadline or disconnect)
                self.waiting.popleft()
                continue
            if taken and count + request.size > self.max_batch:
                break
            taken.append(self.waiting.popleft())
            count += request.size
        return taken

    async def serve(self) -> None:
        """The batching loop; runs until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            if not self.waiting:
                self.wakeup.clear()
                await self.wakeup.wait()
            if self.wait_s and self.concurrent and sum(r.size for r in self.waiting) < self.max_batch:
                # The window: under concurrent load, let more requests join this batch. A lone client
                # (the last batch held one request) is answered at once instead.
                await asyncio.sleep(self.wait_s)
            batch = self._take()
            if not batch:
                continue
            self.concurrent = len(batch) > 1 or bool(self.waiting)
            sizes = [request.size for request in batch]
            total = sum(sizes)
            padded = next((b for b in self.buckets if b >= total), total)
            feeds = {}
            for name in batch[0].feeds:
                joined = np.concatenate([request.feeds[name] for request in batch])
                feeds[name] = np.concatenate([joined, np.repeat(joined[-1:], padded - total, axis=0)])
            self.observe(total)
            try:
                outputs = await loop.run_in_executor(self.executor, self.run, feeds)
            except Exception as error:  # one bad batch must not stop the loop; its requests get the error
                log.exception("inference failed")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            offsets = np.cumsum([0, *sizes])
            for request, start, end in zip(batch, offsets[:-1], offsets[1:]):
                if not request.future.done():
                    request.future.set_result([output[start:end] for output in outputs])
