"""How a rung spec in tailor.yaml (or a served model name) becomes a rung.

The kinds themselves are registered (`rungs/registry.py`); this module builds any of them:
- `zero_shot`: the prompt library's prompt, then the question (here);
- `few_shot`: solved examples as earlier turns (`rungs/few_shot.py`);
- `rag`: retrieved, numbered, quoted sources, and `hybrid`, a model version plus retrieval (`rungs/rag.py`);
- `sft` / `dpo` / `cpt` / `grpo`: a model version, prompted the way it was trained (here);
- `classic`, `ensemble`, `prompt_opt`: their own modules.

Served model names are `PROJECT:RUNG` for configured rungs, model version ids
(`PROJECT:sft@v3`) and `PROJECT@ALIAS` (`PROJECT@production`; the retired `PROJECT:production` still works).
"""

from tailorlm.errors import TailorError
from tailorlm.registry.resolve import alias_target, datasets
from tailorlm.rungs.base import PromptRung
from tailorlm.rungs.registry import RungType, rung_type

LADDER_ALIAS = "ladder.{}"  # the model version the ladder trained for a rung with no `model`


def default_dataset(project, spec=None) -> str:
    """The chat dataset a few_shot or trained rung draws on: its own, or the first chat source prepared."""
    if spec is not None and spec.dataset:
        return spec.dataset
    versions = datasets(project)
    names = [s.name for s in project.config.sources if s.kind in (None, "chat")]
    for name in names:
        if any(v.name == name and v.kind == "chat" for v in versions):
            return name
    chat = [v.name for v in versions if v.kind == "chat"]
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
    from tailorlm.registry.resolve import model as model_version

    ref = spec.model
    other = {s.label: s for s in specs}
    if ref in other and other[ref] is not spec:
        return resolve_version(project, other[ref], specs)
    if ref:  # a version id or NAME@ALIAS (the retired NAME:ALIAS too): the one resolver, tailorlm.registry
        return model_version(project, ref).to_dict()
    target = alias_target(project, "model", project.config.name, LADDER_ALIAS.format(spec.label))
    if target is None:
        raise TailorError(f"rung {spec.label!r} has no model yet: run `tailor ladder` to train it, or set its `model`")
    return model_version(project, target).to_dict()


def build_rung(project, spec, pool, embedder=None, version: dict | None = None, specs=()) -> PromptRung:
    """The rung a spec describes, held to the task's labels for a classification task.

    `pool` is a `ModelPool`; `version` overrides the model lookup. The kind's builder comes from
    the registry (`rungs/registry.py`), so a kind from a plugin is built the same way.
    """
    rung = rung_type(spec.kind).build(project, spec, pool, embedder, version, specs)
    task = project.config.task
    if task.type == "classification" and task.labels and isinstance(rung, PromptRung):
        rung.hold_to(task.labels, task.label_mode)
    return rung


def prompting(project, spec, pool, version: dict | None = None, specs=()) -> tuple:
    """(generator, system prompt, meta) for a rung that prompts a model: the base model, or its model version."""
    from tailorlm.rungs.prompts import load_prompt

    prompt = load_prompt(project, spec.prompt)
    meta = {"prompt": prompt["id"]}
    if rung_type(spec.kind).trains:
        version = version or resolve_version(project, spec, specs)
        meta["model_version"] = version["id"]
        # A model is prompted the way it was trained: with the system prompt its training data carried.
        return pool.for_version(version), version["lineage"].get("system_prompt", prompt["text"]), meta
    return pool.default(), prompt["text"], meta


def build_prompt_rung(project, spec, pool, embedder=None, version=None, specs=()) -> PromptRung:
    """zero_shot, and the trained kinds without retrieval: one prompt, one generator call."""
    generator, system, meta = prompting(project, spec, pool, version, specs)
    rung = PromptRung(generator, system, spec.label, meta)
    rung.kind = spec.kind
    return rung


ZERO_SHOT = RungType("zero_shot", build_prompt_rung, effort=0)
SFT = RungType("sft", build_prompt_rung, effort=3, trains=True)
DPO = RungType("dpo", build_prompt_rung, effort=3, trains=True)
CPT = RungType("cpt", build_prompt_rung, effort=3, trains=True)
GRPO = RungType("grpo", build_prompt_rung, effort=3.5, trains=True)


def served_names(project) -> list[str]:
    """Every model name the server answers to: rungs, model versions and aliases (NAME@ALIAS)."""
    from tailorlm.registry.names import alias_ref
    from tailorlm.registry.resolve import aliases, models

    names = [f"{project.config.name}:{s.label}" for s in project.config.rungs]
    names += [v.id for v in models(project)]
    names += [alias_ref(a.name, a.alias) for a in aliases(project, "model") if not a.alias.startswith("ladder.")]
    return list(dict.fromkeys(names))


def rung_for_model(project, model: str, pool, embedder=None) -> PromptRung:
    """The rung behind a served model name (`PROJECT:RUNG`, a version id, or `NAME@ALIAS`; see `registry.names`)."""
    from tailorlm.config import RungConfig
    from tailorlm.registry.names import model_alias
    from tailorlm.registry.resolve import model as model_version

    specs = project.config.rungs
    prefix, _, rest = model.partition(":")
    if prefix == project.config.name and rest in {s.label for s in specs}:
        spec = next(s for s in specs if s.label == rest)
        return build_rung(project, spec, pool, embedder, specs=specs)
    if "@" in model or model_alias(project, model):
        version = model_version(project, model).to_dict()
    else:
        raise TailorError(f"unknown model {model!r}; GET /v1/models lists the served names")
    kind = "hybrid" if version["lineage"].get("rung") == "hybrid" else "sft"
    return build_rung(project, RungConfig(kind=kind, name=model), pool, embedder, version=version)
