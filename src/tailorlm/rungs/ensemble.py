"""The `ensemble` rung: several configured rungs answer, and one answer is chosen from theirs.

The guides list "Ensemble: combine multiple models" among the ways to adapt a model to a domain.
`{kind: ensemble, members: [classic, few_shot_similar, rag], vote: confidence}`:

- Label tasks (classification with `task.labels`): every member is held to the labels, as every
  rung is, and votes for the one it answers. `majority` counts votes; `confidence` (the default)
  weighs each vote by the member's confidence in it (`meta["confidence"]`: a held rung's label
  probability, the classic rung's class probability; a member that gives none votes with weight 1).
  Ties go to the label with more summed confidence, then to the earlier member. A member that failed,
  or named no label, abstains. The answer's confidence is the winner's share of the weight.
- Other tasks: `judge` (the default there), best of N: the project's judge (`models.judge`, else the
  generator; `eval/judge.py`) scores every member's answer against the default rubric, and the best
  one wins (ties to the earlier member).

The members answer one after another, so the ensemble's latency, tokens and compute seconds are the
sums of its members' (and the judge's, for best of N); eval's cost per 1k queries, computed from the
compute seconds, is then the sum of theirs as well. `describe()` says so, and each answer's
`meta["members"]` keeps what every member said, with its own latency.
"""

import time

from tailorlm.errors import TailorError
from tailorlm.rungs.registry import RungType
from tailorlm.rungs.base import Answer, Prepared, last_user
from tailorlm.rungs.whole import AsGenerator, WholeAnswerRung
from tailorlm.models.base import Completion, GenParams, Messages, Usage

VOTES = ("majority", "confidence", "judge")


def member_specs(project, spec) -> list:
    """The configured rungs an ensemble spec names, checked."""
    by_name = {s.label: s for s in project.config.rungs}
    if len(spec.members) < 2:
        raise TailorError(f"rung {spec.label!r}: an ensemble needs at least two members (members: [RUNG, RUNG, ...]), "
                          f"got {spec.members}")
    if len(set(spec.members)) != len(spec.members):
        raise TailorError(f"rung {spec.label!r}: members are named twice in {spec.members}")
    out = []
    for name in spec.members:
        if name not in by_name:
            raise TailorError(f"rung {spec.label!r}: member {name!r} is not a configured rung; known: "
                              f"{', '.join(s.label for s in project.config.rungs if s.kind != 'ensemble')}")
        if by_name[name].kind == "ensemble":
            raise TailorError(f"rung {spec.label!r}: member {name!r} is an ensemble; name its members instead")
        out.append(by_name[name])
    return out


def with_members(project, specs) -> list:
    """`specs` plus the members of any ensemble among them (for the leakage check), each once."""
    out = list(specs)
    for spec in specs:
        if spec.kind == "ensemble":
            out += [m for m in member_specs(project, spec) if m not in out]
    return out


def vote_for(project, spec) -> str:
    task = project.config.task
    held = task.type == "classification" and bool(task.labels)
    vote = spec.vote or ("confidence" if held else "judge")
    if vote != "judge" and not held:
        raise TailorError(f"rung {spec.label!r}: vote {vote!r} needs a classification task with labels; "
                          "use vote: judge (best of N by the judge)")
    return vote


def build_ensemble(project, spec, pool, embedder=None) -> "EnsembleRung":
    """The ensemble a spec describes, its members built as the ladder builds them.

    >>> build_ensemble(project, RungConfig(kind="ensemble", members=["classic", "few_shot"]), pool).vote  # doctest: +SKIP
    'confidence'
    """
    from tailorlm.rungs.build import build_rung

    vote = vote_for(project, spec)
    members = [build_rung(project, m, pool, embedder, specs=project.config.rungs) for m in member_specs(project, spec)]
    judge = warning = None
    if vote == "judge":
        from tailorlm.eval.judge import judge_for, load_rubric

        judge, warning = judge_for(project, pool.default() if project.config.models.judge is None else None)
        rubric = load_rubric(project)
    else:
        rubric = None
    labels = list(project.config.task.labels) if vote != "judge" else []
    return EnsembleRung(members, vote, labels, judge=judge, rubric=rubric, warning=warning, name=spec.label)


def combine_votes(answers: list[Answer], labels: list[str], weighted: bool) -> tuple[str | None, float, dict]:
    """(label, its share of the weight, {label: weight}) from the members' answers, in member order.

    >>> a = [Answer("billing", "x", meta={"confidence": 0.4}), Answer("login", "y", meta={"confidence": 0.9}),
    ...      Answer("billing", "z", meta={"confidence": 0.3})]
    >>> combine_votes(a, ["billing", "login"], weighted=False)[0], combine_votes(a, ["billing", "login"], weighted=True)[0]
    ('billing', 'login')
    """
    weight, summed, first = {}, {}, {}
    for i, a in enumerate(answers):
        if a.error or a.text not in labels:
            continue  # abstains
        confidence = a.meta.get("confidence")
        c = 1.0 if confidence is None else float(confidence)
        weight[a.text] = weight.get(a.text, 0.0) + (c if weighted else 1.0)
        summed[a.text] = summed.get(a.text, 0.0) + c
        first.setdefault(a.text, i)
    if not weight:
        return None, 0.0, {}
    best = max(weight, key=lambda lab: (round(weight[lab], 9), round(summed[lab], 9), -first[lab]))
    total = sum(weight.values())
    return best, weight[best] / total if total else 0.0, {k: round(v, 6) for k, v in weight.items()}


class EnsembleRung(WholeAnswerRung):
    """Messages in, the chosen member's answer out: the Rung interface over other rungs."""

    kind = "ensemble"

    def __init__(self, members: list, vote: str, labels: list[str], judge=None, rubric: str | None = None,
                 warning: str | None = None, name: str = "ensemble"):
        if vote not in VOTES:
            raise TailorError(f"vote must be one of {VOTES}, got {vote!r}")
        self.members, self.vote, self.labels, self.name = members, vote, list(labels), name
        self.judge, self.rubric, self.warning = judge, rubric, warning
        self.label_mode = vote
        self.system = None
        self.meta = {"vote": vote, "members": [m.name for m in members]}
        self.generator = AsGenerator(self)

    def finish(self, prepared: Prepared, c: Completion, latency_s: float) -> Answer:
        return Answer(c.text, self.name, c.usage or Usage(), latency_s, c.finish_reason)

    def answer_batch(self, batch: list[Messages], params: GenParams | None = None, batch_size: int = 8) -> list[Answer]:
        """Every member answers the batch (each batched its own way), then one answer per input is chosen."""
        params = params or GenParams()
        per_member = [m.answer_batch(batch, params, batch_size) for m in self.members]
        rows = [[answers[i] for answers in per_member] for i in range(len(batch))]
        judged, judge_s = self._judge(batch, rows) if self.vote == "judge" else (None, 0.0)
        out = []
        for i, answers in enumerate(rows):
            out.append(self._choose(answers, judged[i] if judged else None, judge_s / max(len(batch), 1)))
        return out

    def _judge(self, batch: list[Messages], rows: list[list[Answer]]) -> tuple[list[list[float]], float]:
        from tailorlm.eval.judge import rubric_scores

        began = time.perf_counter()
        asked = [{"question": last_user(m), "answer": None if a.error else a.text} for m, answers in zip(batch, rows)
                 for a in answers]
        scores = rubric_scores(self.judge, asked, self.rubric, warning=self.warning)["scores"]
        n = len(self.members)
        return [scores[i * n:(i + 1) * n] for i in range(len(rows))], time.perf_counter() - began

    def _choose(self, answers: list[Answer], judged: list[float] | None, judge_s: float) -> Answer:
        usage = Usage(sum(a.usage.prompt_tokens for a in answers), sum(a.usage.completion_tokens for a in answers))
        latency = sum(a.latency_s for a in answers) + judge_s
        compute = sum(a.meta.get("compute_s", a.latency_s) for a in answers) + judge_s
        members = [{"rung": m.name, "text": a.text, "error": a.error, "confidence": a.meta.get("confidence"),
                    "latency_s": round(a.latency_s, 4), "compute_s": round(a.meta.get("compute_s", a.latency_s), 4)}
                   for m, a in zip(self.members, answers)]
        meta = {"members": members, "compute_s": compute, "vote": self.vote}
        if judged is not None:
            ok = [i for i, a in enumerate(answers) if not a.error]
            if not ok:
                return Answer("", self.name, usage, latency, "error", meta=meta, error="every member failed")
            best = max(ok, key=lambda i: (judged[i], -i))
            for m, s in zip(members, judged):
                m["judge_score"] = s
            meta.update(chosen=self.members[best].name, judge_s=round(judge_s, 4))
            chosen = answers[best]
            return Answer(chosen.text, self.name, usage, latency, chosen.finish_reason, chosen.citations, meta)
        label, share, weights = combine_votes(answers, self.labels, weighted=self.vote == "confidence")
        if label is None:
            errors = [a.error for a in answers if a.error]
            return Answer("", self.name, usage, latency, "error", meta=meta,
                          error="no member named a label" + (f" ({errors[0]})" if errors else ""))
        meta.update(confidence=round(share, 6), raw={"votes": weights})
        return Answer(label, self.name, usage, latency, "stop", meta=meta)

    def describe(self) -> dict:
        described = [m.describe() for m in self.members]
        backend = "openai" if described and all(d.get("backend") == "openai" for d in described) else "local"
        return {"name": self.name, "kind": self.kind, "model": " + ".join(str(d.get("model")) for d in described),
                "backend": backend, "vote": self.vote, "members": described,
                "latency": "sum of the members' (they answer one after another)"
                           + (" plus the judge's" if self.vote == "judge" else ""),
                "cost": "sum of the members' (from their summed compute seconds and tokens)"}


def _build(project, spec, pool, embedder=None, version=None, specs=()) -> EnsembleRung:
    return build_ensemble(project, spec, pool, embedder)


ENSEMBLE = RungType("ensemble", _build, effort=5)  # answers after its members
