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


def images(*values: float):
    return {"x": np.array(values, np.float32)[:, None]}


async def timed(*requests):
    """(seconds until every request was answered, their outputs flattened in order)."""
    started = time.perf_counter()
    outputs = await asyncio.gather(*requests)
    return time.perf_counter() - started, [float(v) for output in outputs for v in output[0][:, 0]]


def test_window_waits_for_the_load_of_the_last_batch_and_no_longer():
    async def scenario(batcher):
        lone = [await timed(batcher.submit(images(1, 2, 3))), await timed(batcher.submit(images(4)))]
        burst = await timed(*(batcher.submit(images(v)) for v in (5, 6, 7, 8)))

        async def late(value):  # three of the four clients come 50 ms after the first
            await asyncio.sleep(0.05)
            return await batcher.submit(images(value))

        staggered = await timed(batcher.submit(images(9)), *(late(v) for v in (10, 11, 12)))
        short = await timed(batcher.submit(images(13)), batcher.submit(images(14)))
        return lone, burst, staggered, short

    (lone, burst, staggered, short), runs = run_batcher(scenario)
    # A lone client is answered without the window, whatever the size of its requests.
    assert [outputs for _, outputs in lone] == [[2, 4, 6], [8]]
    assert all(seconds < WINDOW_S / 2 for seconds, _ in lone)
    assert burst[1] == [10, 12, 14, 16]
    assert staggered[1] == [18, 20, 22, 24]
    assert staggered[0] < WINDOW_S / 2  # the window closed once the 4 requests of the last batch were queued
    assert short[1] == [26, 28] and short[0] >= WINDOW_S * 0.9  # fewer than expected: the whole window
    assert runs == [4, 1, 4, 4, 2]  # 3 images padded to the power-of-two bucket 4


def test_requests_over_max_batch_are_split_across_runs():
    async def scenario(batcher):
        return await timed(*(batcher.submit(images(v)) for v in range(12)))

    (_, outputs), runs = run_batcher(scenario)
    assert outputs == [2.0 * v for v in range(12)]
    assert runs == [8, 4]
