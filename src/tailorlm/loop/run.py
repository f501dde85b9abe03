"""`tailor loop`, `tailor promote`, `tailor rollback`: learn from feedback, and move aliases with care.

The loop turns feedback into curated datasets, trains a candidate from the production model
(sft on corrections, else dpo on preference pairs), scores candidate and production on the
project's golden suite and on the general-capability suite, and moves `production` to the
candidate only if the regression gate passes. With `--ab` the candidate is canaried on live traffic
instead (`serve/ab.py`), then promoted when non-inferior offline and live, or rolled back when live
feedback turns significantly worse. Each loop is written to `.tailor/loops/ID.json` with its
datasets, run, reports and gate, and every alias move is kept in `alias_history`.
"""

import json

from tailorlm.errors import TailorError
from tailorlm.registry.moves import alias_history, move_alias
from tailorlm.registry.resolve import alias_target
from tailorlm.registry.resolve import model as model_version
from tailorlm.store import new_id, now

PRODUCTION, CANDIDATE = "production", "candidate"


def promote(project, version_id: str, alias: str = PRODUCTION, reason: str | None = None) -> dict:
    """Point `alias` at a model version (by hand, or when the loop's gate passed)."""
    from tailorlm.train import registry

    version = registry.resolve(project, version_id)
    move = move_alias(project, "model", version["name"], alias, version["id"], reason=reason or "promoted by hand")
    return {"name": version["name"], "alias": alias, "target": version["id"], "previous": move.previous}


def rollback(project, alias: str = PRODUCTION, name: str | None = None) -> dict:
    """Move `alias` back to where it pointed before its last move."""
    name = name or project.config.name
    current = alias_target(project, "model", name, alias)
    if current is None:
        raise TailorError(f"{name}:{alias} points at nothing; `tailor promote VERSION` first")
    moves = [h for h in alias_history(project, "model", name, alias) if h.target == current and h.previous]
    if not moves:
        raise TailorError(f"{name}:{alias} has no earlier target to roll back to")
    target = moves[-1].previous
    move_alias(project, "model", name, alias, target, reason=f"rollback from {current}")
    return {"name": name, "alias": alias, "target": target, "previous": current}


def run_loop(project, method: str = "auto", min_examples: int = 1, train: dict | None = None, generator=None,
             embedder=None, log=print, on_progress=None, promote_on_pass: bool = True, ab: bool = False) -> dict:
    """One turn of the loop; returns what it did (datasets, run, reports, gate, promoted or not).

    With `ab`, a candidate that passes the offline gate is not promoted but canaried: the `candidate`
    alias moves to it and `serve.ab.share` of live users get it. While a canary runs, a turn trains
    nothing and decides it on live feedback instead (`canary_step`): promote, roll back, or wait.
    >>> run_loop(Project.load("."))["promoted"]  # doctest: +SKIP
    False
    """
    from tailorlm.serve.ab import experiment
    from tailorlm.train import registry

    name = project.config.name
    prod_id = alias_target(project, "model", name, PRODUCTION)
    if prod_id is None:
        raise TailorError(f"no {name}:{PRODUCTION} model to improve: `tailor promote VERSION` first")
    if ab:
        if project.config.serve.ab.share <= 0:
            raise TailorError("tailor loop --ab canaries the candidate on live traffic, and serve.ab.share is 0: "
                              "set serve.ab.share in tailor.yaml (e.g. 0.1) and restart `tailor serve`")
        if experiment(project):
            return canary_step(project, generator=generator, embedder=embedder, log=log, on_progress=on_progress)
    lineage = registry.resolve(project, prod_id)["lineage"]
    method, datasets, counts = _curated_feedback(project, method, min_examples, log)
    log(f"curated: {datasets[method]['id']} ({datasets[method]['accounting']['kept']} examples); "
        f"training a {method} candidate from {prod_id}")
    result = _train_candidate(project, method, datasets[method]["id"], prod_id, lineage, train, log, on_progress)
    candidate_id = result["model_version"]
    if not ab:  # a canary's candidate gets live traffic only once it has passed the offline gate
        move_alias(project, "model", name, CANDIDATE, candidate_id, reason=f"trained by the loop from {prod_id}")

    reports, verdict = offline_gate(project, prod_id, candidate_id, generator, embedder, log, on_progress)
    promoted = bool(verdict["passed"] and promote_on_pass and not ab)
    if promoted:
        move_alias(project, "model", name, PRODUCTION, candidate_id,
                   reason=f"loop: gate passed against {prod_id} on {', '.join(verdict['suites'])}")
    loop = {"id": new_id("loop-"), "created_at": now(), "production_before": prod_id, "candidate": candidate_id,
            "method": method, "feedback": counts, "datasets": {k: (m["id"] if m else None) for k, m in datasets.items()},
            "run": result["run_id"], "reports": reports, "gate": verdict, "promoted": promoted,
            "production_after": candidate_id if promoted else prod_id}
    if ab:
        loop["canary"] = _start_canary(project, prod_id, candidate_id, verdict, promote_on_pass, log)
    else:
        log(("promoted " if promoted else "kept production; the gate failed for ") + candidate_id)
    return _write_loop(project, loop)


def _curated_feedback(project, method: str, min_examples: int, log) -> tuple[str, dict, dict]:
    """(method, curated dataset manifests by method, feedback counts): the feedback turned into training
    data, and with `method="auto"` the method it supports (sft on corrections, dpo on pairs, else kto on
    thumbs). Raises when the chosen method has fewer than `min_examples` curated examples."""
    from tailorlm.loop.curate import collect, curate

    sft, prefs, counts = collect(project)
    log(f"feedback: {counts['feedback']} signals -> {counts['sft']} corrections, {counts['preference']} preference pairs")
    datasets = {"sft": curate(project, sft, "feedback-sft", "chat"), "dpo": curate(project, prefs, "feedback-dpo", "preference")}
    kept = {k: (m["accounting"]["kept"] if m else 0) for k, m in datasets.items()}
    if method == "kto" or (method == "auto" and max(kept.values()) < min_examples):  # thumbs, but no pairs
        from tailorlm.loop.curate import thumb_records

        datasets["kto"] = curate(project, thumb_records(project), "feedback-kto", "chat")
        kept["kto"] = datasets["kto"]["accounting"]["kept"] if datasets["kto"] else 0
    if method == "auto":
        method = "sft" if kept["sft"] >= min_examples else "dpo" if kept["dpo"] >= min_examples else "kto"
    if kept[method] < min_examples:
        raise TailorError(f"not enough curated feedback for {method}: {kept[method]} examples after dedup, PII and "
                          f"decontamination (need {min_examples}); collect more with `tailor feedback` or POST /v1/feedback")
    return method, datasets, counts


def _train_candidate(project, method: str, dataset_id: str, prod_id: str, lineage: dict, train: dict | None, log,
                     on_progress) -> dict:
    """Train the candidate from production on the curated dataset; a preference-tuned candidate keeps
    production's prompting (system prompt and rung), so it is served the way its parent was."""
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train as train_run

    settings = {"epochs": 1.0, "eval_steps": 50, "early_stopping_patience": None, **(train or {})}
    if method == "sft":
        settings = {"system_prompt": lineage.get("system_prompt"), "rung": lineage.get("rung", "sft"), **settings}
    cfg = TrainConfig(method=method, dataset=dataset_id, base=prod_id, name=project.config.name, **settings)
    result = train_run(project, cfg, on_message=lambda m: log(f"  {m}"),
                       on_progress=(lambda s, t, _l, _tps: on_progress("train candidate", s, t)) if on_progress else None)
    if method in ("dpo", "kto"):  # a preference run's version is served like its parent
        _inherit_prompting(project, result["model_version"], lineage)
    return result


def _start_canary(project, prod_id: str, candidate_id: str, verdict: dict, promote_on_pass: bool, log) -> bool:
    """`loop --ab`: point `candidate` at a candidate shown non-inferior offline, so a share of live users
    get it; returns whether the canary started."""
    started = bool(verdict["noninferior"] and promote_on_pass)
    if started:
        move_alias(project, "model", project.config.name, CANDIDATE, candidate_id,
                   reason=f"loop --ab: offline non-inferior to {prod_id}; canary on "
                          f"{project.config.serve.ab.share:g} of live users")
    log(f"canary started: {candidate_id}" if started else
        f"no canary: {candidate_id} is not shown non-inferior offline (margin {verdict['margin']:g})")
    return started


def offline_gate(project, prod_id: str, candidate_id: str, generator=None, embedder=None, log=print,
                 on_progress=None) -> tuple[list[dict], dict]:
    """Score production and candidate on the golden and general suites; (reports, gate verdict).

    The verdict's `passed` is the regression gate (not significantly worse beyond eval.margin);
    `noninferior` is the canary's stricter rule: every check's 95% interval for the change stays
    above -eval.margin (below it for lower-is-better metrics), i.e. a one-sided 2.5% test.
    """
    from tailorlm.eval.compare import gate
    from tailorlm.eval.runner import LOWER_IS_BETTER, default_params, evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.build import rung_for_model
    from tailorlm.models.pool import ModelPool

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
    margin = project.config.eval.margin
    verdict = gate(pairs, margin)
    for c in verdict["checks"]:
        c["noninferior"] = c["high"] < margin if c["metric"] in LOWER_IS_BETTER else c["low"] > -margin
    verdict["noninferior"] = verdict["passed"] and all(c["noninferior"] for c in verdict["checks"])
    verdict["suites"] = [s.name for s, _ in suites]
    return reports, verdict


def canary_step(project, generator=None, embedder=None, log=print, on_progress=None) -> dict:
    """Decide a running canary on live feedback (`serve.ab.report`): roll the candidate alias back to
    production when the candidate is significantly worse; promote it when it is non-inferior on live
    feedback and on the offline gate; otherwise wait. Every alias move is kept in alias_history.

    >>> canary_step(Project.load("."))["ab"]["verdict"]["decision"]  # doctest: +SKIP
    'wait'
    """
    from tailorlm.serve import ab

    name = project.config.name
    live = ab.report(project)
    prod_id, cand_id = live["production"], live["candidate"]
    decision = live["verdict"]
    loop = {"id": new_id("loop-"), "created_at": now(), "kind": "canary", "production_before": prod_id,
            "candidate": cand_id, "ab": live, "promoted": False, "rolled_back": False, "production_after": prod_id}
    log(f"canary {cand_id} against {prod_id}: {decision['decision']} ({decision['reason']})")
    if decision["decision"] == "rollback":
        move_alias(project, "model", name, CANDIDATE, prod_id, reason=f"ab rollback of {cand_id}: {decision['reason']}")
        loop["rolled_back"] = True
    elif decision["decision"] == "promote":
        reports, verdict = offline_gate(project, prod_id, cand_id, generator, embedder, log, on_progress)
        loop.update(reports=reports, gate=verdict)
        if verdict["noninferior"]:
            move_alias(project, "model", name, PRODUCTION, cand_id,
                       reason=f"ab: {decision['reason']}; offline non-inferior (margin {verdict['margin']:g})")
            loop.update(promoted=True, production_after=cand_id)
        else:
            log(f"not promoted: {cand_id} is not non-inferior on the offline gate")
    return _write_loop(project, loop)


def _write_loop(project, loop: dict) -> dict:
    folder = project.artifacts("loops")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{loop['id']}.json").write_text(json.dumps(loop, indent=1))
    loop["path"] = str((folder / f"{loop['id']}.json").relative_to(project.root))
    return loop


def _inherit_prompting(project, version_id: str, lineage: dict) -> None:
    mine = model_version(project, version_id).lineage
    mine.update(system_prompt=lineage.get("system_prompt"), rung=lineage.get("rung", "sft"))
    project.store.update("model_versions", {"id": version_id}, lineage=mine)
