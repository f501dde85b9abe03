"""`tailor compare` and the regression gate: two reports on the same examples, metric by metric.

Each delta (B minus A) carries a paired bootstrap 95% interval and a significance test: McNemar
for 0/1 metrics (accuracy, exact match), a paired permutation (sign-flip) test otherwise. The
examples where the two disagree are listed, so a difference can be read, not just trusted.

The gate fails a candidate when a guarded metric is worse than the baseline by more than the
margin AND the drop is significant; a drop inside the margin, or one the data cannot tell from
noise, passes. Guarded suites include the general-capability suite, which catches forgetting.
"""

from tailorlm.errors import TailorError
from tailorlm.eval.runner import LOWER_IS_BETTER
from tailorlm.eval.stats import mcnemar, paired_bootstrap, paired_permutation

ALPHA = 0.05


def _per_example(report: dict, metric: str) -> dict:
    return {e["id"]: e["scores"][metric] for e in report["examples"] if metric in e["scores"]}


def compare(a: dict, b: dict, metrics: list[str] | None = None, max_listed: int = 20) -> dict:
    """Paired deltas of every metric both reports have; `a` is the baseline.

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
        boot = paired_bootstrap(xa, xb)
        binary = all(v in (0, 1) for v in xa + xb)
        test = mcnemar(xa, xb) if binary else paired_permutation(xa, xb)
        sign = -1 if m in LOWER_IS_BETTER else 1
        out[m] = {"a": a["metrics"][m]["mean"], "b": b["metrics"][m]["mean"], "delta": boot["delta"],
                  "low": boot["low"], "high": boot["high"], "p_value": test["p_value"],
                  "test": "mcnemar" if binary else "paired permutation", "significant": test["p_value"] < ALPHA,
                  "better": None if test["p_value"] >= ALPHA else ("b" if sign * boot["delta"] > 0 else "a")}
        if binary:
            out[m].update(b_wins=test["b01"], a_wins=test["b10"])
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
                     "delta": d["delta"], "low": d["low"], "high": d["high"], "p_value": d["p_value"], "passed": not failed}
            checks.append(check)
            if failed:
                failures.append(check)
    return {"passed": not failures, "margin": margin, "checks": checks, "failures": failures}
