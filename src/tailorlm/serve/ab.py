"""A/B canaries: a share of live traffic to the `candidate` alias, and the arms compared on feedback.

Where it sits: `tailor serve` asks `assign` which arm answers a request for the production model
(`routing.Router.route`), every trace records its arm, and `tailor ab report` and `tailor loop --ab`
read the arms back with `report` and decide with `verdict`.

Assignment is sticky and deterministic: the end user (the request's `user` field, else the
`serve.ab.user_header` header) is hashed with SHA-256 together with the candidate's version id, and
the first 8 bytes read as a number in [0, 1) put the user in the candidate arm when below
`serve.ab.share`. Every server process assigns a user alike, a user keeps their arm for as long as
the candidate stays the same, and a new candidate draws a fresh sample of users. A request that
names no user is assigned on its own (by its trace id).

The live metrics, per arm, over the answers each arm's model version gave:
- thumbs-up rate (the latest thumbs per answer): Wilson interval per arm; the difference with the
  Agresti-Caffo interval (Agresti & Caffo 2000); Fisher's exact test (`scipy.stats.fisher_exact`);
- mean rating (the latest 1-5 rating per answer): t interval per arm; Welch's t-test and its
  interval for the difference (`scipy.stats.ttest_ind(equal_var=False)`);
- corrections per 100 answers (answers with a correction, of the answered requests): as thumbs,
  times 100; lower is better.

Non-inferiority at the stated margins (`serve.ab.margin_*`), one-sided at `alpha`: the one-sided
Agresti-Caffo z-test for the two rates (H0: the candidate is worse by the margin or more), and
Welch's one-sided t-test with the candidate's ratings shifted by the margin. (The Poisson E-test,
`scipy.stats.poisson_means_test`, was tried for corrections: with a margin above 0 its restricted
estimate of the rate falls to 0 at low correction rates and it returns p = 1 by construction, so
identical arms could never be shown non-inferior.)
Looking again and again at a running test raises the chance of a false alarm above `alpha`;
`min_answers` bounds how early a promotion can happen, and a rollback errs on the safe side.

>>> assign("user-17", 0.1, "support:sft@v4")  # doctest: +SKIP
'production'
"""

import hashlib
import math

from tailorlm.loop.run import CANDIDATE, PRODUCTION
from tailorlm.registry.resolve import alias_target

ARMS = (PRODUCTION, CANDIDATE)
METRICS = ("thumbs_up_rate", "mean_rating", "corrections_per_100")


def bucket(unit: str, salt: str) -> float:
    """Where `unit` falls in [0, 1): the same on every machine and in every process.

    >>> round(bucket("user-17", "acme:sft@v2"), 6)  # doctest: +SKIP
    """
    digest = hashlib.sha256(f"{salt}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(unit: str, share: float, salt: str) -> str:
    """The arm of `unit` (a user id, or a request id when there is none)."""
    return CANDIDATE if bucket(unit, salt) < share else PRODUCTION


def experiment(project) -> tuple[str, str] | None:
    """(production version, candidate version) while a canary runs, else None."""
    name = project.config.name
    prod, cand = alias_target(project, "model", name, PRODUCTION), alias_target(project, "model", name, CANDIDATE)
    if project.config.serve.ab.share <= 0 or not prod or not cand or prod == cand:
        return None
    return prod, cand


def user_of(body, headers, header: str) -> None:
    """Fill a request's `user` from the A/B user header when the body names none (what the trace keeps)."""
    if getattr(body, "user", None) is None and headers.get(header):
        body.user = headers[header]


# -- reading the arms back ------------------------------------------------------------------------

def arm_data(project, production: str, candidate: str) -> dict:
    """Per arm: answers (status 200), thumbs (0/1 per answer), ratings (per answer), corrected answers."""
    versions = {PRODUCTION: production, CANDIDATE: candidate}
    data = {arm: {"version": v, "answers": 0, "thumbs": [], "ratings": [], "corrections": 0} for arm, v in versions.items()}
    corrected = set()
    arm_of = {}
    for t in project.store.select("traces"):
        arm = t.get("arm")
        if arm in versions and t.get("model_version") == versions[arm] and t["status"] == 200:
            arm_of[t["id"]] = arm
            data[arm]["answers"] += 1
    latest: dict[tuple[str, str], str] = {}
    for f in project.store.select("feedback", order_by="created_at"):
        arm = arm_of.get(f["trace_id"])
        if arm is None:
            continue
        if f["kind"] == "correction" and f["trace_id"] not in corrected:
            corrected.add(f["trace_id"])
            data[arm]["corrections"] += 1
        elif f["kind"] in ("thumbs", "rating"):
            latest[(f["trace_id"], f["kind"])] = f["value"]  # a changed mind replaces the earlier signal
    for (trace_id, kind), value in latest.items():
        arm = arm_of[trace_id]
        if kind == "thumbs":
            data[arm]["thumbs"].append(1 if value == "up" else 0)
        else:
            data[arm]["ratings"].append(int(value))
    return data


def report(project, production: str | None = None, candidate: str | None = None) -> dict:
    """Compare the arms on live feedback: each metric per arm with its interval, the difference
    (candidate - production) with its interval, a two-sided test, and the non-inferiority test.

    >>> report(Project.load("."))["metrics"]["thumbs_up_rate"]["p_value"]  # doctest: +SKIP
    """
    from tailorlm.errors import TailorError

    cfg = project.config.serve.ab
    if production is None or candidate is None:
        running = experiment(project)
        if running is None and (production is None or candidate is None):
            raise TailorError("no A/B canary is running (serve.ab.share is 0, or the candidate alias is unset or "
                              "equals production); name the versions with --production and --candidate")
        production, candidate = production or running[0], candidate or running[1]
    data = arm_data(project, production, candidate)
    p, c = data[PRODUCTION], data[CANDIDATE]
    metrics = {
        "thumbs_up_rate": thumbs_up(p["thumbs"], c["thumbs"], cfg.margin_thumbs_up, cfg.alpha),
        "mean_rating": mean_rating(p["ratings"], c["ratings"], cfg.margin_rating, cfg.alpha),
        "corrections_per_100": corrections(p["corrections"], p["answers"], c["corrections"], c["answers"],
                                           cfg.margin_corrections, cfg.alpha),
    }
    arms = {arm: {"version": d["version"], "answers": d["answers"], "thumbs": len(d["thumbs"]),
                  "ratings": len(d["ratings"]), "corrections": d["corrections"]} for arm, d in data.items()}
    out = {"production": production, "candidate": candidate, "share": cfg.share, "alpha": cfg.alpha,
           "arms": arms, "metrics": metrics}
    out["verdict"] = verdict(out, cfg.min_answers)
    return out


def verdict(rep: dict, min_answers: int) -> dict:
    """rollback when any metric is significantly worse for the candidate; promote when every metric with
    data is non-inferior and both arms have `min_answers`; otherwise wait."""
    measured = {m: r for m, r in rep["metrics"].items() if r.get("p_value") is not None}
    worse = [m for m, r in measured.items() if r["significant"] and r["better"] == PRODUCTION]
    if worse:
        return {"decision": "rollback", "because": worse,
                "reason": "significantly worse on live feedback: " + "; ".join(_said(m, rep["metrics"][m]) for m in worse)}
    short = [a for a, d in rep["arms"].items() if d["answers"] < min_answers]
    pending = [m for m, r in measured.items() if not r["noninferior"]]
    if not measured or short or pending:
        why = ([f"{a} has {rep['arms'][a]['answers']} answers of the {min_answers} needed" for a in short]
               + [f"{m} not yet shown non-inferior (p={rep['metrics'][m]['p_noninferior']:.3g})" for m in pending]
               + ([] if measured else ["no feedback in both arms yet"]))
        return {"decision": "wait", "because": pending or short or ["no feedback"], "reason": "; ".join(why)}
    return {"decision": "promote", "because": list(measured),
            "reason": "non-inferior on live feedback: " + "; ".join(_said(m, r) for m, r in measured.items())}


def _said(metric: str, r: dict) -> str:
    return (f"{metric} {r[PRODUCTION]['value']:.3g} -> {r[CANDIDATE]['value']:.3g} "
            f"(p={r['p_value']:.3g}, non-inferiority p={r['p_noninferior']:.3g} at margin {r['margin']:g})")


# -- the statistics -------------------------------------------------------------------------------

def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


def _result(prod: dict, cand: dict, diff: float | None, low, high, p_value, p_ni, test: str, ni_test: str,
            margin: float, alpha: float, lower_is_better: bool = False) -> dict:
    if p_value is None or (isinstance(p_value, float) and math.isnan(p_value)):
        p_value = p_ni = None
    better = None
    if p_value is not None and p_value < alpha and diff:
        better = PRODUCTION if (diff > 0) == lower_is_better else CANDIDATE
    return {PRODUCTION: prod, CANDIDATE: cand, "difference": diff, "low": low, "high": high, "p_value": p_value,
            "test": test, "significant": p_value is not None and p_value < alpha, "better": better, "margin": margin,
            "p_noninferior": p_ni, "noninferiority_test": ni_test,
            "noninferior": p_ni is not None and p_ni < alpha}


def thumbs_up(prod: list[int], cand: list[int], margin: float, alpha: float) -> dict:
    """Thumbs-up rates (1 = up, one per answer)."""
    return proportions(sum(prod), len(prod), sum(cand), len(cand), margin, alpha)


def corrections(k_prod: int, n_prod: int, k_cand: int, n_cand: int, margin: float, alpha: float) -> dict:
    """Corrections per 100 answers (`k` corrected answers of `n`); lower is better, `margin` per 100."""
    return proportions(k_prod, n_prod, k_cand, n_cand, margin / 100, alpha, lower_is_better=True, scale=100)


def proportions(xp: int, np_: int, xc: int, nc: int, margin: float, alpha: float, lower_is_better: bool = False,
                scale: float = 1.0) -> dict:
    """Two rates: Wilson per arm, the Agresti-Caffo interval for the difference, Fisher's exact test,
    and the one-sided Agresti-Caffo z-test of non-inferiority at `margin`; values times `scale`."""
    from scipy.stats import fisher_exact, norm

    from tailorlm.eval.stats import wilson_ci

    def arm(x, n):
        if not n:
            return {"value": None, "low": None, "high": None, "n": 0}
        ci = wilson_ci(x, n, 1 - alpha)
        return {"value": scale * ci["mean"], "low": scale * ci["low"], "high": scale * ci["high"], "n": n}

    pa, ca = arm(xp, np_), arm(xc, nc)
    if not np_ or not nc:
        return _result(pa, ca, None, None, None, None, None, "fisher exact", "agresti-caffo z", scale * margin, alpha)
    # Agresti-Caffo: one success and one failure added to each arm, which keeps the interval honest
    # at small n and at rates of 0 or 1, where the plain Wald interval collapses to a point.
    tp, tc = (xp + 1) / (np_ + 2), (xc + 1) / (nc + 2)
    se = math.sqrt(tp * (1 - tp) / (np_ + 2) + tc * (1 - tc) / (nc + 2))
    adjusted, z = tc - tp, _z(alpha)
    p = float(fisher_exact([[xc, nc - xc], [xp, np_ - xp]]).pvalue)
    # H0: the candidate is worse by the margin or more; small p shows it is not.
    p_ni = float(norm.sf((margin - adjusted if lower_is_better else adjusted + margin) / se))
    return _result(pa, ca, scale * (xc / nc - xp / np_), scale * (adjusted - z * se), scale * (adjusted + z * se), p,
                   p_ni, "fisher exact", "agresti-caffo z", scale * margin, alpha, lower_is_better)


def mean_rating(prod: list[int], cand: list[int], margin: float, alpha: float) -> dict:
    """Mean 1-5 ratings: t interval per arm, Welch's t-test and interval, and Welch's one-sided
    test with the candidate shifted by the margin."""
    import numpy as np
    from scipy.stats import t as student_t
    from scipy.stats import ttest_ind

    def arm(x):
        if not x:
            return {"value": None, "low": None, "high": None, "n": 0}
        mean = float(np.mean(x))
        if len(x) < 2:
            return {"value": mean, "low": None, "high": None, "n": 1}
        half = float(student_t.ppf(1 - alpha / 2, len(x) - 1) * np.std(x, ddof=1) / math.sqrt(len(x)))
        return {"value": mean, "low": mean - half, "high": mean + half, "n": len(x)}

    pa, ca = arm(prod), arm(cand)
    # Welch needs a variance in at least one arm and two ratings in each.
    if len(prod) < 2 or len(cand) < 2 or (np.var(prod) == 0 and np.var(cand) == 0):
        diff = ca["value"] - pa["value"] if prod and cand else None
        return _result(pa, ca, diff, None, None, None, None, "welch t", "welch t (shifted)", margin, alpha)
    test = ttest_ind(np.asarray(cand, float), np.asarray(prod, float), equal_var=False)
    ci = test.confidence_interval(1 - alpha)
    ni = ttest_ind(np.asarray(cand, float) + margin, np.asarray(prod, float), equal_var=False, alternative="greater")
    return _result(pa, ca, ca["value"] - pa["value"], float(ci.low), float(ci.high), float(test.pvalue),
                   float(ni.pvalue), "welch t", "welch t (shifted)", margin, alpha)
