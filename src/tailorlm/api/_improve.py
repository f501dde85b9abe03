"""What happens after serving, as library calls: `tailor loop`, `promote`, `rollback`, `ab report`,
`feedback` and `review report`. The human review flows themselves are `tailorlm.review`'s functions."""

from tailorlm.api._common import _quiet, project


def loop(where=None, method: str = "auto", min_examples: int = 20, max_steps: int | None = None,
         promote: bool = True, ab: bool = False, log=_quiet, on_progress=None) -> dict:
    """One turn of the loop: feedback -> curated data -> a retrained candidate -> the gate against production
    -> promoted only if it passes (`promote=False`: gated only; `ab`: a canary, or the running one decided).

    >>> loop("support", min_examples=50)["promoted"]  # doctest: +SKIP
    False
    """
    from tailorlm.loop.run import run_loop

    train = {"max_steps": max_steps} if max_steps and max_steps > 0 else None
    return run_loop(project(where), method, min_examples, train, log=log, on_progress=on_progress,
                    promote_on_pass=promote, ab=ab)


def promote(where=None, version: str = "", alias: str = "production", reason: str | None = None) -> dict:
    """Point an alias at a model version; returns the move (name, alias, target, previous), kept in its history."""
    from tailorlm.loop.run import promote as run_promote

    return run_promote(project(where), version, alias, reason)


def rollback(where=None, alias: str = "production") -> dict:
    """Move an alias back to the model version it pointed at before its last move."""
    from tailorlm.loop.run import rollback as run_rollback

    return run_rollback(project(where), alias)


def ab_report(where=None, production: str | None = None, candidate: str | None = None) -> dict:
    """The canary's arms compared on live feedback, with intervals, tests, non-inferiority and the verdict."""
    from tailorlm.serve.ab import report

    return report(project(where), production, candidate)


def feedback(where=None, trace_id: str = "", thumbs: str | None = None, rating: int | None = None,
             correction: str | None = None, comment: str | None = None) -> dict:
    """Store feedback on a served answer (by its trace id): one row per signal given; `tailor loop` learns from it.

    >>> feedback("support", "chatcmpl-3f9a1c20b7d4", thumbs="down", correction="Team costs $12.")["ids"]  # doctest: +SKIP
    [17, 18]
    """
    from tailorlm.serve.traces import add_feedback

    return add_feedback(project(where), trace_id, thumbs, rating, correction, comment)


def review_report(where=None) -> dict:
    """Every data review, side-by-side review, judge check and the feedback queue, summarised."""
    from tailorlm.review.report import review_report as run_report

    return run_report(project(where))
