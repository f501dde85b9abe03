"""The workbench's JSON API: every action a page offers, as one library call behind one endpoint.

Mounted under `/api` of the UI app (so `/ui/api/...` inside `tailor serve`). Bodies are JSON; errors are
`{"error": {...}}` with 400 for bad input and 401 without a key when keys are configured.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tailorlm.review import data as dr
from tailorlm.review import pairs as pr
from tailorlm.review import queue as fq

router = APIRouter()


def _project(request: Request):
    return request.app.state.project


class DataReviewIn(BaseModel):
    dataset: str = Field(description="NAME, NAME@HASH or NAME@ALIAS")
    sample: int = Field(dr.DEFAULT_SAMPLE, description="records to draw")
    seed: int = 0
    split: str | None = None
    target: float = Field(dr.DEFAULT_TARGET, description="pass rate the review must show")
    reviewer: str = "reviewer"


class DecisionIn(BaseModel):
    record_id: str
    decision: str = Field(description="pass | fail | edit")
    reviewer: str
    reason: str | None = None
    edited: dict | None = Field(None, description="the record's corrected content, for edit")


class PairReviewIn(BaseModel):
    a: str = Field(description="report id or subject (rung or model version)")
    b: str
    suite: str | None = None
    sample: int = pr.DEFAULT_SAMPLE
    seed: int = 0
    created_by: str = "reviewer"


class RatingIn(BaseModel):
    example_id: str
    rater: str
    left: dict | None = Field(None, description="{correctness, style, usefulness}: 1-5 each")
    right: dict | None = None
    preference: str | None = Field(None, description="left | right | tie")


class AnswerIn(BaseModel):
    correction: str
    reviewer: str = "reviewer"


class AcceptIn(BaseModel):
    reviewer: str = "reviewer"


def _reviews(path: str, key: str, list_all, start_one, body_model) -> None:
    """GET `path` lists the reviews under `key`, POST `path` opens one from a `body_model` body:
    the same pair of endpoints for data reviews and pair reviews."""

    def listing(request: Request):
        return {key: list_all(_project(request))}

    def start(body, request: Request):
        return start_one(_project(request), **body.model_dump())

    start.__annotations__ = {"body": body_model, "request": Request}  # FastAPI reads the body's model from here
    router.get(path, name=list_all.__name__)(listing)
    router.post(path, name=start_one.__name__)(start)


_reviews("/data-reviews", "data_reviews", dr.list_data_reviews, dr.start_data_review, DataReviewIn)
_reviews("/pair-reviews", "pair_reviews", pr.list_pair_reviews, pr.start_pair_review, PairReviewIn)


@router.get("/data-reviews/{review_id}")
def get_data_review(review_id: str, request: Request):
    project = _project(request)
    return {**dr.data_review_summary(project, review_id), "items": dr.items(project, review_id)}


@router.post("/data-reviews/{review_id}/decisions")
def decide(review_id: str, body: DecisionIn, request: Request):
    return dr.decide(_project(request), review_id, **body.model_dump())


@router.post("/data-reviews/{review_id}/finish")
def finish(review_id: str, request: Request):
    m = dr.finish_data_review(_project(request), review_id)
    return {"dataset_version": m["id"], "parents": m["parents"], "accounting": m["accounting"]}


@router.get("/pair-reviews/{review_id}")
def pair_summary(review_id: str, request: Request):
    return pr.pair_summary(_project(request), review_id)


@router.get("/pair-reviews/{review_id}/next")
def next_item(review_id: str, rater: str, request: Request):
    """The next blind item for `rater` (left and right answers, never which is which), or null when done."""
    return {"item": pr.next_item(_project(request), review_id, rater)}


@router.post("/pair-reviews/{review_id}/ratings")
def rate(review_id: str, body: RatingIn, request: Request):
    row = pr.rate(_project(request), review_id, **body.model_dump())
    return {"id": row["id"], "example_id": row["example_id"], "rater": row["rater"]}  # blind: no a/b in the reply


@router.post("/pair-reviews/{review_id}/export")
def export(review_id: str, request: Request, name: str = "human-pairs"):
    return pr.export_dpo(_project(request), review_id, name)


@router.get("/judge/{review_id}")
def judge(review_id: str, request: Request):
    from tailorlm.review.judge import judge_agreement

    return judge_agreement(_project(request), review_id)


@router.get("/queue")
def queue(request: Request, limit: int = 100):
    return {"queue": fq.queue(_project(request), limit)}


@router.post("/queue/{trace_id}/answer")
def answer(trace_id: str, body: AnswerIn, request: Request):
    return fq.answer(_project(request), trace_id, body.correction, body.reviewer)


@router.post("/queue/{trace_id}/accept")
def accept(trace_id: str, body: AcceptIn, request: Request):
    return fq.accept(_project(request), trace_id, body.reviewer)


@router.get("/queue/next-loop")
def next_loop(request: Request):
    return fq.next_loop(_project(request))


@router.get("/report")
def report(request: Request):
    from tailorlm.review.report import review_report

    return review_report(_project(request))


@router.get("/overview")
def overview(request: Request):
    from tailorlm.ui.views import overview as build

    return build(_project(request))


# The read-only pages' data, as the pages get it from `ui.views` (and `data.versions`).
@router.get("/data")
def data(request: Request, a: str | None = None, b: str | None = None):
    from tailorlm.data.versions import diff_versions, list_versions

    project = _project(request)
    return {"versions": list_versions(project), "diff": diff_versions(project, a, b) if a and b else None}


@router.get("/data/{ref}")
def data_version(ref: str, request: Request, reason: str | None = None):
    from tailorlm.ui.views import dataset

    return dataset(_project(request), ref, reason)


@router.get("/runs")
def runs(request: Request):
    from tailorlm.ui.views import runs as listing

    return {"runs": listing(_project(request))}


@router.get("/runs/{run_id}")
def run(run_id: str, request: Request):
    from tailorlm.ui.views import run as one

    return one(_project(request), run_id)


@router.get("/reports")
def reports(request: Request, a: str | None = None, b: str | None = None):
    from tailorlm.ui.views import compare_reports, reports as listing

    project = _project(request)
    return {"reports": listing(project), "compare": compare_reports(project, a, b) if a and b else None}


class FeedbackIn(BaseModel):
    trace_id: str
    thumbs: str | None = Field(None, description="up | down")
    rating: int | None = Field(None, description="1-5")
    correction: str | None = None
    comment: str | None = None


@router.post("/feedback")
def feedback(body: FeedbackIn, request: Request):
    """Feedback on a served answer (the playground's thumbs): the same rows as POST /v1/feedback."""
    from tailorlm.serve.traces import add_feedback

    return add_feedback(_project(request), **body.model_dump())


def _gateway(request: Request):
    from tailorlm.errors import TailorError

    gateway = request.app.state.gateway
    if gateway is None:
        raise TailorError("the playground answers through the models `tailor serve` loads: open /ui/playground there")
    return gateway


@router.get("/playground/models")
def playground_models(request: Request):
    return {"models": _gateway(request).router.names()}


@router.get("/playground/answers/{trace_id}")
def playground_answer(trace_id: str, request: Request):
    """What a served answer drew on: the sources its rung retrieved and the ones it cited, from its trace."""
    from tailorlm.ui.views import served_sources

    return served_sources(_project(request), trace_id)


@router.post("/playground/chat")
async def playground_chat(request: Request):
    """A chat completion through the server's gateway (OpenAI's request shape; `stream: true` for events),
    traced like any served answer, so its thumbs land as feedback on that trace."""
    from fastapi.responses import JSONResponse
    from pydantic import ValidationError

    from tailorlm.serve.app import EventStream
    from tailorlm.serve.gateway import APIError
    from tailorlm.serve.schema import ChatRequest

    gateway = _gateway(request)
    try:
        body = ChatRequest.model_validate(await request.json())
        trace_id, out = await gateway.chat(body, request.is_disconnected)
    except ValidationError as e:
        return JSONResponse({"error": {"message": str(e.errors()[0]["msg"]), "type": "invalid_request_error"}}, 400)
    except APIError as e:
        return JSONResponse({"error": {"message": e.message, "type": e.type, "code": e.code}}, e.status)
    if isinstance(out, dict):
        return JSONResponse(out, headers={"X-Trace-Id": trace_id})
    return EventStream(out, headers={"X-Trace-Id": trace_id, "Cache-Control": "no-cache"})
