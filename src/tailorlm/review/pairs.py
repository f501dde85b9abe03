"""Blind side-by-side human eval of two subjects (rungs or model versions) on the same suite examples.

"Sample 50 outputs from fine-tuned + base model, rate on correctness, style, usefulness (1-5). If
fine-tuned > base by 20%+, deploy." The answers are the ones the two subjects gave in their eval
reports on one suite, so the people rate exactly what the metrics scored. `start_pair_review` draws a
seeded sample of the examples both reports answered and, per item, a seeded coin flip for which
answer is shown on the left; raters see "left" and "right" only (`next_item`), and `rate` maps their
ratings back to A and B with the position they saw. `pair_summary` gives:
- mean ratings of A and B per criterion, and B - A with a paired bootstrap interval;
- the win rate of B (ties apart) with a Wilson interval, from each rater's preference (or, where a
  rater only gave ratings, from which answer rated higher overall);
- the seed's rule "B better than A by >= 20%" (the mean overall rating of B at least 1.2 times A's),
  judged on the paired bootstrap interval of the relative gain: met only when its lower end is at or
  above 20%, missed when its upper end is below, otherwise undecided;
- inter-rater agreement (Krippendorff's alpha, and Cohen's kappa for two raters) where items have
  several raters, and which side the raters preferred (a position-bias check).
`preference_records` / `export_dpo` turn the preferences into DPO pairs for `tailor train --method dpo`;
`tailor loop` takes every review's pairs (`human_preferences`) with the feedback's, through the same
curation (so pairs drawn from an eval suite are dropped there, never trained on).
"""

from __future__ import annotations

import random

from tailorlm.errors import TailorError
from tailorlm.store import new_id, now

CRITERIA = ("correctness", "style", "usefulness")
DEFAULT_SAMPLE, RULE_GAIN = 50, 0.20


def find_report(project, ref: str, suite: str | None = None) -> dict:
    """The report `ref` names: a report id (or prefix), or the newest report of subject `ref` on `suite`."""
    from tailorlm.eval.runner import load_report

    from tailorlm.registry.reports import entries

    rows = [r for r in (e.to_dict() for e in entries(project, "eval"))
            if ref in (r["subject"], r["subject"].partition(":")[2]) and (suite is None or r["suite"].partition("@")[0] == suite)]
    if rows:
        return load_report(project, rows[-1]["id"])
    try:
        return load_report(project, ref)
    except TailorError:
        on = f" on suite {suite!r}" if suite else ""
        raise TailorError(f"no eval report for {ref!r}{on}: run `tailor eval {ref}"
                          f"{' --suite ' + suite if suite else ''}` first (`tailor reports list` shows the reports)") from None


def _answer(example: dict) -> str:
    return example["prediction"] if not example.get("error") else f"(no answer: {example['error']})"


def start_pair_review(project, a: str, b: str, suite: str | None = None, sample: int = DEFAULT_SAMPLE, seed: int = 0,
                      created_by: str = "reviewer") -> dict:
    """Open a blind review of `a` against `b` (report ids or subjects) on a seeded sample of `suite`."""
    if sample < 1:
        raise TailorError(f"--sample must be at least 1, not {sample}")
    ra, rb = find_report(project, a, suite), find_report(project, b, suite)
    sa, sb = (f"{r['suite']['name']}@{r['suite']['version']}" for r in (ra, rb))
    if sa != sb:
        raise TailorError(f"{a} was scored on {sa} and {b} on {sb}: a side-by-side needs the same examples")
    if ra["id"] == rb["id"]:
        raise TailorError(f"{a} and {b} are the same report; pick two subjects")
    in_b = {e["id"] for e in rb["examples"]}
    common = [e["id"] for e in ra["examples"] if e["id"] in in_b]
    rng = random.Random(seed)
    chosen = rng.sample(common, min(sample, len(common)))
    first = ["a" if rng.random() < 0.5 else "b" for _ in chosen]
    review_id = new_id("pr-")
    project.store.insert("pair_reviews", id=review_id, subject_a=ra["subject"], subject_b=rb["subject"], report_a=ra["id"],
                         report_b=rb["id"], suite=sa, sample_size=len(chosen), seed=seed, created_by=created_by,
                         created_at=now())
    with project.store.engine.begin() as conn:
        conn.execute(project.store._sa.text("INSERT INTO pair_review_items (review_id, example_id, ord, shown_first) "
                                            "VALUES (:r, :e, :o, :f)"),
                     [{"r": review_id, "e": e, "o": n, "f": f} for n, (e, f) in enumerate(zip(chosen, first))])
    return {"id": review_id, "a": ra["subject"], "b": rb["subject"], "report_a": ra["id"], "report_b": rb["id"],
            "suite": sa, "sample_size": len(chosen), "of": len(common), "seed": seed}


def get_pair_review(project, review_id: str) -> dict:
    rows = project.store.select("pair_reviews", id=review_id)
    if not rows:
        raise TailorError(f"no pair review {review_id!r}; `tailor review report` lists them")
    return rows[0]


def _examples(project, review: dict) -> tuple[dict, dict]:
    from tailorlm.eval.runner import load_report

    return tuple({e["id"]: e for e in load_report(project, review[k])["examples"]} for k in ("report_a", "report_b"))


def blind_items(project, review_id: str, rater: str | None = None) -> list[dict]:
    """The items as a rater sees them: question, reference, left and right answers, never which is A.
    With `rater`, each item says whether that rater has rated it."""
    review = get_pair_review(project, review_id)
    ea, eb = _examples(project, review)
    rated = {r["example_id"] for r in project.store.select("pair_ratings", review_id=review_id, rater=rater)} if rater else set()
    out = []
    for item in project.store.select("pair_review_items", order_by="ord", review_id=review_id):
        x, y = ea[item["example_id"]], eb[item["example_id"]]
        left, right = (x, y) if item["shown_first"] == "a" else (y, x)
        out.append({"example_id": item["example_id"], "ord": item["ord"], "input": x["input"], "reference": x.get("reference"),
                    "left": _answer(left), "right": _answer(right), "rated": item["example_id"] in rated})
    return out


def next_item(project, review_id: str, rater: str) -> dict | None:
    """The first item `rater` has not rated yet, or None when they are done."""
    return next((i for i in blind_items(project, review_id, rater) if not i["rated"]), None)


def _check_scores(scores: dict | None, side: str) -> dict:
    scores = scores or {}
    unknown = set(scores) - set(CRITERIA)
    if unknown:
        raise TailorError(f"unknown criteria for the {side} answer: {', '.join(sorted(unknown))}; rate {', '.join(CRITERIA)}")
    out = {}
    for c in CRITERIA:
        v = scores.get(c)
        if v in (None, ""):
            out[c] = None
            continue
        try:
            v = int(v)
        except (TypeError, ValueError):
            raise TailorError(f"{side} {c} must be a whole number from 1 to 5, not {v!r}") from None
        if not 1 <= v <= 5:
            raise TailorError(f"{side} {c} must be from 1 to 5, not {v}")
        out[c] = v
    given = [v for v in out.values() if v is not None]
    if given and len(given) != len(CRITERIA):
        raise TailorError(f"rate the {side} answer on all of {', '.join(CRITERIA)}, or on none")
    return out


def rate(project, review_id: str, example_id: str, rater: str, left: dict | None = None, right: dict | None = None,
         preference: str | None = None) -> dict:
    """Store one rater's blind judgement of an item: 1-5 on each criterion for both answers, and/or a
    preference (`left`, `right` or `tie`). Rating again appends a row; the newest one counts."""
    rater = (rater or "").strip()
    if not rater:
        raise TailorError("a rating needs the rater's name")
    items = project.store.select("pair_review_items", review_id=review_id, example_id=example_id)
    if not items:
        get_pair_review(project, review_id)
        raise TailorError(f"example {example_id!r} is not in pair review {review_id}")
    first = items[0]["shown_first"]
    left, right = _check_scores(left, "left"), _check_scores(right, "right")
    if (left["correctness"] is None) != (right["correctness"] is None):
        raise TailorError("rate both answers, or neither")
    if preference in ("", None):
        preference = None
    elif preference not in ("left", "right", "tie"):
        raise TailorError(f"preference must be left, right or tie, not {preference!r}")
    if preference is None and left["correctness"] is None:
        raise TailorError("give the ratings, a preference, or both")
    a, b = (left, right) if first == "a" else (right, left)
    pref = None if preference is None else "tie" if preference == "tie" else (
        "a" if (preference == "left") == (first == "a") else "b")
    row = {"id": new_id("rt-"), "review_id": review_id, "example_id": example_id, "rater": rater, "shown_first": first,
           **{f"a_{c}": a[c] for c in CRITERIA}, **{f"b_{c}": b[c] for c in CRITERIA}, "preference": pref,
           "created_at": now()}
    project.store.insert("pair_ratings", **row)
    return row


def ratings(project, review_id: str) -> list[dict]:
    """The newest rating of each (item, rater), un-blinded."""
    latest = {}
    for r in project.store.select("pair_ratings", order_by="created_at, id", review_id=review_id):
        latest[(r["example_id"], r["rater"])] = r
    return list(latest.values())


def _overall(r: dict, side: str) -> float | None:
    vals = [r[f"{side}_{c}"] for c in CRITERIA]
    return None if None in vals else sum(vals) / len(vals)


def _preferred(r: dict) -> str | None:
    if r["preference"]:
        return r["preference"]
    a, b = _overall(r, "a"), _overall(r, "b")
    return None if a is None else "tie" if a == b else ("b" if b > a else "a")


def relative_gain(a: list[float], b: list[float], seed: int = 0, n_boot: int = 10_000) -> dict:
    """mean(b) / mean(a) - 1 on paired items, with a paired percentile bootstrap interval.

    >>> relative_gain([2, 3, 2, 3], [3, 4, 3, 4], n_boot=2000)["gain"]
    0.4
    """
    import numpy as np
    from scipy.stats import bootstrap

    xa, xb = np.asarray(a, float), np.asarray(b, float)
    point = float(xb.mean() / xa.mean() - 1)
    if xa.size < 2 or np.all(xb - xa == (xb - xa)[0]) and np.all(xa == xa[0]):
        return {"gain": round(point, 6), "low": point, "high": point, "n": int(xa.size)}
    res = bootstrap((xa, xb), lambda x, y, axis: y.mean(axis) / x.mean(axis) - 1, paired=True, vectorized=True,
                    n_resamples=n_boot, method="percentile", rng=np.random.default_rng(seed))
    return {"gain": round(point, 6), "low": float(res.confidence_interval.low), "high": float(res.confidence_interval.high),
            "n": int(xa.size), "method": "paired percentile bootstrap"}


def pair_summary(project, review_id: str, gain: float = RULE_GAIN) -> dict:
    """Mean ratings with paired intervals, the win rate, the 20% rule on its interval, and agreement."""
    from tailorlm.eval.stats import mean_ci, paired_bootstrap, wilson_ci

    review = get_pair_review(project, review_id)
    rows = ratings(project, review_id)
    out = {"id": review_id, "a": review["subject_a"], "b": review["subject_b"], "suite": review["suite"],
           "sample_size": review["sample_size"], "seed": review["seed"], "raters": sorted({r["rater"] for r in rows}),
           "ratings": len(rows), "items_rated": len({r["example_id"] for r in rows})}
    items = project.store.select("pair_review_items", review_id=review_id)
    out["shown_first_a"] = sum(1 for i in items if i["shown_first"] == "a")
    # Per item, the raters' mean: an item is the unit that was sampled, so the intervals resample items.
    per_item: dict[str, dict] = {}
    for r in rows:
        if _overall(r, "a") is None:
            continue
        slot = per_item.setdefault(r["example_id"], {k: [] for k in (*[f"{s}_{c}" for s in "ab" for c in CRITERIA], "a", "b")})
        for s in "ab":
            for c in CRITERIA:
                slot[f"{s}_{c}"].append(r[f"{s}_{c}"])
            slot[s].append(_overall(r, s))
    means = {}
    ids = sorted(per_item)
    for c in (*CRITERIA, "overall"):
        ka, kb = (f"a_{c}", f"b_{c}") if c != "overall" else ("a", "b")
        xa = [sum(per_item[i][ka]) / len(per_item[i][ka]) for i in ids]
        xb = [sum(per_item[i][kb]) / len(per_item[i][kb]) for i in ids]
        if ids:
            means[c] = {"a": mean_ci(xa), "b": mean_ci(xb), "delta": paired_bootstrap(xa, xb)}
        if c == "overall" and ids:
            g = relative_gain(xa, xb)
            verdict = "met" if g["low"] >= gain else "missed" if g["high"] < gain else "undecided"
            out["rule"] = {**g, "threshold": gain, "verdict": verdict,
                           "says": {"met": f"B beats A by at least {gain:.0%}: the whole interval is at or above it",
                                    "missed": f"B does not beat A by {gain:.0%}: the whole interval is below it",
                                    "undecided": f"undecided: the gain's interval {g['low']:+.1%} to {g['high']:+.1%} "
                                                 f"straddles {gain:.0%}; rate more items"}[verdict]}
    out["means"] = means
    prefs = [p for p in (_preferred(r) for r in rows) if p]
    wins = {k: prefs.count(k) for k in ("a", "b", "tie")}
    out["preferences"] = wins
    decisive = wins["a"] + wins["b"]
    out["win_rate_b"] = {**wilson_ci(wins["b"], decisive), "method": "wilson, ties excluded"} if decisive else None
    side = [("left" if (p == "a") == (r["shown_first"] == "a") else "right") for r in rows
            for p in [_preferred(r)] if p in ("a", "b")]
    out["preferred_left"] = side.count("left")
    out["agreement"] = agreement(rows)
    return out


def agreement(rows: list[dict]) -> dict | None:
    """Inter-rater agreement where items have more than one rater: Krippendorff's alpha (ordinal on the
    ratings, nominal on the preferences), and Cohen's kappa when exactly two raters rated."""
    from tailorlm.review.agreement import alpha_reading, cohen_kappa, kappa_band, krippendorff_alpha

    raters = sorted({r["rater"] for r in rows})
    by = {(r["example_id"], r["rater"]): r for r in rows}
    items = sorted({r["example_id"] for r in rows})
    shared = [i for i in items if sum((i, who) in by for who in raters) >= 2]
    if len(raters) < 2 or not shared:
        return None
    units = [(i, s, c) for i in shared for s in "ab" for c in CRITERIA]
    grid = [[by[(i, who)][f"{s}_{c}"] if (i, who) in by else None for i, s, c in units] for who in raters]
    prefs = [[_preferred(by[(i, who)]) if (i, who) in by else None for i in shared] for who in raters]
    alpha_r, alpha_p = krippendorff_alpha(grid, "ordinal"), krippendorff_alpha(prefs, "nominal")
    out = {"raters": raters, "items": len(shared),
           "alpha_ratings": alpha_r, "alpha_ratings_reading": alpha_reading(alpha_r),
           "alpha_preferences": alpha_p, "alpha_preferences_reading": alpha_reading(alpha_p),
           "method": "Krippendorff's alpha (krippendorff package); Cohen's kappa (scikit-learn), quadratic for ratings"}
    if len(raters) == 2:
        both = [(x, y) for x, y in zip(*grid) if x is not None and y is not None]
        k = cohen_kappa([x for x, _ in both], [y for _, y in both], "quadratic") if both else None
        pb = [(x, y) for x, y in zip(*prefs) if x and y]
        kp = cohen_kappa([x for x, _ in pb], [y for _, y in pb]) if pb else None
        out.update(kappa_ratings=k, kappa_ratings_band=kappa_band(k), kappa_preferences=kp, kappa_preferences_band=kappa_band(kp))
    return out


def preference_records(project, review_id: str) -> list:
    """DPO pairs from a review: per item, the answer the raters preferred (more wins) as chosen."""
    from tailorlm.data.record import Record

    review = get_pair_review(project, review_id)
    ea, eb = _examples(project, review)
    votes: dict[str, list[str]] = {}
    for r in ratings(project, review_id):
        p = _preferred(r)
        if p in ("a", "b", "tie"):
            votes.setdefault(r["example_id"], []).append(p)
    out = []
    for example_id, vs in sorted(votes.items()):
        lead = vs.count("b") - vs.count("a")
        if lead == 0:
            continue
        x, y = ea[example_id], eb[example_id]
        chosen, rejected = (y, x) if lead > 0 else (x, y)
        if chosen.get("error") or chosen["prediction"].strip() == (rejected.get("prediction") or "").strip():
            continue
        winner = review["subject_b"] if lead > 0 else review["subject_a"]
        out.append(Record(f"hp-{review_id}-{example_id}", "preference",
                          {"prompt": x["input"], "chosen": chosen["prediction"], "rejected": rejected.get("prediction") or ""},
                          {"source": "human_eval", "review": review_id, "example": example_id, "chosen_from": winner,
                           "votes": {k: vs.count(k) for k in ("a", "b", "tie")}}))
    return out


def human_preferences(project) -> list:
    """Every pair review's DPO pairs: what `tailor loop` adds to the feedback's preference pairs."""
    return [r for row in project.store.select("pair_reviews", order_by="created_at") for r in preference_records(project, row["id"])]


def export_dpo(project, review_id: str, name: str = "human-pairs") -> dict:
    """Write the review's preference pairs as the preference dataset `name`, through the loop's curation
    (dedup, PII, and decontamination against the eval suites: pairs drawn from a golden suite are
    dropped there, since training on them would leak that suite). Returns the counts and the version."""
    from tailorlm.loop.curate import curate

    records = preference_records(project, review_id)
    if not records:
        raise TailorError(f"pair review {review_id} has no decisive preferences to export yet")
    manifest = curate(project, records, name, "preference")
    kept = manifest["accounting"]["kept"] if manifest else 0
    dropped = {k: v for s in (manifest or {}).get("steps", []) for k, v in s["dropped"].items()}
    return {"review": review_id, "pairs": len(records), "kept": kept, "dropped": dropped,
            "dataset_version": manifest["id"] if manifest and kept else None,
            "train": f"tailor train --method dpo --dataset {name}" if kept else None}


def list_pair_reviews(project) -> list[dict]:
    return [pair_summary(project, r["id"]) for r in project.store.select("pair_reviews", order_by="created_at")]
