"""The local backend's decode loop on a tiny random Llama with the real SmolLM2 tokenizer."""

import pytest

from tailorlm.models.base import GenParams

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPTS = [
    QUESTION,
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name three colours of the rainbow, please."}],
    [{"role": "user", "content": "hi"}],
]


def test_prompt_uses_the_tokenizers_chat_template(tiny_generator, tokenizer):
    ids = tiny_generator.encode(QUESTION)
    expected = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(ids) == expected
    assert expected.endswith("<|im_start|>assistant\n")
    assert tiny_generator.generate(QUESTION, GenParams(max_tokens=3)).usage.prompt_tokens == len(ids)


@pytest.mark.parametrize("messages", PROMPTS)
def test_stream_concatenates_to_generate_at_temperature_zero(tiny_generator, messages):
    params = GenParams(max_tokens=24)
    full = tiny_generator.generate(messages, params)
    chunks = list(tiny_generator.stream(messages, params))
    assert "".join(c.text for c in chunks) == full.text
    assert full.text  # the random model does say something
    assert chunks[-1].finish_reason == full.finish_reason
    assert chunks[-1].usage == full.usage
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_max_tokens_ends_with_length(tiny_generator):
    c = tiny_generator.generate(QUESTION, GenParams(max_tokens=5))
    assert c.finish_reason == "length"
    assert c.usage.completion_tokens == 5


def test_left_padded_batch_matches_one_at_a_time(tiny_generator):
    params = GenParams(max_tokens=16)
    singles = [tiny_generator.generate(m, params).text for m in PROMPTS]
    batched = [c.text for c in tiny_generator.generate_batch(PROMPTS, params, batch_size=3)]
    assert batched == singles
    assert len({len(tiny_generator.encode(m)) for m in PROMPTS}) == 3  # padding really was needed


def test_stop_string_cuts_the_answer_and_is_not_included(tiny_generator):
    free = tiny_generator.generate(QUESTION, GenParams(max_tokens=30)).text
    stop = free[len(free) // 2 : len(free) // 2 + 3]
    assert len(stop.strip()) > 0
    expected = free[: free.find(stop)]
    params = GenParams(max_tokens=30, stop=[stop])
    got = tiny_generator.generate(QUESTION, params)
    assert got.text == expected
    assert got.finish_reason == "stop"
    assert "".join(c.text for c in tiny_generator.stream(QUESTION, params)) == expected


def _greedy_ids(generator, messages, n):
    """Greedy continuation by full forward passes, no KV cache: the reference for the decode loop."""
    import torch

    ids = generator.encode(messages)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(generator.model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[-n:]


def test_cached_decode_matches_plain_greedy(tiny_generator):
    expected = tiny_generator.tokenizer.decode(_greedy_ids(tiny_generator, QUESTION, 12), skip_special_tokens=True)
    assert tiny_generator.generate(QUESTION, GenParams(max_tokens=12)).text == expected


def test_generation_stops_at_eos(tiny_generator):
    ids = _greedy_ids(tiny_generator, QUESTION, 8)
    # Declare the model's 4th greedy token an end-of-sequence token: the answer must end before it.
    tiny_generator.eos_ids = {ids[3]}
    c = tiny_generator.generate(QUESTION, GenParams(max_tokens=8))
    assert c.finish_reason == "stop"
    first = ids.index(ids[3])
    assert c.usage.completion_tokens == first + 1
    assert c.text == tiny_generator.tokenizer.decode(ids[:first], skip_special_tokens=True)


def test_sampling_is_reproducible_with_a_seed(tiny_generator):
    def sample(seed):
        return tiny_generator.generate(QUESTION, GenParams(max_tokens=20, temperature=1.0, seed=seed)).text

    assert sample(7) == sample(7)
    assert len({sample(s) for s in range(4)}) > 1


def test_top_p_keeps_only_the_nucleus():
    import torch

    from tailorlm.models.local import _pick

    logits = torch.tensor([[5.0, 4.0, -10.0, -10.0]])
    rng = torch.Generator().manual_seed(0)
    picks = {_pick(logits, GenParams(temperature=1.0, top_p=0.5), rng).item() for _ in range(50)}
    assert picks == {0}
    picks = {_pick(logits, GenParams(temperature=1.0, top_p=0.99), rng).item() for _ in range(200)}
    assert picks == {0, 1}


def test_prompt_longer_than_context_is_a_clear_error(tiny_generator):
    from tailorlm.errors import TailorError

    with pytest.raises(TailorError, match="context is 512"):
        tiny_generator.generate([{"role": "user", "content": "word " * 600}])


def test_prefix_cache_gives_the_same_answers_and_is_reused(tiny_generator, monkeypatch):
    system = {"role": "system", "content": "You route tickets for a file sync company. " * 6}
    batches = [[[system, {"role": "user", "content": q}] for q in qs]
               for qs in (["Refund me", "Login broken again today"], ["Sync conflict on file x.txt", "Hi"])]
    params = GenParams(max_tokens=6)
    cached = [c.text for b in batches for c in tiny_generator.generate_batch(b, params)]
    assert tiny_generator._prefixes, "the shared system prompt should have been cached"
    prefix = tiny_generator._prefixes[0][0]
    assert len(prefix) >= 40 and len(tiny_generator._prefixes) == 1  # the second batch reused the first's prefix

    calls = []
    forward = tiny_generator.model.forward
    monkeypatch.setattr(tiny_generator.model, "forward", lambda *a, **kw: calls.append(kw["input_ids"].shape) or forward(*a, **kw))
    tiny_generator.generate_batch(batches[0], params)
    assert calls[0][1] < len(prefix)  # the first forward pass only encodes what follows the cached prefix

    monkeypatch.setattr(tiny_generator, "MIN_PREFIX", 10**9)  # no prefix caching: the plain path
    plain = [c.text for b in batches for c in tiny_generator.generate_batch(b, params)]
    assert cached == plain
