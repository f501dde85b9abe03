"""The workbench in a real browser: Playwright for Python driving Debian's Chromium (`apt-get install
chromium`; Playwright's own browser download is not used). Marked `browser`; skipped when Chromium or
Playwright is missing, unless TAILOR_REQUIRE_BROWSER=1 (CI), where that is a failure.

TAILOR_UI_SCREENSHOTS=docs/ui writes a screenshot of each page there.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.review_fixtures import CANARY, RAG_ANSWER, rag_project, reviewed_project  # noqa: F401

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("TAILOR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
PAGES = {"overview": "/", "data": "/data", "dataset": "/data/tickets", "data-review": "/review/data",
         "runs": "/runs", "reports": "/reports", "human-eval": "/review/pairs", "feedback-queue": "/queue",
         "judge-agreement": "/judge"}


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not CHROMIUM:
        if os.environ.get("TAILOR_REQUIRE_BROWSER") == "1":
            pytest.fail("browser tests need `pip install playwright` and `apt-get install chromium`")
        pytest.skip("needs playwright (pip) and Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def site(reviewed_project, browser):
    """(page, base_url, project): a fresh browser page on a real workbench server."""
    from tailorlm.serve.server import running
    from tailorlm.ui.app import create_ui_app

    with running(create_ui_app(reviewed_project)) as url:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page, url.removesuffix("/v1"), reviewed_project
        assert not errors, errors


def test_every_page_opens_and_the_xss_canary_never_runs(site, tiny_model_dir):
    page, base, project = site
    from tailorlm.review import pairs as pr
    from tests.review_fixtures import with_a_ladder, with_a_run

    review = pr.start_pair_review(project, "base", "tuned", suite="review", sample=24, seed=0)
    with_a_ladder(project)  # the overview's chart and table
    _, run = with_a_run(project, tiny_model_dir)  # a real run, so the Runs pages have curves to draw
    pages = {**PAGES, "rate": f"/review/pairs/{review['id']}", "report": f"/reports/{review['report_b']}",
             "run": f"/runs/{run['run_id']}"}
    shots = os.environ.get("TAILOR_UI_SCREENSHOTS")
    for name, path in pages.items():
        response = page.goto(base + path)
        assert response.status == 200, path
        assert page.evaluate("typeof window.__xss") == "undefined", path
        if name == "overview":
            assert page.locator("svg.chart rect.bar").count() == 2 and "few_shot" in page.inner_text(".recommendation")
            assert page.inner_text("#advice").strip()
        if name == "run":
            assert page.locator("svg.chart polyline.curve").count() >= 2  # train and validation loss
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)
    # The canary is on the queue (a served prompt) and in B's answers: shown as text, never run.
    for path in ("/queue", f"/reports/{review['report_b']}"):
        page.goto(base + path)
        assert "<script>window.__xss = 1</script>" in page.inner_text("main"), path
        assert page.evaluate("typeof window.__xss") == "undefined"


def test_a_data_review_of_20_records_in_the_browser(site):
    page, base, project = site
    page.goto(base + "/review/data")
    page.fill("input[name=sample]", "20")
    page.fill("input[name=reviewer]", "alice")
    page.click("#start-data-review button[type=submit]")
    for n in range(20):
        if n < 2:
            page.fill("#reason", "wrong label")
            page.click("#fail")
        else:
            page.click("#pass")
    assert "18 pass, 2 fail, 0 edit" in page.inner_text("#summary")
    assert page.inner_text("#pass-rate") == "90.0%"
    assert "misses the 95% target" in page.inner_text("#verdict") or "undecided" in page.inner_text("#verdict")
    [review] = project.store.select("data_reviews")
    decisions = project.store.select("data_review_decisions", review_id=review["id"])
    assert len(decisions) == 20 and {d["reviewer"] for d in decisions} == {"alice"}
    page.click("#finish")
    assert "Became" in page.inner_text("#result")
    from tailorlm.data.versions import resolve
    new = resolve(project, "tickets")
    assert new["parents"] == [review["dataset_version"]] and new["accounting"]["kept"] == 38


def test_a_blind_side_by_side_of_10_items_by_keyboard(site):
    page, base, project = site
    page.goto(base + "/review/pairs")
    page.select_option("select[name=a]", "shop:base")
    page.select_option("select[name=b]", "shop:tuned")
    page.fill("input[name=suite]", "fresh")
    page.fill("input[name=sample]", "10")
    page.fill("input[name=rater]", "bob")
    page.click("#start-pair-review button[type=submit]")
    [review] = project.store.select("pair_reviews")
    first = {i["example_id"]: i["shown_first"] for i in project.store.select("pair_review_items", review_id=review["id"])}
    assert 0 < list(first.values()).count("a") < 10  # positions randomised
    for _ in range(10):
        example = page.input_value("input[name=example_id]")
        # The rater always gives the left answer 5s and the right 2s: no clicks, six keys and Enter.
        page.keyboard.type("555222")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        rows = [r for r in project.store.select("pair_ratings", review_id=review["id"]) if r["example_id"] == example]
        left = "a" if first[example] == "a" else "b"
        assert rows and rows[0][f"{left}_correctness"] == 5 and rows[0]["shown_first"] == first[example]
    assert page.is_visible("#all-done")
    page.goto(base + f"/review/pairs/{review['id']}/results")
    n_a_left = list(first.values()).count("a")
    assert f"A {n_a_left}, B {10 - n_a_left}" in page.inner_text("#wins")  # left always won: A's wins = A-left items
    from tailorlm.review.pairs import pair_summary
    s = pair_summary(project, review["id"])
    assert s["means"]["overall"]["a"]["mean"] == pytest.approx((5 * n_a_left + 2 * (10 - n_a_left)) / 10)
    assert s["rule"]["verdict"] in page.inner_text("#rule") or s["rule"]["says"][:20] in page.inner_text("#rule")


def test_answering_the_feedback_queue_lands_in_the_loops_data(site):
    page, base, project = site
    page.goto(base + "/queue")
    page.fill("#trace-tr0 textarea[name=correction]", "billing: refunds take five days")
    page.click("#trace-tr0 button.answer")
    assert "1 corrections as SFT examples" in page.inner_text("#next-loop")
    from tailorlm.loop.curate import collect
    sft, _, _ = collect(project)
    assert [r.meta["trace"] for r in sft] == ["tr0"]
    assert sft[0].content["messages"][-1]["content"] == "billing: refunds take five days"


def test_the_playground_streams_through_tailor_serve_and_thumbs_land_as_feedback(reviewed_project, browser, tiny_generator):
    from tailorlm.models.pool import ModelPool
    from tailorlm.serve.app import create_app
    from tailorlm.serve.server import running

    project = reviewed_project
    with running(create_app(project, pool=ModelPool(project, generator=tiny_generator))) as url:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url.removesuffix("/v1") + "/ui/playground")
        page.fill("#prompt", "hello there")
        page.click("#send")
        page.wait_for_selector("button.thumbs-up", timeout=60_000)
        assert page.inner_text(".answer-stream").strip()
        page.click("button.thumbs-up")
        page.wait_for_selector("button.thumbs-up:disabled", timeout=10_000)
        assert not errors, errors
    served = [t for t in project.store.select("traces") if t["id"] not in ("tr0", "tr1", "tr2")]
    assert len(served) == 1
    assert [(f["kind"], f["value"]) for f in project.store.select("feedback", trace_id=served[0]["id"])] == [("thumbs", "up")]


def test_the_playground_lists_a_rag_answers_sources_and_marks_the_cited_one(rag_project, browser):
    from tailorlm.models.pool import ModelPool
    from tailorlm.serve.app import create_app
    from tailorlm.serve.server import running
    from tests.helpers import ScriptedGenerator

    pool = ModelPool(rag_project, generator=ScriptedGenerator(default=RAG_ANSWER))
    with running(create_app(rag_project, pool=pool)) as url:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url.removesuffix("/v1") + "/ui/playground")
        page.select_option("#model", "kb:rag")
        page.fill("#prompt", "Are restores encrypted?")
        page.click("#send")
        page.wait_for_selector("ol.sources li", timeout=60_000)
        assert page.inner_text(".answer-stream") == RAG_ANSWER
        sources = page.locator("ol.sources li").all_inner_texts()
        assert len(sources) >= 2 and all(s.startswith(f"[{n}] docs/") for n, s in enumerate(sources, 1))
        assert page.locator("ol.sources li.cited").all_inner_texts() == [sources[0]]  # the answer cites [1]
        shots = os.environ.get("TAILOR_UI_SCREENSHOTS")
        if shots:
            page.screenshot(path=str(Path(shots) / "playground.png"), full_page=True)
        assert not errors, errors
