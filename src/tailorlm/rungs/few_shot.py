"""The `few_shot` rung: k solved examples from a chat dataset's train split as earlier turns.

The examples are a fixed set covering the labels (`selection: static`) or the k most similar to
the question by embedding (`similar`, the most similar next to the question).
"""

from tailorlm.errors import TailorError
from tailorlm.models.base import GenParams, Messages
from tailorlm.rungs.base import Prepared, PromptRung, last_user, with_system
from tailorlm.rungs.registry import RungType


class FewShot(PromptRung):
    """Solved examples as earlier turns of the conversation, then the question."""

    kind = "few_shot"

    def __init__(self, generator, pool: list[tuple[str, str, str | None]], k: int = 4, selection: str = "static",
                 system: str | None = None, embedder=None, name: str | None = None, meta: dict | None = None):
        super().__init__(generator, system, name, meta)
        if not pool:
            raise TailorError("few_shot needs examples: its dataset's train split is empty")
        self.pool, self.k, self.selection, self.embedder = pool, min(k, len(pool)), selection, embedder
        self._vectors = None
        self.static = static_examples(pool, self.k)

    def shots(self, question: str) -> list[tuple[str, str, str | None]]:
        if self.selection == "static":
            return self.static
        import numpy as np

        if self._vectors is None:
            v = np.asarray(self.embedder.embed([u for u, _, _ in self.pool]), dtype=np.float32)
            self._vectors = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        q = np.asarray(self.embedder.embed([question])[0], dtype=np.float32)
        sims = self._vectors @ (q / max(float(np.linalg.norm(q)), 1e-12))
        best = np.argsort(-sims, kind="stable")[: self.k]
        return [self.pool[i] for i in best[::-1]]  # the most similar example sits next to the question

    def prepare(self, messages: Messages, params: GenParams) -> Prepared:
        shots = self.shots(last_user(messages))
        turns = [t for u, a, _ in shots for t in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
        convo = [m for m in messages if m["role"] != "system"]
        return Prepared(with_system(turns + convo, self.system), {"shots": [s[2] for s in shots]})


def static_examples(pool: list[tuple[str, str, str | None]], k: int) -> list[tuple[str, str, str | None]]:
    """k examples in pool order, round-robin over the answers so every label is shown before any repeats."""
    by_answer: dict[str, list] = {}
    for ex in pool:
        by_answer.setdefault(ex[1].strip(), []).append(ex)
    groups, out = list(by_answer.values()), []
    while len(out) < k:
        for g in groups:
            if g and len(out) < k:
                out.append(g.pop(0))
    return out


def chat_pool(records) -> list[tuple[str, str, str | None]]:
    """(last user turn, assistant answer, record id) for each chat record that ends with an answer."""
    pool = []
    for r in records:
        msgs = r.content.get("messages") or []
        if len(msgs) >= 2 and msgs[-1]["role"] == "assistant" and msgs[-2]["role"] == "user":
            pool.append((msgs[-2]["content"], msgs[-1]["content"], r.id))
    return pool


def build_few_shot(project, spec, pool, embedder=None, version=None, specs=()) -> FewShot:
    """A few_shot rung over its dataset's train split (the embedder only for `selection: similar`)."""
    from tailorlm.rungs.build import default_dataset, prompting, train_records

    generator, system, meta = prompting(project, spec, pool, version, specs)
    manifest, records = train_records(project, default_dataset(project, spec))
    meta.update(dataset=manifest["id"], k=spec.k, selection=spec.selection)
    if spec.selection == "similar" and embedder is None:
        from tailorlm.models import get_embedder

        embedder = get_embedder(project.config.models.embedder)
    return FewShot(generator, chat_pool(records), spec.k, spec.selection, system,
                   embedder if spec.selection == "similar" else None, spec.label, meta)


FEW_SHOT = RungType("few_shot", build_few_shot, effort=1)
