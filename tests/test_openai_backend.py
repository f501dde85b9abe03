"""The OpenAI-compatible backend against a scripted OpenAI-wire server on loopback."""

import pytest

from tailorlm.errors import TailorError
from tailorlm.models.base import GenParams
from tailorlm.models.openai_compat import OpenAIEmbedder, OpenAIGenerator
from tests.conftest import free_port

Q = [{"role": "user", "content": "hi"}]


def test_generate_returns_text_usage_and_finish_reason(upstream):
    upstream.answers.append("hello there")
    gen = OpenAIGenerator(upstream.base_url, "m")
    c = gen.generate(Q, GenParams(max_tokens=12, stop=["\n"], seed=3, temperature=0.5))
    assert (c.text, c.finish_reason, c.usage.completion_tokens) == ("hello there", "stop", 2)
    sent = upstream.requests[0]
    assert (sent["max_tokens"], sent["stop"], sent["seed"], sent["temperature"]) == (12, ["\n"], 3, 0.5)


def test_stream_concatenates_to_the_answer_and_ends_with_usage(upstream):
    upstream.answers.append("one two three")
    chunks = list(OpenAIGenerator(upstream.base_url, "m").stream(Q))
    assert "".join(c.text for c in chunks) == "one two three"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 3
    assert upstream.requests[0]["stream_options"] == {"include_usage": True}


def test_batch_keeps_input_order(upstream):
    upstream.answers.extend(["a", "b", "c"])
    gen = OpenAIGenerator(upstream.base_url, "m", concurrency=1)
    assert [c.text for c in gen.generate_batch([Q, Q, Q])] == ["a", "b", "c"]


def test_api_key_comes_from_the_named_environment_variable(upstream, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test-123")
    upstream.answers.append("ok")
    OpenAIGenerator(upstream.base_url, "m", api_key_env="MY_KEY").generate(Q)
    assert upstream.headers[0]["authorization"] == "Bearer sk-test-123"
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(TailorError, match="environment variable MY_KEY is not set"):
        OpenAIGenerator(upstream.base_url, "m", api_key_env="MY_KEY")


def test_unreachable_endpoint_is_a_clear_error():
    gen = OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1", "m")
    gen.client = gen.client.with_options(max_retries=0)
    with pytest.raises(TailorError, match="cannot reach http://127.0.0.1"):
        gen.generate(Q)


def test_embeddings_endpoint(upstream):
    vecs = OpenAIEmbedder(upstream.base_url, "e", batch_size=2).embed(["a", "bbb", "cc"])
    assert vecs == [[1.0, 1.0], [3.0, 1.0], [2.0, 1.0]]
    assert len(upstream.requests) == 2  # batched


def test_project_config_selects_the_openai_backend(upstream, cli, tmp_path):
    upstream.answers.append("from the endpoint")
    (tmp_path / "tailor.yaml").write_text(
        f"name: p\ntask: {{description: x}}\nmodels:\n  generator: {{backend: openai, base_url: '{upstream.base_url}', model: served}}\n")
    result = cli("chat", "hi", "--json")
    assert result.exit_code == 0, result.output
    assert '"text": "from the endpoint"' in result.output
    assert upstream.requests[0]["model"] == "served"
    assert upstream.requests[0]["messages"][0] == {"role": "system", "content": "x"}
