"""The workbench's pages: GET renders a template, a form POST calls the same library as the API and
redirects back (303), so a reload never repeats an action."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from tailorlm.review import data as dr
from tailorlm.review import pairs as pr
from tailorlm.review import queue as fq
from tailorlm.ui import views
from tailorlm.ui.app import render

router = APIRouter()


def _p(request: Request):
    return request.app.state.project


def _back(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "") + path, 303)


def _int(value: str, what: str) -> int:
    from tailorlm.errors import TailorError

    try:
        return int(value)
    except ValueError:
        raise TailorError(f"{what} must be a whole number, not {value!r}") from None


@router.get("/login")
def login_page(request: Request):
    return render(request, "login.html", {"failed": False})


@router.post("/login")
def login(request: Request, key: str = Form(...)):
    from tailorlm.serve.auth import key_matches

    keys = request.app.state.keys
    if keys is None or key_matches(key.strip(), keys):
        request.state.session["authed"] = True
        return _back(request, "/")
    return render(request, "login.html", {"failed": True}, 401)


@router.get("/")
def overview(request: Request):
    o = views.overview(_p(request))
    bars = views.ladder_bars(o["ladder"]) if o["ladder"] else []
    return render(request, "overview.html", {"o": o, "bars": bars})


@router.get("/data")
def data(request: Request, a: str | None = None, b: str | None = None):
    from tailorlm.data.versions import diff_versions, list_versions

    project = _p(request)
    diff = diff_versions(project, a, b) if a and b else None
    return render(request, "data.html", {"versions": list_versions(project), "diff": diff, "a": a, "b": b})


@router.get("/data/{ref}")
def data_version(request: Request, ref: str, reason: str | None = None):
    return render(request, "data_version.html", {"d": views.dataset(_p(request), ref, reason)})


@router.get("/review/data")
def data_reviews(request: Request):
    from tailorlm.data.versions import list_versions

    project = _p(request)
    return render(request, "data_reviews.html", {"reviews": dr.list_data_reviews(project), "versions": list_versions(project),
                                                 "default_sample": dr.DEFAULT_SAMPLE, "default_target": dr.DEFAULT_TARGET})


@router.post("/review/data")
def start_data_review(request: Request, dataset: str = Form(...), sample: str = Form("200"), seed: str = Form("0"),
                      target: str = Form("0.95"), reviewer: str = Form("reviewer")):
    from tailorlm.errors import TailorError

    try:
        target_f = float(target)
    except ValueError:
        raise TailorError(f"target must be a number such as 0.95, not {target!r}") from None
    r = dr.start_data_review(_p(request), dataset, _int(sample, "sample"), _int(seed, "seed"), target=target_f,
                             reviewer=reviewer)
    return _back(request, f"/review/data/{r['id']}?reviewer={quote(reviewer)}")


@router.get("/review/data/{review_id}")
def data_review(request: Request, review_id: str, reviewer: str = "reviewer"):
    project = _p(request)
    items = dr.items(project, review_id)
    pending = [i for i in items if i["decision"] is None]
    return render(request, "data_review.html", {"s": dr.data_review_summary(project, review_id), "items": items,
                                                "current": pending[0] if pending else None, "reviewer": reviewer})


@router.post("/review/data/{review_id}/decide")
def decide(request: Request, review_id: str, record_id: str = Form(...), decision: str = Form(...),
           reviewer: str = Form(...), reason: str = Form(""), edited: str = Form("")):
    import json

    from tailorlm.errors import TailorError

    content = None
    if decision == "edit":
        try:
            content = json.loads(edited)
        except json.JSONDecodeError as e:
            raise TailorError(f"the edited record is not JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    dr.decide(_p(request), review_id, record_id, decision, reviewer, reason, content)
    return _back(request, f"/review/data/{review_id}?reviewer={quote(reviewer)}")


@router.post("/review/data/{review_id}/finish")
def finish(request: Request, review_id: str):
    dr.finish_data_review(_p(request), review_id)
    return _back(request, f"/review/data/{review_id}")


@router.get("/review/pairs")
def pair_reviews(request: Request):
    project = _p(request)
    subjects = sorted({r["subject"] for r in views.reports(project) if r["subject"] != "ladder"})
    return render(request, "pairs.html", {"reviews": pr.list_pair_reviews(project), "subjects": subjects,
                                          "default_sample": pr.DEFAULT_SAMPLE})


@router.post("/review/pairs")
def start_pair_review(request: Request, a: str = Form(...), b: str = Form(...), suite: str = Form(""),
                      sample: str = Form("50"), seed: str = Form("0"), rater: str = Form("rater")):
    r = pr.start_pair_review(_p(request), a, b, suite or None, _int(sample, "sample"), _int(seed, "seed"), rater)
    return _back(request, f"/review/pairs/{r['id']}?rater={quote(rater)}")


@router.get("/review/pairs/{review_id}")
def rate_page(request: Request, review_id: str, rater: str = "rater"):
    project = _p(request)
    items = pr.blind_items(project, review_id, rater)
    todo = [i for i in items if not i["rated"]]
    return render(request, "pair_rate.html", {"review_id": review_id, "rater": rater, "item": todo[0] if todo else None,
                                              "done": len(items) - len(todo), "total": len(items),
                                              "criteria": pr.CRITERIA})


@router.post("/review/pairs/{review_id}/rate")
async def rate(request: Request, review_id: str):
    form = await request.form()
    side = {s: {c: form.get(f"{s}_{c}") or None for c in pr.CRITERIA} for s in ("left", "right")}
    rater = str(form.get("rater") or "")
    pr.rate(_p(request), review_id, str(form.get("example_id") or ""), rater,
            left=side["left"], right=side["right"], preference=form.get("preference") or None)
    return _back(request, f"/review/pairs/{review_id}?rater={quote(rater)}")


@router.get("/review/pairs/{review_id}/results")
def pair_results(request: Request, review_id: str):
    return render(request, "pair_results.html", {"s": pr.pair_summary(_p(request), review_id), "criteria": pr.CRITERIA})


@router.post("/review/pairs/{review_id}/export")
def export(request: Request, review_id: str):
    out = pr.export_dpo(_p(request), review_id)
    return render(request, "exported.html", {"out": out, "review_id": review_id})


@router.get("/judge")
def judge(request: Request):
    from tailorlm.review.judge import judge_agreement

    project = _p(request)
    return render(request, "judge.html", {"rows": [judge_agreement(project, r["id"])
                                                   for r in project.store.select("pair_reviews", order_by="created_at")]})


@router.get("/queue")
def queue(request: Request):
    project = _p(request)
    return render(request, "queue.html", {"queue": fq.queue(project), "next": fq.next_loop(project)})


@router.post("/queue/{trace_id}/answer")
def answer(request: Request, trace_id: str, correction: str = Form(...), reviewer: str = Form("reviewer")):
    fq.answer(_p(request), trace_id, correction, reviewer)
    return _back(request, "/queue")


@router.post("/queue/{trace_id}/accept")
def accept(request: Request, trace_id: str, reviewer: str = Form("reviewer")):
    fq.accept(_p(request), trace_id, reviewer)
    return _back(request, "/queue")


@router.get("/runs")
def runs(request: Request):
    return render(request, "runs.html", {"runs": views.runs(_p(request))})


@router.get("/runs/{run_id}")
def run(request: Request, run_id: str):
    return render(request, "run.html", {"r": views.run(_p(request), run_id)})


@router.get("/reports")
def reports(request: Request, a: str | None = None, b: str | None = None):
    project = _p(request)
    cmp = views.compare_reports(project, a, b) if a and b else None
    return render(request, "reports.html", {"reports": views.reports(project), "cmp": cmp, "a": a, "b": b})


@router.get("/reports/{report_id}")
def report(request: Request, report_id: str):
    from tailorlm.eval.runner import load_report

    return render(request, "report.html", {"r": load_report(_p(request), report_id)})


@router.get("/playground")
def playground(request: Request):
    gateway = request.app.state.gateway
    models = gateway.router.names() if gateway is not None else []
    return render(request, "playground.html", {"models": models, "served": gateway is not None})
