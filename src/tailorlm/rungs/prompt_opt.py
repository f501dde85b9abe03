"""The `prompt_opt` rung: an instruction and few-shot demonstrations searched on the validation split.

Prompts are code (the guides: track changes, test systematically); this rung tests them. DSPy's
optimisers search instructions and demonstrations against a metric; this is the same idea, kept small
enough to run on a CPU:

- Instructions: every prompt in the project's library (`prompts/*.md`, and `default`), plus
  `variants` rewrites of the task's prompt written by `models.teacher` (the generator when unset).
- Demonstrations, drawn from the chat dataset's train split only: none, the fixed label-covering set
  (few_shot_static's), `demo_sets` random label-covering sets, and the k most similar per question
  (few_shot_similar's selection, when `similar`).
- Candidates (instruction x demonstrations) are scored on the validation split by successive halving:
  all on the first `minibatch` validation examples, the better half on twice as many, and so on, until
  one is left, the split is used up, or the next round would exceed `budget` model calls (one call per
  validation example answered, one per variant written). The golden suite is never opened: the
  ladder's leakage check reads it against this rung's pools (`search_pools`).
- The winner is written to `prompts/NAME.md` (NAME: the rung's name), a new version in the prompt
  library, with `prompts/NAME.search.json` beside it: every candidate, its scores per round, the calls
  spent and the winning demonstrations. Both are also kept under `.tailor/prompts/NAME@VERSION.*`.
  A later build with the same data, settings, model and library reuses the record without a call.

The rung then answers like a few-shot rung with the winning prompt; the ladder scores it on the
golden suite like any other. Settings come from the rung's `train:` block,
e.g. `{kind: prompt_opt, k: 4, train: {budget: 300, variants: 1}}`.
"""

import hashlib
import json
import logging
import math
import random
import time

from tailorlm.errors import TailorError
from tailorlm.rungs.registry import RungType
from tailorlm.rungs.base import PromptRung
from tailorlm.models.base import GenParams

SETTINGS = {"budget", "variants", "demo_sets", "similar", "minibatch", "instructions", "seed"}
DEFAULTS = {"budget": 400, "variants": 2, "demo_sets": 2, "similar": True, "minibatch": 8, "instructions": None, "seed": 0}
SEARCH_VERSION = 1  # bump when the search changes what a saved record means

PROPOSE = """You write the instruction (system prompt) for an assistant that does this task:
{description}
{labels_line}
Here are solved examples:
{examples}

The current instruction is:
<<<
{instruction}
>>>

Write a better instruction for this task: clear, specific, at most three sentences. Reply with the instruction only."""


def settings_for(spec) -> dict:
    """The rung's search settings from its `train:` block, checked, with defaults filled in."""
    from tailorlm.rungs.base import rung_settings

    given = rung_settings(spec, SETTINGS, "prompt_opt")
    out = {**DEFAULTS, **given}
    for key in ("budget", "minibatch"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 1:
            raise TailorError(f"rung {spec.label!r}: {key} must be a positive integer, got {out[key]!r}")
    for key in ("variants", "demo_sets", "seed"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 0:
            raise TailorError(f"rung {spec.label!r}: {key} must be an integer ≥ 0, got {out[key]!r}")
    if not isinstance(out["similar"], bool):
        raise TailorError(f"rung {spec.label!r}: similar must be true or false, got {out['similar']!r}")
    names = out["instructions"]
    if names is not None and (not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names)):
        raise TailorError(f"rung {spec.label!r}: instructions must be a list of prompt names, got {names!r}")
    return out


def search_pools(project, spec) -> dict:
    """The records the search reads, by pool name: the train split (demonstrations) and the
    validation split (scores). The ladder's leakage check runs on these."""
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.rungs.build import default_dataset

    manifest = resolve(project, default_dataset(project, spec))
    return {f"{manifest['id']}:{split}": load_records(project, manifest, split)
            for split in ("train", "validation") if manifest["splits"].get(split)}


def build_prompt_opt(project, spec, generator, embedder=None, log=None) -> PromptRung:
    """The rung with the searched prompt: the saved search when it still applies, else a new search.

    >>> build_prompt_opt(project, RungConfig(kind="prompt_opt"), pool.default()).meta["prompt"]  # doctest: +SKIP
    'prompt_opt@5d1c07aa'
    """
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.rungs.classic import _LazyEmbedder
    from tailorlm.rungs.prompts import load_prompt
    from tailorlm.rungs.build import default_dataset
    from tailorlm.rungs.few_shot import chat_pool
    from tailorlm.paths import inside, safe_name

    settings = settings_for(spec)
    name = safe_name(spec.label, "rung name")
    manifest = resolve(project, default_dataset(project, spec))
    if not manifest["splits"].get("validation"):
        raise TailorError(f"rung {spec.label!r} scores its candidates on a validation split, and {manifest['id']} has "
                          "none: give the split step a validation share (e.g. `split: {train: 0.8, validation: 0.1, "
                          "test: 0.1}`) and run `tailor data prepare`")
    train = chat_pool(load_records(project, manifest, "train"))
    if not train:
        raise TailorError(f"rung {spec.label!r}: {manifest['id']} has no train examples to draw demonstrations from")
    instructions = library_instructions(project, settings["instructions"], exclude=name)
    record_path = inside(project.root, "prompts", f"{name}.search.json")
    key = search_key(project, manifest, settings, spec.k, generator, instructions)
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    reused = bool(record and record.get("key") == key and inside(project.root, "prompts", f"{name}.md").exists()
                  and load_prompt(project, name)["id"] == record["prompt"])
    if not reused:
        lazy = embedder if embedder is not None or not settings["similar"] else _LazyEmbedder(project)
        record = search(project, spec, generator, lazy, manifest, train, instructions, settings, log=log)
        record["key"] = key
        record["prompt"] = save_winner(project, name, record)
    prompt = load_prompt(project, name)
    kept = project.artifacts("prompts") / f"{prompt['id']}.search.json"
    if not kept.exists():
        kept.write_text(json.dumps(record, indent=1, ensure_ascii=False))
    win = record["winner"]
    if win["demos"] == "similar" and embedder is None:
        embedder = _LazyEmbedder(project)
    k = len(win["shots"]) or (spec.k if win["demos"] == "similar" else 0)
    rung = rung_for(generator, win["demos"], winner_shots(spec, win, train), prompt["text"], train, spec, embedder, {
        "prompt": prompt["id"], "dataset": manifest["id"], "search": str(record_path.relative_to(project.root)),
        "demos": win["demos"], "k": k, "validation": {"metric": record["metric"], "score": win["score"], "n": win["n"]},
        "search_calls": record["calls"]})
    rung.reused = reused
    return rung


def library_instructions(project, names: list[str] | None, exclude: str) -> list[dict]:
    """[{source, name, template, text}] for the library's prompts: the named ones, or every
    `prompts/*.md` (searched prompts, which have a `.search.json`, left out) and `default`."""
    from tailorlm.rungs.prompts import load_prompt

    folder = project.root / "prompts"
    if names is None:
        found = sorted(p.stem for p in folder.glob("*.md") if not (folder / f"{p.stem}.search.json").exists()) \
            if folder.is_dir() else []
        names = ["default"] + [n for n in found if n != "default"]
    out = []
    for n in dict.fromkeys(names):
        if n == exclude:
            raise TailorError(f"prompt {n!r} is the one this rung writes; it cannot also be a candidate")
        p = load_prompt(project, n)
        path = folder / f"{n}.md"
        template = path.read_text(encoding="utf-8").strip() if path.exists() else None
        out.append({"source": p["source"], "name": n, "version": p["version"], "template": template, "text": p["text"]})
    return out


def search_key(project, manifest: dict, settings: dict, k: int, generator, instructions: list[dict]) -> str:
    task = project.config.task
    blob = {"dataset": manifest["id"], "content_hash": manifest.get("content_hash"), "settings": settings, "k": k,
            "model": getattr(generator, "name", None), "instructions": [(i["name"], i["version"]) for i in instructions],
            "teacher": (project.config.models.teacher.model_dump() if project.config.models.teacher else None),
            "labels": task.labels, "label_mode": task.label_mode, "metric": search_metric(project),
            "version": SEARCH_VERSION}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def search_metric(project) -> str:
    """The eval's primary metric when it can be computed from references alone, else the task's default."""
    from tailorlm.eval import metrics as M

    primary = project.config.eval.metrics[0]
    if primary in M.METRICS and primary != "schema_valid":
        return primary
    return "accuracy" if project.config.task.type == "classification" else "rouge_l"


def demo_options(train: list, k: int, settings: dict) -> list[dict]:
    """The demonstration choices: none, the static set, random label-covering sets, similar."""
    from tailorlm.rungs.few_shot import static_examples

    k = min(k, len(train))
    out = [{"demos": "static", "shots": static_examples(train, k)}, {"demos": "none", "shots": []}]
    seen = {tuple(s[2] for s in out[0]["shots"])}
    for i in range(settings["demo_sets"]):
        shuffled = list(train)
        random.Random(settings["seed"] * 1000 + i).shuffle(shuffled)
        shots = static_examples(shuffled, k)
        ids = tuple(s[2] for s in shots)
        if ids not in seen:
            seen.add(ids)
            out.append({"demos": f"random-{i}", "shots": shots})
    if settings["similar"]:
        out.insert(1, {"demos": "similar", "shots": []})
    return out


def propose(teacher, project, instruction: str, train: list, n: int, seed: int) -> list[tuple[str, str]]:
    """Up to n rewrites of `instruction` by the teacher (sampled, so they differ); (text, raw reply) each."""
    task = project.config.task
    rng = random.Random(seed)
    labels_line = f"The answer is exactly one of: {', '.join(task.labels)}.\n" if task.labels else ""
    out = []
    for i in range(n):
        shown = rng.sample(train, min(3, len(train)))
        ask = PROPOSE.format(description=task.description.strip(), labels_line=labels_line, instruction=instruction,
                             examples="\n".join(f"- {u[:300]} -> {a[:200]}" for u, a, _ in shown))
        c = teacher.generate([{"role": "user", "content": ask}], GenParams(temperature=0.9, top_p=0.95, max_tokens=96,
                                                                          seed=seed + i))
        text = clean_variant(c.text)
        out.append((text, c.text))
    return out


def clean_variant(text: str) -> str:
    """The instruction in a teacher's reply: delimiters, a leading 'Instruction:' and quotes removed."""
    text = (text or "").strip().strip("<>").strip()
    for prefix in ("instruction:", "new instruction:", "better instruction:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):].strip()
    return text.strip('"').strip()


def rung_for(generator, demos: str, shots: list, system: str, train: list, spec, embedder, meta: dict) -> PromptRung:
    """The rung a candidate describes: the instruction as its system prompt, with its demonstrations
    (`shots`, (user, answer, id) triples, for a fixed set; `similar` picks them per question from `train`)."""
    from tailorlm.rungs.few_shot import FewShot

    if demos == "none":
        rung = PromptRung(generator, system, spec.label, meta)
    elif demos == "similar":
        rung = FewShot(generator, train, spec.k, "similar", system, embedder, spec.label, meta)
    else:
        rung = FewShot(generator, shots, len(shots), "static", system, None, spec.label, meta)
        rung.static = list(shots)  # the searched order, not static_examples' round-robin
    rung.kind = "prompt_opt"
    return rung


def winner_shots(spec, winner: dict, train: list) -> list:
    """The winning fixed demonstrations, looked up in the train split by id."""
    by_id = {ex[2]: ex for ex in train}
    missing = [i for i in winner["shots"] if i not in by_id]
    if missing:
        raise TailorError(f"rung {spec.label!r}: demonstrations {missing} are no longer in the train split; "
                          f"delete prompts/{spec.label}.search.json to search again")
    return [by_id[i] for i in winner["shots"]]


def search(project, spec, generator, embedder, manifest: dict, train: list, instructions: list[dict], settings: dict,
           log=None) -> dict:
    """Successive halving over instruction x demonstration candidates on the validation split."""
    from tailorlm.data.versions import load_records
    from tailorlm.eval.runner import default_params, score
    from tailorlm.eval.suite import Suite, suite_from_records
    log = log or logging.getLogger(__name__).info
    started = time.perf_counter()
    budget, calls = settings["budget"], 0
    task = project.config.task
    validation = suite_from_records("validation", f"{manifest['id']}:validation", load_records(project, manifest, "validation"))
    examples = list(validation.examples)
    random.Random(settings["seed"]).shuffle(examples)
    metric = search_metric(project)

    teacher, teacher_name = _teacher(project, generator)
    variants = []
    if settings["variants"]:
        base = instructions[0]
        wanted = min(settings["variants"], max(0, budget - settings["minibatch"] * 2))
        for text, raw in propose(teacher, project, base["text"], train, wanted, settings["seed"]):
            calls += 1
            if text and text not in {i["text"] for i in instructions + variants}:
                variants.append({"source": f"variant of {base['name']} by {teacher_name}", "name": None, "version": None,
                                 "template": None, "text": text, "raw": raw})
    instr = instructions + variants
    demos = demo_options(train, spec.k, settings)
    grid = [(i, d) for i in range(len(instr)) for d in range(len(demos))]
    grid.sort(key=lambda c: (c[0] + c[1], c[1]))  # the library's first prompt and the simplest demos first
    n = min(settings["minibatch"], len(examples))
    afford = (budget - calls) // n if n else 0
    if afford < 1:
        raise TailorError(f"rung {spec.label!r}: a budget of {budget} model calls cannot score one candidate on "
                          f"{n} validation examples; raise train.budget")
    grid = grid[:afford]
    candidates = [{"id": f"c{j}", "instruction": {"source": instr[i]["source"], "text": instr[i]["text"]},
                   "demos": demos[d]["demos"], "shots": [s[2] for s in demos[d]["shots"]],
                   "_i": i, "_d": d, "preds": [], "scores": []} for j, (i, d) in enumerate(grid)]
    params = default_params(project)
    alive, rounds, shared = list(candidates), [], {}

    def answer(c, upto: int) -> None:
        nonlocal calls
        todo = examples[len(c["preds"]):upto]
        if not todo:
            return
        rung = rung_for(generator, c["demos"], demos[c["_d"]]["shots"], c["instruction"]["text"], train, spec,
                        embedder, {})
        if c["demos"] == "similar":  # the train pool is embedded once for the whole search
            rung._vectors = shared.get("vectors")
        if task.type == "classification" and task.labels:
            rung.hold_to(task.labels, task.label_mode)
        got = rung.answer_batch([e.input for e in todo], params, batch_size=8)
        calls += len(todo)
        if c["demos"] == "similar":
            shared["vectors"] = rung._vectors
        c["preds"] += [None if a.error else a.text for a in got]

    while True:
        for c in alive:
            answer(c, n)
            sub = Suite(validation.name, validation.source, examples[:n])
            c["scores"].append({"n": n, "score": round(score(project, sub, c["preds"][:n], [metric])[metric]["score"], 6)})
        alive.sort(key=lambda c: -c["scores"][-1]["score"])  # stable: ties keep the cheaper candidate
        rounds.append({"n": n, "candidates": [c["id"] for c in alive], "calls": calls})
        log(f"      {spec.label}: {len(alive)} candidate(s) on {n} validation examples, best {alive[0]['scores'][-1]['score']:.3f} "
            f"({calls}/{budget} calls)")
        if len(alive) == 1 or n == len(examples):
            break
        nxt, keep = min(len(examples), 2 * n), math.ceil(len(alive) / 2)
        if calls + keep * (nxt - n) > budget:
            break
        alive, n = alive[:keep], nxt
    win = alive[0]
    for c in candidates:
        c.pop("preds")
    winner = {k: win[k] for k in ("id", "instruction", "demos", "shots")}
    winner.update(score=win["scores"][-1]["score"], n=win["scores"][-1]["n"],
                  shot_texts=[list(s) for s in demos[win["_d"]]["shots"]], template=instr[win["_i"]]["template"],
                  name=instr[win["_i"]]["name"])
    for c in candidates:
        c.pop("_i"), c.pop("_d")
    return {"kind": "prompt_search", "rung": spec.label, "dataset": manifest["id"],
            "scored_on": f"{manifest['id']}:validation", "n_validation": len(examples), "metric": metric,
            "validation_ids": [e.id for e in examples],  # in the order the rounds took them
            "golden": "never read: candidates are scored on the validation split only",
            "budget": budget, "calls": calls, "settings": settings, "model": getattr(generator, "name", None),
            "proposer": teacher_name if settings["variants"] else None,
            "variants": [{"text": v["text"], "raw": v["raw"]} for v in variants],
            "candidates": candidates, "rounds": rounds, "winner": winner,
            "seconds": round(time.perf_counter() - started, 2), "created_at": _now()}


def _teacher(project, generator):
    cfg = project.config.models.teacher
    if cfg is None:
        return generator, getattr(generator, "name", "the generator")
    from tailorlm.models import get_generator

    return get_generator(cfg), cfg.model


def save_winner(project, name: str, record: dict) -> str:
    """Write the winning instruction to prompts/NAME.md and its record beside it; returns NAME@VERSION."""
    from tailorlm.rungs.prompts import load_prompt
    from tailorlm.paths import inside

    win = record["winner"]
    # A library prompt keeps its template (so {description} and {labels} stay live); a written
    # variant is literal text, so its braces are escaped for the library's str.format.
    body = win["template"] if win["template"] is not None else win["instruction"]["text"].replace("{", "{{").replace("}", "}}")
    folder = inside(project.root, "prompts")
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.md").write_text(body + "\n", encoding="utf-8")
    prompt = load_prompt(project, name)
    if prompt["text"] != win["instruction"]["text"]:
        raise TailorError(f"prompts/{name}.md does not read back as the searched instruction")
    record["prompt"] = prompt["id"]
    (folder / f"{name}.search.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    return prompt["id"]


def _now() -> str:
    from tailorlm.store import now

    return now()


def _build(project, spec, pool, embedder=None, version=None, specs=()) -> PromptRung:
    return build_prompt_opt(project, spec, pool.default(), embedder)


PROMPT_OPT = RungType("prompt_opt", _build, effort=1.5)  # searched on validation, answers like few_shot
