"""Local generation with transformers: the default backend, running in-process on CPU or GPU.

One decode loop (models/decode.py, which the server keeps running across requests) serves
streaming, single and batched generation, so they cannot drift apart: the chat template comes
from the tokenizer, batches are left-padded, generation stops on any EOS id and on stop strings
(which, as in the OpenAI API, are not part of the answer). The prefix cache lives here.
"""

import time
from pathlib import Path
from typing import Iterator

from tailorlm.errors import ModelNotAvailable
from tailorlm.models.base import Chunk, Completion, GenParams, Messages, collect
from tailorlm.models.decode import StopText as _StopText, _pick  # noqa: F401 - their home was here
from tailorlm.models.kv import cache_of, layers_of, returned_cache, with_cache


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
    def load(cls, model: str, dtype: str = "auto", trust_remote_code: bool = False, name: str | None = None,
             quant: str = "none") -> "LocalGenerator":
        """Load an embedded model name, a local folder or a Hugging Face model id; `quant` (int8) see models/quant.py."""
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
        if quant != "none":
            from tailorlm.models.quant import quantize

            quantize(lm, quant)
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
        """Decode `prompts` together: yields (row, chunk) as text becomes final, one last chunk per row.

        `constraints` holds each row's own constraint spec (models/constrain.py); by default every
        row takes `params.constraint`. The loop itself is `decode.DecodeBatch`, which the server
        keeps running across requests.
        """
        from tailorlm.models.decode import DecodeBatch, Row

        specs = constraints if constraints is not None else [params.constraint] * len(prompts)
        batch = DecodeBatch(self)
        # Rows are made first, so a prompt that is too long or a bad schema fails before any forward pass.
        rows = [Row(self, p, params, c, tag=i, offset=i) for i, (p, c) in enumerate(zip(prompts, specs))]
        for row in rows:
            batch.add(row)
        while batch.busy:
            for row, chunk in batch.step():
                yield row.tag, chunk

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
        start, past = self._shared_prefix(prompts)
        return (past, *self._padded(prompts, start))

    def _padded(self, prompts: list[list[int]], start: int):
        """(ids, mask, positions): what follows the shared `start` of each prompt, left-padded."""
        torch = self._torch
        rest = [p[start:] for p in prompts]
        width = max(len(r) for r in rest)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), start + width), dtype=torch.long)
        mask[:, :start] = 1
        for i, r in enumerate(rest):
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, start + width - len(r) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)[:, start:]

    # Shorter shared starts are not worth a separate forward pass.
    MIN_PREFIX = 16
    KEEP_PREFIXES = 2

    def _shared_prefix(self, prompts: list[list[int]]):
        """(length, cache) for the longest start all prompts share, encoding what the prefix cache lacks."""
        n, best, kv = self._prefix_plan(prompts)
        if n == 0:
            return 0, None
        if best < n:
            torch = self._torch
            past = self._expand(kv, best, 1) if best else None
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([prompts[0][best:n]], device=self.device),
                                 position_ids=torch.arange(best, n, device=self.device)[None], use_cache=True,
                                 logits_to_keep=1, **with_cache(past))
            kv = self._remember(prompts[0][:n], layers_of(returned_cache(out)))
        return n, self._expand(kv, n, len(prompts))

    def _prefix_plan(self, prompts: list[list[int]]):
        """(n, best, kv): the prompts' shared start (0 when shorter than MIN_PREFIX) and the cached
        prefix that agrees with it longest (its per-layer (k, v); best = 0 when none is worth using).

        Every row keeps at least one token of its own, whose logits start the answer. A cached
        prefix that agrees with this one for m tokens is cut to m: in a causal model the keys and
        values of the first m tokens do not depend on what follows them.
        """
        limit = min(len(p) for p in prompts) - 1
        n = 0
        while n < limit and all(p[n] == prompts[0][n] for p in prompts):
            n += 1
        if n < self.MIN_PREFIX:
            return 0, 0, None
        head = prompts[0][:n]
        best, kv = 0, None
        for ids, cached in self._prefixes:
            m = 0
            top = min(len(ids), n)
            while m < top and ids[m] == head[m]:
                m += 1
            if m > best:
                best, kv = m, cached
        return (n, best, kv) if best >= self.MIN_PREFIX else (n, 0, None)

    def _remember(self, head: list[int], layers: list) -> list:
        """Keep `head`'s per-layer (k, v) (one row) as a cached prefix, replacing the prefixes it extends."""
        kv = [(k[:1, :, : len(head)].clone(), v[:1, :, : len(head)].clone()) for k, v in layers]
        key = tuple(head)
        kept = [(ids, c) for ids, c in self._prefixes if key[: len(ids)] != ids]
        self._prefixes = [(key, kv)] + kept[: self.KEEP_PREFIXES - 1]
        return kv

    @staticmethod
    def _expand(kv: list, length: int, rows: int):
        """A cache of the first `length` columns of the cached prefix `kv`, for `rows` rows."""
        return cache_of([(k[:, :, :length].expand(rows, -1, -1, -1), v[:, :, :length].expand(rows, -1, -1, -1))
                         for k, v in kv])


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
