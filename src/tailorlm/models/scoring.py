"""Label scoring: how likely a model finds each allowed answer, given a conversation.

A classification rung is held to the task's labels by scoring, not by hoping the model stops
after a label: each label is written as the whole assistant turn (`label<end-of-turn>`, exactly as
the chat template renders it, so a fine-tuned model sees what it was trained on) and its
log-likelihood is summed over those tokens. The end-of-turn token matters: without it "billing"
would also collect the mass of "billing issue with my card".

The prompt is encoded once per conversation (with the generator's shared-prefix cache), and every
label continues from that cache in one small batch, so scoring 8 labels costs about one prefill
and a few tokens, less than generating a short answer.

>>> scores = score_choices(gen, [messages], ["billing", "login_sso"])  # doctest: +SKIP
>>> scores[0]  # summed log-probabilities, one per label, in the labels' order
[-0.31, -4.2]
"""

import math

from tailorlm.models.base import Messages
from tailorlm.models.kv import returned_cache, with_cache

# Rows of (conversation x label) continued at once; bounds the KV copy to a few hundred MB.
ROWS_PER_PASS = 32


def continuation_ids(tokenizer, choices: list[str], eos_ids: set[int]) -> list[list[int]]:
    """Each choice's tokens as the chat template writes a whole assistant turn, up to its end token."""
    probe = [{"role": "user", "content": "x"}]
    head = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    out = []
    for choice in choices:
        full = tokenizer.apply_chat_template(probe + [{"role": "assistant", "content": choice}], tokenize=False)
        if not full.startswith(head):  # a template that rewrites earlier turns: fall back to the bare text
            tail = choice
        else:
            tail = full[len(head):]
        ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
        end = next((i for i, t in enumerate(ids) if t in eos_ids), None)
        ids = ids[: end + 1] if end is not None else ids + [min(eos_ids)]
        out.append(ids)
    return out


def score_choices(gen, conversations: list[Messages], choices: list[str]) -> list[list[float]]:
    """Summed log-probabilities of each choice as the whole answer, per conversation.

    `gen` is a `LocalGenerator`. Conversations are scored together (one left-padded prefill), so
    pass them in batches of the size the generator should run.
    """
    import torch
    from transformers import DynamicCache

    if not conversations:
        return []
    conts = continuation_ids(gen.tokenizer, choices, gen.eos_ids)
    prompts = [gen.encode(m) for m in conversations]
    longest = max(len(p) for p in prompts) + max(len(c) for c in conts)
    if longest > gen.max_context:
        from tailorlm.errors import TailorError

        raise TailorError(f"prompt and label are {longest} tokens; the model's context is {gen.max_context}")
    past, ids, mask, positions = gen._prefill_inputs(prompts)
    n = len(prompts)
    with torch.inference_mode():
        out = gen.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                        **with_cache(past))
    first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # each label's first token
    layers = [(layer.keys, layer.values) for layer in returned_cache(out).layers]
    scores = [[float(first[i, c[0]]) for c in conts] for i in range(n)]

    # Later label tokens: every (conversation, label) row continues from its conversation's cache.
    tails = [c[:-1] for c in conts]  # inputs; the targets are c[1:]
    span = max(len(t) for t in tails)
    if span == 0:
        return scores
    k = len(conts)
    tail_ids = torch.full((k, span), gen.pad_id, dtype=torch.long)
    tail_mask = torch.zeros((k, span), dtype=torch.long)
    for j, t in enumerate(tails):
        tail_ids[j, :len(t)] = torch.tensor(t, dtype=torch.long)
        tail_mask[j, :len(t)] = 1
    tail_ids, tail_mask = tail_ids.to(gen.device), tail_mask.to(gen.device)
    step = max(1, ROWS_PER_PASS // k)
    for lo in range(0, n, step):
        rows = list(range(lo, min(n, lo + step)))
        cache = DynamicCache()
        for li, (kk, vv) in enumerate(layers):
            cache.update(kk[rows].repeat_interleave(k, 0), vv[rows].repeat_interleave(k, 0), li)
        row_mask = mask[rows].repeat_interleave(k, 0)
        batch_ids = tail_ids.repeat(len(rows), 1)
        batch_tail_mask = tail_mask.repeat(len(rows), 1)
        full_mask = torch.cat([row_mask, batch_tail_mask], dim=1)
        base = positions[rows, -1].repeat_interleave(k)[:, None] + 1
        pos = base + torch.arange(span, device=gen.device)[None, :]
        with torch.inference_mode():
            logits = gen.model(input_ids=batch_ids, attention_mask=full_mask, position_ids=pos, use_cache=True,
                               **with_cache(cache)).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        for a, i in enumerate(rows):
            for j, c in enumerate(conts):
                r = a * k + j
                for t, target in enumerate(c[1:]):
                    scores[i][j] += float(logp[r, t, target])
    return scores


def choose(scores: list[float], choices: list[str]) -> tuple[str, float, dict]:
    """The best-scoring choice, its probability among the choices (the confidence), and all scores."""
    best = max(range(len(choices)), key=lambda j: scores[j])
    top = max(scores)
    z = sum(math.exp(s - top) for s in scores)
    return choices[best], math.exp(scores[best] - top) / z, {c: round(s, 4) for c, s in zip(choices, scores)}
