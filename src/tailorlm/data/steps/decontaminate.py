"""The `decontaminate` step: keep eval examples out of training data.

A training record that shares a word n-gram (13 by default, as in GPT-3's and lm-eval's
decontamination) with any eval example is dropped, or flagged with `mode: flag`. Eval texts
shorter than n words are matched whole (from six words up: a label such as "billing" proves nothing). The references come from the project's eval suites and
any files given; every overlap is recorded for the report.
"""

import re
from typing import Iterable, Iterator

from pydantic import Field

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Step, StepParams

_WORD = re.compile(r"\w+", re.UNICODE)


def ngrams(text: str, n: int, min_words: int = 6) -> set[tuple[str, ...]]:
    """Word n-grams; a text shorter than n words is one n-gram of its own, if it has at least
    `min_words` words. Shorter texts (a one-word label like "billing", "hi") prove nothing."""
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return {tuple(words)} if len(words) >= min_words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def eval_texts(record: Record) -> list[str]:
    """The parts of an eval example that must not leak: its inputs and its reference."""
    return record.texts()


class Decontaminate(Step):
    name = "decontaminate"

    class Params(StepParams):
        n: int = Field(13, ge=3, description="Words per n-gram; a shared n-gram marks a record as contaminated.")
        mode: str = Field("drop", pattern="^(drop|flag)$", description="drop: quarantine the record; flag: keep it with meta.contaminated.")
        files: list[str] = Field(default_factory=list, description="Extra eval files (JSONL) to protect, besides the project's suites.")

    def __init__(self, references: list[Record] | None = None, **params):
        super().__init__(**params)
        self.index: dict[tuple[str, ...], str] = {}
        for ref in references or []:
            self.add_reference(ref)
        self.overlaps: list[dict] = []

    def add_reference(self, record: Record) -> None:
        for text in eval_texts(record):
            for gram in ngrams(text, self.p.n):
                self.index.setdefault(gram, record.id)

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        self.stats["reference_ngrams"] = len(self.index)
        for record in records:
            hit = None
            if self.index and record.kind != "eval":
                for text in record.texts():
                    hit = next(((g, self.index[g]) for g in ngrams(text, self.p.n) if g in self.index), None)
                    if hit:
                        break
            if not hit:
                yield record
                continue
            gram, eval_id = hit
            self.overlaps.append({"record": record.id, "eval": eval_id, "ngram": " ".join(gram)})
            record.meta["contaminated"] = {"eval": eval_id, "ngram": " ".join(gram)}
            if self.p.mode == "flag":
                self.stats["flagged"] += 1
                yield record
            else:
                self.drop(record, "overlaps_eval")

    def summary(self) -> dict:
        return {**super().summary(), "overlaps": self.overlaps[:100]}
