"""The `mix` step: domain ratios by source or tag, with seeded up- and down-sampling.

Given ratios such as `{docs: 0.3, tickets: 0.7}`, the group sizes are set so the shares match:
groups with too many records are down-sampled (the rest quarantined with reason `downsampled`),
groups with too few are up-sampled by repeating records (copies get ids `id#2`, `id#3`, ...).
The total is the largest that needs no up-sampling, unless `total` is given.

Synthetic records (meta `synthetic: true`, or the tag `synthetic`, which a source can set in
tailor.yaml) may be at most `synthetic_max_share` of the mixed result (`synthesize.max_share`,
30% by default); a seeded sample of the excess is quarantined with reason `synthetic_cap`.
`tailor data synthesize` enforces the same cap through `cap_synthetic`.
"""

import math
import random
from collections import defaultdict
from typing import Iterable, Iterator

from pydantic import Field, field_validator

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Step, StepParams


class Mix(Step):
    name = "mix"

    class Params(StepParams):
        ratios: dict[str, float] = Field(..., description="Target share of each group, e.g. {docs: 0.3, tickets: 0.7}; normalised to sum to 1.")
        by: str = Field("source", pattern="^(source|tag)$", description="Group records by their source name or by their first tag.")
        total: int | None = Field(None, ge=1, description="Records after mixing; default: as many as possible without up-sampling.")
        seed: int = Field(0, description="Seed for sampling.")
        synthetic_max_share: float = Field(
            0.3, ge=0, lt=1, description="Largest share of synthetic records in the result; tailor.yaml's "
            "synthesize.max_share unless set here.")

        @field_validator("ratios")
        @classmethod
        def _positive(cls, ratios: dict[str, float]) -> dict[str, float]:
            if not ratios or any(v <= 0 for v in ratios.values()):
                raise ValueError("ratios must be positive numbers")
            return ratios

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        """Two passes: the records are parked in a spool while only their group and whether they are
        synthetic are kept; the sample is drawn as a plan of spool indices (and copy numbers), capped,
        and read back from the spool in plan order."""
        from tailorlm.data.steps.spool import Spool

        spool, synthetic = Spool(), bytearray()
        try:
            groups: dict[str, list[int]] = defaultdict(list)
            for r in records:
                key = r.meta.get("source") if self.p.by == "source" else (r.meta.get("tags") or [None])[0]
                if key in self.p.ratios:
                    groups[key].append(spool.append(r))
                    synthetic.append(is_synthetic(r))
                else:
                    self.drop(r, "not_in_mix")
            plan = list(self.plan(groups, spool))
            over = capped([synthetic[i] for i, _ in plan], self.p.synthetic_max_share, self.p.seed)
            for pos, (i, copy) in enumerate(plan):
                r = spool.get(i)
                if copy:
                    r = Record(f"{r.id}#{copy}", r.kind, r.content, {**r.meta, "upsampled_from": r.id})
                if pos in over:
                    self.drop(r, "synthetic_cap")
                else:
                    yield r
        finally:
            spool.close()

    def plan(self, groups: dict[str, list[int]], spool) -> Iterator[tuple[int, int]]:
        """(spool index, copy number; 0 for the original) of each record the mix keeps, group by group;
        the down-sampled rest is quarantined here."""
        weight = sum(self.p.ratios.values())
        shares = {g: w / weight for g, w in self.p.ratios.items()}
        total = self.p.total or int(min(len(groups[g]) / s for g, s in shares.items()) if all(groups.values()) else 0)
        rng = random.Random(self.p.seed)
        for group, share in shares.items():
            pool, want = groups[group], round(total * share)
            if not pool:
                continue
            if want <= len(pool):
                chosen = set(rng.sample(range(len(pool)), want))
                for k, i in enumerate(pool):
                    if k in chosen:
                        yield i, 0
                    else:
                        self.drop(spool.get(i), "downsampled")
            else:
                for i in pool:
                    yield i, 0
                for copy in range(want - len(pool)):
                    self.stats["upsampled"] += 1
                    yield pool[rng.randrange(len(pool))], copy + 2


def is_synthetic(record: Record) -> bool:
    return record.meta.get("synthetic") is True or "synthetic" in (record.meta.get("tags") or [])


def cap_allowed(n_real: int, max_share: float) -> int:
    """Most synthetic records that `n_real` real ones allow: s / (n + s) <= max_share.

    >>> cap_allowed(700, 0.3), cap_allowed(180, 0.3)
    (300, 77)
    """
    # the small epsilon keeps 0.3 / 0.7 * 700 = 299.99999999999994 from flooring to 299
    return math.floor(n_real * max_share / (1 - max_share) + 1e-9)


def capped(flags: list[bool], max_share: float, seed: int = 0) -> set[int]:
    """Positions of the synthetic items (`flags` true) beyond `max_share`: a seeded sample of them."""
    synthetic = [i for i, f in enumerate(flags) if f]
    allowed = cap_allowed(len(flags) - len(synthetic), max_share)
    if len(synthetic) <= allowed:
        return set()
    return set(synthetic) - set(random.Random(seed).sample(synthetic, allowed))


def cap_synthetic(records: list[Record], max_share: float, drop, seed: int = 0) -> list[Record]:
    """`records` with synthetic ones beyond `max_share` removed (a seeded sample of them), each
    passed to `drop(record, "synthetic_cap")`. Order is kept."""
    over = capped([is_synthetic(r) for r in records], max_share, seed)
    out = []
    for i, r in enumerate(records):
        if i in over:
            drop(r, "synthetic_cap")
        else:
            out.append(r)
    return out
