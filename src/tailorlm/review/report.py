"""`tailor review report`: every data review, pair review, judge check and the feedback queue in one object."""

from __future__ import annotations


def review_report(project) -> dict:
    """What people have reviewed so far, and what it says.

    >>> review_report(project)["pair_reviews"][0]["rule"]["verdict"]  # doctest: +SKIP
    'undecided'
    """
    from tailorlm.review.data import list_data_reviews
    from tailorlm.review.judge import judge_agreement
    from tailorlm.review.pairs import list_pair_reviews
    from tailorlm.review.queue import waiting

    pairs = list_pair_reviews(project)
    return {"data_reviews": list_data_reviews(project), "pair_reviews": pairs,
            "judge": [judge_agreement(project, p["id"]) for p in pairs],
            "queue": waiting(project)}
