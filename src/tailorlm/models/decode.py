"""The decode loop of local generation: a running batch that rows join between steps and leave when done.

`DecodeBatch` is what `LocalGenerator` generates with (one call's prompts added at once) and what the
server's `Batcher` keeps running (requests added as they arrive: continuous batching). Each `step()`
runs at most one prefill chunk for the rows that joined and one decode step for the running rows, so
a long prompt is encoded `PREFILL_CHUNK` columns at a time between decode steps instead of stalling
them. Everything that decides an answer is per row: sampling parameters, its own random generator
(a seeded row gives the same answer whatever else runs), stop strings, max_tokens, its constraint
(models/constrain.py) and log-probabilities. A joining group's cache is left-padded to the running
batch's width and concatenated; finished rows are cut out and all-padding columns trimmed, so the
cache holds at most max rows x the longest live row.
"""

import time
from collections import deque
from dataclasses import dataclass

from tailorlm.errors import TailorError
from tailorlm.models.base import Chunk, GenParams, TokenLogprob, Usage
from tailorlm.models.kv import cache_of, layers_of, returned_cache, with_cache

# Prompt columns encoded per prefill step. On this CPU a 128-column chunk of a 16-row group costs a few
# decode steps; smaller chunks pay the per-forward overhead more often (docs/benchmarks.md, "Serving").
PREFILL_CHUNK = 128


class Row:
    """One answer being generated: its prompt, its parameters and how far it has got."""

    def __init__(self, gen, prompt: list[int], params: GenParams, constraint: dict | None = None, tag=None,
                 offset: int = 0):
        import torch

        if len(prompt) >= gen.max_context:
            raise TailorError(f"prompt is {len(prompt)} tokens; the model's context is {gen.max_context}")
        self.prompt, self.params, self.tag = prompt, params, tag
        self.tokenizer = gen.tokenizer
        self.text = StopText(gen.tokenizer, params.stop)
        self.budget = min(params.max_tokens, gen.max_context - len(prompt))
        self.generated = 0
        self.finished = False
        self.rng = None
        if params.temperature > 0:
            # Answer i of a seeded request draws from seed + i, so n answers differ and each is reproducible.
            seed = params.seed + offset if params.seed is not None else time.time_ns() + offset
            self.rng = torch.Generator(device=gen.device).manual_seed(seed % 2**63)
        # Compiled when the row is made, so a bad schema fails before any forward pass.
        self.masks = gen._row_masks([constraint])
        self.prompt_lp: list[TokenLogprob] = []  # echo: filled during prefill

    def finish(self, reason: str, delta: str, logprobs) -> Chunk:
        self.finished = True
        return Chunk(delta, reason, Usage(len(self.prompt), self.generated), logprobs)


@dataclass
class _Group:
    """Rows being prefilled together: left-padded after their shared prefix, encoded in column chunks."""

    rows: list
    ids: object  # (rows, width) what follows the prefix, left-padded
    mask: object  # (rows, prefix + width)
    positions: object  # (rows, width)
    start: int  # prefix length
    cache: object
    done: int = 0  # columns of `ids` encoded so far
    carry: object = None  # echo: each row's log-probabilities at the previous chunk's last column
    head: list | None = None  # set while the group encodes its shared start (one row) before its rows
    remember: int = 0  # one row: keep its first `remember` tokens as a cached prefix once prefilled


class DecodeBatch:
    """Rows decoding together on one model; `add` rows at any time, `step` until `busy` is False.

    >>> batch = DecodeBatch(gen); batch.add(Row(gen, gen.encode(messages), GenParams()))  # doctest: +SKIP
    >>> while batch.busy: chunks = batch.step()  # doctest: +SKIP
    """

    def __init__(self, gen, chunk: int = PREFILL_CHUNK):
        import torch

        self.gen, self.chunk, self._torch = gen, chunk, torch
        self.rows: list[Row] = []  # decoding
        self.joining: deque[Row] = deque()  # waiting for the next prefill group
        self.group: _Group | None = None
        self.cache = self.mask = self.positions = self.last = None
        self._ready: list[tuple[Row, Chunk]] = []  # answers decided without a forward pass

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.joining or self.group or self._ready)

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.joining) + (len(self.group.rows) if self.group else 0)

    def add(self, row: Row) -> Row:
        if row.budget <= 0:  # the prompt fills the context: nothing can be generated
            self._ready.append((row, row.finish("length", "", [] if row.params.logprobs is not None else None)))
        else:
            self.joining.append(row)
        return row

    def drop(self, row: Row) -> None:
        """Stop generating for `row` (its client went away); it leaves at the next step."""
        row.finished = True

    def step(self) -> list[tuple[Row, Chunk]]:
        """One prefill chunk (if rows are joining) and one decode step (if rows are running)."""
        out, self._ready = self._ready, []
        with self._torch.inference_mode():
            if self.group is None and self.joining:
                self.group = self._new_group([r for r in self.joining if not r.finished])
                self.joining.clear()
            if self.group is not None:
                out += self._prefill_step()
            self._compact()
            if self.rows:
                out += self._decode_step()
        return out

    # -- prefill --------------------------------------------------------------------------------

    def _new_group(self, rows: list[Row]) -> "_Group | None":
        """The next prefill group; it first encodes the rows' shared start when no cached prefix covers it."""
        if not rows:
            return None
        gen = self.gen
        # Echoed prompts need every position's logits, so they do not start from a cached prefix.
        n, best, kv = (0, 0, None) if any(r.params.echo for r in rows) else gen._prefix_plan([r.prompt for r in rows])
        if best < n and len(rows) == 1:  # one row: its own prefill encodes the start, remembered when done
            return self._rows_group(rows, best, gen._expand(kv, best, 1) if best else None, remember=n)
        if best < n:  # a one-row phase: the shared start, continuing what the cache has of it
            torch = self._torch
            head = rows[0].prompt[:n]
            ids = torch.tensor([head[best:]], device=gen.device)
            mask = torch.ones((1, n), dtype=torch.long, device=gen.device)
            positions = torch.arange(best, n, device=gen.device)[None]
            return _Group(rows, ids, mask, positions, best, gen._expand(kv, best, 1) if best else None, head=head)
        return self._rows_group(rows, n, gen._expand(kv, n, len(rows)) if n else None)

    def _rows_group(self, rows: list[Row], start: int, cache, remember: int = 0) -> "_Group":
        return _Group(rows, *self.gen._padded([r.prompt for r in rows], start), start, cache, remember=remember)

    def _prefill_step(self) -> list[tuple[Row, Chunk]]:
        g = self.group
        a, b = g.done, min(g.done + self.chunk, g.ids.shape[1])
        echo = [] if g.head else [i for i, r in enumerate(g.rows) if r.params.echo]
        out = self.gen.model(input_ids=g.ids[:, a:b], attention_mask=g.mask[:, : g.start + b],
                             position_ids=g.positions[:, a:b], use_cache=True,
                             **({} if echo else {"logits_to_keep": 1}), **with_cache(g.cache))
        g.cache, g.done = returned_cache(out), b
        prompts = [(g.rows[i], self._echo(g, out.logits, i, a, b)) for i in echo]
        if b < g.ids.shape[1]:
            return []
        if g.head:  # the shared start is encoded: remember it, then the rows' own tokens follow
            kv = self.gen._remember(g.head, layers_of(g.cache))
            live = [r for r in g.rows if not r.finished]
            self.group = self._rows_group(live, len(g.head), self.gen._expand(kv, len(g.head), len(live))) if live else None
            return []
        self.group = None
        if g.remember:
            self.gen._remember(g.rows[0].prompt[: g.remember], layers_of(g.cache))
        tokens, answers = self._advance(g.rows, out.logits[:, -1, :].float())
        keep = [i for i, r in enumerate(g.rows) if not r.finished]
        if keep:
            self._join(g, keep, tokens)
        return [c for c in prompts if c[1] is not None] + answers

    def _echo(self, g: "_Group", logits, i: int, a: int, b: int) -> Chunk | None:
        """Log-probabilities of row i's prompt tokens in columns [a, b); its chunk once the prompt is done."""
        torch = self._torch
        width = g.ids.shape[1]
        row = g.rows[i]
        k = row.params.logprobs or 0
        first = width - len(row.prompt)  # the row's first real column
        lp = torch.log_softmax(logits[i].float(), dim=-1)  # column c predicts the token in column c + 1
        for c in range(max(a, first), b):
            token = int(g.ids[i, c])
            if c == first:
                row.prompt_lp.append(TokenLogprob(token, None))
                continue
            prev = lp[c - 1 - a] if c > a else g.carry[i]
            row.prompt_lp.append(TokenLogprob(token, float(prev[token]), _top(prev, k)))
        g.carry = {**(g.carry or {}), i: lp[-1]}
        # The prompt comes back as the answer's start (echo), with its tokens' log-probabilities.
        return Chunk(row.tokenizer.decode(row.prompt), prompt_logprobs=row.prompt_lp) if b == width else None

    def _join(self, g: _Group, keep: list[int], tokens) -> None:
        """Move the prefilled rows `keep` of `g` into the running batch."""
        torch, F = self._torch, self._torch.nn.functional
        idx = torch.tensor(keep, device=self.gen.device)
        layers = [(layer.keys.index_select(0, idx), layer.values.index_select(0, idx)) for layer in g.cache.layers]
        mask = g.mask.index_select(0, idx)
        positions = g.positions[:, -1].index_select(0, idx) + 1
        last = tokens.index_select(0, idx)
        rows = [g.rows[i] for i in keep]
        if self.rows:
            width = max(self.mask.shape[1], mask.shape[1])
            old = layers_of(self.cache)
            pad_old, pad_new = width - self.mask.shape[1], width - mask.shape[1]
            layers = [(torch.cat([F.pad(k0, (0, 0, pad_old, 0)), F.pad(k1, (0, 0, pad_new, 0))]),
                       torch.cat([F.pad(v0, (0, 0, pad_old, 0)), F.pad(v1, (0, 0, pad_new, 0))]))
                      for (k0, v0), (k1, v1) in zip(old, layers)]
            mask = torch.cat([F.pad(self.mask, (pad_old, 0)), F.pad(mask, (pad_new, 0))])
            positions = torch.cat([self.positions, positions])
            last = torch.cat([self.last, last])
            rows = self.rows + rows
        self.rows, self.mask, self.positions, self.last = rows, mask, positions, last
        self.cache = cache_of(layers)

    # -- decode ---------------------------------------------------------------------------------

    def _decode_step(self) -> list[tuple[Row, Chunk]]:
        torch = self._torch
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        out = self.gen.model(input_ids=self.last[:, None], attention_mask=self.mask,
                             position_ids=self.positions[:, None], use_cache=True, **with_cache(self.cache))
        self.cache = returned_cache(out)
        tokens, chunks = self._advance(self.rows, out.logits[:, -1, :].float())
        self.last, self.positions = tokens, self.positions + 1
        return chunks

    def _compact(self) -> None:
        """Cut finished rows out of the running batch, and the leading columns no live row attends to."""
        if not self.rows or not any(r.finished for r in self.rows):
            return
        torch = self._torch
        keep = [i for i, r in enumerate(self.rows) if not r.finished]
        if not keep:
            self.rows, self.cache = [], None
            return
        idx = torch.tensor(keep, device=self.gen.device)
        mask = self.mask.index_select(0, idx)
        used = mask.any(0).nonzero()
        cut = int(used[0]) if len(used) else 0
        self.cache = cache_of([(layer.keys.index_select(0, idx)[:, :, cut:], layer.values.index_select(0, idx)[:, :, cut:])
                             for layer in self.cache.layers])
        self.mask = mask[:, cut:]
        self.positions, self.last = self.positions.index_select(0, idx), self.last.index_select(0, idx)
        self.rows = [self.rows[i] for i in keep]

    def _advance(self, rows: list[Row], logits):
        """Pick each row's next token from `logits` (rows, vocab); the chunks whose text became final."""
        torch = self._torch
        tokens = logits.argmax(-1)
        chunks = []
        for i, row in enumerate(rows):
            if row.finished:
                continue
            lp = torch.log_softmax(logits[i], dim=-1) if row.params.logprobs is not None else None
            if row.masks is not None:
                row.masks.apply(logits[i:i + 1], [False])
            if row.rng is not None:
                tokens[i] = _pick(logits[i:i + 1], row.params, row.rng)[0]
            elif row.masks is not None:
                tokens[i] = logits[i].argmax()
            token = int(tokens[i])
            entries = None if lp is None else [TokenLogprob(token, float(lp[token]), _top(lp, row.params.logprobs))]
            row.generated += 1
            if token in self.gen.eos_ids:
                chunks.append((row, row.finish("stop", row.text.flush(), entries)))
                continue
            delta, hit = row.text.push(token)
            if hit:
                chunks.append((row, row.finish("stop", delta, entries)))
            elif row.masks is not None and row.masks.accept(0, token):  # grammar complete: only EOS could follow
                chunks.append((row, row.finish("stop", delta + row.text.flush(), entries)))
            elif row.generated >= row.budget:
                chunks.append((row, row.finish("length", delta + row.text.flush(), entries)))
            elif delta or entries:
                chunks.append((row, Chunk(delta, logprobs=entries)))
        return tokens, chunks


def _top(lp, k: int) -> list[tuple[int, float]]:
    if not k:
        return []
    values, ids = lp.topk(k)
    return list(zip(ids.tolist(), values.tolist()))


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


class StopText:
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
