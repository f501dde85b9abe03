"""Local generation with transformers: the default backend, running in-process on CPU or GPU.

One decode loop serves streaming, single and batched generation, so they cannot drift apart:
the chat template comes from the tokenizer, batches are left-padded, generation stops on any
EOS id and on stop strings (which, as in the OpenAI API, are not part of the answer).
"""

import time
from pathlib import Path
from typing import Iterator

from tailorlm.errors import ModelNotAvailable, TailorError
from tailorlm.models.base import Chunk, Completion, GenParams, Messages, Usage, collect
from tailorlm.models.kv import returned_cache, with_cache


class LocalGenerator:
    """Generate with a transformers causal LM.

    >>> gen = LocalGenerator.load("smollm2-135m-instruct")  # doctest: +SKIP
    >>> gen.generate([{"role": "user", "content": "What is the capital of France?"}]).text  # doctest: +SKIP
    'The capital of France is Paris.'
    """

    def __init__(self, model, tokenizer, name: str = "local"):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = next(model.parameters()).device
        eos = {tokenizer.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos |= set(gen_eos) if isinstance(gen_eos, list) else {gen_eos}
        self.eos_ids = {i for i in eos if i is not None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.max_context = getattr(model.config, "max_position_embeddings", None) or 2048
        self._torch = torch
        self._prefixes: list[tuple[tuple[int, ...], list]] = []  # (prompt prefix ids, its per-layer (k, v)), newest first

    @classmethod
    def load(cls, model: str, dtype: str = "auto", trust_remote_code: bool = False, name: str | None = None) -> "LocalGenerator":
        """Load an embedded model name, a local folder or a Hugging Face model id."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # Tailor shows its own progress; a bar per load is noise
        path = resolve_model_path(model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code)
        except OSError as e:
            raise ModelNotAvailable(f"cannot load model {model!r}: {str(e).splitlines()[0]}") from e
        return cls(lm.to(device), tokenizer, name=name or model)

    def encode(self, messages: Messages) -> list[int]:
        """Token ids of the chat-templated prompt, ending where the assistant's answer starts."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, messages: Messages, params: GenParams | None = None) -> Completion:
        return collect(self.stream(messages, params), self.name, time.perf_counter())

    def stream(self, messages: Messages, params: GenParams | None = None) -> Iterator[Chunk]:
        for _, chunk in self._decode([self.encode(messages)], params or GenParams()):
            yield chunk

    def generate_batch(self, batch: list[Messages], params: GenParams | None = None, batch_size: int = 8) -> list[Completion]:
        """Generate for many conversations, `batch_size` at a time, in input order."""
        params = params or GenParams()
        out: list[Completion] = []
        for start in range(0, len(batch), batch_size):
            began = time.perf_counter()
            prompts = [self.encode(m) for m in batch[start : start + batch_size]]
            parts: list[list[str]] = [[] for _ in prompts]
            done: list[Completion | None] = [None] * len(prompts)
            for row, chunk in self._decode(prompts, params):
                parts[row].append(chunk.text)
                if chunk.finish_reason:
                    done[row] = Completion("".join(parts[row]), chunk.finish_reason, chunk.usage, self.name)
            elapsed = time.perf_counter() - began
            for c in done:
                c.latency_s = elapsed
            out.extend(done)
        return out

    def _decode(self, prompts: list[list[int]], params: GenParams,
                constraints: list[dict | None] | None = None) -> Iterator[tuple[int, Chunk]]:
        """The decode loop: yields (row, chunk) as text becomes final, one last chunk per row.

        `constraints` holds each row's own constraint spec (models/constrain.py); by default every
        row takes `params.constraint`.
        """
        torch = self._torch
        longest = max(len(p) for p in prompts)
        if longest >= self.max_context:
            raise TailorError(f"prompt is {longest} tokens; the model's context is {self.max_context}")
        # Compiled before any forward pass, so a bad schema fails at once.
        masks = self._row_masks(constraints if constraints is not None else [params.constraint] * len(prompts))
        budget = min(params.max_tokens, self.max_context - longest)
        past, ids, mask, positions = self._prefill_inputs(prompts)
        rng = None
        if params.temperature > 0:
            rng = torch.Generator(device=self.device)
            rng.manual_seed(params.seed if params.seed is not None else int(time.time_ns() % 2**63))

        texts = [_StopText(self.tokenizer, params.stop) for _ in prompts]
        finished = [False] * len(prompts)
        generated = [0] * len(prompts)
        step_ids, step_pos = ids, positions
        for step in range(budget):
            with torch.inference_mode():
                out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                                 use_cache=True, **with_cache(past))
            past = returned_cache(out)
            logits = out.logits[:, -1, :].float()
            if masks is not None:
                with torch.inference_mode():  # the logits may be the forward's own (inference) tensor
                    masks.apply(logits, finished)
            nxt = _pick(logits, params, rng)
            for row, token in enumerate(nxt.tolist()):
                if finished[row]:
                    continue
                generated[row] += 1
                reason = None
                if token in self.eos_ids:
                    reason = "stop"
                    delta = texts[row].flush()
                else:
                    delta, hit = texts[row].push(token)
                    if hit:
                        reason = "stop"
                    elif masks is not None and masks.accept(row, token):
                        reason = "stop"  # the grammar is complete: only EOS could follow
                        delta += texts[row].flush()
                    elif step == budget - 1:
                        reason = "length"
                        delta += texts[row].flush()
                if reason:
                    finished[row] = True
                    yield row, Chunk(delta, reason, Usage(len(prompts[row]), generated[row]))
                elif delta:
                    yield row, Chunk(delta)
            if all(finished):
                return
            # Finished rows keep decoding pad tokens: cheaper than reshaping the KV cache.
            nxt = torch.where(torch.tensor(finished, device=self.device), self.pad_id, nxt)
            step_ids = nxt[:, None]
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        for row in range(len(prompts)):  # budget was 0: nothing could be generated
            if not finished[row]:
                yield row, Chunk(texts[row].flush(), "length", Usage(len(prompts[row]), generated[row]))

    def _row_masks(self, specs: list[dict | None]):
        """A `constrain.RowMasks` for the batch's constrained rows; None when no row has a constraint."""
        if all(s is None for s in specs):
            return None
        from tailorlm.models.constrain import RowMasks, grammars_for

        head = self.model.get_output_embeddings()
        vocab = head.weight.shape[0] if head is not None else self.model.config.vocab_size
        return RowMasks(grammars_for(self.tokenizer, vocab, self.eos_ids), specs)

    def score_choices(self, conversations: list[Messages], choices: list[str]) -> list[list[float]]:
        """Each choice's summed log-probability as the whole answer, per conversation (models/scoring.py)."""
        from tailorlm.models.scoring import score_choices

        return score_choices(self, conversations, choices)

    def _prefill_inputs(self, prompts: list[list[int]]):
        """(cache, ids, attention mask, position ids) for the first forward pass over `prompts`.

        The prompts' shared start (system prompt, few-shot examples, rag instructions) is encoded
        once and its KV cache reused across rows and calls ("prefix caching"); `ids` and
        `positions` cover what follows it, `mask` the whole row. Left padding (after the shared
        prefix) keeps every row's last prompt token in the final column, so one slice of the logits
        gives each row's next-token distribution.
        """
        torch = self._torch
        start, past = self._shared_prefix(prompts)
        rest = [p[start:] for p in prompts]
        width = max(len(r) for r in rest)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), start + width), dtype=torch.long)
        mask[:, :start] = 1
        for i, r in enumerate(rest):
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, start + width - len(r) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        return past, ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)[:, start:]

    # Shorter shared starts are not worth a separate forward pass.
    MIN_PREFIX = 16
    KEEP_PREFIXES = 2

    def _shared_prefix(self, prompts: list[list[int]]):
        """(length, cache) for the longest start all prompts share, reusing a cached encoding.

        Every row keeps at least one token of its own, whose logits start the answer. A cached
        prefix that agrees with this one for m tokens is cut to m: in a causal model the keys and
        values of the first m tokens do not depend on what follows them.
        """
        from transformers import DynamicCache

        torch = self._torch
        limit = min(len(p) for p in prompts) - 1
        n = 0
        while n < limit and all(p[n] == prompts[0][n] for p in prompts):
            n += 1
        if n < self.MIN_PREFIX:
            return 0, None
        head = prompts[0][:n]
        best, kv = 0, None
        for ids, cached in self._prefixes:
            m = 0
            top = min(len(ids), n)
            while m < top and ids[m] == head[m]:
                m += 1
            if m > best:
                best, kv = m, cached
        if best < max(self.MIN_PREFIX, n // 2):
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([head], device=self.device), use_cache=True)
            kv = [(layer.keys, layer.values) for layer in returned_cache(out).layers]
            self._prefixes = [(tuple(head), kv)] + self._prefixes[: self.KEEP_PREFIXES - 1]
            best = n
        cache = DynamicCache()
        for i, (k, v) in enumerate(kv):
            cache.update(k[:, :, :best].expand(len(prompts), -1, -1, -1), v[:, :, :best].expand(len(prompts), -1, -1, -1), i)
        return best, cache


def _pick(logits, params: GenParams, rng):
    import torch

    if params.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest set of tokens whose mass reaches top_p (always at least one).
        drop = sorted_probs.cumsum(-1) - sorted_probs > params.top_p
        sorted_probs[drop] = 0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=rng).squeeze(-1)


class _StopText:
    """Incremental detokenisation that holds back text which might turn into a stop string."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, [s for s in stops if s]
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0

    def push(self, token: int) -> tuple[str, bool]:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a multi-byte character split across tokens: wait for the rest
            return "", False
        self.text = text
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.text = text[: min(hits)]
            return self.flush(), True
        hold = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        safe = len(text) - hold
        delta, self.emitted = text[self.emitted : safe], max(self.emitted, safe)
        return delta, False

    def flush(self) -> str:
        delta, self.emitted = self.text[self.emitted :], len(self.text)
        return delta


def resolve_model_path(model: str) -> str:
    """An embedded model name becomes its cached folder (pulled on first use); a folder stays a
    folder; anything else is taken as a Hugging Face id, which works offline only if cached."""
    from tailorlm.models import embedded

    if model in embedded.EMBEDDED:
        return str(embedded.ensure(model))
    path = Path(model).expanduser()
    if path.exists():
        return str(path)
    if model.startswith((".", "/", "~")):
        raise ModelNotAvailable(f"model folder not found: {model}")
    return model
