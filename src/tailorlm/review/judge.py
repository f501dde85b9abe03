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
widely spread gap, so its interval widens; a judge that agrees adds almost nothing.
"""

from __future__ import annotations

import math
from statistics import NormalDist, fmean, variance

from tailorlm.review.agreement import KAPPA_MODERATE, cohen_kappa, kappa_band, spearman

JUDGE_METRIC = "judge_rubric"


def ppi_mean(judge_all: list[float], judge_rated: list[float], human_rated: list[float], confidence: float = 0.95) -> dict:
    """Prediction-powered mean: the judge on every example, rectified by the people on the rated ones.

    >>> r = ppi_mean([0.5, 0.75, 0.25, 1.0], [0.5, 0.75], [0.75, 0.75])
    >>> r["mean"]
    0.75
    """
    n, big_n = len(human_rated), len(judge_all)
    gap = [h - j for h, j in zip(human_rated, judge_rated, strict=True)]
    point = fmean(judge_all) + fmean(gap)
    var = (variance(judge_all) / big_n if big_n > 1 else 0.0) + (variance(gap) / n if n > 1 else 0.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * math.sqrt(var)
    naive = z * math.sqrt(variance(judge_all) / big_n) if big_n > 1 else 0.0
    return {"mean": point, "low": point - half, "high": point + half, "judge_only": fmean(judge_all),
            "judge_only_low": fmean(judge_all) - naive, "judge_only_high": fmean(judge_all) + naive, "n_rated": n,
            "n": big_n, "method": "prediction-powered inference (Angelopoulos et al., Science 2023), normal interval"}


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
