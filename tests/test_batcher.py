import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.batcher import MicroBatcher

WINDOW_S = 0.5  # long, so that whether a batch waited it is plain from the clock


def run_batcher(scenario):
    """Runs scenario(batcher) against a batcher whose model doubles its input; returns (result, run sizes)."""
    runs: list[int] = []

    def double(feeds):
        runs.append(len(feeds["x"]))
        return [feeds["x"] * 2]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(double, executor, max_batch=8, wait_s=WINDOW_S, queue_size=16)
            serving = asyncio.create_task(batcher.serve())
            try:
                return await scenario(batcher)
            finally:
                serving.cancel()

    return asyncio.run(main()), runs


def one(value: float):
    return {"x": np.full((1, 1), value, np.float32)}


async def timed(*requests):
    started = time.perf_counter()
    outputs = await asyncio.gather(*requests)
    return time.perf_counter() - started, [float(output[0][0, 0]) for output in outputs]


def test_window_waits_for_the_load_of_the_last_batch_and_no_longer():
    async def scenario(batcher):
        lone = await timed(batcher.submit(one(1)))
        burst = await timed(*(batcher.submit(one(v)) for v in (2, 3, 4, 5)))

        async def late(value):  # three of the four clients come 50 ms after the first
            await asyncio.sleep(0.05)
            return await batcher.submit(one(value))

        staggered = await timed(batcher.submit(one(6)), *(late(v) for v in (7, 8, 9)))
        short = await timed(batcher.submit(one(10)), batcher.submit(one(11)))
        return lone, burst, staggered, short

    (lone, burst, staggered, short), runs = run_batcher(scenario)
    assert lone[1] == [2] and lone[0] < WINDOW_S / 2  # a lone client is answered without the window
    assert burst[1] == [4, 6, 8, 10]
    assert staggered[1] == [12, 14, 16, 18]
    assert staggered[0] < WINDOW_S / 2  # the window closed once the 4 images of the last batch were queued
    assert short[1] == [20, 22] and short[0] >= WINDOW_S * 0.9  # fewer than expected: the whole window
    assert runs == [1, 4, 4, 2]  # padded to the power-of-two buckets: 1, 4, 4, 2


def test_requests_over_max_batch_are_split_across_runs():
    async def scenario(batcher):
        return await timed(*(batcher.submit(one(v)) for v in range(12)))

    (_, outputs), runs = run_batcher(scenario)
    assert outputs == [2.0 * v for v in range(12)]
    assert runs == [8, 4]
