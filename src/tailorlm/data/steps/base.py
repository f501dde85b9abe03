"""Step base classes: a step consumes records and yields records, counting what it kept and
what it dropped by reason, and sending every dropped record to the quarantine. Nothing is lost.

A filter only implements `keep(record) -> bool | (bool, reason)`; a mapper only `map(record)`.
Parameters are a pydantic model (`Params`), so tailor.yaml errors name the step and the key.

    class MinWords(Filter):
        name = "min_words"

        class Params(StepParams):
            n: int = Field(3, ge=1, description="Fewest words a record may have.")

        def keep(self, record):
            return len(record.joined().split()) >= self.p.n or (False, "too_few_words")
"""

from collections import Counter
from typing import Callable, Iterable, Iterator

from pydantic import BaseModel, ConfigDict

from tailorlm.data.record import Record

Sink = Callable[[Record, str, str], None]  # (record, step name, reason)


class StepParams(BaseModel):
    """A step's parameters, as written under `data.steps` in tailor.yaml. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Step:
    name = "step"
    Params = StepParams

    def __init__(self, **params):
        self.p = self.Params(**params)
        self.params = self.p.model_dump()
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()  # anything else worth reporting, e.g. PII found by type
        self.sink: Sink = lambda record, step, reason: None

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in self.run(records):
            self.kept += 1
            yield record

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        raise NotImplementedError

    def drop(self, record: Record, reason: str) -> None:
        self.dropped[reason] += 1
        self.sink(record, self.name, reason)

    def summary(self) -> dict:
        return {"step": self.name, "params": self.params, "kept": self.kept,
                "dropped": dict(sorted(self.dropped.items())), "stats": dict(sorted(self.stats.items()))}


class Filter(Step):
    def keep(self, record: Record) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            verdict = self.keep(record)
            ok, reason = verdict if isinstance(verdict, tuple) else (verdict, self.name)
            if ok:
                yield record
            else:
                self.drop(record, reason)


class Mapper(Step):
    def map(self, record: Record) -> Record:
        raise NotImplementedError

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            yield self.map(record)
