"""`tailor compare`, the regression gate and power: two reports on the same examples, metric by metric.

Each delta (B minus A) carries a paired 95% interval and a significance test:
- 0/1 metrics (accuracy, exact match): a paired bootstrap of the mean difference and McNemar's test;
- other mean metrics: a paired bootstrap and a sign-flip permutation test;
- corpus metrics (macro-F1, micro-F1, BLEU, chrF): the corpus values recomputed from the reports'
  predictions, a paired bootstrap of the difference of corpus values and a paired approximate
  randomization test of it (never the per-example correctness standing in for macro-F1).
The examples where the two disagree are listed, so a difference can be read, not just trusted.

Power: for 0/1 correctness (label metrics included) the share of examples the two systems disagree
on gives the number of examples McNemar's test needs to detect a difference of `delta` (default 5
points) with 80% power (`stats.paired_sample_size`). `ladder_power` sums that up over a ladder's
adjacent rungs and says when the golden set is too small for the differences the ladder reports.

The gate fails a candidate when a guarded metric is worse than the baseline by more than the
margin AND the drop is significant; a drop inside the margin, or one the data cannot tell from
noise, passes. Guarded suites include the general-capability suite, which catches forgetting.
"""

from tailorlm.errors import TailorError
from tailorlm.eval import redteam
from tailorlm.eval import metrics as M
from tailorlm.eval.runner import CORPUS_METRICS, LABEL_METRICS, LOWER_IS_BETTER
from tailorlm.eval.stats import (mcnemar, paired_bootstrap, paired_corpus_bootstrap, paired_permutation,
                                 paired_randomization, paired_sample_size)

ALPHA = 0.05
DELTA = 0.05  # the difference power analysis asks about, in metric units (5 points of accuracy)
POWER = 0.8


def _per_example(report: dict, metric: str) -> dict:
    return {e["id"]: e["scores"][metric] for e in report["examples"] if metric in e["scores"]}


def _corpus_inputs(report: dict, metric: str, ids: list[str]) -> tuple[list, list]:
    by_id = {e["id"]: e for e in report["examples"]}
    missing = "label" if metric in LABEL_METRICS else "prediction"
    if any(missing not in by_id[i] for i in ids):
        raise TailorError(f"report {report['id']} lacks the {missing}s needed to recompute {metric}; run the eval again")
    if metric in LABEL_METRICS:
        return ([by_id[i]["label"] for i in ids],
                [(by_id[i].get("labels") or [None])[0] or by_id[i].get("reference") for i in ids])
    return ([None if by_id[i].get("error") else by_id[i]["prediction"] for i in ids],
            [by_id[i].get("reference") or "" for i in ids])


def _corpus(a: dict, b: dict, metric: str, ids: list[str]) -> tuple:
    """Both reports' per-example counts for a corpus metric, and the function from summed counts to its value."""
    (pa, ra), (pb, rb) = _corpus_inputs(a, metric, ids), _corpus_inputs(b, metric, ids)
    kw = {}
    if metric in LABEL_METRICS:
        la, lb = a["metrics"][metric].get("labels"), b["metrics"][metric].get("labels")
        if la and lb and la != lb:
            raise TailorError(f"the reports score {metric} over different label sets ({la} vs {lb})")
        kw["labels"] = la or lb or sorted({r for r in ra + rb if r is not None})
    ma, mb = M.METRICS[metric](pa, ra, **kw), M.METRICS[metric](pb, rb, **kw)
    return ma["stats"], mb["stats"], ma["from_stats"]


def power(xa: list[float], xb: list[float], observed: float, delta: float = DELTA) -> dict:
    """Sample sizes McNemar's test needs, at the discordance between two 0/1 score lists.

    >>> power([1, 0, 1, 1], [1, 1, 0, 1], observed=0.0)["discordance"]
    0.5
    """
    discordance = sum(x != y for x, y in zip(xa, xb)) / len(xa)
    return {"basis": "discordance", "discordance": discordance, "delta": delta, "power": POWER, "alpha": ALPHA,
            "n_needed": paired_sample_size(discordance, delta, POWER, ALPHA),
            "n_needed_observed": paired_sample_size(discordance, observed, POWER, ALPHA)}


def compare(a: dict, b: dict, metrics: list[str] | None = None, max_listed: int = 20, delta: float = DELTA) -> dict:
    """Paired deltas of every metric both reports have; `a` is the baseline. `delta` is the difference
    the power analysis asks about.

    >>> compare(load_report(p, "rep-a"), load_report(p, "rep-b"))["metrics"]["accuracy"]["delta"]  # doctest: +SKIP
    0.21875
    """
    if a["suite"]["name"] != b["suite"]["name"] or a["suite"]["version"] != b["suite"]["version"]:
        raise TailorError(f"reports are on different suites ({a['suite']['name']}@{a['suite']['version']} vs "
                          f"{b['suite']['name']}@{b['suite']['version']}); a comparison needs the same examples")
    shared = [m for m in (metrics or a["metrics"]) if m in a["metrics"] and m in b["metrics"]]
    if not shared:
        raise TailorError("the reports share no metric to compare")
    ids = [e["id"] for e in a["examples"]]
    out = {}
    for m in shared:
        sa, sb = _per_example(a, m), _per_example(b, m)
        xa, xb = [sa[i] for i in ids], [sb[i] for i in ids]
        binary = all(v in (0, 1) for v in xa + xb)
        if m in CORPUS_METRICS:
            stats_a, stats_b, value = _corpus(a, b, m, ids)
            boot = paired_corpus_bootstrap(stats_a, stats_b, value)
            test, name = paired_randomization(stats_a, stats_b, value), "paired randomization (corpus)"
            va, vb = float(value(stats_a.sum(axis=0))), float(value(stats_b.sum(axis=0)))
        else:
            boot = paired_bootstrap(xa, xb)
            test, name = (mcnemar(xa, xb), "mcnemar") if binary else (paired_permutation(xa, xb), "paired permutation")
            va, vb = a["metrics"][m]["mean"], b["metrics"][m]["mean"]
        sign = -1 if m in LOWER_IS_BETTER else 1
        out[m] = {"a": va, "b": vb, "delta": boot["delta"], "low": boot["low"], "high": boot["high"],
                  "p_value": test["p_value"], "test": name, "significant": test["p_value"] < ALPHA,
                  "better": None if test["p_value"] >= ALPHA else ("b" if sign * boot["delta"] > 0 else "a")}
        if binary and m not in CORPUS_METRICS:
            out[m].update(b_wins=test["b01"], a_wins=test["b10"])
        if binary:  # label metrics' per-example scores are correctness: their discordance is the accuracy's
            out[m]["power"] = power(xa, xb, boot["delta"], delta)
            if m in CORPUS_METRICS:
                out[m]["power"]["basis"] = "discordance of correctness (McNemar; macro/micro-F1 have no closed form)"
    primary = shared[0]
    pa, pb = _per_example(a, primary), _per_example(b, primary)
    preds_a = {e["id"]: e.get("prediction") for e in a["examples"]}
    preds_b = {e["id"]: e.get("prediction") for e in b["examples"]}
    differ = [{"id": i, primary: {"a": pa[i], "b": pb[i]}, "a": preds_a[i], "b": preds_b[i]} for i in ids if pa[i] != pb[i]]
    return {"a": {"id": a["id"], "subject": a["subject"]}, "b": {"id": b["id"], "subject": b["subject"]},
            "suite": a["suite"], "n": len(ids), "metrics": out, "primary": primary,
            "differ": differ[:max_listed], "n_differ": len(differ)}


def worse_beyond_margin(delta: float, p_value: float, margin: float, metric: str) -> bool:
    """The gate's rule: worse by more than `margin`, and significantly so."""
    loss = delta if metric in LOWER_IS_BETTER else -delta
    return loss > margin and p_value < ALPHA


def gate(pairs: list[tuple[dict, dict]], margin: float, metrics: list[str] | None = None) -> dict:
    """Check a candidate against a baseline on one or more suites: [(baseline report, candidate report)].

    Passes unless some guarded metric on some suite drops by more than `margin` with p < 0.05.
    """
    checks, failures = [], []
    for base, cand in pairs:
        result = compare(base, cand, metrics)
        for m, d in result["metrics"].items():
            failed = worse_beyond_margin(d["delta"], d["p_value"], margin, m)
            check = {"suite": result["suite"]["name"], "metric": m, "baseline": d["a"], "candidate": d["b"],
                     "delta": d["delta"], "low": d["low"], "high": d["high"], "p_value": d["p_value"], "test": d["test"],
                     "passed": not failed}
            checks.append(check)
            if failed:
                failures.append(check)
        failures += redteam.gate_failures(base, cand)  # a leaked canary fails the gate however small the suite
    return {"passed": not failures, "margin": margin, "checks": checks, "failures": failures}


def _name(subject: str) -> str:
    return subject.partition(":")[2] or subject


def ladder_power(ladder: dict, delta: float = DELTA) -> dict:
    """How many golden examples the ladder's adjacent comparisons need, and whether the suite has them.

    For each adjacent pair of rungs, from the discordance observed between them: `n_needed`, the
    examples needed to detect `delta` at 80% power, and for a difference that was not significant,
    `n_needed_observed`, the examples needed to detect one as large as observed. `warnings` name
    the differences the suite is too small for.
    """
    n, primary = ladder["suite"]["n"], ladder["primary"]
    pairs = []
    for c in ladder.get("comparisons", []):
        d = c["metrics"].get(primary) or {}
        p = d.get("power")
        if not p:
            continue
        pairs.append({"a": _name(c["a"]), "b": _name(c["b"]), "delta": d["delta"], "significant": d["significant"],
                      "discordance": p["discordance"],
                      "n_needed": paired_sample_size(p["discordance"], delta, POWER, ALPHA),
                      "n_needed_observed": None if d["significant"] else
                      paired_sample_size(p["discordance"], d["delta"], POWER, ALPHA)})
    out = {"delta": delta, "power": POWER, "alpha": ALPHA, "n": n, "metric": primary, "pairs": pairs, "warnings": []}
    needs = sorted(p["n_needed"] for p in pairs if p["n_needed"] is not None)
    if not needs:
        return out
    out.update(n_needed_min=needs[0], n_needed_max=needs[-1])
    short = [p for p in pairs if p["n_needed"] is not None and p["n_needed"] > n]
    if short:
        span = f"{needs[0]}" if needs[0] == needs[-1] else f"{needs[0]} to {needs[-1]}"
        # A difference of delta needs at least delta disagreement, so for pairs that disagreed less the
        # size is the smallest any such difference could need.
        floor = any(p["discordance"] < delta for p in short)
        out["warnings"].append(
            f"{n} golden examples cannot detect a {delta * 100:g}-point difference at {POWER:.0%} power for "
            f"{len(short)} of {len(pairs)} adjacent rung pairs: at the disagreement observed between them "
            f"that takes {'at least ' if floor else ''}{span} examples (McNemar, Connor 1987).")
    for p in pairs:
        if p["n_needed_observed"] is not None and p["n_needed_observed"] > n:
            out["warnings"].append(
                f"{p['a']} -> {p['b']}: {p['delta'] * 100:+.1f} points, not significant; a difference that size "
                f"needs about {p['n_needed_observed']} examples to be detected at {POWER:.0%} power.")
    return out


def power_against(project, report: dict, delta: float = DELTA, metric: str | None = None) -> dict:
    """Sample sizes for telling `report` apart from each other report on the same suite version.

    Pairs with the newest report of every other subject scored on exactly these examples (the
    ladder's rungs, earlier evals), because power depends on how often the two systems disagree.
    """
    from tailorlm.eval.runner import load_report

    metric = metric or report["primary"]
    suite = f"{report['suite']['name']}@{report['suite']['version']}"
    newest = {}
    from tailorlm.registry.reports import entries

    for row in (e.to_dict() for e in entries(project, "eval")):  # every reader finds reports one way
        if row["suite"] == suite and row["subject"] not in ("ladder", report["subject"]) and row["id"] != report["id"]:
            newest[row["subject"]] = row
    out = {"delta": delta, "power": POWER, "alpha": ALPHA, "n": report["suite"]["n"], "metric": metric, "pairs": []}
    for subject, row in newest.items():
        try:
            other = load_report(project, row["path"])
            d = compare(other, report, [metric], max_listed=0, delta=delta)["metrics"].get(metric)
        except TailorError:
            continue  # a report deleted from disk or scored on other metrics says nothing here
        if d and d.get("power"):
            out["pairs"].append({"against": subject, "report": row["id"], "delta": d["delta"],
                                 "significant": d["significant"], **{k: d["power"][k] for k in
                                                                     ("discordance", "n_needed", "n_needed_observed")}})
    if not out["pairs"]:
        out["note"] = (f"no other report on {suite} with 0/1 {metric} scores to pair with: power depends on how often "
                       "two systems disagree, so eval a second rung (or run the ladder) on this suite first")
    return out
