"""The inference engine: the loaded model behind two micro-batchers (generator, encoder) on one thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from infogan.images import to_uint8
from service.batcher import MicroBatcher
from service.latents import Latents, draw
from service.middleware import Metrics
from service.model import Model
from service.settings import Settings


class DeadlineExceeded(Exception):
    """A request waited longer than its deadline."""


class Engine:
    def __init__(self, model: Model, settings: Settings, metrics: Metrics):
        self.model, self.settings = model, settings
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="inference")  # one worker: no oversubscription
        self.ready = False
        wait_s = settings.batch_wait_ms / 1000

        def batcher(name: str, session) -> MicroBatcher:
            return MicroBatcher(lambda feeds: session.run(None, feeds), self.executor, settings.max_batch, wait_s,
                                settings.queue_size, metrics.batch_size.labels(name).observe,
                                metrics.queue_depth.labels(name).set)

        self.generator = batcher("generator", model.generator)
        self.encoder = batcher("encoder", model.encoder) if model.encoder else None
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
        self.tasks = [asyncio.create_task(b.serve()) for b in (self.generator, self.encoder) if b]
        await asyncio.get_running_loop().run_in_executor(self.executor, self.warm_up)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _submit(self, batcher: MicroBatcher, feeds: dict[str, np.ndarray], finish: Callable) -> Any:
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await batcher.submit(feeds, finish)
        except TimeoutError:
            raise DeadlineExceeded(f"no answer within the {self.settings.request_timeout_s:g} s deadline") from None

    async def generate(self, latents: Latents, finish: Callable[[np.ndarray], Any]) -> Any:
        """finish(uint8 images (B, C, H, W)), computed on the inference thread (e.g. PNG encoding)."""
        return await self._submit(self.generator, latents.feeds(), lambda outputs: finish(to_uint8(outputs[0])))

    async def encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Q's categorical probabilities (B, sum of sizes) and continuous means (B, n_cont)."""
        return await self._submit(self.encoder, {"images": images}, tuple)
