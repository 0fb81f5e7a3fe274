import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.batcher import MicroBatcher, Observers, Overloaded, Scheduler

WINDOW_S = 0.5  # long, so that whether a batch waited it is plain from the clock


def run_batcher(scenario, pad=False):
    """Runs scenario(batcher) against a batcher whose model doubles its input; returns (result, run sizes)."""
    runs: list[int] = []

    def double(feeds):
        runs.append(len(feeds["x"]))
        return [feeds["x"] * 2]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(double, Scheduler(executor), max_batch=8, wait_s=WINDOW_S, queue_size=16,
                                   pad=pad)
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


@pytest.mark.parametrize("pad", [False, True])
def test_window_waits_for_the_load_of_the_last_batch_and_no_longer(pad):
    async def scenario(batcher):
        lone = [await timed(batcher.submit(images(1, 2, 3))), await timed(batcher.submit(images(4)))]
        burst = await timed(*(batcher.submit(images(v)) for v in (5, 6, 7, 8)))

        async def late(value):  # three of the four clients come 50 ms after the first
            await asyncio.sleep(0.05)
            return await batcher.submit(images(value))

        staggered = await timed(batcher.submit(images(9)), *(late(v) for v in (10, 11, 12)))
        short = await timed(batcher.submit(images(13)), batcher.submit(images(14)))
        return lone, burst, staggered, short

    (lone, burst, staggered, short), runs = run_batcher(scenario, pad)
    # A lone client is answered without the window, whatever the size of its requests.
    assert [outputs for _, outputs in lone] == [[2, 4, 6], [8]]
    assert all(seconds < WINDOW_S / 2 for seconds, _ in lone)
    assert burst[1] == [10, 12, 14, 16]
    assert staggered[1] == [18, 20, 22, 24]
    assert staggered[0] < WINDOW_S / 2  # the window closed once the 4 requests of the last batch were queued
    assert short[1] == [26, 28] and short[0] >= WINDOW_S * 0.9  # fewer than expected: the whole window
    # 3 images run as 3, or padded to the power-of-two bucket 4 (the padding's outputs are not answered)
    assert runs == [4 if pad else 3, 1, 4, 4, 2]


def test_requests_over_max_batch_are_split_across_runs():
    async def scenario(batcher):
        return await timed(*(batcher.submit(images(v)) for v in range(12)))

    (_, outputs), runs = run_batcher(scenario)
    assert outputs == [2.0 * v for v in range(12)]
    assert runs == [8, 4]


def run_slow_batcher(scenario, seconds_per_batch=0.2, queue_size=16):
    """Like run_batcher, on a model that takes `seconds_per_batch` per run (a fake slow session)."""
    ran: list[float] = []
    abandoned: list[int] = []

    def slow(feeds):
        time.sleep(seconds_per_batch)
        ran.extend(float(v) for v in feeds["x"][:, 0])
        return [feeds["x"]]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            observers = Observers(abandoned=lambda: abandoned.append(1))
            batcher = MicroBatcher(slow, Scheduler(executor), max_batch=8, wait_s=0, queue_size=queue_size, observers=observers)
            # what warm_up measures on this model, which takes as long at any batch size
            batcher.batch_seconds = dict.fromkeys(batcher.buckets, seconds_per_batch)
            serving = asyncio.create_task(batcher.serve())
            try:
                return await scenario(batcher)
            finally:
                serving.cancel()

    return asyncio.run(main()), ran, abandoned


def test_work_over_its_budget_is_refused_at_once_with_the_real_drain_time():
    async def scenario(batcher):
        running = asyncio.ensure_future(batcher.submit(images(*range(8))))  # 0.2 s of work
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher.submit(images(*range(8))))  # 0.2 s more
        await asyncio.sleep(0)
        started = time.perf_counter()
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(images(1000), budget_s=0.3)  # would wait ~0.4 s
        refusal_s = time.perf_counter() - started
        admitted = await batcher.submit(images(2000), budget_s=1.0)
        await asyncio.gather(running, queued)
        return refused.value, refusal_s, admitted

    (refused, refusal_s, admitted), ran, _ = run_slow_batcher(scenario)
    assert refused.reason == "expected_wait" and refusal_s < 0.01
    # the 16 images ahead at 25 ms each, then one slot: a mean-sized request (8 images, moving average) later
    assert 0.3 < refused.retry_after_s < 0.45 + 8 * 0.025
    assert float(admitted[0][0, 0]) == 2000.0 and 1000.0 not in ran


def test_a_queue_of_full_batches_is_priced_at_the_full_batch_time():
    """After single-image requests (a run's fixed cost dominates: 40 ms per image), a burst of full batches
    costs 40 ms per 8 images, well within budget: it must not be refused at the single-image rate."""
    async def scenario(batcher):
        await asyncio.get_running_loop().run_in_executor(None, batcher.warm_up, images(0))
        for value in range(5):
            await batcher.submit(images(value))
        burst = [batcher.submit(images(*range(8)), budget_s=0.3) for _ in range(4)]  # ~0.16 s of work in all
        return await asyncio.gather(*burst)

    answers, _, _ = run_slow_batcher(scenario, seconds_per_batch=0.04)
    assert [len(answer[0]) for answer in answers] == [8, 8, 8, 8]


def test_a_stale_partial_batch_time_never_prices_over_a_full_batch():
    async def scenario(batcher):
        batcher.batch_seconds[4] = 5.0  # a time measured during a busy start-up, never run since
        running = asyncio.ensure_future(batcher.submit(images(*range(8))))  # 0.05 s
        await asyncio.sleep(0.01)
        admitted = await batcher.submit(images(*range(4)), budget_s=0.3)  # then 4 images: at most 0.05 s more
        await running
        return admitted

    admitted, _, _ = run_slow_batcher(scenario, seconds_per_batch=0.05)
    assert len(admitted[0]) == 4


def test_an_idle_batcher_takes_any_request_and_a_full_queue_refuses():
    async def scenario(batcher):
        alone = await batcher.submit(images(*range(8)), budget_s=0.001)  # over budget, but nothing is ahead
        first = asyncio.ensure_future(batcher.submit(images(1)))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.submit(images(2)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(images(3))
        await asyncio.gather(first, second)
        return alone, refused.value

    (alone, refused), _, _ = run_slow_batcher(scenario, seconds_per_batch=0.05, queue_size=1)
    assert len(alone[0]) == 8 and refused.reason == "queue_full"


def test_a_cancelled_request_is_never_computed():
    async def scenario(batcher):
        running = asyncio.ensure_future(batcher.submit(images(1)))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.submit(images(99)))  # queued behind the running batch
        await asyncio.sleep(0)
        gone.cancel()  # what a disconnect or a deadline does to the caller
        await running
        return await batcher.submit(images(3))

    result, ran, abandoned = run_slow_batcher(scenario, seconds_per_batch=0.05)
    assert float(result[0][0, 0]) == 3.0 and ran == [1.0, 3.0] and abandoned == [1]


def test_return_slots_relax_once_a_flood_is_over():
    """A flood hands out return slots further and further ahead; once the batcher has gone idle, a refused
    client is told the real wait again, not the end of a virtual queue of clients who may never come back."""
    async def scenario(batcher):
        running = asyncio.ensure_future(batcher.submit(images(*range(8))))
        await asyncio.sleep(0.01)
        flood = []
        for _ in range(200):
            try:
                await batcher.submit(images(*range(8)), budget_s=0.0)
            except Overloaded as error:
                flood.append(error.retry_after_s)
        await running
        await batcher.submit(images(1))  # idle: the flood is over
        running = asyncio.ensure_future(batcher.submit(images(*range(8))))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as after:
            await batcher.submit(images(*range(8)), budget_s=0.0)
        await running
        return flood, after.value.retry_after_s

    (flood, after), _, _ = run_slow_batcher(scenario, seconds_per_batch=0.05)
    assert flood[-1] > 5 * flood[0] and after < flood[0] * 2


def test_the_engine_names_its_batchers_and_refuses_any_other_name():
    from service.engine import Engine, Inference
    from service.metrics import Metrics
    from service.model import load_model
    from service.settings import Settings
    from tests.conftest import ROOT

    model, settings = load_model(ROOT / "models" / "mnist"), Settings()
    inference = Inference(settings, model.provider)
    engine = Engine("mnist", model, settings, Metrics(), inference)
    try:
        assert engine.batcher("generator") is engine.generator and engine.batcher("encoder") is engine.encoder
        assert inference.scheduler.batchers == [engine.generator, engine.encoder]  # one scheduler prices both
        with pytest.raises(KeyError):
            engine.batcher("anything")  # no silent fallback to the generator
    finally:
        inference.stop()


def test_batchers_on_one_thread_price_each_others_work():
    """The encoder's queue is work the generator's requests wait behind: admission counts it."""
    seconds_per_batch = 0.05

    def slow(feeds):
        time.sleep(seconds_per_batch)
        return [feeds["x"]]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            scheduler = Scheduler(executor)
            generator, encoder = (MicroBatcher(slow, scheduler, max_batch=8, wait_s=0, queue_size=64) for _ in range(2))
            for batcher in (generator, encoder):
                batcher.batch_seconds = dict.fromkeys(batcher.buckets, seconds_per_batch)
            serving = [asyncio.create_task(b.serve()) for b in (generator, encoder)]
            try:
                idle = await generator.submit(images(1), budget_s=0.001)  # an idle thread takes anything
                uploads = [asyncio.ensure_future(encoder.submit(images(*range(8)))) for _ in range(8)]  # ~0.4 s
                await asyncio.sleep(0.01)
                with pytest.raises(Overloaded) as refused:
                    await generator.submit(images(2), budget_s=0.2)
                admitted = await generator.submit(images(3), budget_s=2.0)
                await asyncio.gather(*uploads)
                return idle, refused.value, admitted
            finally:
                for task in serving:
                    task.cancel()

    idle, refused, admitted = asyncio.run(main())
    assert float(idle[0][0, 0]) == 1.0 and float(admitted[0][0, 0]) == 3.0
    assert refused.reason == "expected_wait" and refused.retry_after_s > 0.2


def test_answers_are_finished_off_the_inference_thread():
    """Batch 1's finish waits for batch 2's run: on one thread for both this would never end."""
    second_ran = threading.Event()

    def run(feeds):
        if float(feeds["x"][0, 0]) == 2:
            second_ran.set()
        return [feeds["x"]]

    def finish_after_the_second_run(outputs):
        assert second_ran.wait(5), "the inference thread was blocked by the finishing"
        return threading.current_thread().name

    async def main():
        with ThreadPoolExecutor(1, "inference") as executor, ThreadPoolExecutor(1, "finishing") as finisher:
            batcher = MicroBatcher(run, Scheduler(executor, finisher), max_batch=8, wait_s=0, queue_size=16)
            serving = asyncio.create_task(batcher.serve())
            try:
                first = asyncio.ensure_future(batcher.submit(images(1), finish_after_the_second_run))
                await asyncio.sleep(0.05)
                second = await batcher.submit(images(2))
                return await first, second
            finally:
                serving.cancel()

    first, second = asyncio.run(main())
    assert first.startswith("finishing") and float(second[0][0, 0]) == 2.0


@pytest.mark.parametrize("pad", [False, True])
def test_a_partial_batch_is_priced_at_the_images_it_runs(pad):
    """Padded, 3 images cost a run of 4; at their own size, 3/4 of it."""
    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(lambda feeds: [feeds["x"]], Scheduler(executor), max_batch=8, wait_s=0,
                                   queue_size=16, pad=pad)
            batcher.batch_seconds = {1: 0.010, 2: 0.016, 4: 0.040, 8: 0.080}
            return batcher.seconds_for(3), batcher.seconds_for(11), batcher.seconds_for(16)

    three, eleven, sixteen = asyncio.run(main())
    assert three == pytest.approx(0.040 if pad else 0.030)
    assert eleven == pytest.approx(0.080 + three) and sixteen == pytest.approx(0.160)
