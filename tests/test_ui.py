"""The workbench over real HTTP on loopback, without a browser: pages, the JSON API, keys, CSRF, escaping,
and its mount under `tailor serve`."""

import json
import re
from importlib import resources

import httpx
import pytest

from tests.review_fixtures import CANARY, RAG_ANSWER, rag_project, reviewed_project  # noqa: F401

PAGES = ["/", "/data", "/data/tickets", "/review/data", "/review/pairs", "/runs", "/reports", "/queue", "/judge", "/playground"]


@pytest.fixture
def ui(reviewed_project):
    """ui(keys=None) -> an httpx client on a real server for the project's workbench."""
    from tailorlm.serve.server import running
    from tailorlm.ui.app import create_ui_app

    opened = []

    def start(keys=None):
        from tailorlm.serve.auth import _digest

        cm = running(create_ui_app(reviewed_project, [_digest(k) for k in keys] if keys else None))
        url = cm.__enter__()
        opened.append(cm)
        return httpx.Client(base_url=url.removesuffix("/v1"), timeout=30)

    yield start
    for cm in opened:
        cm.__exit__(None, None, None)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_every_page_renders_and_escapes_record_text(ui):
    client = ui()
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "<script>window.__xss" not in r.text, path  # never raw
        assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "&lt;script&gt;window.__xss" in client.get("/queue").text  # shown, as text


def test_the_overview_says_what_tailor_advise_says_next(ui, reviewed_project, cli):
    import json

    client = ui()
    advice = json.loads(cli("advise", "--project", reviewed_project.root, "--json").output)
    shown = client.get("/api/overview").json()["advice"]
    assert (shown["rung"], shown["action"], shown["next_steps"]) == (advice["rung"], advice["action"], advice["next_steps"])
    assert shown["reasons"] == advice["reasons"] and shown["next_steps"]
    page = client.get("/").text
    assert 'id="advice"' in page and advice["action"].replace("_", " ") in page
    from html import escape
    assert escape(advice["next_steps"][0]) in page
    # Kept until something it reads changes: a new dataset version gives new advice.
    assert client.get("/api/overview").json()["advice"] == shown
    from tailorlm.data.pipeline import prepare
    with open(reviewed_project.root / "tickets.jsonl", "a") as f:  # more examples: the advice counts them
        f.writelines(json.dumps({"messages": [{"role": "user", "content": f"one more ticket, number {i}"},
                                              {"role": "assistant", "content": "bug"}]}) + "\n" for i in range(20))
    prepare(reviewed_project)
    assert client.get("/api/overview").json()["advice"]["missing"] != shown["missing"]


def test_no_asset_comes_from_another_host():
    folder = resources.files("tailorlm") / "ui"
    for sub in ("templates", "static"):
        for f in (folder / sub).iterdir():
            assert not re.search(r"(src|href)=\"(https?:)?//", f.read_text()), f.name
    assert (folder / "static" / "tailor.js").is_file()


def test_forms_need_the_csrf_token(ui, reviewed_project):
    client = ui()
    page = client.get("/review/data").text
    form = {"dataset": "tickets", "sample": "5", "seed": "0", "target": "0.95", "reviewer": "alice"}
    assert client.post("/review/data", data=form).status_code == 403
    assert client.post("/review/data", data={**form, "csrf": "forged"}).status_code == 403
    assert not reviewed_project.store.select("data_reviews")
    r = client.post("/review/data", data={**form, "csrf": _csrf(page)}, follow_redirects=False)
    assert r.status_code == 303 and len(reviewed_project.store.select("data_reviews")) == 1
    other = httpx.Client(base_url=str(client.base_url))  # another browser: its own session, its own token
    other.get("/")
    assert other.post("/review/data", data={**form, "csrf": _csrf(page)}).status_code == 403


def test_data_review_and_side_by_side_through_the_api(ui, reviewed_project):
    client = ui()
    token = {"X-CSRF-Token": _csrf(client.get("/review/data").text)}
    review = client.post("/api/data-reviews", json={"dataset": "tickets", "sample": 20, "seed": 2, "reviewer": "alice"},
                         headers=token).json()
    assert len(review["items"]) == 20
    assert [r["id"] for r in client.get("/api/data-reviews").json()["data_reviews"]] == [review["id"]]
    for n, rid in enumerate(review["items"]):
        body = {"record_id": rid, "reviewer": "alice", "decision": "fail" if n == 0 else "pass",
                "reason": "wrong label" if n == 0 else None}
        assert client.post(f"/api/data-reviews/{review['id']}/decisions", json=body, headers=token).status_code == 200
    s = client.get(f"/api/data-reviews/{review['id']}").json()
    assert s["pass"] == 19 and s["pass_rate"]["mean"] == pytest.approx(0.95) and s["meets_target"] is None
    bad = client.post(f"/api/data-reviews/{review['id']}/decisions", json={"record_id": "x", "reviewer": "a", "decision": "pass"},
                      headers=token)
    assert bad.status_code == 400 and "not in the sample" in bad.json()["error"]["message"]
    done = client.post(f"/api/data-reviews/{review['id']}/finish", headers=token).json()
    assert done["parents"] == [review["dataset_version"]] and done["accounting"]["kept"] == 39

    pr = client.post("/api/pair-reviews", json={"a": "base", "b": "tuned", "suite": "fresh", "sample": 6}, headers=token).json()
    while (item := client.get(f"/api/pair-reviews/{pr['id']}/next", params={"rater": "bob"}).json()["item"]):
        assert "shown_first" not in item and "a" not in item
        r = client.post(f"/api/pair-reviews/{pr['id']}/ratings", headers=token,
                        json={"example_id": item["example_id"], "rater": "bob", "preference": "right"})
        assert r.status_code == 200 and set(r.json()) == {"id", "example_id", "rater"}
    s = client.get(f"/api/pair-reviews/{pr['id']}").json()
    assert [r["id"] for r in client.get("/api/pair-reviews").json()["pair_reviews"]] == [pr["id"]]
    first = [i["shown_first"] for i in reviewed_project.store.select("pair_review_items", review_id=pr["id"])]
    # "right" every time: B wins exactly where B was shown on the right.
    assert s["preferences"]["b"] == first.count("a") and s["preferences"]["a"] == first.count("b")


def test_feedback_queue_answer_over_http_reaches_the_loop(ui):
    client = ui()
    token = {"X-CSRF-Token": _csrf(client.get("/queue").text)}
    assert client.get("/api/queue").json()["queue"][0]["trace_id"] == "tr0"
    assert client.post("/api/queue/tr0/answer", json={"correction": "billing", "reviewer": "carol"}, headers=token).status_code == 200
    nxt = client.get("/api/queue/next-loop").json()
    assert [s["trace"] for s in nxt["sft"]] == ["tr0"]
    assert client.post("/api/queue/nope/accept", json={}, headers=token).status_code == 400


def test_the_same_keys_as_the_server(ui):
    client = ui(keys=["sekret-key-1"])
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/login")
    assert client.get("/api/queue").status_code == 401
    assert client.get("/api/queue", headers={"Authorization": "Bearer sekret-key-1"}).status_code == 200
    # A Bearer client needs no CSRF token: browsers never attach that header by themselves.
    assert client.post("/api/queue/tr1/accept", json={}, headers={"Authorization": "Bearer sekret-key-1"}).status_code == 200
    login = client.get("/login").text
    assert client.post("/login", data={"key": "wrong", "csrf": _csrf(login)}).status_code == 401
    r = client.post("/login", data={"key": "sekret-key-1", "csrf": _csrf(login)}, follow_redirects=False)
    assert r.status_code == 303 and "sekret" not in r.headers["location"]
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200 and "sekret-key-1" not in page.text
    assert all(c.name != "sekret-key-1" and "sekret" not in (c.value or "") for c in client.cookies.jar)


def test_tailor_serve_mounts_the_workbench_under_ui(reviewed_project, tiny_generator, monkeypatch):
    from tailorlm.models.pool import ModelPool
    from tailorlm.serve.app import create_app
    from tailorlm.serve.server import running
    from tests.helpers import extend_config

    monkeypatch.setenv("TAILOR_TEST_KEYS", "k-1")
    extend_config(reviewed_project.root, {"serve": {"api_keys_env": "TAILOR_TEST_KEYS"}})
    from tailorlm.project import Project

    project = Project.load(reviewed_project.root)
    with running(create_app(project, pool=ModelPool(project, generator=tiny_generator))) as url:
        base = url.removesuffix("/v1")
        c = httpx.Client(base_url=base, timeout=30)
        assert c.get("/v1/models").status_code == 401  # the server's own guard still holds
        assert c.get("/ui/api/queue").status_code == 401  # and the workbench checks the same keys
        assert c.get("/ui/api/queue", headers={"Authorization": "Bearer k-1"}).status_code == 200
        r = c.get("/ui/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        login = c.get("/ui/login")
        assert login.status_code == 200 and 'href="/ui/static/tailor.css"' in login.text
        c.post("/ui/login", data={"key": "k-1", "csrf": _csrf(login.text)})
        assert "Feedback queue" in c.get("/ui/queue").text
        # The playground answers through the server's own gateway, traced, and its thumbs are feedback.
        page = c.get("/ui/playground").text
        models = re.findall(r"<option>([^<]+)</option>", page)
        assert models, page
        token = {"X-CSRF-Token": _csrf(login.text)}
        ask = {"model": models[-1], "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
        assert c.post("/ui/api/playground/chat", json=ask).status_code == 403  # a cookie session needs its token
        whole = c.post("/ui/api/playground/chat", json=ask, headers=token)
        assert whole.status_code == 200 and whole.json()["choices"][0]["message"]["content"] is not None
        with c.stream("POST", "/ui/api/playground/chat", json={**ask, "stream": True}, headers=token) as r:
            trace = r.headers["x-trace-id"]
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and len(events) > 2
        assert c.post("/ui/api/feedback", json={"trace_id": trace, "thumbs": "up"}, headers=token).status_code == 200
        assert project.store.select("feedback", trace_id=trace)[0]["value"] == "up"
        assert c.post("/ui/api/playground/chat", json={"model": "nope", "messages": []}, headers=token).status_code == 400


def test_a_playground_answer_shows_what_its_rag_rung_retrieved_and_cited(rag_project):
    from tailorlm.models.pool import ModelPool
    from tailorlm.serve.app import create_app
    from tailorlm.serve.server import running
    from tests.helpers import ScriptedGenerator

    pool = ModelPool(rag_project, generator=ScriptedGenerator(default=RAG_ANSWER))
    with running(create_app(rag_project, pool=pool)) as url:
        c = httpx.Client(base_url=url.removesuffix("/v1"), timeout=60)
        token = {"X-CSRF-Token": _csrf(c.get("/ui/review/data").text)}
        ask = {"model": "kb:rag", "stream": True, "messages": [{"role": "user", "content": "Are restores encrypted?"}]}
        with c.stream("POST", "/ui/api/playground/chat", json=ask, headers=token) as r:
            trace = r.headers["x-trace-id"]
            text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                           for line in r.iter_lines() if line.startswith("data: {") and '"choices": [{' in line)
        assert text == RAG_ANSWER
        drawn = c.get(f"/ui/api/playground/answers/{trace}").json()
    paths = [s["path"] for s in drawn["sources"]]
    assert drawn["rung"] == "rag" and len(paths) >= 2 and all(p.startswith("docs/") for p in paths)
    assert [(x["n"], x["path"]) for x in drawn["citations"]] == [(1, paths[0])]  # "[1]" is the first source


def test_the_runs_page_draws_a_real_runs_loss_curves(reviewed_project, tiny_model_dir):
    from tailorlm.serve.server import running
    from tailorlm.ui.app import create_ui_app
    from tests.review_fixtures import with_a_run

    project, result = with_a_run(reviewed_project, tiny_model_dir)
    with running(create_ui_app(project)) as url:
        c = httpx.Client(base_url=url.removesuffix("/v1"), timeout=30)
        listing = c.get("/runs").text
        assert result["run_id"] in listing and result["model_version"] in listing
        page = c.get(f"/runs/{result['run_id']}").text
    curves = {name: pts for pts, name in re.findall(r'<polyline class="curve c\d+" points="([^"]+)"><title>([^<]+)</title>', page)}
    assert {"loss", "eval_loss"} <= set(curves), page  # train and validation
    assert len(curves["loss"].split()) == 6 and len(curves["eval_loss"].split()) == 3  # a point per step / per eval
    ys = [float(p.split(",")[1]) for p in curves["loss"].split()]
    assert ys[-1] > ys[0]  # SVG y grows downwards: the loss went down, so the line rises
    assert max(ys) - min(ys) > 100  # drawn over the losses' own range, not squashed against the top
    assert "tokens/s" in page and result["model_version"] in page and '"max_steps": 6' in page


def test_the_overview_draws_the_newest_ladder_with_intervals_latency_cost_and_recommendation(reviewed_project):
    from tailorlm.serve.server import running
    from tailorlm.ui.app import create_ui_app
    from tests.review_fixtures import with_a_ladder

    project, ladder = with_a_ladder(reviewed_project)
    assert [r["quality"]["mean"] for r in ladder["rungs"]] == [pytest.approx(1 / 3), 1.0]
    with running(create_ui_app(project)) as url:
        page = httpx.get(url.removesuffix("/v1") + "/", timeout=30).text
    assert len(re.findall(r'<rect x="110" [^>]*class="bar"', page)) == 2 and len(re.findall(r'class="ci"', page)) == 2
    for r in ladder["rungs"]:
        q = r["quality"]
        row = re.search(rf"<tr><td>{r['name']}</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", page)
        assert row and row.group(1) == f"{q['mean']:.3f}" and row.group(2) == f"{q['low']:.3f}–{q['high']:.3f}", r["name"]
        assert re.fullmatch(r"[\d.]+ ms / [\d.]+ ms", row.group(3)) and row.group(4) == f"${r['cost_per_1k']['usd_per_1k']:.3g}"
    assert "Recommendation:</strong>\nfew_shot" in page


def test_data_diff_quarantine_filter_and_report_compare_as_pages_and_json(ui, reviewed_project):
    from tailorlm.review import data as dr
    from tailorlm.review.pairs import find_report

    project = reviewed_project
    review = dr.start_data_review(project, "tickets", sample=4, seed=0)
    failed, edited = review["items"][:2]
    dr.decide(project, review["id"], failed, "fail", "alice", reason="wrong label")
    dr.decide(project, review["id"], edited, "edit", "alice", edited={"messages": [
        {"role": "user", "content": "fixed"}, {"role": "assistant", "content": "bug"}]})
    new = dr.finish_data_review(project, review["id"])["id"]
    client = ui()
    diff = client.get("/api/data", params={"a": review["dataset_version"], "b": new}).json()["diff"]
    assert diff["removed"] == [failed] and diff["changed"] == [edited] and diff["added"] == []
    assert failed in client.get("/data", params={"a": review["dataset_version"], "b": new}).text
    d = client.get(f"/api/data/{new}", params={"reason": "wrong label"}).json()
    assert [q["reason"] for q in d["quarantine"]] == ["wrong label"] and d["reasons"]["wrong label"] == 1
    assert "wrong label" in client.get(f"/data/{new}", params={"reason": "wrong label"}).text
    a, b = (find_report(project, s, "review")["id"] for s in ("base", "tuned"))
    cmp = client.get("/api/reports", params={"a": a, "b": b}).json()["compare"]
    means = [find_report(project, x, "review")["metrics"]["accuracy"]["mean"] for x in ("base", "tuned")]
    assert cmp["a"] == "shop:base" and cmp["comparison"]["metrics"]["accuracy"]["delta"] == pytest.approx(means[1] - means[0])
    assert cmp["differ"] and all(x["a"] != x["b"] for x in cmp["differ"])
    assert client.get("/reports", params={"a": a, "b": b}).status_code == 200
    assert client.get("/api/runs").json() == {"runs": []}
