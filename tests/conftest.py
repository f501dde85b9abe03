"""Shared fixtures.

Every test runs in its own temporary folder, with no TAILOR_PROJECT, so project state lands there.
The embedded models are cached once per machine (TAILOR_CACHE_DIR, default ~/.cache/tailor)
because fetching and converting them is slow; tests that damage a cache point TAILOR_CACHE_DIR at
their own folder.
Fast tests use a tiny random Llama with the real SmolLM2 tokenizer.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("TAILOR_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli():
    """Run `tailor ...` in-process through click's runner; returns the Result."""
    from tailorlm.cli import app

    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def smol_dir():
    from tailorlm.models.embedded import ensure

    return ensure("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    """A 2-layer Llama with hidden size 32: random, but with the real tokenizer's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_generator(tiny_model, tokenizer):
    import copy

    from tailorlm.models.local import LocalGenerator

    # A copy per test: a server attaches LoRA versions to its generator's model in place (peft injects
    # layers), and the session's tiny_model must stay the plain model for the tests that count its parameters.
    return LocalGenerator(copy.deepcopy(tiny_model), tokenizer, name="tiny")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tokenizer, tmp_path_factory):
    """The tiny model saved as an ordinary HF folder, for configs that point at a local path."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeUpstream:
    """A scripted OpenAI-compatible server on loopback: answers are queued, requests recorded.

    An answer is a text, or a list of tool calls ({"name", "arguments"}) sent as OpenAI's tool_calls.
    """

    def __init__(self):
        self.answers: list[str] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.requests.append(body)
                upstream.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.endswith("/embeddings"):
                    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
                    return self._json({"object": "list", "data": data, "model": body["model"],
                                       "usage": {"prompt_tokens": 1, "total_tokens": 1}})
                answer = upstream.answers.pop(0)
                if isinstance(answer, list):
                    return self._calls(body, answer)
                usage = {"prompt_tokens": 7, "completion_tokens": len(answer.split()), "total_tokens": 7 + len(answer.split())}
                if not body.get("stream"):
                    return self._json({"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                                       "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                                    "finish_reason": "stop"}], "usage": usage})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = answer.split(" ")
                for i, w in enumerate(words):
                    delta = {"content": w if i == 0 else " " + w}
                    self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")

            def _calls(self, body, calls):
                usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
                whole = [{"id": f"up_{i}", "type": "function", "function": c} for i, c in enumerate(calls)]
                if not body.get("stream"):
                    return self._json({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                       "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                                            "tool_calls": whole}, "finish_reason": "tool_calls"}],
                                       "usage": usage})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i, c in enumerate(calls):  # the name first, then the arguments in two pieces, as OpenAI streams them
                    half = len(c["arguments"]) // 2
                    for delta in ({"index": i, "id": f"up_{i}", "type": "function", "function": {"name": c["name"], "arguments": ""}},
                                  {"index": i, "function": {"arguments": c["arguments"][:half]}},
                                  {"index": i, "function": {"arguments": c["arguments"][half:]}}):
                        self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                                     "choices": [{"index": 0, "delta": {"tool_calls": [delta]}, "finish_reason": None}]})
                self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
                self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")

            def _event(self, obj):
                self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())

            def _json(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def upstream():
    server = FakeUpstream()
    yield server
    server.server.shutdown()
