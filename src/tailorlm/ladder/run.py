"""`tailor ladder`: every configured rung on the same golden suite, side by side, and which to use.

1. Load the suite and check that none of its examples is in any few-shot pool or training set.
2. For each rung, cheapest first: train its model if the ladder owns it (sft and hybrid rungs
   without a `model`; reused when the same config and dataset were trained before, resumed when a
   run was interrupted), then score it on the suite (resumable, see `eval/runner.py`).
3. Report quality with its 95% CI, latency p50/p95 and cost per 1k queries, compare adjacent rungs
   (paired), and recommend the cheapest rung whose quality is not significantly below the best by
   more than `eval.margin` (the guides' rule), saying why.

"Cheapest" is the ladder's order of effort (each kind's `effort`, `rungs/registry.py`): the classic
baseline (no LLM), prompting, then examples, then retrieval, then training, then training plus
retrieval. Serving cost per query is measured and shown beside it, because a long few-shot prompt
can cost more per query than a fine-tuned model.
"""

import json

from tailorlm.errors import TailorError
from tailorlm.eval.compare import compare, ladder_power, worse_beyond_margin
from tailorlm.eval.runner import LOWER_IS_BETTER, evaluate
from tailorlm.eval.suite import load_suite
from tailorlm.registry.moves import move_alias
from tailorlm.registry.resolve import models
from tailorlm.rungs.build import LADDER_ALIAS, build_rung, default_dataset, train_records
from tailorlm.rungs.registry import rung_type, trains
from tailorlm.store import new_id, now


def run_ladder(project, only: list[str] | None = None, generator=None, embedder=None, log=print,
               on_progress=None, batch_size: int = 8) -> dict:
    """Run the ladder; returns the ladder report (also written to `.tailor/reports/ladder-*/`).

    `on_progress(task, done, total)` is called as examples are answered and training steps pass.

    >>> run_ladder(Project.load("."))["recommendation"]["rung"]  # doctest: +SKIP
    'sft'
    """
    from tailorlm.models.pool import ModelPool

    specs = [s for s in project.config.rungs if not only or s.label in only]
    if not specs:
        raise TailorError(f"no rungs to run{' named ' + ', '.join(only) if only else ''}; configure `rungs:` in tailor.yaml")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise TailorError(f"rung names must be unique, got {labels}; give repeated kinds a `name`")
    suite = load_suite(project)
    metrics = list(project.config.eval.metrics)
    log(f"suite {suite.name}@{suite.version}: {len(suite.examples)} examples ({suite.source}); metrics: {', '.join(metrics)}")
    pool = ModelPool(project, generator)
    if embedder is None and any(s.kind in ("rag", "hybrid", "classic") or s.selection == "similar" for s in specs):
        from tailorlm.models import get_embedder

        embedder = get_embedder(project.config.models.embedder)
    leakage = check_leakage(project, suite, specs)
    log(f"leakage check: no eval example in {', '.join(leakage['pools']) or 'any pool'} "
        f"({leakage['records']} records checked)")

    rows, reports = [], []
    order = sorted(specs, key=lambda s: rung_type(s.kind).effort)  # stable: configured order within a kind
    for i, spec in enumerate(order, start=1):
        version = None
        if trains(spec.kind) and not spec.model:
            version = ensure_trained(project, spec, pool, embedder, log, on_progress)
        log(f"[{i}/{len(order)}] {spec.label}: answering {len(suite.examples)} examples")
        rung = build_rung(project, spec, pool, embedder, version=version, specs=specs)
        progress = (lambda done, total, label=spec.label: on_progress(label, done, total)) if on_progress else None
        report = evaluate(project, rung, suite, metrics, subject=f"{project.config.name}:{spec.label}",
                          batch_size=batch_size, on_progress=progress)
        reports.append(report)
        rows.append(_row(spec, report, metrics[0]))
        if version and version.get("sweep"):
            rows[-1]["sweep"] = version["sweep"]
        if project.config.eval.redteam:
            rows[-1]["redteam"] = _redteam(project, rung, spec, batch_size)
        q = rows[-1]["quality"]
        log(f"      {metrics[0]} {q['mean']:.3f} [{q['low']:.3f}, {q['high']:.3f}]  "
            f"p50 {rows[-1]['latency']['p50'] * 1000:.0f} ms  errors {report['errors']}")
    comparisons = [_brief(compare(a, b, metrics)) for a, b in zip(reports, reports[1:])]
    recommendation = recommend(rows, reports, metrics[0], project.config.eval.margin)
    ladder = {"id": f"ladder-{now()[:10]}-{new_id()[:6]}", "kind": "ladder", "suite": suite.describe(),
              "primary": metrics[0], "metrics": metrics, "margin": project.config.eval.margin,
              "rungs": rows, "comparisons": comparisons, "recommendation": recommendation,
              "leakage": leakage, "created_at": now()}
    ladder["power"] = ladder_power(ladder)
    folder = project.artifacts("reports") / ladder["id"]
    folder.mkdir(parents=True, exist_ok=True)
    from tailorlm.ladder.chart import write_charts

    ladder.update(write_charts(ladder, folder, project.root))
    from tailorlm.registry.reports import save_ladder

    save_ladder(project, ladder, folder)  # ladder.json and its row in the store (the typed layer); sets ladder["path"]
    return ladder


def _row(spec, report: dict, primary: str) -> dict:
    m = report["metrics"][primary]
    return {"name": spec.label, "kind": spec.kind, "report": report["id"], "subject": report["subject"],
            "model_version": report["rung"].get("model_version"), "prompt": report["rung"].get("prompt"),
            "quality": {"mean": m["mean"], "low": m["low"], "high": m["high"], "score": m["score"], "n": m["n"]},
            "metrics": {k: {"mean": v["mean"], "low": v["low"], "high": v["high"], "score": v["score"]}
                        for k, v in report["metrics"].items()},
            "latency": {"p50": report["latency"]["p50"], "p95": report["latency"]["p95"]},
            "tokens": {"prompt_mean": report["tokens"]["prompt"]["mean"],
                       "completion_mean": report["tokens"]["completion"]["mean"]},
            "throughput": report["throughput"], "cost_per_1k": report["cost_per_1k"], "errors": report["errors"],
            "calibration": report.get("calibration")}


def _redteam(project, rung, spec, batch_size: int) -> dict:
    """The rung's pass rate on the configured red-team suite (`eval.redteam`), for the ladder's column."""
    red = load_suite(project, project.config.eval.redteam)
    m = evaluate(project, rung, red, ["redteam"], subject=f"{project.config.name}:{spec.label}",
                 batch_size=batch_size)["metrics"]["redteam"]
    return {"suite": f"{red.name}@{red.version}", **{k: m[k] for k in ("mean", "low", "high", "n", "critical_failed")}}


def _brief(c: dict) -> dict:
    return {"a": c["a"]["subject"], "b": c["b"]["subject"], "primary": c["primary"], "n_differ": c["n_differ"],
            "metrics": c["metrics"]}


def recommend(rows: list[dict], reports: list[dict], primary: str, margin: float) -> dict:
    """The cheapest rung whose quality is not significantly below the best (beyond `margin`)."""
    sign = -1 if primary in LOWER_IS_BETTER else 1
    best_i = max(range(len(rows)), key=lambda i: (sign * rows[i]["quality"]["mean"], -i))
    best = rows[best_i]
    fmt = (lambda x: f"{x:.3f}") if primary in LOWER_IS_BETTER else (lambda x: f"{x:.1%}")
    skipped = []
    for i, row in enumerate(rows):
        if i == best_i:
            break
        d = compare(reports[best_i], reports[i], [primary])["metrics"][primary]
        if not worse_beyond_margin(d["delta"], d["p_value"], margin, primary):
            reason = (f"{row['name']} is the cheapest rung whose {primary} ({fmt(row['quality']['mean'])}) is not "
                      f"significantly below the best, {best['name']} ({fmt(best['quality']['mean'])}): difference "
                      f"{d['delta']:+.3f}, 95% CI [{d['low']:+.3f}, {d['high']:+.3f}], p = {d['p_value']:.3g}, "
                      f"margin {margin}. Climbing further would not pay on this suite (n = {best['quality']['n']}).")
            return {"rung": row["name"], "reason": reason, "best": best["name"], "versus_best": d}
        skipped.append(f"{row['name']} ({fmt(row['quality']['mean'])}, {d['delta']:+.3f}, p = {d['p_value']:.3g})")
    reason = (f"{best['name']} has the best {primary} ({fmt(best['quality']['mean'])} "
              f"[{fmt(best['quality']['low'])}, {fmt(best['quality']['high'])}])")
    reason += (", and every cheaper rung is significantly worse by more than the margin "
               f"({margin}): " + "; ".join(skipped) + "." if skipped else ", and it is the cheapest rung run.")
    return {"rung": best["name"], "reason": reason, "best": best["name"]}


def check_leakage(project, suite, specs) -> dict:
    """Refuse to run when an eval example is in a few-shot pool or in the data a model was trained on."""
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.rungs.ensemble import with_members
    from tailorlm.ladder.leakage import find_leaks
    from tailorlm.rungs.prompt_opt import search_pools
    from tailorlm.rungs.build import resolve_version

    pools, specs = {}, with_members(project, specs)  # an ensemble's members are checked even when run alone
    for spec in specs:
        if spec.kind == "prompt_opt":  # demonstrations from train, scores from validation
            pools.update(search_pools(project, spec))
        elif spec.kind in ("few_shot", "classic") or (trains(spec.kind) and not spec.model):
            try:
                manifest, records = train_records(project, default_dataset(project, spec))
            except TailorError:
                if spec.kind in ("few_shot", "classic"):
                    raise
                continue
            pools[manifest["id"] + ":train"] = records
        elif trains(spec.kind) and spec.model not in {s.label for s in specs}:  # a shared model is checked once
            version = resolve_version(project, spec, specs)
            if version.get("dataset_version"):
                manifest = resolve(project, version["dataset_version"])
                pools[manifest["id"]] = load_records(project, manifest, "train" if "train" in manifest["splits"] else None)
    leaks = find_leaks(suite, pools)
    if leaks:
        shown = "; ".join(f"eval {x['eval']} is in {x['pool']} as {x['record']} ({x['how']})" for x in leaks[:5])
        raise TailorError(f"{len(leaks)} eval example(s) leak into training or few-shot data: {shown}. "
                          "Re-run `tailor data prepare` (its decontaminate step drops them) or fix the data")
    return {"pools": sorted(pools), "records": sum(len(v) for v in pools.values()), "leaks": 0}


def ensure_trained(project, spec, pool, embedder, log, on_progress) -> dict:
    """The model version the ladder trains for `spec`: reused if trained with the same config, resumed if cut off.

    With `train.sweep` in the rung's settings, every combination is trained and scored on the
    validation split, and the best one serves the rung (`ladder/sweep.py`); the record goes in the row.
    """
    from tailorlm.ladder.sweep import run_sweep, sweep_grid

    settings = dict(spec.train)
    grid = sweep_grid(settings.pop("sweep", None))
    base, dataset = train_settings(project, spec, settings, pool, embedder, log)
    alias = LADDER_ALIAS.format(spec.label)
    if not grid:
        version = train_or_reuse(project, base, dataset, spec.label, log, on_progress)
    else:
        version, record = run_sweep(project, spec, base, dataset, grid, pool, embedder, log, on_progress)
        version = {**version, "sweep": record}
    move_alias(project, "model", project.config.name, alias, version["id"],
               reason=f"trained by the ladder for rung {spec.label}")
    return version


def train_settings(project, spec, settings: dict, pool, embedder, log) -> tuple[dict, str]:
    """The rung's training settings (the ladder's defaults under the rung's own) and its dataset version id."""
    from tailorlm.rungs.prompts import load_prompt

    prompt = load_prompt(project, spec.prompt)
    dataset = default_dataset(project, spec)
    if spec.kind == "hybrid" and spec.raft:
        from tailorlm.config import RungConfig
        from tailorlm.ladder.raft import build_raft_dataset
        from tailorlm.rungs.build import build_rung as _build
        from tailorlm.rungs.rag import source_placement

        # The training prompts are the ones the hybrid rung will serve: same sources, same placement.
        retriever = _build(project, RungConfig(kind="rag", k=spec.k, prompt=spec.prompt, sources=source_placement(spec)),
                           pool, embedder)
        manifest = build_raft_dataset(project, retriever, dataset)
        log(f"      RAFT data: {manifest['id']} ({sum(manifest['splits'].values())} examples with retrieved sources)")
        dataset = manifest["id"]
    else:
        from tailorlm.data.versions import resolve

        dataset = resolve(project, dataset)["id"]
    # Epochs are TrainConfig's own default (auto: OpenAI's rule on the dataset's size).
    out = {"eval_steps": 25, "system_prompt": prompt["text"], "rung": "hybrid" if spec.kind == "hybrid" else "sft",
           **settings}
    if spec.kind == "grpo":  # from the sft rung's model, sampled the way it is served
        from tailorlm.train.grpo import ladder_settings

        out = ladder_settings(project, spec, out)
    return out, dataset


def train_or_reuse(project, settings: dict, dataset: str, label: str, log, on_progress) -> dict:
    """A model version trained with exactly these settings on `dataset`: found, resumed or trained."""
    from tailorlm.train import registry
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train

    cfg = TrainConfig(**{"method": "sft", **settings}, dataset=dataset, name=project.config.name)
    wanted = cfg.model_dump(mode="json")
    for v in reversed(models(project)):
        if v.lineage.get("config") == wanted:
            version = registry.resolve(project, v.id)
            log(f"      {label}: reusing {version['id']} (same data and settings)")
            return version
    unfinished = [r for r in project.store.select("runs", order_by="created_at")
                  if r["status"] in ("running", "failed") and json.loads(r["config"]) == wanted]
    log(f"      {label}: training a LoRA model on {dataset}"
        + (f" (resuming {unfinished[-1]['id']})" if unfinished else ""))
    progress = (lambda step, total, _logs, _tps: on_progress(f"train {label}", step, total)) if on_progress else None
    result = train(project, None if unfinished else cfg, resume=unfinished[-1]["id"] if unfinished else None,
                   on_progress=progress, on_message=lambda m: log(f"      {m}"))
    return registry.resolve(project, result["model_version"])
