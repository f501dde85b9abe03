"""Log-probabilities from `tailor serve` on the tiny model, checked against a plain in-process forward pass."""

import json

import httpx
import pytest

from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import client_for


def _forward_logprobs(model, ids: list[int]):
    """log p(ids[t] | ids[:t]) for t >= 1, from one forward pass with no cache and no padding."""
    import torch

    with torch.inference_mode():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return lp, [float(lp[t - 1, ids[t]]) for t in range(1, len(ids))]


def test_echo_scores_the_prompt_as_a_forward_pass_does(start, tiny_model, tokenizer):
    url, _ = start()
    text = "The quick brown fox jumps over the lazy dog because"
    ids = tokenizer(text)["input_ids"]
    for prompt in (text, ids, [ids, ids[:5]]):
        r = httpx.post(f"{url}/completions", json={"model": "acme:zero_shot", "prompt": prompt, "max_tokens": 1,
                                                   "logprobs": 2, "echo": True, "temperature": 0}, timeout=60)
        assert r.status_code == 200, r.text
        choices = r.json()["choices"]
        assert len(choices) == (2 if isinstance(prompt[0], list) else 1)
        for choice, asked in zip(choices, [ids, ids[:5]]):
            lp = choice["logprobs"]
            n = len(asked)
            assert len(lp["tokens"]) == n + 1  # the prompt, then the one generated token
            assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
            full, expected = _forward_logprobs(tiny_model, asked)
            assert lp["token_logprobs"][1:n] == pytest.approx(expected, abs=1e-4)
            # The generated token is the greedy one, scored at the prompt's last position.
            assert lp["token_logprobs"][n] == pytest.approx(float(full[-1].max()), abs=1e-4)
            for token, logprob, top in zip(lp["tokens"][1:], lp["token_logprobs"][1:], lp["top_logprobs"][1:]):
                assert top[token] == logprob and 2 <= len(top) <= 3
            assert choice["text"].startswith(tokenizer.decode(asked))
            assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0


def test_bad_token_ids_are_a_400(start):
    url, _ = start()
    r = httpx.post(f"{url}/completions", json={"model": "acme:zero_shot", "prompt": [1, 10**9], "max_tokens": 1})
    assert r.status_code == 400 and "token ids" in r.json()["error"]["message"]


def test_chat_logprobs_are_the_answer_tokens_own(start, tiny_generator, tiny_model):
    from tailorlm.models.base import GenParams

    url, app = start()
    client = client_for(url)
    messages = [{"role": "user", "content": "Name a colour."}]
    answer = client.chat.completions.create(model="acme:zero_shot", messages=messages, max_tokens=6,
                                            logprobs=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    assert 1 <= len(content) <= 6 and all(len(c.top_logprobs) == 3 for c in content)
    # Greedy decoding by hand, one full forward pass per token: each answer token is the most likely one,
    # with the forward pass's log-probability.
    rung = app.state.gateway.router.rung("acme:zero_shot")  # the conversation the model sees (system prompt)
    ids = tiny_generator.encode(rung.prepare(messages, GenParams()).messages)
    for c in content:
        full, _ = _forward_logprobs(tiny_model, ids)
        assert c.logprob == pytest.approx(float(full[-1].max()), abs=1e-4)
        assert c.top_logprobs[0].logprob == pytest.approx(c.logprob, abs=1e-6)
        assert c.token == tiny_generator.tokenizer.decode([int(full[-1].argmax())])
        ids = ids + [int(full[-1].argmax())]

    body = {"model": "acme:zero_shot", "messages": messages, "max_tokens": 6, "logprobs": True, "top_logprobs": 3,
            "stream": True}
    streamed = []
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    streamed += (choice.get("logprobs") or {}).get("content", [])
    assert [c["logprob"] for c in streamed] == pytest.approx([c.logprob for c in content], abs=1e-6)
    assert [c["token"] for c in streamed] == [c.token for c in content]
