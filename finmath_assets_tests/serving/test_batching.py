"""The micro-batcher on its own: fair shares, no waiting when idle, errors reach every caller."""

import asyncio
import threading
import time

import pytest

from serving.batching import MicroBatcher


def test_concurrent_items_are_split_fairly_across_the_workers() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        seen.append(items)
        gate.wait(5)  # hold the first batches until everything is queued
        return [i * 10 for i in items]

    async def main() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, max_size=32, workers=2)
        batcher.start()
        pending = asyncio.gather(*(batcher.submit(i) for i in range(21)))
        await asyncio.sleep(0.2)
        gate.set()
        results = await pending
        await batcher.stop()
        return results

    assert asyncio.run(main()) == [i * 10 for i in range(21)]
    assert sorted(i for batch in seen for i in batch) == list(range(21))
    # 21 queued, 2 loops: the first takes its share, ceil(21 / 2) = 11, not all 21 (which would
    # leave the other thread idle), and no later batch is bigger
    assert len(seen[0]) == 11 and max(len(batch) for batch in seen) == 11 and len(seen) >= 3


def test_a_lone_request_does_not_wait_for_company() -> None:
    async def main() -> float:
        batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: items, workers=2)
        batcher.start()
        await batcher.submit(0)  # warm the thread pool
        started = time.perf_counter()
        await batcher.submit(1)
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(main()) < 0.05


def test_a_failed_batch_fails_each_of_its_callers_and_the_batcher_goes_on() -> None:
    def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return items

    async def main() -> None:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, workers=1)
        batcher.start()
        with pytest.raises(ValueError, match="unlucky"):
            await batcher.submit_many([12, 13])
        assert await batcher.submit(14) == 14
        await batcher.stop()

    asyncio.run(main())


def test_bad_batcher_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MicroBatcher(lambda items: items, workers=0)
