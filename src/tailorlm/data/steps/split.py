"""The `split` step: train / validation / test, seeded, stratified by label when there is one.

Every record gets `meta["split"]`. The test split is the golden set: `prepare` registers it as
an eval suite, and the ladder never lets it into training data or few-shot pools.
"""

import random
from collections import defaultdict
from typing import Iterable, Iterator

from pydantic import Field, model_validator

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Step, StepParams

SPLITS = ("train", "validation", "test")


def label_of(record: Record) -> str | None:
    if "label" in record.meta:
        return record.meta["label"]
    if record.kind == "eval" and record.content.get("labels"):
        return record.content["labels"][0]
    return None


class Split(Step):
    name = "split"

    class Params(StepParams):
        train: float = Field(0.8, ge=0, le=1, description="Share of records for training.")
        validation: float = Field(0.1, ge=0, le=1, description="Share for validation (early stopping, model selection).")
        test: float = Field(0.1, ge=0, le=1, description="Share for the golden test set.")
        stratify: bool = Field(True, description="Keep each label's share the same in every split, when records have labels.")
        seed: int = Field(0, description="Seed for the shuffle.")

        @model_validator(mode="after")
        def _sums_to_one(self):
            if abs(self.train + self.validation + self.test - 1.0) > 1e-6:
                raise ValueError("train + validation + test must add up to 1")
            return self

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        """Two passes: the records are parked in a spool while only their stratum (label) is kept,
        so the shares are drawn over the whole input without holding it; then they are read back
        with their split."""
        from tailorlm.data.steps.spool import Spool

        spool = Spool()
        try:
            strata: dict[str | None, list[int]] = defaultdict(list)
            for i, r in enumerate(records):
                spool.append(r)
                strata[label_of(r) if self.p.stratify else None].append(i)
            assignment = self.assign(strata, len(spool))
            for i, r in enumerate(spool):
                r.meta["split"] = SPLITS[assignment[i]]
                self.stats[SPLITS[assignment[i]]] += 1
                yield r
        finally:
            spool.close()

    def assign(self, strata: dict[str | None, list[int]], n_records: int) -> bytearray:
        """Each record's split (an index into SPLITS), drawn per stratum with the seeded shuffle."""
        rng = random.Random(self.p.seed)
        assignment = bytearray(n_records)
        for key in sorted(strata, key=lambda k: (k is None, str(k))):
            members = strata[key][:]
            rng.shuffle(members)
            n = len(members)
            n_test = round(n * self.p.test)
            n_val = round(n * self.p.validation)
            for pos, i in enumerate(members):
                assignment[i] = 2 if pos < n_test else 1 if pos < n_test + n_val else 0
        return assignment
