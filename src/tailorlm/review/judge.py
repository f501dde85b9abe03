"""Judge-human agreement: does the LLM judge score answers the way the people did?

Where a pair review's reports carry `judge_rubric` scores, each rated answer has a human overall
rating (the mean of correctness, style and usefulness, averaged over raters) and the judge's 1-5
score. `judge_agreement` gives Spearman's rho (with a Fisher-z interval) and Cohen's quadratic kappa
on the rounded 1-5 scale, and calls the judge too weak to trust when kappa is below 0.4 (Landis and
Koch: "fair" at best) or rho's interval reaches down to zero.

The judge's score for a whole report is then corrected with the human ratings by prediction-powered
inference (Angelopoulos, Bates, Fannjiang, Jordan and Zrnic, "Prediction-powered inference",
Science 382, 2023): mean of the judge over all N examples plus the mean human-minus-judge gap on the
n rated ones, with variance var(judge)/N + var(gap)/n. A judge that disagrees with people has a
widely spread gap, so its interval widens; a judge that agrees adds almost nothing (`eval.judge.ppi_mean`).
`rated_answers` hands the same ratings to `eval.judge.with_human_ratings`, which corrects the judge
scores of `tailor eval` and the ladder with them.
"""

from __future__ import annotations

from statistics import fmean

from tailorlm.eval.judge import ppi_mean
from tailorlm.review.agreement import KAPPA_MODERATE, cohen_kappa, kappa_band, spearman

JUDGE_METRIC = "judge_rubric"


def rated_answers(project, suite: str) -> tuple[dict[tuple[str, str], list[float]], list[str]]:
    """({(example id, answer text): [each rater's overall 1-5]}, review ids) over every blind pair review
    on `suite` (NAME@VERSION): what `eval.judge.with_human_ratings` corrects a judge with. A failed
    answer was shown as its error and is left out, since no judged prediction has that text."""
    from tailorlm.review.pairs import _examples, _overall, ratings

    out: dict[tuple[str, str], list[float]] = {}
    used = []
    for review in project.store.select("pair_reviews", order_by="created_at", suite=suite):
        rows = ratings(project, review["id"])
        if not rows:
            continue
        used.append(review["id"])
        for side, examples in zip("ab", _examples(project, review)):
            for r in rows:
                e, overall = examples.get(r["example_id"]), _overall(r, side)
                if e is not None and overall is not None and not e.get("error") and e.get("prediction") is not None:
                    out.setdefault((r["example_id"], e["prediction"]), []).append(overall)
    return out, used


def judge_agreement(project, review_id: str) -> dict:
    """Judge-human agreement on one pair review's rated answers, and each subject's PPI-corrected judge score."""
    from tailorlm.review.pairs import CRITERIA, _examples, get_pair_review, ratings

    review = get_pair_review(project, review_id)
    by_side = dict(zip("ab", _examples(project, review)))
    human: dict[tuple[str, str], list[float]] = {}
    for r in ratings(project, review_id):
        for s in "ab":
            vals = [r[f"{s}_{c}"] for c in CRITERIA]
            if None not in vals:
                human.setdefault((r["example_id"], s), []).append(sum(vals) / len(vals))
    out = {"id": review_id, "a": review["subject_a"], "b": review["subject_b"], "metric": JUDGE_METRIC}
    pairs = [(fmean(v), 1 + 4 * by_side[s][e]["scores"][JUDGE_METRIC]) for (e, s), v in sorted(human.items())
             if JUDGE_METRIC in (by_side[s][e].get("scores") or {})]
    if not pairs:
        return {**out, "n": 0, "says": f"no {JUDGE_METRIC} scores on these reports: run `tailor eval` with "
                                        f"--metrics {JUDGE_METRIC} on the same suite to compare the judge with people"}
    hs, js = [h for h, _ in pairs], [j for _, j in pairs]
    rho = spearman(hs, js)
    kappa = cohen_kappa([round(h) for h in hs], [round(j) for j in js], "quadratic")
    weak = kappa is None or kappa < KAPPA_MODERATE or rho is None or rho["low"] <= 0
    out.update(n=len(pairs), spearman=rho, kappa=kappa, kappa_band=kappa_band(kappa), too_weak=weak,
               says=("too weak to trust: its scores agree with people's " + (f"at kappa {kappa:.2f}" if kappa is not None
                     else "too little to measure") + "; trust the human ratings") if weak else
               f"agrees with people (kappa {kappa:.2f}, {kappa_band(kappa)}); its intervals below are corrected with theirs")
    corrected = {}
    for s in "ab":
        rated = [(fmean(v), by_side[s][e]["scores"][JUDGE_METRIC]) for (e, side), v in sorted(human.items())
                 if side == s and JUDGE_METRIC in (by_side[s][e].get("scores") or {})]
        every = [x["scores"][JUDGE_METRIC] for x in by_side[s].values() if JUDGE_METRIC in (x.get("scores") or {})]
        if rated and every:
            corrected[review[f"subject_{s}"]] = ppi_mean(every, [j for _, j in rated], [(h - 1) / 4 for h, _ in rated])
    out["corrected"] = corrected
    return out
