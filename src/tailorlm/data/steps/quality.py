"""Quality filters, steps of `tailor data prepare`: `quality` (heuristics) and `perplexity` (an LM).

`quality` applies the Gopher rules (Rae et al. 2021, table A1) and FineWeb's line rules (Penedo et
al. 2024) to `record.joined()`. Length bounds and repetition apply to every kind of record; the
document-shape rules (word length, symbols, bullets, line punctuation ...) only to the kinds in
`document_checks_for`, because a support ticket answered "billing" is not a web page.

`perplexity` needs the whole stream: it scores every record with a causal LM and drops the worst
fraction. It is off unless `drop_fraction` is set.

    >>> from tailorlm.data.record import Record
    >>> step = Quality()
    >>> [r.id for r in step([Record("a", "text", {"text": "buy now " * 200})])], dict(step.dropped)
    ([], {'top_2gram_fraction': 1})
"""

import re
from collections import Counter
from itertools import accumulate
from typing import Callable, Iterable, Iterator, Literal

from pydantic import Field

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Filter, Step, StepParams

Kind = Literal["chat", "preference", "text", "eval"]

# Regexes run over the whole text in C, so the word rules need no per-word Python loop.
# A word is a whitespace-separated token with a letter or digit: pure punctuation ("|", "-->",
# "=====") is markup, and a Markdown or reST page is full of it.
_WORD = re.compile(r"(?<!\S)[^\s\w]*\w\S*")  # the look-behind keeps it linear
_ALPHA_WORD = re.compile(r"(?<!\S)\S*?[^\W\d_]\S*")  # a word holding at least one letter
_STUCK_PUNCT = (".", ",", ";", ":", "!", "?", "(", ")", '"', "'", "`", "*")
_PARAGRAPHS = re.compile(r"\n\s*\n")
_WORD_CHAR = re.compile(r"\w")
_BULLETS = ("•", "-", "*", "●", "▪")
_TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ";", "…", "。", "！", "？")


class Quality(Filter):
    """Drop records that are too short, too long, repetitive or (for documents) not prose."""

    name = "quality"

    class Params(StepParams):
        min_words: int = Field(3, ge=0, description="Fewest words (tokens with a letter or digit) in a record, all kinds. Low, so a short ticket answered with one label passes.")
        max_words: int | None = Field(100_000, ge=1, description="Most words in a record (all kinds); null for no limit.")
        repetition_min_words: int = Field(50, ge=0, description="Repetition rules only judge records with at least this many words: on a few words one repeated phrase is noise.")
        max_dup_line_fraction: float | None = Field(0.3, description="Most lines that repeat an earlier line, as a fraction of non-empty lines (Gopher).")
        max_dup_para_fraction: float | None = Field(0.3, description="Most paragraphs that repeat an earlier paragraph, as a fraction of paragraphs (Gopher).")
        max_dup_line_char_fraction: float | None = Field(0.2, description="Most characters in repeated lines, as a fraction of all characters (Gopher).")
        max_dup_para_char_fraction: float | None = Field(0.2, description="Most characters in repeated paragraphs, as a fraction of all characters (Gopher).")
        max_top_ngram_fraction: dict[int, float] = Field({2: 0.20, 3: 0.18, 4: 0.16}, description="For n: most word characters covered by the most frequent repeated n-gram (Gopher).")
        max_dup_ngram_fraction: dict[int, float] = Field({5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}, description="For n: most word characters inside n-grams that repeat an earlier one (Gopher).")
        document_checks_for: list[Kind] = Field(["text"], description="Record kinds that get the document-shape rules below; chat and eval records are not web pages.")
        min_mean_word_length: float | None = Field(3, description="Shortest mean word length, punctuation excluded (Gopher, documents only).")
        max_mean_word_length: float | None = Field(10, description="Longest mean word length, punctuation excluded (Gopher, documents only).")
        max_symbol_word_ratio: float | None = Field(0.1, description="Most '#' or ellipses per word, each counted separately (Gopher, documents only).")
        min_alpha_word_fraction: float | None = Field(0.8, description="Fewest words holding a letter, as a fraction of words (Gopher, documents only).")
        max_bullet_line_fraction: float | None = Field(0.9, description="Most lines starting with a bullet (Gopher, documents only).")
        max_ellipsis_line_fraction: float | None = Field(0.3, description="Most lines ending with an ellipsis (Gopher, documents only).")
        min_line_punct_ratio: float | None = Field(0.12, description="Fewest lines ending in terminal punctuation, as a fraction of lines (FineWeb, documents only).")
        max_short_line_ratio: float | None = Field(0.67, description="Most lines of at most `short_line_chars` characters (FineWeb, documents only).")
        short_line_chars: int = Field(30, ge=1, description="A line this long or shorter is short, for `max_short_line_ratio`.")
        max_char_dup_ratio: float | None = Field(0.05, description="Most characters in repeated lines over non-newline characters (FineWeb used 0.01 on web text; manuals repeat table headers and code fences).")

    def __init__(self, **params):
        super().__init__(**params)
        self._doc_kinds = set(self.p.document_checks_for)

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        p = self.p
        text = record.joined()
        # Tokenise once: every word-level rule below reads this list. Lower case, so that
        # "Buy now BUY NOW" counts as a repetition.
        words = _WORD.findall(text.lower())
        if len(words) < p.min_words:
            return False, "too_short"
        if p.max_words is not None and len(words) > p.max_words:
            return False, "too_long"
        # Line rules skip lines without a letter or digit (rules, fences, table borders) likewise.
        lines = [line.strip() for line in text.splitlines() if _WORD_CHAR.search(line)]
        # Repetition first: on spam it names the more telling reason.
        if words and len(words) >= p.repetition_min_words and (reason := self._repetition(text, words, lines)):
            return False, reason
        if record.kind in self._doc_kinds and (reason := self._shape(text, words, lines)):
            return False, reason
        return True

    def _shape(self, text: str, words: list[str], lines: list[str]) -> str | None:
        p, n = self.p, len(words)
        if not n:
            return None
        # Word characters less the common punctuation stuck to words, counted in C: close to a
        # per-word strip at a fraction of the cost.
        mean = max(0, sum(map(len, words)) - sum(map(text.count, _STUCK_PUNCT))) / n
        if _over(p.max_mean_word_length, mean) or _under(p.min_mean_word_length, mean):
            return "mean_word_length"
        if _over(p.max_symbol_word_ratio, max(text.count("#"), text.count("...") + text.count("…")) / n):
            return "symbol_ratio"
        if _under(p.min_alpha_word_fraction, len(_ALPHA_WORD.findall(text)) / n):
            return "non_alpha_words"
        if not lines:
            return None
        if _over(p.max_bullet_line_fraction, sum(line.startswith(_BULLETS) for line in lines) / len(lines)):
            return "bullet_lines"
        if _over(p.max_ellipsis_line_fraction, sum(line.endswith(("...", "…")) for line in lines) / len(lines)):
            return "ellipsis_lines"
        if _under(p.min_line_punct_ratio, sum(line.endswith(_TERMINAL) for line in lines) / len(lines)):
            return "line_punct_ratio"
        if _over(p.max_short_line_ratio, sum(len(line) <= p.short_line_chars for line in lines) / len(lines)):
            return "short_line_ratio"
        if _over(p.max_char_dup_ratio, _duplicates(lines)[1] / max(1, len(text) - text.count("\n"))):
            return "char_dup_ratio"
        return None

    def _repetition(self, text: str, words: list[str], lines: list[str]) -> str | None:
        p = self.p
        for name, items, limit, char_limit in (("line", lines, p.max_dup_line_fraction, p.max_dup_line_char_fraction),
                                               ("para", _PARAGRAPHS.split(text.strip()), p.max_dup_para_fraction,
                                                p.max_dup_para_char_fraction)):
            dups, dup_chars = _duplicates(items)
            if items and _over(limit, dups / len(items)):
                return f"dup_{name}_fraction"
            if _over(char_limit, dup_chars / len(text)):
                return f"dup_{name}_char_fraction"

        # N-gram rules measure word characters (no spaces), numerator and denominator alike.
        # A prefix sum of word lengths makes each n-gram's length an O(1) lookup.
        ends = [0, *accumulate(map(len, words))]
        total = ends[-1]
        for n, limit in sorted(p.max_top_ngram_fraction.items()):
            if len(words) < n:
                continue
            gram, count = Counter(zip(*(words[i:] for i in range(n)))).most_common(1)[0]
            if count > 1 and sum(map(len, gram)) * count / total > limit:
                return f"top_{n}gram_fraction"
        # A repeated n-gram starts where a repeated m-gram starts, for m <= n. So the starts of
        # the shortest n's repeats bound every longer n's repeated characters, and the exact
        # walk runs only where that bound is over the limit: for clean text, never.
        dup_limits = sorted(p.max_dup_ngram_fraction.items())
        shortest = list(zip(*(words[i:] for i in range(dup_limits[0][0])))) if dup_limits else []
        counts = Counter(shortest)
        starts = [] if len(counts) == len(shortest) else [i for i, g in enumerate(shortest) if counts[g] > 1]
        for n, limit in dup_limits:
            if not starts or len(words) < n:
                break
            if sum(ends[min(i + n, len(words))] - ends[i] for i in starts) / total <= limit:
                continue
            if _repeated_chars(words, n, ends) / total > limit:
                return f"dup_{n}gram_fraction"
        return None


def _repeated_chars(words: list[str], n: int, ends: list[int]) -> int:
    """Characters of words inside n-grams that repeat an earlier one, walking left to right and
    skipping past each repeat so no word is counted twice (as Gopher does)."""
    grams = list(zip(*(words[i:] for i in range(n))))
    seen, repeated, i = set(), 0, 0
    while i < len(grams):
        if grams[i] in seen:
            repeated += ends[i + n] - ends[i]
            i += n
        else:
            seen.add(grams[i])
            i += 1
    return repeated


def _over(limit: float | None, value: float) -> bool:
    return limit is not None and value > limit  # a limit of None turns the rule off


def _under(limit: float | None, value: float) -> bool:
    return limit is not None and value < limit


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(how many items repeat an earlier one, their characters)."""
    seen: set[str] = set()
    repeats = [item for item in items if item in seen or seen.add(item)]  # add() is None: falsy
    return len(repeats), sum(map(len, repeats))


class PerplexityFilter(Step):
    """Score every record and drop the `drop_fraction` with the highest scores. The scorer maps
    texts to numbers, higher is worse: by default mean token NLL under `model`; tests plug in their
    own as `PerplexityFilter(score=fn, drop_fraction=0.1)`."""

    name = "perplexity"

    class Params(StepParams):
        drop_fraction: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of records with the highest perplexity to drop; 0 turns the step off.")
        model: str = Field("smollm2-135m-instruct", description="Causal LM that scores the records: an embedded name, a folder or a Hugging Face id.")
        batch_size: int = Field(8, ge=1, description="Records scored per forward pass.")
        max_tokens: int = Field(512, ge=2, description="Tokens of each record that are scored; the rest is ignored.")

    def __init__(self, score: Callable[[list[str]], list[float]] | None = None, **params):
        super().__init__(**params)
        self._score = score

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        if self.p.drop_fraction == 0:
            yield from records  # off: no buffering, no model
            return
        # The cut-off depends on every score, so the stream must end first: the records are parked
        # in a spool and only their scores kept. Texts are scored in chunks of whole batches, so
        # each forward pass sees the same texts as when all were scored at once.
        from array import array

        from tailorlm.data.steps.spool import Spool

        if self._score is None:
            self._score = lm_scorer(self.p.model, self.p.batch_size, self.p.max_tokens)
        spool, scores, texts = Spool(), array("d"), []
        chunk = self.p.batch_size * 64
        try:
            for record in records:
                spool.append(record)
                texts.append(record.joined())
                if len(texts) == chunk:
                    scores.extend(self._score(texts))
                    texts = []
            if texts:
                scores.extend(self._score(texts))
            if len(scores) != len(spool):
                raise ValueError(f"the perplexity scorer gave {len(scores)} scores for {len(spool)} texts")
            # Highest first; among equal scores the later record goes first, so ties are deterministic.
            order = sorted(range(len(spool)), key=lambda i: (-scores[i], -i))
            worst = set(order[: int(len(spool) * self.p.drop_fraction)])
            for i, record in enumerate(spool):
                record.meta["perplexity_score"] = scores[i]
                if i in worst:
                    self.drop(record, "high_perplexity")
                else:
                    yield record
        finally:
            spool.close()


def lm_scorer(model: str, batch_size: int = 8, max_tokens: int = 512) -> Callable[[list[str]], list[float]]:
    """A `score(texts)` giving each text's mean token negative log-likelihood under `model`."""
    import torch

    from tailorlm.models.local import LocalGenerator

    gen = LocalGenerator.load(model)
    # A start token in front, so that a text's first token is predicted (and scored) too.
    start_id = gen.tokenizer.bos_token_id if gen.tokenizer.bos_token_id is not None else min(gen.eos_ids)

    def score(texts: list[str]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(texts), batch_size):
            batch = [[start_id] + gen.tokenizer(t, add_special_tokens=False)["input_ids"][: max_tokens - 1]
                     for t in texts[start : start + batch_size]]
            width = max(map(len, batch))
            # Right padding, so positions need no shifting; the mask keeps pads out of the mean.
            ids = torch.tensor([seq + [gen.pad_id] * (width - len(seq)) for seq in batch], device=gen.device)
            mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in batch], device=gen.device)
            with torch.inference_mode():
                logits = gen.model(input_ids=ids, attention_mask=mask).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
            counted = mask[:, 1:].float()
            out += ((nll * counted).sum(1) / counted.sum(1).clamp(min=1)).tolist()
        return out

    return score
