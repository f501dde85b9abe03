"""Every rung kind, and how a rung spec in tailor.yaml (or a served model name) becomes one.

- `zero_shot`: the prompt library's prompt, then the question.
- `few_shot`: k solved examples from a chat dataset's train split as prior turns, either a fixed
  set covering the labels (`selection: static`) or the k most similar by embedding (`similar`).
- `rag`: retrieved, numbered, quoted sources (see `rungs/rag.py`).
- `sft` / `dpo` / `cpt`: a model version, prompted the way it was trained.
- `hybrid`: a model version plus retrieval.

Served model names are `PROJECT:RUNG` for configured rungs, model version ids
(`PROJECT:sft@v3`) and `PROJECT@ALIAS` (`PROJECT@production`; the retired `PROJECT:production` still works).
"""

from tailorlm.errors import TailorError
from tailorlm.rungs.base import Prepared, PromptRung, last_user, with_system
from tailorlm.models.base import GenParams, Messages

MODEL_KINDS = ("sft", "dpo", "cpt", "hybrid", "grpo")
LADDER_ALIAS = "ladder.{}"  # the model version the ladder trained for a rung with no `model`


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


def default_dataset(project, spec=None) -> str:
    """The chat dataset a few_shot or trained rung draws on: its own, or the first chat source prepared."""
    if spec is not None and spec.dataset:
        return spec.dataset
    rows = project.store.select("dataset_versions", order_by="created_at")
    names = [s.name for s in project.config.sources if s.kind in (None, "chat")]
    for name in names:
        if any(r["name"] == name and r["kind"] == "chat" for r in rows):
            return name
    chat = [r["name"] for r in rows if r["kind"] == "chat"]
    if chat:
        return chat[0]
    raise TailorError("no chat dataset to draw examples from: run `tailor data prepare` (or set the rung's dataset)")


def train_records(project, ref: str):
    from tailorlm.data.versions import load_records, resolve

    manifest = resolve(project, ref)
    split = "train" if "train" in manifest["splits"] else None
    return manifest, load_records(project, manifest, split)


def resolve_version(project, spec, specs=()) -> dict:
    """The model version a model rung answers with: named, shared with another rung, or the one the ladder trained."""
    from tailorlm.train import registry

    ref = spec.model
    other = {s.label: s for s in specs}
    if ref in other and other[ref] is not spec:
        return resolve_version(project, other[ref], specs)
    if ref:  # a version id or NAME@ALIAS (the retired NAME:ALIAS too): the one resolver, tailorlm.registry
        return registry.resolve(project, ref)
    target = project.store.get_alias("model", project.config.name, LADDER_ALIAS.format(spec.label))
    if target is None:
        raise TailorError(f"rung {spec.label!r} has no model yet: run `tailor ladder` to train it, or set its `model`")
    return registry.resolve(project, target)


def build_rung(project, spec, pool, embedder=None, version: dict | None = None, specs=()) -> PromptRung:
    """The rung a spec describes, held to the task's labels for a classification task.

    `pool` is a `ModelPool`; `version` overrides the model lookup.
    """
    if spec.kind == "classic":  # no generator: a linear classifier that answers with a label
        from tailorlm.rungs.classic import build_classic

        return build_classic(project, spec, embedder)
    if spec.kind == "ensemble":  # its members are held; it votes over their labels
        from tailorlm.rungs.ensemble import build_ensemble

        return build_ensemble(project, spec, pool, embedder)
    rung = _build(project, spec, pool, embedder, version, specs)
    task = project.config.task
    if task.type == "classification" and task.labels and isinstance(rung, PromptRung):
        rung.hold_to(task.labels, task.label_mode)
    return rung


def _build(project, spec, pool, embedder=None, version: dict | None = None, specs=()) -> PromptRung:
    from tailorlm.rungs.prompts import load_prompt

    prompt = load_prompt(project, spec.prompt)
    meta = {"prompt": prompt["id"]}
    if spec.kind in MODEL_KINDS:
        version = version or resolve_version(project, spec, specs)
        generator = pool.for_version(version)
        meta["model_version"] = version["id"]
        # A model is prompted the way it was trained: with the system prompt its training data carried.
        system = version["lineage"].get("system_prompt", prompt["text"])
    else:
        generator, system = pool.default(), prompt["text"]
    if spec.kind in ("zero_shot", "sft", "dpo", "cpt", "grpo"):
        rung = PromptRung(generator, system, spec.label, meta)
        rung.kind = spec.kind
        return rung
    if spec.kind == "few_shot":
        ref = default_dataset(project, spec)
        manifest, records = train_records(project, ref)
        meta.update(dataset=manifest["id"], k=spec.k, selection=spec.selection)
        return FewShot(generator, chat_pool(records), spec.k, spec.selection, system,
                       embedder or (_embedder(project) if spec.selection == "similar" else None), spec.label, meta)
    if spec.kind in ("rag", "hybrid"):
        from tailorlm.rag.index import RagIndex
        from tailorlm.rungs.rag import RagRung, label_reminder, make_reranker

        cfg = project.config.rag
        index = RagIndex.for_project(project, embedder=embedder)
        if not index.read_manifest()["docs"]:
            raise TailorError(f"rung {spec.label!r} needs the retrieval index: run `tailor rag index`")
        meta.update(k=spec.k, search=cfg.search, retrieval=index.describe(cfg.search))  # the (tuned) rag: settings
        rung = RagRung(index, generator, k=spec.k, mode=cfg.search, system=system, context_tokens=cfg.context_tokens,
                       reranker=make_reranker(cfg.rerank, generator), name=spec.label, meta=meta,
                       reminder=label_reminder(project.config.task))
        rung.kind = spec.kind
        return rung
    if spec.kind == "prompt_opt":  # searched on the validation split, answers like few_shot
        from tailorlm.rungs.prompt_opt import build_prompt_opt

        return build_prompt_opt(project, spec, generator, embedder)
    raise TailorError(f"unknown rung kind {spec.kind!r}")


def _embedder(project):
    from tailorlm.models import get_embedder

    return get_embedder(project.config.models.embedder)


def served_names(project) -> list[str]:
    """Every model name the server answers to: rungs, model versions and aliases (NAME@ALIAS)."""
    from tailorlm.registry.names import alias_ref

    names = [f"{project.config.name}:{s.label}" for s in project.config.rungs]
    for row in project.store.select("model_versions", order_by="created_at"):
        names.append(row["id"])
    for row in project.store.select("aliases", scope="model"):
        if not row["alias"].startswith("ladder."):
            names.append(alias_ref(row["name"], row["alias"]))
    return list(dict.fromkeys(names))


def rung_for_model(project, model: str, pool, embedder=None) -> PromptRung:
    """The rung behind a served model name (`PROJECT:RUNG`, a version id, or `NAME@ALIAS`; see `registry.names`)."""
    from tailorlm.config import RungConfig
    from tailorlm.registry.names import model_alias
    from tailorlm.train import registry

    specs = project.config.rungs
    prefix, _, rest = model.partition(":")
    if prefix == project.config.name and rest in {s.label for s in specs}:
        spec = next(s for s in specs if s.label == rest)
        return build_rung(project, spec, pool, embedder, specs=specs)
    if "@" in model or model_alias(project, model):
        version = registry.resolve(project, model)
    else:
        raise TailorError(f"unknown model {model!r}; GET /v1/models lists the served names")
    kind = "hybrid" if version["lineage"].get("rung") == "hybrid" else "sft"
    return build_rung(project, RungConfig(kind=kind, name=model), pool, embedder, version=version)
