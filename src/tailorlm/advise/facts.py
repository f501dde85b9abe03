"""The facts `tailor advise` decides on, read from a project: data, task, constraints, measurements.

`gather(project)` returns one plain dictionary, so the decision (`advisor.decide`) can be tested
on hand-written facts. Counts come from prepared dataset versions (deduplicated by content across
datasets, so a mixed version does not count its real records twice); sources not prepared yet are
read raw and listed under `raw_sources`. Tokens are the validate step's counts where it ran (the
generator's tokenizer and chat template), else `approx_tokens` (about 1.3 per word).
"""

from tailorlm.data.steps.mix import is_synthetic

FREQUENT = ("weekly", "daily")  # knowledge that changes this often goes stale inside weights


def _tokens(record) -> int:
    from tailorlm.rag.chunking import approx_tokens

    return record.meta.get("tokens") or approx_tokens(record.joined())


def _count(records, seen: set, bucket: dict, kind: str) -> None:
    """Add records to the bucket of their kind, each distinct content once; chat examples count only
    from training splits (validation and test are held out, never training data)."""
    for r in records:
        if kind == "chat" and r.meta.get("split", "data") not in ("train", "data"):
            continue
        h = r.content_hash()
        if h in seen:
            continue
        seen.add(h)
        if kind == "chat":
            bucket["synthetic" if is_synthetic(r) else "real"] += 1
            bucket["tokens"] += _tokens(r)
        elif kind == "preference":
            bucket["pairs"] += 1
        elif kind == "text":
            bucket["n"] += 1
            bucket["tokens"] += _tokens(r)


def _data_facts(project) -> dict:
    from tailorlm.data.pipeline import read_sources
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.errors import TailorError
    from tailorlm.registry.resolve import aliases

    buckets = {"chat": {"real": 0, "synthetic": 0, "tokens": 0},
               "preference": {"pairs": 0}, "text": {"n": 0, "tokens": 0}}
    for b in buckets.values():
        b.update(datasets=[], raw_sources=[], prepared=True)
    seen: set[str] = set()
    covered: set[str] = set()
    for latest in aliases(project, "dataset", alias="latest"):  # by name
        manifest = resolve(project, latest.name)
        covered.update(s["name"] for s in manifest.get("sources", []))
        if manifest["kind"] in buckets:
            buckets[manifest["kind"]]["datasets"].append(manifest["name"])
            _count(load_records(project, manifest), seen, buckets[manifest["kind"]], manifest["kind"])
    problems = []
    for source in project.config.sources:
        if source.name in covered:
            continue
        try:
            records, _, _ = read_sources(project, [source])
        except TailorError as e:  # a missing file must not stop the advice; it is reported with it
            problems.append(f"source {source.name}: {e}")
            continue
        kinds = {r.kind for r in records} or {source.kind}
        for kind in kinds & buckets.keys():
            buckets[kind]["raw_sources"].append(source.name)
            buckets[kind]["prepared"] = False
            _count([r for r in records if r.kind == kind], seen, buckets[kind], kind)
    return {"examples": buckets["chat"], "preferences": buckets["preference"], "documents": buckets["text"],
            "problems": problems}


def _eval_size(project) -> dict:
    from tailorlm.paths import inside
    from tailorlm.registry.resolve import aliases, datasets

    cfg = project.config.eval
    if cfg.path:
        path = inside(project.root, cfg.path)
        n = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.exists() else 0
        return {"n": n, "suite": cfg.suite, "from": cfg.path}
    for golden in aliases(project, "suite", alias="golden"):
        version, _, split = golden.target.partition(":")
        found = [d for d in datasets(project, version.partition("@")[0]) if d.id == version]
        if found:
            splits = found[0].splits
            return {"n": splits.get(split or "data", sum(splits.values())), "suite": golden.name, "from": golden.target}
    return {"n": 0, "suite": cfg.suite, "from": None}


def latest_ladder(project) -> dict | None:
    """The newest ladder report (by `created_at`, through `tailorlm.registry.reports`), or None."""
    from tailorlm.registry.reports import latest

    ladder = latest(project, "ladder")
    return ladder.to_dict() if ladder else None


def _paired_tests(project, ladder: dict) -> list[dict]:
    """Paired significance tests between every two rungs whose eval reports are on disk, with the
    examples each pair would need to detect 5 points at 80% power (`eval.compare.power`)."""
    from tailorlm.errors import TailorError
    from tailorlm.eval.compare import compare
    from tailorlm.eval.runner import load_report

    reports = {}
    for r in ladder.get("rungs", []):
        if r.get("report"):
            try:
                reports[r["name"]] = load_report(project, r["report"])
            except TailorError:
                continue
    names, tests = list(reports), []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            try:
                m = compare(reports[a], reports[b], [ladder.get("primary")] if ladder.get("primary") else None)
            except TailorError:
                continue
            d = m["metrics"][m["primary"]]
            test = {"a": a, "b": b, "delta": d["delta"], "p_value": d["p_value"], "test": d["test"], "n": m["n"]}
            if d.get("power"):  # how many examples this pair needs for a 5-point difference, at its disagreement
                test.update(discordance=d["power"]["discordance"], n_needed=d["power"]["n_needed"],
                            power_delta=d["power"]["delta"])
            tests.append(test)
    return tests


def _ladder_facts(project) -> dict | None:
    ladder = latest_ladder(project)
    if ladder is None:
        return None
    keep = ("name", "kind", "quality", "latency", "throughput", "cost_per_1k", "tokens", "report")
    return {"id": ladder.get("id"), "path": ladder["path"], "suite": ladder.get("suite"), "primary": ladder.get("primary"),
            "rungs": [{k: r.get(k) for k in keep} for r in ladder.get("rungs", [])],
            "recommendation": ladder.get("recommendation"),
            "tests": ladder.get("tests") or _paired_tests(project, ladder)}


def training_gpu(cfg) -> str | None:
    """The GPU to price training on: `advise.gpu`, or the only GPU in the price table."""
    from tailorlm.advise.costs import find_gpu
    from tailorlm.errors import TailorError

    if cfg.advise.gpu:
        return cfg.advise.gpu
    known = []
    for key in cfg.prices.gpu_hour:
        try:
            find_gpu(key)
            known.append(key)
        except TailorError:
            continue
    return known[0] if len(known) == 1 else None


def gather(project) -> dict:
    """Everything `decide` needs, as one JSON-able dictionary.

    >>> gather(Project.load())["examples"]  # doctest: +SKIP
    {'real': 180, 'synthetic': 0, 'tokens': 36210, 'datasets': ['tickets'], 'raw_sources': [], 'prepared': True}
    """
    from tailorlm.advise.costs import pretrain_for_tokens
    from tailorlm.config import RungConfig

    cfg = project.config
    facts = _data_facts(project)
    few_shot = next((r for r in cfg.rungs if r.kind == "few_shot"), None)
    facts.update(
        task={"type": cfg.task.type, "labels": len(cfg.task.labels), "knowledge_changes": cfg.task.knowledge_changes},
        eval=_eval_size(project),
        few_shot_k=few_shot.k if few_shot else RungConfig.model_fields["k"].default,
        max_share=cfg.synthesize.max_share,
        advise=cfg.advise.model_dump(),
        ladder=_ladder_facts(project),
        pretrain=None,
    )
    if facts["documents"]["tokens"]:
        facts["pretrain"] = pretrain_for_tokens(facts["documents"]["tokens"], training_gpu(cfg), cfg.advise.mfu,
                                                cfg.prices.gpu_hour)
    return facts


def measured_serving(ladder: dict | None, rung: str | None = None) -> dict:
    """Throughput and tokens per query of one ladder rung (the named one, else the ladder's
    recommendation), as measured: the inputs of inference cost. Empty when there is no ladder."""
    if not ladder:
        return {}
    name = rung or (ladder.get("recommendation") or {}).get("rung")
    found = next((r for r in ladder["rungs"] if r["name"] == name), None)
    if found is None:
        return {}
    tp = found.get("throughput") or {}
    tokens = found.get("tokens") or {}
    qps = tp.get("queries_per_s")
    completion = tokens.get("completion_mean")
    if completion is None and qps and tp.get("completion_tokens_per_s"):
        completion = tp["completion_tokens_per_s"] / qps
    suite = ladder.get("suite") or {}
    return {"rung": name, "queries_per_s": qps, "prompt_tokens": tokens.get("prompt_mean"), "completion_tokens": completion,
            "measured_on": f"ladder {ladder.get('id')}: suite {suite.get('name')}@{suite.get('version')}, n={suite.get('n')}"}
