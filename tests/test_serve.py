"""`tailor serve`: the OpenAI-compatible endpoints, against a real uvicorn server on loopback,
driven by the official `openai` client, over the tiny random Llama (and the real 135M model, slow)."""

import json

import httpx
import openai
import pytest

from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import add_version, client_for

ASK = [{"role": "user", "content": "What does the Team plan cost?"}]


def test_models_lists_every_rung_version_alias_and_the_generator(start, project, fresh_generator, tiny_model):
    from tailorlm.models.pool import ModelPool

    version = add_version(project, "smollm2-135m-instruct", tiny_model)
    project.store.set_alias("model", "acme", "production", version["id"])
    url, _ = start(pool=ModelPool(project, generator=fresh_generator))
    client = client_for(url)
    names = [m.id for m in client.models.list().data]
    for name in ("acme:zero_shot", "acme:sft@v1", "acme@latest", "acme@production", "acme", "smollm2-135m-instruct",
                 "all-minilm-l6-v2"):
        assert name in names

    def answer(model):
        r = client.chat.completions.create(model=model, messages=ASK, max_tokens=12)
        return r.choices[0].message.content, r.tailor

    base, meta = answer("smollm2-135m-instruct")
    assert meta["model_version"] is None
    tuned, meta = answer("acme")  # the bare project name is the production version
    assert meta["model_version"] == "acme:sft@v1"
    assert answer("acme:sft@v1")[0] == answer("acme@production")[0] == tuned
    assert answer("acme:production")[0] == tuned  # the retired alias spelling still answers
    assert tuned != base  # the adapter is really applied
    rows = {r["model"]: r for r in project.store.select("traces")}
    assert rows["acme"]["model_version"] == "acme:sft@v1"
    assert rows["smollm2-135m-instruct"]["model_version"] is None


def test_streamed_chunks_concatenate_to_the_answer_at_temperature_0(start):
    url, _ = start()
    client = client_for(url)
    whole = client.chat.completions.create(model="acme:zero_shot", messages=ASK, max_tokens=24, temperature=0)
    events = list(client.chat.completions.create(model="acme:zero_shot", messages=ASK, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert text == whole.choices[0].message.content and text
    assert events[0].choices[0].delta.role == "assistant"
    assert [e.choices[0].finish_reason for e in events if e.choices][-1] == whole.choices[0].finish_reason == "length"
    assert events[-1].choices == [] and events[-1].usage.completion_tokens == whole.usage.completion_tokens == 24
    assert {e.id for e in events} == {events[0].id} != {whole.id}  # every response is its own trace

    raw = httpx.post(f"{url}/chat/completions", json={"model": "acme:zero_shot", "messages": ASK, "max_tokens": 5,
                                                      "stream": True}, timeout=30)
    assert raw.headers["content-type"].startswith("text/event-stream")
    lines = [ln for ln in raw.text.split("\n\n") if ln]
    assert lines[-1] == "data: [DONE]" and all(ln.startswith("data: ") for ln in lines)


def test_sampling_parameters_are_honoured(start):
    url, _ = start()
    client = client_for(url)

    def ask(**kw):
        return client.chat.completions.create(model="acme:zero_shot", messages=ASK, **kw)

    greedy = ask(max_tokens=30)
    text = greedy.choices[0].message.content
    assert greedy.choices[0].finish_reason == "length" and greedy.usage.completion_tokens == 30
    stop = text[len(text) // 2: len(text) // 2 + 3]
    cut = ask(max_tokens=30, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].message.content == text[: text.index(stop)]
    # top_p that keeps only the likeliest token is greedy decoding, whatever the temperature.
    assert ask(max_tokens=30, temperature=1.0, top_p=1e-9, seed=1).choices[0].message.content == text
    a, b = ask(max_tokens=20, temperature=1.0, seed=7), ask(max_tokens=20, temperature=1.0, seed=7)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert ask(max_tokens=20, temperature=1.0, seed=8).choices[0].message.content != a.choices[0].message.content
    many = ask(max_tokens=10, temperature=1.0, seed=3, n=3)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert len({c.message.content for c in many.choices}) > 1  # one random stream, three draws
    assert many.usage.prompt_tokens == greedy.usage.prompt_tokens  # the prompt is counted once
    assert many.usage.completion_tokens == 30


def test_text_completions_continue_raw_text(start, tiny_generator):
    from tailorlm.models.base import GenParams

    url, _ = start()
    client = client_for(url)
    prompt = "The capital of France is"
    r = client.completions.create(model="smollm2-135m-instruct", prompt=prompt, max_tokens=8)
    ids = tiny_generator.tokenizer(prompt)["input_ids"]
    expected = "".join(c.text for _, c in tiny_generator._decode([ids], GenParams(max_tokens=8)))
    assert r.choices[0].text == expected and r.object == "text_completion"
    assert r.usage.prompt_tokens == len(ids)
    streamed = client.completions.create(model="smollm2-135m-instruct", prompt=prompt, max_tokens=8, stream=True)
    assert "".join(e.choices[0].text for e in streamed if e.choices) == expected
    several = client.completions.create(model="acme:zero_shot", prompt=[prompt, "Once upon a time"], max_tokens=4, n=2)
    assert [c.index for c in several.choices] == [0, 1, 2, 3]
    assert several.choices[0].text == several.choices[1].text == expected[: len(several.choices[0].text)]


@pytest.fixture(scope="module")
def embedder():
    from tailorlm.config import EmbedderConfig
    from tailorlm.models import get_embedder

    return get_embedder(EmbedderConfig())


def test_embeddings_use_the_project_embedder(start, project, embedder):
    url, _ = start(embedder=embedder)
    client = client_for(url)
    texts = ["reset my password", "the invoice was charged twice"]
    r = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    got = [d.embedding for d in r.data]
    want = embedder.embed(texts)
    assert len(got[0]) == 384 and all(abs(x - y) < 1e-5 for u, v in zip(got, want) for x, y in zip(u, v))
    assert r.usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    trace = project.store.select("traces", endpoint="/v1/embeddings")[0]
    assert json.loads(trace["response"])["dimensions"] == 384


def test_traces_are_stored_redacted_with_model_latency_and_tokens(start, project):
    url, _ = start()
    client = client_for(url)
    r = client.chat.completions.create(model="acme:zero_shot", max_tokens=6, messages=[
        {"role": "user", "content": "I am jane.doe@example.com, call me on +44 7700 900417"}])
    row = project.store.select("traces", id=r.id)[0]  # the response id is the trace id
    stored = row["request"] + row["response"]
    assert "jane.doe@example.com" not in stored and "7700 900417" not in stored
    assert "[EMAIL]" in stored and "[PHONE]" in stored
    assert (row["status"], row["endpoint"], row["rung"]) == (200, "/v1/chat/completions", "zero_shot")
    assert row["latency_ms"] > 0 and row["completion_tokens"] == 6 and row["prompt_tokens"] == r.usage.prompt_tokens
    assert json.loads(row["response"])["choices"][0]["message"]["content"] == r.choices[0].message.content

    stream = client.chat.completions.create(model="acme:zero_shot", messages=ASK, max_tokens=4, stream=True)
    sid = [e.id for e in stream][0]
    assert project.store.select("traces", id=sid)[0]["completion_tokens"] == 4


def test_feedback_is_linked_to_its_trace_over_http_and_the_cli(start, project, cli):
    url, _ = start()
    r = client_for(url).chat.completions.create(model="acme:zero_shot", messages=ASK, max_tokens=4)
    sent = httpx.post(f"{url}/feedback", json={"trace_id": r.id, "thumbs": "down", "rating": 2,
                                               "correction": "Team costs $12; write to sales@acme.example", "comment": "wrong"})
    assert sent.status_code == 200, sent.text
    rows = {f["kind"]: f for f in project.store.select("feedback", trace_id=r.id)}
    assert set(rows) == {"thumbs", "rating", "correction"} and set(sent.json()["ids"]) == {f["id"] for f in rows.values()}
    assert rows["thumbs"]["value"] == "down" and rows["rating"]["value"] == "2" and rows["rating"]["comment"] == "wrong"
    assert rows["correction"]["value"] == "Team costs $12; write to [EMAIL]"

    missing = httpx.post(f"{url}/feedback", json={"trace_id": "chatcmpl-nope", "thumbs": "up"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "trace_not_found"
    assert httpx.post(f"{url}/feedback", json={"trace_id": r.id, "rating": 9}).status_code == 400
    assert httpx.post(f"{url}/feedback", json={"trace_id": r.id}).status_code == 400

    out = cli("feedback", r.id, "--thumbs", "up", "--comment", "better now", "-p", project.root, "--json")
    assert out.exit_code == 0, out.output
    assert project.store.select("feedback", id=json.loads(out.output)["ids"][0])[0]["value"] == "up"
    bad = cli("feedback", "chatcmpl-nope", "--thumbs", "up", "-p", project.root)
    assert bad.exit_code == 2 and "no trace 'chatcmpl-nope'" in bad.output


def test_errors_have_the_openai_shape(start, project):
    project.config.serve.max_request_bytes = 4096
    url, _ = start()
    client = client_for(url)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="acme:nope", messages=ASK)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="acme:zero_shot", messages=ASK, temperature=5)
    assert "temperature" in e.value.body["message"]
    cases = [
        httpx.post(f"{url}/chat/completions", content=b"{not json", headers={"content-type": "application/json"}),
        httpx.post(f"{url}/chat/completions", json={"model": "acme:zero_shot", "messages": []}),
        httpx.post(f"{url}/chat/completions", json={"model": "acme:zero_shot", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
        httpx.post(f"{url}/completions", json={"model": "acme:zero_shot", "prompt": ""}),
        httpx.post(f"{url}/chat/completions", json={"model": "acme:zero_shot", "messages": [
            {"role": "user", "content": "word " * 3000}]}),  # over max_request_bytes
        httpx.get(f"{url}/nowhere"),
    ]
    assert [c.status_code for c in cases] == [400, 400, 400, 400, 413, 404]
    for c in cases:
        assert set(c.json()["error"]) == {"message", "type", "code"}
    long = httpx.post(f"{url}/chat/completions", json={"model": "acme:zero_shot", "messages": [
        {"role": "user", "content": "word " * 700}]})
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"

    def chunked():  # no Content-Length: the limit is enforced while reading
        yield b'{"model": "acme:zero_shot", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}]}'

    big = httpx.post(f"{url}/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


def test_metrics_are_prometheus_text(start):
    import re

    url, _ = start()
    client = client_for(url)
    client.chat.completions.create(model="acme:zero_shot", messages=ASK, max_tokens=5)
    list(client.chat.completions.create(model="acme:zero_shot", messages=ASK, max_tokens=5, stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=ASK)
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert 'tailor_requests_total{endpoint="/v1/chat/completions",model="acme:zero_shot",status="200"} 2' in text
    assert 'tailor_requests_total{endpoint="/v1/chat/completions",model="other",status="404"} 1' in text  # not a series per name
    assert 'tailor_tokens_total{model="acme:zero_shot",type="completion"} 10' in text
    assert 'tailor_request_latency_seconds_count{endpoint="/v1/chat/completions"} 3' in text
    assert "tailor_time_to_first_token_seconds_count" in text and "tailor_queue_depth 0" in text
    chat_bucket = r'tailor_request_latency_seconds_bucket\{endpoint="/v1/chat/completions",le="[^"]+"\} (\d+)'
    buckets = [int(v) for v in re.findall(chat_bucket, text)]
    assert buckets == sorted(buckets) and buckets[-1] == 3


def test_health_and_openapi_are_served(start):
    url, _ = start()
    root = url.removesuffix("/v1")
    assert httpx.get(f"{root}/health").json() == {"status": "ok", "backend": "local", "queue_depth": 0}
    spec = httpx.get(f"{root}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/feedback"} <= set(spec["paths"])
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "422" not in chat and {"400", "404", "413", "429"} <= set(chat)
    assert "text/event-stream" in chat["200"]["content"]


@pytest.mark.slow
def test_the_embedded_model_streams_and_batches_like_it_generates(start, project):
    """The real 135M model: streamed = whole, and concurrent (batched) answers = sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    from tailorlm.models.local import LocalGenerator
    from tailorlm.models.pool import ModelPool

    url, _ = start(pool=ModelPool(project, generator=LocalGenerator.load("smollm2-135m-instruct")))
    client = client_for(url)
    questions = ["What is the capital of France?", "Name a primary colour.", "What is 2 + 2?", "Say hello in Spanish."]

    def ask(q, **kw):
        return client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=24,
                                              messages=[{"role": "user", "content": q}], **kw)

    alone = [ask(q).choices[0].message.content for q in questions]
    assert "Paris" in alone[0]
    streamed = "".join(e.choices[0].delta.content or "" for e in ask(questions[0], stream=True) if e.choices)
    assert streamed == alone[0]
    with ThreadPoolExecutor(4) as pool:
        together = [r.choices[0].message.content for r in pool.map(ask, questions)]
    assert together == alone


def test_the_tailor_serve_command_serves_until_stopped(tmp_path, tiny_model_dir):
    """`tailor serve` in its own process, on the configured generator (the tiny model's folder)."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import free_port
    from tests.serve_fixtures import write_project

    project = write_project(tmp_path / "acme", generator=tiny_model_dir)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tailorlm.cli", "serve", "-p", str(project.root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        r = client_for(f"http://127.0.0.1:{port}/v1").chat.completions.create(model="acme:zero_shot", messages=ASK, max_tokens=4)
        assert r.usage.completion_tokens == 4
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Serving acme at http://127.0.0.1:" in out and "POST /v1/chat/completions 200" in out
    assert project.store.select("traces", id=r.id)


def test_redaction_can_be_turned_off_and_reaches_nested_fields(project):
    from tailorlm.serve.traces import Traces, redact_json

    assert redact_json({"model": "a@b.example", "messages": [{"role": "user", "content": ["x@y.example", 3]}]}) == \
        {"model": "a@b.example", "messages": [{"role": "user", "content": ["[EMAIL]", 3]}]}
    Traces(project, redact=False).record("t-raw", "m", {"q": "x@y.example"}, {"a": "ok"}, 200, 0.1)
    Traces(project).record("t-red", "m", {"q": "x@y.example"}, {"a": "ok"}, 200, 0.1)
    assert "x@y.example" in project.store.select("traces", id="t-raw")[0]["request"]
    assert "x@y.example" not in project.store.select("traces", id="t-red")[0]["request"]


def test_invalid_requests_say_where_in_the_users_terms(start):
    """Issue 15's probe: '39: JSON decode error' and pydantic's `function-after[_clean(), str]` in 400s."""
    url, _ = start()

    def error(content):
        r = httpx.post(f"{url}/chat/completions", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert set(r.json()["error"]) == {"message", "type", "code"}
        return r.json()["error"]["message"]

    broken = b'{\n  "model": "acme:zero_shot",\n  "messages": [1,}\n'
    assert error(broken) == "body: invalid JSON at line 3 column 18: expecting value"
    assert error(b"{not json") == "body: invalid JSON at line 1 column 2: expecting property name enclosed in double quotes"

    def body(**fields):
        return json.dumps({"model": "acme:zero_shot", **fields}).encode()

    assert error(body(messages=[{"role": "user", "content": 5}])) == (
        "messages[0].content: input should be a valid string or a valid list")
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    assert error(body(messages=image)).startswith("messages[0].content[0].type: input should be 'text'")
    assert error(body(messages=[{"role": "wizard", "content": "a"}])).startswith("messages[0].role: input should be")
    assert error(body(messages=[{"role": "user", "content": "a"}], temperature="hot")) == (
        "temperature: input should be a valid number")
    assert error(json.dumps({"messages": ASK}).encode()) == "model: required field is missing"
    for message in [error(body(messages=image)), error(body(messages=[{"role": "user", "content": 5}]))]:
        assert "function-after" not in message and "list[" not in message and "body." not in message
