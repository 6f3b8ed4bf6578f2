"""Micro-batching: group concurrent requests for the embedding + model step, off the event loop.

Like BentoML's adaptive batching, in miniature. ``workers`` loops each own one inference thread;
a loop that is free takes what is queued (waiting up to ``max_wait_s`` for more, 0 by default:
under load the queue fills while the threads are busy, and a lone request never waits) and
runs it as one batch. A loop takes at most its fair share of the queue (the queue split across
the loops, capped at ``max_size``), so one thread never holds a long batch while the other
idles. With ONNX Runtime on one thread per call, two loops keep both cores busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Result]],
        max_size: int = 8,
        max_wait_s: float = 0.0,
        workers: int = 1,
        on_batch: Callable[[int], None] = lambda _: None,
    ) -> None:
        if max_size < 1 or workers < 1 or max_wait_s < 0:
            raise ValueError("max_size and workers must be at least 1, max_wait_s at least 0")
        self._run_batch = run_batch
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.workers = workers
        self._on_batch = on_batch
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._loop()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._executor.shutdown(wait=True)

    async def submit(self, item: Item) -> Result:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[Item]) -> list[Result]:
        assert self._queue is not None, "MicroBatcher.start() was not called"
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self._queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures))

    async def _next_batch(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_size and self._queue.empty() and time.monotonic() < deadline:
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), deadline - time.monotonic()))
            except TimeoutError:
                break
        share = math.ceil((len(batch) + self._queue.qsize()) / self.workers)
        while len(batch) < min(self.max_size, share) and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            items = [item for item, _ in batch]
            self._on_batch(len(items))
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, items)
            except Exception as exc:  # every waiting request gets the error, none hangs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
