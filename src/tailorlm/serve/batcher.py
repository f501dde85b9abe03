"""Dynamic batching: concurrent requests to local models share one decode loop.

On a CPU one batched forward pass of 16 rows costs little more than one of a single row, so
answering concurrent requests together multiplies throughput (docs/benchmarks.md, "Serving").
A request becomes a `Job` with one row per answer (`n`). The `Batcher`'s worker thread takes rows
from a bounded queue, waits a few milliseconds for more to arrive, and decodes the rows that can
share a loop through `LocalGenerator._decode`: the same model and adapter, the same max_tokens and
stop strings, and at temperature > 0 the same sampling parameters. A seeded sampled request is
decoded alone, so its answer does not depend on what else was running. Each row's chunks are
streamed back to its request as they are decoded.

A full queue refuses new work (`Overloaded`, HTTP 429) instead of growing without bound. A
cancelled job (the client disconnected) gets no more chunks, and a decode whose remaining rows are
all cancelled stops at once. Generators that are not local (an OpenAI-compatible upstream, vLLM)
batch on their own side; `Direct` calls them in threads, bounded the same way.
"""

import asyncio
import threading
import time
from collections import deque
from typing import AsyncIterator, Callable, Iterator

from tailorlm.models.base import Chunk, GenParams

# How long the batcher waits for more requests after the latest arrived (at most 8x that in all); the
# server's and `tailor serve`'s default too.
WAIT_MS = 20.0

POLL_S = 0.25  # how often a waiting request checks whether its client is still there


class Overloaded(Exception):
    """The queue is full: the client should retry later (HTTP 429 with Retry-After)."""


class ClientGone(Exception):
    """The client disconnected before its answer was complete."""


class Job:
    """One request's answers: its rows run on a worker thread, their chunks come back here.

    Create it inside the event loop; worker threads call `put`, the request awaits `results`.
    """

    def __init__(self, n: int = 1):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.n = n
        self.cancelled = False

    def put(self, index: int, item: Chunk | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, item))
        except RuntimeError:  # the event loop is gone (server shutting down): nobody is listening
            self.cancelled = True

    def cancel(self) -> None:
        self.cancelled = True

    async def results(self, disconnected: Callable | None = None) -> AsyncIterator[tuple[int, Chunk]]:
        """(row, chunk) pairs until every row has its last chunk; a backend's exception is raised here.

        `disconnected` (an async callable) is polled while waiting; when it says the client is gone
        the job is cancelled and `ClientGone` raised.
        """
        left, checked = self.n, time.monotonic()
        try:
            while left:
                try:
                    index, item = await asyncio.wait_for(self.queue.get(), POLL_S)
                except asyncio.TimeoutError:
                    index, item = None, None
                if disconnected is not None and time.monotonic() - checked >= POLL_S:
                    checked = time.monotonic()
                    if await disconnected():
                        raise ClientGone()
                if item is None:
                    continue
                if isinstance(item, BaseException):
                    raise item
                left -= bool(item.finish_reason)
                yield index, item
        finally:
            if left:
                self.cancel()


class _Row:
    __slots__ = ("job", "index", "generator", "prompt", "params", "key")

    def __init__(self, job: Job, index: int, generator, prompt: list[int], params: GenParams):
        self.job, self.index, self.generator, self.prompt, self.params = job, index, generator, prompt, params
        self.key = _batch_key(self)


def _batch_key(row: _Row) -> tuple:
    """Rows with equal keys can be decoded in one loop and give the answers they would alone."""
    gen, p = row.generator, row.params
    # Pooled generators of one base share its weights; the adapter decides the answer.
    model = (id(getattr(gen, "shared", gen)), getattr(gen, "adapter", None))
    if len(row.prompt) + p.max_tokens > gen.max_context:
        return model, "alone", id(row)  # a batch's budget is set by its longest prompt
    if p.temperature <= 0:
        return model, "greedy", p.max_tokens, tuple(p.stop)
    if p.seed is not None:
        return model, "seeded", id(row.job)  # one random stream per seed: never shared with strangers
    return model, "sampled", p.temperature, p.top_p, p.max_tokens, tuple(p.stop)


class Batcher:
    """Queue rows for local generators and decode compatible ones together on one worker thread.

    >>> batcher = Batcher(max_batch=16, max_queue=64); batcher.start()  # doctest: +SKIP
    >>> batcher.submit(job, generator, [generator.encode(messages)], GenParams())  # doctest: +SKIP
    """

    def __init__(self, max_batch: int = 16, max_queue: int = 64, wait_ms: float = WAIT_MS, on_batch: Callable | None = None):
        self.max_batch, self.max_queue, self.wait_s = max_batch, max_queue, wait_ms / 1000
        self.on_batch = on_batch  # called with each batch's size (metrics)
        self.running = 0
        self._waiting: deque[_Row] = deque()
        self._cv = threading.Condition()
        self._last_arrival = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Rows waiting for a decode slot."""
        return len(self._waiting)

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="tailor-batcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for row in self._waiting:
            row.job.put(row.index, RuntimeError("the server is shutting down"))
        self._waiting.clear()

    def submit(self, job: Job, generator, prompts: list[list[int]], params: GenParams) -> None:
        """Queue one row per prompt (all or none); raises `Overloaded` when the queue is full."""
        rows = [_Row(job, i, generator, p, params) for i, p in enumerate(prompts)]
        with self._cv:
            if len(self._waiting) + len(rows) > self.max_queue:
                raise Overloaded(f"{len(self._waiting)} requests are waiting (the limit is {self.max_queue})")
            self._waiting.extend(rows)
            self._last_arrival = time.monotonic()
            self._cv.notify_all()

    def _work(self) -> None:
        while True:
            rows = self._next_batch()
            if rows is None:
                return
            if rows:
                self._decode(rows)

    def _next_batch(self) -> list[_Row] | None:
        with self._cv:
            while not self._waiting and not self._stopping:
                self._cv.wait()
            # Let more requests join: wait until none has arrived for `wait_s`, counting from when the
            # worker became free (clients answered at the end of the last batch are about to come back),
            # and at most 8 x wait_s in all. Starting too early costs a latecomer a whole decode.
            free = time.monotonic()
            cap = free + 8 * self.wait_s
            while len(self._waiting) < self.max_batch and not self._stopping:
                left = min(max(self._last_arrival, free) + self.wait_s, cap) - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            if self._stopping:
                return None
            live = [r for r in self._waiting if not r.job.cancelled]
            batch = [r for r in live if r.key == live[0].key][: self.max_batch] if live else []
            taken = {id(r) for r in batch}
            self._waiting = deque(r for r in live if id(r) not in taken)
            return batch

    def _decode(self, rows: list[_Row]) -> None:
        if self.on_batch:
            self.on_batch(len(rows))
        done = [False] * len(rows)
        self.running = len(rows)
        # Each row keeps its own constraint (models/constrain.py): rows that differ only in it share a loop.
        steps = rows[0].generator._decode([r.prompt for r in rows], rows[0].params, [r.params.constraint for r in rows])
        try:
            for i, chunk in steps:
                row = rows[i]
                done[i] = done[i] or bool(chunk.finish_reason)
                if not row.job.cancelled:
                    row.job.put(row.index, chunk)
                if all(d or r.job.cancelled for d, r in zip(done, rows)):
                    break  # only cancelled rows are left: stop decoding for them
        except Exception as e:  # the whole batch failed; every unfinished row hears why
            for d, r in zip(done, rows):
                if not d:
                    r.job.put(r.index, e)
        finally:
            steps.close()
            self.running = 0


class Direct:
    """Run streams from non-local generators in threads, at most `max_inflight` at once."""

    def __init__(self, max_inflight: int = 64):
        self.max_inflight = max_inflight
        self.running = 0
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        return 0  # the upstream queues for itself

    def submit(self, job: Job, streams: list[Callable[[], Iterator[Chunk]]]) -> None:
        with self._lock:
            if self.running + len(streams) > self.max_inflight:
                raise Overloaded(f"{self.running} upstream calls are in flight (the limit is {self.max_inflight})")
            self.running += len(streams)
        for index, open_stream in enumerate(streams):
            threading.Thread(target=self._run, args=(job, index, open_stream), daemon=True).start()

    def _run(self, job: Job, index: int, open_stream) -> None:
        try:
            chunks = open_stream()
            for chunk in chunks:
                if job.cancelled:
                    getattr(chunks, "close", lambda: None)()
                    return
                job.put(index, chunk)
        except Exception as e:
            job.put(index, e)
        finally:
            with self._lock:
                self.running -= 1
