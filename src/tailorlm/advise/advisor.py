"""`tailor advise`: which rung to try next, why, what data it still lacks, and what to run.

It sits between `data prepare` and `ladder` in the journey. `gather(project)` reads the facts: the
labelled examples (real and synthetic) and their tokens, preference pairs, the document corpus,
how often the knowledge changes, the task type, the constraints in `advise:` and the latest ladder
report. `decide(facts)` is a pure function of those facts, so every branch is tested on plain
dictionaries. It follows the ladder, cheapest first:

    [classic baseline] -> prompting -> few-shot -> prompt optimisation -> RAG -> fine-tuning -> fine-tuning + RAG (hybrid) -> DPO

and climbs one rung only when the last climb paid (a significant gain on the ladder). On a
classification task the first rung is the classic baseline (TF-IDF or embeddings + a linear model):
seconds to fit, and the bar every LLM rung must clear. Pre-training is advised only with at least
10B tokens of unique (prepared, deduplicated) text and a training budget that covers its estimate.
"""

from tailorlm.advise.facts import FREQUENT
from tailorlm.data.steps.mix import cap_allowed

# prompt_opt serves at a few-shot prompt's cost and adds only a bounded search on validation (costs.prompt_search_cost),
# no retrieval per query and no training: between few-shot and RAG.
ORDER = ("classic", "zero_shot", "few_shot", "prompt_opt", "rag", "sft", "hybrid", "dpo", "pretrain")
REFINES = {"prompt_opt": "few_shot"}  # advised only right after the rung it refines paid, never as a skipped gap
LABEL = {"classic": "the classic baseline (TF-IDF or embeddings + a linear model)",
         "zero_shot": "prompting", "few_shot": "few-shot", "prompt_opt": "prompt optimisation (searched on validation)",
         "rag": "RAG", "sft": "fine-tuning",
         "hybrid": "fine-tuning + RAG (hybrid)", "dpo": "preference tuning (DPO)", "pretrain": "pre-training"}
FINE_TUNE_MIN_EXAMPLES = 500  # the product's bar for LoRA to beat good prompting (DESIGN.md measured 480 -> 64%)
DPO_MIN_PAIRS = 500  # the same bar for preference pairs
PRETRAIN_MIN_TOKENS = 10e9
ALPHA = 0.05
PROMPT_OPT_MIN_VALIDATION = 16  # two rounds of the search's successive halving at its default minibatch of 8
CLASSIC_MIN_PER_LABEL = 5  # below this, a validation score (or a CV fold) holds too few examples of a label to tune on


def _n(x: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}"


def _have(examples: dict) -> str:
    synth = f", {_n(examples['synthetic'])} synthetic" if examples["synthetic"] else ""
    return f"{_n(examples['real'])} real{synth}"


def readiness(kind: str, facts: dict) -> dict:
    """{applicable, ready, note, missing} for one rung kind, from the data alone."""
    ex, docs = facts["examples"], facts["documents"]
    real, synth = ex["real"], ex["synthetic"]
    share = facts["max_share"]
    usable = real + min(synth, cap_allowed(real, share))
    frequent = facts["task"]["knowledge_changes"] in FREQUENT
    row = {"kind": kind, "applicable": True, "ready": True, "note": "", "missing": []}

    def lack(what: str, need: float, have: float, extra: str = "") -> None:
        if have < need:
            row["ready"] = False
            row["missing"].append(f"{what} needs ≥ {_n(need)} {extra}; you have {_n(have)}")

    def examples_for(what: str) -> None:
        lack(what, FINE_TUNE_MIN_EXAMPLES, usable, "good examples")
        if not row["ready"]:
            room = cap_allowed(real, share) - synth
            if room > 0:
                row["missing"][-1] += f" ({_have(ex)}); synthetic data may add {_n(room)} more within the {share:.0%} cap"

    if kind == "classic":
        labels = facts["task"].get("labels") or 0
        if facts["task"]["type"] != "classification" or not labels:
            row.update(applicable=False, ready=False, note="classification tasks with labels only")
        else:
            lack("the classic baseline", CLASSIC_MIN_PER_LABEL * labels, real,
                 f"labelled examples ({CLASSIC_MIN_PER_LABEL} per label)")
    elif kind == "few_shot":
        lack("few-shot", facts["few_shot_k"], real, "labelled examples")
    elif kind == "prompt_opt":
        lack("prompt optimisation", facts["few_shot_k"] + PROMPT_OPT_MIN_VALIDATION, real,
             f"labelled examples (demonstrations, and ≥ {PROMPT_OPT_MIN_VALIDATION} in a validation split to score on)")
    elif kind in ("rag", "hybrid") and not docs["n"]:
        row.update(applicable=False, ready=False, note="no documents")
    elif kind == "sft":
        if frequent and docs["n"]:
            row.update(applicable=False, ready=False, note=f"knowledge changes {facts['task']['knowledge_changes']}: facts "
                       "belong in retrieval, so fine-tune only together with it (hybrid)")
        else:
            examples_for("fine-tuning")
    elif kind == "hybrid":
        examples_for("fine-tuning + RAG")
    elif kind == "dpo":
        if not facts["preferences"]["pairs"]:
            row.update(applicable=False, ready=False, note="no preference pairs")
        else:
            lack("DPO", DPO_MIN_PAIRS, facts["preferences"]["pairs"], "preference pairs")
    elif kind == "pretrain":
        _pretrain(row, facts)
    return row


def _pretrain(row: dict, facts: dict) -> None:
    docs, est = facts["documents"], facts.get("pretrain")
    budget = facts["advise"].get("training_budget")
    if docs["tokens"] < PRETRAIN_MIN_TOKENS:
        row.update(applicable=False, ready=False,
                   note=f"pre-training needs ≥ 10B unique tokens; you have {_n(docs['tokens'])}")
        return
    row["ready"] = False
    if not docs["prepared"]:
        row["missing"].append(f"{_n(docs['tokens'])} raw tokens: prepare (deduplicate) the corpus to count unique tokens")
        return
    cost = (est or {}).get("cost") or {}
    if cost.get("amount") is None:
        row["missing"].append("pre-training cost unknown: " + (cost.get("reason") or "set advise.gpu and its price in "
                                                                                     "prices.gpu_hour"))
    elif budget is None:
        row["missing"].append(f"pre-training on {_n(docs['tokens'])} tokens costs about {cost['amount']:.4g}; "
                              "set advise.training_budget to say whether you can spend it")
    elif cost["amount"] > budget:
        row["missing"].append(f"pre-training costs about {cost['amount']:.4g}, over the training budget of {budget:.4g}")
    else:
        row["ready"] = True
        row["note"] = f"{_n(docs['tokens'])} unique tokens; about {cost['amount']:.4g} within the budget of {budget:.4g}"


def _sign(facts: dict) -> int:
    from tailorlm.eval.runner import LOWER_IS_BETTER

    return -1 if (facts.get("ladder") or {}).get("primary") in LOWER_IS_BETTER else 1


def beats(facts: dict, b: dict, a: dict) -> tuple[bool, str]:
    """Whether rung `b` is significantly better than rung `a`, and on what basis: a paired test
    from the ladder's reports when there is one, else non-overlapping 95% intervals."""
    sign = _sign(facts)
    t = _test_between(facts, a, b)
    if t:
        delta = t["delta"] if t["b"] == b["name"] else -t["delta"]
        won = t["p_value"] < ALPHA and sign * delta > 0
        return won, f"paired {t.get('test', 'test')}: delta {delta:+.3f}, p = {t['p_value']:.3g}, n = {t.get('n', '?')}"
    qa, qb = a["quality"], b["quality"]
    won = qb["low"] > qa["high"] if sign > 0 else qb["high"] < qa["low"]
    overlap = "do not overlap" if won else "overlap"
    return won, (f"{qb['mean']:.3f} [{qb['low']:.3f}, {qb['high']:.3f}] vs {qa['mean']:.3f} "
                 f"[{qa['low']:.3f}, {qa['high']:.3f}]: the 95% intervals {overlap}")


def _test_between(facts: dict, a: dict, b: dict) -> dict | None:
    return next((t for t in facts["ladder"].get("tests", []) if {t["a"], t["b"]} == {a["name"], b["name"]}), None)


def _power_line(facts: dict, a: dict, b: dict) -> str | None:
    """What the golden suite lacks to tell `a` from `b`, when the ladder's paired test says it is too small."""
    n, t = facts["eval"]["n"], _test_between(facts, a, b) or {}
    need = t.get("n_needed")
    if need is not None and need > n:
        return (f"a larger golden suite: telling {b['name']} from {a['name']} apart by {t['power_delta'] * 100:g} "
                f"points at 80% power takes about {need} examples (they disagree on {t['discordance']:.0%} of "
                f"the {t.get('n', n)}; McNemar sample size, Connor 1987); you have {n}")
    return None


def violations(rung: dict, limits: dict) -> list[str]:
    """The constraints in `advise:` that a measured rung breaks."""
    out = []
    p95 = (rung.get("latency") or {}).get("p95")
    if limits.get("latency_p95_ms") is not None and p95 is not None and p95 * 1000 > limits["latency_p95_ms"]:
        out.append(f"p95 latency {p95 * 1000:.0f} ms > {limits['latency_p95_ms']:.0f} ms")
    cost = (rung.get("cost_per_1k") or {}).get("usd_per_1k")
    if limits.get("max_cost_per_1k") is not None and cost is not None and cost > limits["max_cost_per_1k"]:
        out.append(f"cost {cost:.4g} per 1k > {limits['max_cost_per_1k']:.4g}")
    return out


def _best_by_kind(facts: dict) -> dict[str, dict]:
    sign, best = _sign(facts), {}
    for r in facts["ladder"]["rungs"]:
        if r.get("quality", {}).get("mean") is None or r["kind"] not in ORDER:  # an ensemble is no step to climb
            continue
        if r["kind"] not in best or sign * r["quality"]["mean"] > sign * best[r["kind"]]["quality"]["mean"]:
            best[r["kind"]] = r
    return best


def serve_choice(facts: dict) -> dict | None:
    """Which measured rung to serve now: the ladder's recommendation if it meets the constraints,
    else the best rung that does."""
    ladder = facts.get("ladder")
    if not ladder:
        return None
    limits, sign = facts["advise"], _sign(facts)
    ok = [r for r in ladder["rungs"] if r.get("quality", {}).get("mean") is not None and not violations(r, limits)]
    rec = (ladder.get("recommendation") or {}).get("rung")
    for r in ok:
        if r["name"] == rec:
            return {"rung": r["name"], "kind": r["kind"], "reason": ladder["recommendation"].get("reason", "")}
    if not ok:
        return {"rung": None, "kind": None, "reason": "no measured rung meets the constraints in advise:"}
    best = max(ok, key=lambda r: sign * r["quality"]["mean"])
    return {"rung": best["name"], "kind": best["kind"], "reason": "the best measured rung that meets the constraints"}


def decide(facts: dict) -> dict:
    """The advice for a project's facts: the next rung, the action, reasons, missing data, next steps.

    `action` is one of: measure (nothing measured yet), climb (the next rung is ready), collect_data
    (the next rung lacks data), stay (the last climb did not pay, the target is met, or the data
    supports nothing higher).

    >>> decide(empty_facts())["rung"]  # doctest: +SKIP
    'zero_shot'
    """
    rows = {k: readiness(k, facts) for k in ORDER}
    out = {"kind": "advice", "rung": None, "action": None, "reasons": [], "missing": [], "next_steps": [],
           "warnings": [], "rungs": [], "serve": serve_choice(facts)}
    _data_checks(facts, out)
    if not facts.get("ladder"):
        _first_rungs(facts, rows, out)
    else:
        _climb(facts, rows, out)
    measured = _best_by_kind(facts) if facts.get("ladder") else {}
    for k in ORDER:
        row = {key: rows[k][key] for key in ("kind", "applicable", "ready", "note")}
        row["missing"] = rows[k]["missing"]
        row["measured"] = measured.get(k, {}).get("quality")
        out["rungs"].append(row)
    out["next_steps"] += _commands(out["rung"], out["action"], facts)
    return out


def _data_checks(facts: dict, out: dict) -> None:
    out["warnings"] += facts.get("problems", [])
    if not facts["eval"]["n"]:
        out["missing"].append("the ladder needs a golden suite: set eval.path to a JSONL of questions and references, "
                              "or prepare a chat source (its test split becomes the suite)")
    raw = facts["examples"]["raw_sources"] + facts["documents"]["raw_sources"] + facts["preferences"]["raw_sources"]
    if raw:
        out["next_steps"].append(f"tailor data prepare {' '.join(raw)}   # counts above are raw (not yet cleaned or deduplicated)")
    if facts["examples"]["synthetic"] and facts["examples"]["synthetic"] > cap_allowed(facts["examples"]["real"],
                                                                                       facts["max_share"]):
        out["warnings"].append(f"{facts['examples']['synthetic']} synthetic examples exceed the {facts['max_share']:.0%} "
                               "cap for the real ones; only the capped share counts")


def _first_rungs(facts: dict, rows: dict, out: dict) -> None:
    if rows["classic"]["ready"]:
        out.update(rung="classic", action="measure")
        out["reasons"].append("Nothing is measured yet: on a classification task start with the classic baseline, a "
                              "linear model over TF-IDF or embeddings (seconds to fit, no LLM). Every LLM rung must "
                              "beat it significantly to be worth its cost.")
    else:
        out.update(rung="zero_shot", action="measure")
        out["reasons"].append("Nothing is measured yet: start with the cheapest rung, a prompt, so that every later rung "
                              "has a baseline to beat.")
    rest = [k for k in ORDER[:-1] if k != out["rung"]]
    ready = [k for k in rest if rows[k]["applicable"] and rows[k]["ready"]]
    if ready:
        out["reasons"].append("Ready to measure beside it in the same ladder run: " + ", ".join(LABEL[k] for k in ready) + ".")
    blocked = next((k for k in rest if rows[k]["applicable"] and not rows[k]["ready"]), None)
    if blocked:
        out["missing"] += rows[blocked]["missing"]
    _knowledge_reason(facts, out)


def _knowledge_reason(facts: dict, out: dict) -> None:
    changes = facts["task"]["knowledge_changes"]
    if changes in FREQUENT and not facts["documents"]["n"] and facts["task"]["type"] in ("qa", "chat"):
        out["reasons"].append(f"The knowledge changes {changes} but the project has no documents: answers that depend on "
                              "facts need retrieval over a document source, not training.")
        out["missing"].append("RAG needs documents: add your knowledge base with `tailor data add docs path/to/docs/`")


def _climb(facts: dict, rows: dict, out: dict) -> None:
    measured = _best_by_kind(facts)
    if not measured:
        out.update(rung="zero_shot", action="measure")
        out["reasons"].append("The ladder report holds no scored rung; run the ladder again.")
        return
    sign, limits = _sign(facts), facts["advise"]
    best = max(measured.values(), key=lambda r: sign * r["quality"]["mean"])
    target = limits.get("quality_target")
    top_kind = max(measured, key=ORDER.index)
    top = measured[top_kind]
    below = [r for k, r in measured.items() if ORDER.index(k) < ORDER.index(top_kind)]
    won, basis = beats(facts, top, max(below, key=lambda r: sign * r["quality"]["mean"])) if below else (True, "")
    broken = violations(best, limits)
    worst_case = best["quality"]["low"] if sign > 0 else best["quality"]["high"]  # the interval's pessimistic end
    if target is not None and not broken and sign * worst_case >= sign * target:
        out.update(rung=best["kind"], action="stay")
        out["reasons"].append(f"{best['name']} meets the quality target: its 95% interval "
                              f"[{best['quality']['low']:.3f}, {best['quality']['high']:.3f}] clears {target}. Stop climbing.")
    elif broken and best["kind"] in ("few_shot", "rag") and "sft" not in measured and rows["sft"]["applicable"]:
        out.update(rung="sft", action="climb" if rows["sft"]["ready"] else "collect_data")
        out["reasons"].append(f"{best['name']} is the best rung but breaks the constraints ({'; '.join(broken)}). "
                              "Fine-tuning moves the examples out of the prompt and into the weights: shorter prompts, "
                              "faster and cheaper answers.")
        out["missing"] += rows["sft"]["missing"]
    elif not won:
        cheaper = max(below, key=lambda r: sign * r["quality"]["mean"])
        skipped = next((k for k in ORDER[:ORDER.index(top_kind)] if k not in measured and rows[k]["applicable"]
                        and k not in REFINES), None)
        out["reasons"].append(f"{LABEL[top_kind]} ({top['name']}) did not beat {cheaper['name']} significantly ({basis}).")
        short = _power_line(facts, cheaper, top)
        if short:
            out["missing"].append(short)
        if skipped:
            out.update(rung=skipped, action="climb" if rows[skipped]["ready"] else "collect_data")
            out["reasons"].append(f"{LABEL[skipped]} was skipped; measure it before climbing further.")
            out["missing"] += rows[skipped]["missing"]
        else:
            stay = _cheapest_holding(facts, measured, cheaper, out)
            out.update(rung=stay["kind"], action="stay")
            out["reasons"].append(f"Stay with {stay['name']}: the climb did not pay for its cost.")
            if top_kind in ("sft", "hybrid", "dpo"):
                out["missing"].append(f"to try {LABEL[top_kind]} again: more or better examples (you have "
                                      f"{_have(facts['examples'])}); check them with `tailor data report`")
    else:
        if below:
            out["reasons"].append(f"The last climb paid: {top['name']} beat the best cheaper rung ({basis}).")
        nxt = next((k for k in ORDER[:-1] if k not in measured and rows[k]["applicable"]
                    and REFINES.get(k, top_kind) == top_kind), None)
        if nxt:
            out.update(rung=nxt, action="climb" if rows[nxt]["ready"] else "collect_data")
            if ORDER.index(nxt) < ORDER.index(top_kind):
                out["reasons"].append(f"{LABEL[nxt]} was skipped; measure it: it may match {top['name']} for less.")
            else:
                out["reasons"].append(f"Next rung: {LABEL[nxt]}." + ("" if rows[nxt]["ready"] else " It still lacks data."))
            out["missing"] += rows[nxt]["missing"]
        elif rows["pretrain"]["ready"]:
            out.update(rung="pretrain", action="climb")
            out["reasons"].append(f"Every other rung is measured and the corpus supports pre-training: {rows['pretrain']['note']}.")
        else:
            out.update(rung=best["kind"], action="stay")
            out["reasons"].append(f"The ladder is climbed as far as the data supports; the best measured rung is {best['name']}.")
            out["missing"] += rows["pretrain"]["missing"]
    if rows["sft"]["note"] and "sft" not in measured and out["rung"] in ("hybrid", "rag"):
        out["reasons"].append(f"Fine-tuning alone is skipped: {rows['sft']['note']}.")
    _knowledge_reason(facts, out)


def _cheapest_holding(facts: dict, measured: dict, best: dict, out: dict) -> dict:
    """The cheapest measured rung that `best` does not beat significantly: the ladder's rule, so
    that the classic baseline (or a prompt) wins whenever nothing above it pays."""
    for kind in ORDER[:ORDER.index(best["kind"])]:
        r = measured.get(kind)
        if r is None:
            continue
        won, basis = beats(facts, best, r)
        if not won:
            out["reasons"].append(f"{r['name']} is cheaper than {best['name']} and not significantly worse ({basis}).")
            return r
    return best


def _commands(rung: str | None, action: str, facts: dict) -> list[str]:
    """What to run next, as commands."""
    chat = (facts["examples"]["datasets"] or ["NAME"])[0]
    if action == "collect_data":
        what = "preference pairs (prompt, chosen, rejected)" if rung == "dpo" else "labelled examples"
        steps = [f"collect more {what} and add them as a source (`tailor data add`), then `tailor data prepare`"]
        if rung in ("sft", "hybrid") and cap_allowed(facts["examples"]["real"], facts["max_share"]) > facts["examples"]["synthetic"]:
            steps.append(f"tailor data synthesize --seeds {chat}   # teacher-written variations, capped at "
                         f"{facts['max_share']:.0%} of the mix")
        return steps
    if action == "stay":
        return ["tailor ladder   # re-measure after data or prompt changes"] if rung else []
    per_rung = {
        "classic": ["add `- {kind: classic}` as the first of rungs in tailor.yaml, then `tailor ladder`"],
        "zero_shot": ["tailor ladder   # with `rungs: [{kind: zero_shot}]` (and every ready rung) in tailor.yaml"],
        "few_shot": ["add `- {kind: few_shot, k: %d}` to rungs in tailor.yaml, then `tailor ladder`" % facts["few_shot_k"]],
        "prompt_opt": ["add `- {kind: prompt_opt, k: %d}` to rungs in tailor.yaml, then `tailor ladder`   # searches "
                       "instructions and demonstrations on the validation split" % facts["few_shot_k"]],
        "rag": ["tailor rag index", "add `- {kind: rag}` to rungs in tailor.yaml, then `tailor ladder`"],
        "sft": [f"tailor train sft --dataset {chat}", "add `- {kind: sft}` to rungs in tailor.yaml, then `tailor ladder`"],
        "hybrid": ["tailor rag index", "add `- {kind: hybrid, raft: true}` to rungs in tailor.yaml, then `tailor ladder`"],
        "dpo": [f"tailor train dpo --dataset {(facts['preferences']['datasets'] or ['PREFS'])[0]} --base <your sft model "
                "version>", "add `- {kind: dpo}` to rungs, then `tailor ladder`"],
        "pretrain": [f"tailor train pretrain --dataset {(facts['documents']['datasets'] or ['DOCS'])[0]} --compute-flops "
                     f"{(facts.get('pretrain') or {}).get('flops', 0):.3g}"],
    }
    return per_rung.get(rung, [])


def advise(project) -> dict:
    """Gather the project's facts, decide, and price the advice.

    >>> advise(Project.load())["next_steps"]  # doctest: +SKIP
    ['tailor data synthesize --seeds tickets   # ...']
    """
    from tailorlm.advise.facts import gather

    facts = gather(project)
    advice = decide(facts)
    advice["costs"] = _costs(project, facts, advice)
    advice["facts"] = facts
    return advice


def _costs(project, facts: dict, advice: dict) -> dict:
    """Training cost of the advised rung and inference cost of the rung to serve, where the project
    holds what they need; each missing input is named instead of guessed."""
    from tailorlm.advise.costs import breakeven, per_query_cost, training_estimate
    from tailorlm.advise.facts import measured_serving, training_gpu
    from tailorlm.train.config import TrainConfig

    cfg = project.config
    out = {"currency": cfg.prices.currency}
    if advice["rung"] in ("sft", "hybrid"):
        size = local_model_size(project)
        if size is None:
            out["training"] = {"reason": "the generator's size is unknown here (an endpoint, or a model not on disk); "
                                         "`tailor costs --params N --tokens D` prices it"}
        else:
            out["training"] = training_estimate(
                size["n_params"], facts["examples"]["tokens"], gpu=training_gpu(cfg), mfu=cfg.advise.mfu,
                prices=cfg.prices.gpu_hour, method="lora", trainable_params=size["trainable_params"],
                epochs=_default_epochs(facts), measured_tokens_per_s=measured_training_speed(project))
    elif advice["rung"] == "pretrain":
        out["training"] = facts["pretrain"]
    elif advice["rung"] == "prompt_opt":
        out["search"] = _search_cost(cfg, facts)
    serving = measured_serving(facts.get("ladder"), (advice.get("serve") or {}).get("rung"))
    if serving:
        out["inference"] = per_query_cost(cfg.prices, serving["queries_per_s"], serving["prompt_tokens"],
                                          serving["completion_tokens"])
        out["inference"].update(rung=serving["rung"], measured_on=serving["measured_on"])
        training_cost = ((out.get("training") or {}).get("cost") or {}).get("amount")
        out["breakeven"] = breakeven(cfg.prices.cpu_hour, serving["queries_per_s"], out["inference"]["api"]["usd_per_1k"],
                                     cfg.advise.queries_per_day, training_cost)
    return out


def _search_cost(cfg, facts: dict) -> dict:
    """The prompt_opt search's one-off cost at its configured budget, priced as the measured few-shot rung."""
    from tailorlm.advise.costs import prompt_search_cost
    from tailorlm.advise.facts import measured_serving
    from tailorlm.rungs.prompt_opt import DEFAULTS, settings_for

    spec = next((r for r in cfg.rungs if r.kind == "prompt_opt"), None)
    budget = settings_for(spec)["budget"] if spec else DEFAULTS["budget"]
    ladder = facts.get("ladder")
    few = max((r for r in (ladder or {}).get("rungs", []) if r["kind"] == "few_shot"),
              key=lambda r: r["quality"]["mean"] if r.get("quality", {}).get("mean") is not None else -1, default=None)
    return prompt_search_cost(cfg.prices, budget, measured_serving(ladder, few["name"]) if few else None)


def local_model_size(project) -> dict | None:
    """{n_params, trainable_params} of the generator when its weights folder is on disk (never fetched)."""
    from pathlib import Path

    from tailorlm.advise.costs import model_size
    from tailorlm.models import embedded
    from tailorlm.train.config import TrainConfig

    gen = project.config.models.generator
    if gen.backend != "local":
        return None
    if gen.model in embedded.EMBEDDED:
        path = embedded.model_path(gen.model) if embedded.is_pulled(gen.model) else None
    else:
        path = Path(gen.model).expanduser()
        path = path if path.is_absolute() else project.root / path
        path = path if path.exists() else None
    if path is None:
        return None
    return model_size(str(path), TrainConfig.model_fields["lora_r"].default, gen.trust_remote_code)


def measured_training_speed(project) -> float | None:
    """Tokens/s of the newest model version trained here on the generator, as its run measured it."""
    from tailorlm.registry.resolve import models

    base = project.config.models.generator.model
    for v in reversed([v for v in models(project) if v.base_model == base]):
        tps = v.metrics.get("tokens_per_s")
        if tps:
            return tps
    return None


def _default_epochs(facts: dict) -> float:
    """The epochs `tailor train sft` would run on these examples: `epochs: auto` resolved on their count."""
    from tailorlm.train.config import TrainConfig, auto_epochs

    default = TrainConfig.model_fields["epochs"].default
    ex = facts["examples"]
    return auto_epochs(int(ex.get("real", 0)) + int(ex.get("synthetic", 0))) if default == "auto" else default
