"""Dynamic batching, overload and cancellation, on a real server over the tiny model.

The decode lock of the pool's shared base (the real mechanism that serialises decodes) is held by
the test to keep the worker busy at a known moment, so queue states are deterministic.
"""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import client_for


def _pool(project, generator):
    from tailorlm.models.pool import ModelPool

    pool = ModelPool(project, generator=generator)
    return pool, pool.default().shared.lock


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_concurrent_requests_are_decoded_together_and_answer_as_alone(start, project, tiny_generator):
    pool, lock = _pool(project, tiny_generator)
    url, app = start(pool=pool, batch_wait_ms=20)
    batcher = app.state.gateway.batcher
    client = client_for(url)
    questions = [f"Question {i}: " + "tell me more " * i for i in range(8)]  # different lengths: left padding

    def ask(q):
        return client.chat.completions.create(model="acme:zero_shot", max_tokens=12,
                                              messages=[{"role": "user", "content": q}]).choices[0].message.content

    alone = [ask(q) for q in questions]
    with ThreadPoolExecutor(8) as threads:
        with lock:  # the first request takes the worker and blocks; the other seven queue up
            futures = [threads.submit(ask, questions[0])]
            _wait_for(lambda: batcher.running == 1)
            futures += [threads.submit(ask, q) for q in questions[1:]]
            _wait_for(lambda: batcher.depth == 7)
        together = [f.result() for f in futures]
    assert together == alone
    metrics = httpx.get(url.removesuffix("/v1") + "/metrics").text
    assert 'tailor_batch_size_bucket{le="4"} 9' in metrics  # 8 alone + the first one
    assert 'tailor_batch_size_bucket{le="8"} 10' in metrics  # then the seven together


def test_a_full_queue_answers_429_with_retry_after_and_recovers(start, project, tiny_generator):
    pool, lock = _pool(project, tiny_generator)
    url, app = start(pool=pool, max_queue=1, batch_wait_ms=0)
    batcher = app.state.gateway.batcher
    client = client_for(url)

    def ask():
        return client.chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=3)

    with ThreadPoolExecutor(2) as threads:
        with lock:
            running = threads.submit(ask)
            _wait_for(lambda: batcher.running == 1)
            queued = threads.submit(ask)
            _wait_for(lambda: batcher.depth == 1)
            with pytest.raises(openai.RateLimitError) as refused:
                ask()
            raw = httpx.post(f"{url}/chat/completions", json={"model": "acme:zero_shot", "messages": [
                {"role": "user", "content": "hi"}]})
        assert running.result().choices[0].finish_reason and queued.result().choices[0].message is not None
    assert refused.value.body["code"] == "queue_full"
    assert raw.status_code == 429 and raw.headers["retry-after"] == "1" and raw.json()["error"]["type"] == "rate_limit_error"
    assert httpx.get(url.removesuffix("/v1") + "/health").json()["queue_depth"] == 0
    assert ask().choices[0].message.content is not None  # served again once the queue drains


@pytest.fixture
def slow_steps(fresh_generator):
    """Count the model's forward passes and make each take 5 ms, so a 400-token answer takes seconds."""
    calls = []

    def hook(module, args, output):
        calls.append(time.monotonic())
        time.sleep(0.005)

    handle = fresh_generator.model.register_forward_hook(hook)
    yield fresh_generator, calls
    handle.remove()


@pytest.mark.parametrize("stream", [True, False])
def test_a_disconnected_client_stops_its_generation(start, project, slow_steps, stream):
    generator, calls = slow_steps
    pool, _ = _pool(project, generator)
    url, _ = start(pool=pool)
    body = {"model": "acme:zero_shot", "messages": [{"role": "user", "content": "Write a long story."}],
            "max_tokens": 400, "stream": stream}
    if stream:
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            while '"content":' not in next(lines) or len(calls) < 5:
                pass
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/chat/completions", json=body, timeout=0.5)
    _wait_for(lambda: project.store.select("traces", status=499), timeout=10)
    # The worker notices at its next chunk, after the forward pass under way: wait until no forward pass
    # has happened for 0.5 s (a live decode makes one every ~10 ms, so this never holds while it runs).
    seen, quiet_since, deadline = len(calls), time.monotonic(), time.monotonic() + 10
    while time.monotonic() - quiet_since < 0.5:
        assert time.monotonic() < deadline, "generation did not stop"
        time.sleep(0.05)
        if len(calls) != seen:
            seen, quiet_since = len(calls), time.monotonic()
    assert len(calls) < 200  # the row stopped, far short of its 400 tokens
    partial = json.loads(project.store.select("traces", status=499)[0]["response"])
    assert partial["choices"][0]["message"]["content"] and partial["choices"][0]["finish_reason"] is None


def test_upstream_calls_are_bounded_too(start, project):
    """Non-local generators are called directly, in threads, under the same queue limit."""
    from tests.helpers import ScriptedGenerator

    release = threading.Event()

    class Slow(ScriptedGenerator):
        def stream(self, messages, params=None):
            release.wait(10)
            yield from super().stream(messages, params)

    from tailorlm.models.pool import ModelPool

    url, app = start(pool=ModelPool(project, generator=Slow(default="fine")), max_queue=2)
    client = client_for(url)

    def ask():
        return client.chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "hi"}])

    with ThreadPoolExecutor(2) as threads:
        waiting = [threads.submit(ask) for _ in range(2)]
        _wait_for(lambda: app.state.gateway.direct.running == 2)
        with pytest.raises(openai.RateLimitError):
            ask()
        release.set()
        assert [f.result().choices[0].message.content for f in waiting] == ["fine", "fine"]


def test_a_request_sent_mid_decode_joins_the_running_batch(start, project, slow_steps):
    """Continuous batching: the newcomer's first token (and whole answer) comes while the long answer is still
    being decoded, and both answers at temperature 0 are what each gets alone."""
    generator, calls = slow_steps
    pool, _ = _pool(project, generator)
    url, app = start(pool=pool)
    client = client_for(url)
    long_q, short_q = "Write a long story.", "Say hi."

    def ask(q, n):
        return client.chat.completions.create(model="acme:zero_shot", max_tokens=n,
                                              messages=[{"role": "user", "content": q}]).choices[0].message.content

    alone = ask(long_q, 150), ask(short_q, 5)
    events = []  # (what, when)
    with ThreadPoolExecutor(1) as threads:
        body = {"model": "acme:zero_shot", "messages": [{"role": "user", "content": long_q}], "max_tokens": 150,
                "stream": True}
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=60) as r:
            lines, text = r.iter_lines(), ""
            for line in lines:
                if '"content":' in line and len(calls) > 10:
                    break  # the long answer is well under way
            joined = threads.submit(ask, short_q, 5)
            while not joined.done():
                line = next(lines)
                if line.startswith("data: {"):
                    text += "".join(c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"])
                    assert '"finish_reason":"length"' not in line.replace(" ", ""), "the long answer ended first"
            short = joined.result()
            rest = [line for line in lines]
    assert short == alone[1]
    assert any('"finish_reason": "length"' in line or '"finish_reason":"length"' in line for line in rest)
    assert app.state.gateway.batcher.running == 0


def test_a_long_prompt_is_prefilled_in_chunks_between_decode_steps(tiny_generator):
    from tailorlm.models.base import GenParams
    from tailorlm.models.decode import DecodeBatch, Row

    gen = tiny_generator
    batch = DecodeBatch(gen, chunk=32)
    running = batch.add(Row(gen, gen.encode([{"role": "user", "content": "Tell me a story."}]), GenParams(max_tokens=60)))
    while not running.generated:
        batch.step()  # its prefill: it is decoding from now on
    long = batch.add(Row(gen, gen.encode([{"role": "user", "content": "word " * 300}]), GenParams(max_tokens=3)))
    overlapped = 0  # steps that advanced the long prompt's prefill and gave the running row a token
    while not long.generated:
        before = running.generated
        batch.step()
        overlapped += batch.group is not None and long in batch.group.rows and running.generated == before + 1
    assert overlapped >= 300 // 32 - 1  # 32 columns per step: the running row never waited for the whole prompt


def test_sampled_and_seeded_rows_answer_as_alone_whatever_else_runs(tiny_generator):
    from tailorlm.models.base import GenParams

    gen = tiny_generator
    prompts = [gen.encode([{"role": "user", "content": q}]) for q in ("One", "Two two", "Three three three")]
    mixed = [GenParams(max_tokens=8, temperature=1.0, seed=5), GenParams(max_tokens=5), GenParams(max_tokens=8, temperature=0.7, seed=9, top_p=0.9)]

    def run(rows):
        from tailorlm.models.decode import DecodeBatch, Row

        batch, out = DecodeBatch(gen), {}
        for i, (p, params) in rows:
            batch.add(Row(gen, p, params, tag=i))
        while batch.busy:
            for row, chunk in batch.step():
                out[row.tag] = out.get(row.tag, "") + chunk.text
        return out

    together = run(list(enumerate(zip(prompts, mixed))))
    for i in range(3):
        assert together[i] == run([(i, (prompts[i], mixed[i]))])[i]


def test_the_cli_burst_window_is_the_batchers_default():
    """`tailor serve --batch-wait-ms` writes the batcher's default out (importing it would load torch for --help)."""
    import inspect

    from tailorlm.cli.serve import serve
    from tailorlm.serve.batcher import WAIT_MS

    assert inspect.signature(serve).parameters["batch_wait_ms"].default.default == WAIT_MS == 60.0
