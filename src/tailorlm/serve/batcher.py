"""Continuous batching: concurrent requests to local models share one running decode loop.

On a CPU one batched forward pass of 16 rows costs little more than one of a single row, so
answering concurrent requests together multiplies throughput (docs/benchmarks.md, "Serving").
A request becomes a `Job` with one row per answer (`n`). The `Batcher`'s worker thread keeps one
`models.decode.DecodeBatch` per model (base weights + adapter) and steps them in turn; rows from the
bounded queue join a batch at its next step (prefilled in chunks, so a long prompt does not stall
the rows decoding) and leave it when they finish. Sampling parameters, seeds, stop strings,
max_tokens and constraints are per row, so any requests to one model share a batch and a seeded
request gets the same answer whatever else runs. Each row's chunks are streamed back to its
request as they are decoded.

A full queue refuses new work (`Overloaded`, HTTP 429 with Retry-After) instead of growing without
bound, and at most `max_batch` rows decode at once, so memory stays bounded. A cancelled job (the
client disconnected) gets no more chunks and its rows leave the batch at the next step.
Generators that are not local (an OpenAI-compatible upstream, vLLM) batch on their own side;
`Direct` calls them in threads, bounded the same way.
"""

import asyncio
import threading
import time
from collections import deque
from contextlib import nullcontext
from typing import AsyncIterator, Callable, Iterator

from tailorlm.models.base import Chunk, GenParams
from tailorlm.models.decode import DecodeBatch, Row

# How long an idle batcher waits for more requests after the latest arrived (at most 8x that in all); the
# server's and `tailor serve`'s default too. 60 ms, not 20: with 16 clients arriving together, 20 ms often
# split them into two prefill groups, the second waiting for the first's prefill and a decode step (TTFT p95
# 1.29-1.48 s against 0.91-1.22 s at 60 ms, tokens/s 0.80-0.93x against 0.87-1.08x the fixed batch of 16,
# alternated runs, docs/benchmarks.md). A lone request pays the 60 ms once, when the server is idle.
WAIT_MS = 60.0

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


def _engine_key(generator) -> tuple:
    """Rows whose generators share a key run in one `DecodeBatch`: the same weights and adapter."""
    # Pooled generators of one base share its weights; the adapter decides the answer.
    return id(getattr(generator, "shared", generator)), getattr(generator, "adapter", None)


class Batcher:
    """Continuous batching for local generators: one worker thread keeps a `DecodeBatch` per model
    running, and queued rows join it at its next step.

    >>> batcher = Batcher(max_batch=16, max_queue=64); batcher.start()  # doctest: +SKIP
    >>> batcher.submit(job, generator, [generator.encode(messages)], GenParams())  # doctest: +SKIP
    """

    def __init__(self, max_batch: int = 16, max_queue: int = 64, wait_ms: float = WAIT_MS, on_batch: Callable | None = None):
        self.max_batch, self.max_queue, self.wait_s = max_batch, max_queue, wait_ms / 1000
        self.on_batch = on_batch  # called with the number of rows joining a decode together (metrics)
        self._waiting: deque[tuple] = deque()  # (job, index, generator, prompt, params)
        self._engines: dict[tuple, tuple] = {}  # key -> (generator, DecodeBatch)
        self._cv = threading.Condition()
        self._last_arrival = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Rows waiting for a decode slot."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Rows in the running decode batches (prefilling or decoding)."""
        return sum(batch.size for _, batch in list(self._engines.values()))

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
        gone = RuntimeError("the server is shutting down")
        for job, index, *_ in self._waiting:
            job.put(index, gone)
        self._waiting.clear()
        for _, batch in self._engines.values():
            self._fail(batch, gone)
        self._engines.clear()

    def submit(self, job: Job, generator, prompts: list[list[int]], params: GenParams) -> None:
        """Queue one row per prompt (all or none); raises `Overloaded` when the queue is full."""
        with self._cv:
            if len(self._waiting) + len(prompts) > self.max_queue:
                raise Overloaded(f"{len(self._waiting)} requests are waiting (the limit is {self.max_queue})")
            self._waiting.extend((job, i, generator, p, params) for i, p in enumerate(prompts))
            self._last_arrival = time.monotonic()
            self._cv.notify_all()

    def _work(self) -> None:
        while self._admit():
            for key, (gen, batch) in list(self._engines.items()):
                self._step(gen, batch)
                if not batch.busy:
                    del self._engines[key]

    def _admit(self) -> bool:
        """Move waiting rows into the decode batches, up to max_batch rows in all; False when stopping."""
        with self._cv:
            while not self._waiting and not self._engines and not self._stopping:
                self._cv.wait()
            if not self._engines:
                # Idle: let a burst of requests arrive before the first prefill, so they share it. Wait until
                # none has arrived for `wait_s`, at most 8 x wait_s in all. Once decoding, rows join at each step.
                free = time.monotonic()
                cap = free + 8 * self.wait_s
                while len(self._waiting) < self.max_batch and not self._stopping:
                    left = min(max(self._last_arrival, free) + self.wait_s, cap) - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
            if self._stopping:
                return False
            room = self.max_batch - self.running
            taken: list[tuple] = []
            while self._waiting and len(taken) < room:
                item = self._waiting.popleft()
                if not item[0].cancelled:
                    taken.append(item)
        joined: dict[tuple, int] = {}
        for job, index, gen, prompt, params in taken:
            key = _engine_key(gen)
            if key not in self._engines:
                self._engines[key] = (gen, DecodeBatch(gen))
            try:
                # Answer i of a request samples from seed + i: n answers differ, each reproducible.
                self._engines[key][1].add(Row(gen, prompt, params, params.constraint, tag=(job, index), offset=index))
            except Exception as e:  # a prompt longer than the context, a schema the grammar library refuses
                job.put(index, e)
                continue
            joined[key] = joined.get(key, 0) + 1
        if self.on_batch:
            for n in joined.values():
                self.on_batch(n)
        return True

    def _step(self, gen, batch) -> None:
        for row in batch.rows + list(batch.joining) + (batch.group.rows if batch.group else []):
            if row.tag[0].cancelled:
                batch.drop(row)  # its client went away: the row leaves at this step
        try:
            with getattr(gen, "_pinned", nullcontext)():
                chunks = batch.step()
        except Exception as e:  # the whole batch failed; every unfinished row hears why
            self._fail(batch, e)
            return
        for row, chunk in chunks:
            job, index = row.tag
            if not job.cancelled:
                job.put(index, chunk)

    @staticmethod
    def _fail(batch, error: BaseException) -> None:
        for row in batch.rows + list(batch.joining) + (batch.group.rows if batch.group else []):
            if not row.finished:
                row.tag[0].put(row.tag[1], error)
        batch.rows, batch.group = [], None
        batch.joining.clear()


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
