"""`tailor loop`, `tailor promote`, `tailor rollback`: learn from feedback, and move aliases with care.

The loop turns feedback into curated datasets, trains a candidate from the production model
(sft on corrections, else dpo on preference pairs), scores candidate and production on the
project's golden suite and on the general-capability suite, and moves `production` to the
candidate only if the regression gate passes. Each loop is written to `.tailor/loops/ID.json`
with its datasets, run, reports and gate, and every alias move is kept in `alias_history`.
"""

import json

from tailorlm.errors import TailorError
from tailorlm.store import new_id, now

PRODUCTION, CANDIDATE = "production", "candidate"


def promote(project, version_id: str, alias: str = PRODUCTION, reason: str | None = None) -> dict:
    """Point `alias` at a model version (by hand, or when the loop's gate passed)."""
    from tailorlm.train import registry

    version = registry.resolve(project, version_id)
    previous = project.store.set_alias("model", version["name"], alias, version["id"], reason=reason or "promoted by hand")
    return {"name": version["name"], "alias": alias, "target": version["id"], "previous": previous}


def rollback(project, alias: str = PRODUCTION, name: str | None = None) -> dict:
    """Move `alias` back to where it pointed before its last move."""
    name = name or project.config.name
    current = project.store.get_alias("model", name, alias)
    if current is None:
        raise TailorError(f"{name}:{alias} points at nothing; `tailor promote VERSION` first")
    history = [h for h in project.store.select("alias_history", order_by="at")
               if h["scope"] == "model" and h["name"] == name and h["alias"] == alias]
    moves = [h for h in history if h["target"] == current and h["previous"]]
    if not moves:
        raise TailorError(f"{name}:{alias} has no earlier target to roll back to")
    target = moves[-1]["previous"]
    project.store.set_alias("model", name, alias, target, reason=f"rollback from {current}")
    return {"name": name, "alias": alias, "target": target, "previous": current}


def run_loop(project, method: str = "auto", min_examples: int = 1, train: dict | None = None, generator=None,
             embedder=None, log=print, on_progress=None, promote_on_pass: bool = True) -> dict:
    """One turn of the loop; returns what it did (datasets, run, reports, gate, promoted or not).

    >>> run_loop(Project.load("."))["promoted"]  # doctest: +SKIP
    False
    """
    from tailorlm.eval.compare import gate
    from tailorlm.eval.runner import default_params, evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.ladder.rungs import rung_for_model
    from tailorlm.loop.curate import collect, curate
    from tailorlm.models.pool import ModelPool
    from tailorlm.train import registry
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train as train_run

    name = project.config.name
    prod_id = project.store.get_alias("model", name, PRODUCTION)
    if prod_id is None:
        raise TailorError(f"no {name}:{PRODUCTION} model to improve: `tailor promote VERSION` first")
    production = registry.resolve(project, prod_id)
    sft, prefs, counts = collect(project)
    log(f"feedback: {counts['feedback']} signals -> {counts['sft']} corrections, {counts['preference']} preference pairs")
    datasets = {"sft": curate(project, sft, "feedback-sft", "chat"), "dpo": curate(project, prefs, "feedback-dpo", "preference")}
    kept = {k: (m["accounting"]["kept"] if m else 0) for k, m in datasets.items()}
    if method == "auto":
        method = "sft" if kept["sft"] >= min_examples else "dpo"
    if kept[method] < min_examples:
        raise TailorError(f"not enough curated feedback for {method}: {kept[method]} examples after dedup, PII and "
                          f"decontamination (need {min_examples}); collect more with `tailor feedback` or POST /v1/feedback")
    log(f"curated: {datasets[method]['id']} ({kept[method]} examples); training a {method} candidate from {prod_id}")

    lineage = production["lineage"]
    settings = {"epochs": 1.0, "eval_steps": 50, "early_stopping_patience": None, **(train or {})}
    if method == "sft":
        settings = {"system_prompt": lineage.get("system_prompt"), "rung": lineage.get("rung", "sft"), **settings}
    cfg = TrainConfig(method=method, dataset=datasets[method]["id"], base=prod_id, name=name, **settings)
    result = train_run(project, cfg, on_message=lambda m: log(f"  {m}"),
                       on_progress=(lambda s, t, _l, _tps: on_progress("train candidate", s, t)) if on_progress else None)
    candidate_id = result["model_version"]
    if method == "dpo":  # a DPO run's version is served like its parent
        _inherit_prompting(project, candidate_id, lineage)
    project.store.set_alias("model", name, CANDIDATE, candidate_id, reason=f"trained by the loop from {prod_id}")

    pool = ModelPool(project, generator)
    suites = [(load_suite(project), list(project.config.eval.metrics)), (load_suite(project, "general"), ["contains"])]
    pairs, reports = [], []
    for suite, metrics in suites:
        params = default_params(project) if suite.name != "general" else None
        pair = []
        for vid in (prod_id, candidate_id):
            rung = rung_for_model(project, vid, pool, embedder)
            log(f"eval {vid} on {suite.name}@{suite.version} (n={len(suite.examples)})")
            report = evaluate(project, rung, suite, metrics, params=params, subject=vid,
                              on_progress=(lambda d, t, label=f"{vid} {suite.name}": on_progress(label, d, t)) if on_progress else None)
            pair.append(report)
        pairs.append(tuple(pair))
        reports += [{"suite": suite.name, "model": r["subject"], "report": r["id"], "metrics": {
            m: v["mean"] for m, v in r["metrics"].items()}} for r in pair]
    verdict = gate(pairs, project.config.eval.margin)
    promoted = bool(verdict["passed"] and promote_on_pass)
    if promoted:
        project.store.set_alias("model", name, PRODUCTION, candidate_id,
                                reason=f"loop: gate passed against {prod_id} on {', '.join(s.name for s, _ in suites)}")
    loop = {"id": new_id("loop-"), "created_at": now(), "production_before": prod_id, "candidate": candidate_id,
            "method": method, "feedback": counts, "datasets": {k: (m["id"] if m else None) for k, m in datasets.items()},
            "run": result["run_id"], "reports": reports, "gate": verdict, "promoted": promoted,
            "production_after": candidate_id if promoted else prod_id}
    folder = project.artifacts("loops")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{loop['id']}.json").write_text(json.dumps(loop, indent=1))
    loop["path"] = str((folder / f"{loop['id']}.json").relative_to(project.root))
    log(("promoted " if promoted else "kept production; the gate failed for ") + candidate_id)
    return loop


def _inherit_prompting(project, version_id: str, lineage: dict) -> None:
    row = project.store.select("model_versions", id=version_id)[0]
    mine = json.loads(row["lineage"])
    mine.update(system_prompt=lineage.get("system_prompt"), rung=lineage.get("rung", "sft"))
    project.store.update("model_versions", {"id": version_id}, lineage=mine)
