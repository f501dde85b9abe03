"""Human review as a library: data review, blind side-by-side human eval, agreement, DPO export, feedback queue."""

import json

import pytest

from tailorlm.errors import TailorError
from tailorlm.review import data as dr
from tailorlm.review import pairs as pr
from tailorlm.review import queue as fq
from tailorlm.review.agreement import cohen_kappa, krippendorff_alpha
from tests.pg_fixtures import pg_server, pg_url  # noqa: F401
from tests.review_fixtures import LABELS, build, reviewed_project  # noqa: F401


def test_krippendorff_alpha_matches_krippendorffs_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the 3 observers x 15 units example.
    n = None
    data = [[n, n, n, n, n, 3, 4, 1, 2, 1, 1, 3, 3, n, 3], [1, n, 2, 1, 3, 3, 4, 3, n, n, n, n, n, n, n],
            [n, n, 2, 1, 3, 4, 4, n, 2, 1, 1, 3, 3, n, 4]]
    assert round(krippendorff_alpha(data, "nominal"), 3) == 0.691
    assert round(krippendorff_alpha(data, "interval"), 3) == 0.811
    assert krippendorff_alpha([[1, 1], [1, 1]]) is None  # no variation: undefined, not 1.0


def test_cohen_kappa_by_hand():
    # 10 items, agreement 8/10; both raters say yes 5 times -> pe = .5*.5 + .5*.5 = .5; kappa = (.8-.5)/.5 = .6
    a = ["y"] * 5 + ["n"] * 5
    b = ["y"] * 4 + ["n", "y"] + ["n"] * 4
    assert cohen_kappa(a, b) == pytest.approx(0.6)


def test_data_review_pass_rate_target_and_new_version_with_lineage(reviewed_project):
    project = reviewed_project
    review = dr.start_data_review(project, "tickets", sample=20, seed=3)
    again = dr.start_data_review(project, "tickets", sample=20, seed=3)
    assert review["items"] == again["items"] and len(set(review["items"])) == 20  # seeded
    for n, rid in enumerate(review["items"]):
        if n < 2:
            dr.decide(project, review["id"], rid, "fail", "alice", reason="wrong label")
        elif n == 2:
            dr.decide(project, review["id"], rid, "edit", "alice", edited={"messages": [
                {"role": "user", "content": "fixed question"}, {"role": "assistant", "content": "billing"}]})
        else:
            dr.decide(project, review["id"], rid, "pass", "alice")
    s = dr.data_review_summary(project, review["id"])
    assert (s["pass"], s["fail"], s["edit"], s["pending"]) == (17, 2, 1, 0)
    assert s["pass_rate"]["mean"] == pytest.approx(17 / 20)
    assert s["pass_rate"]["high"] < 0.95 and s["meets_target"] is False  # Wilson(17/20) tops out at 0.95-
    assert s["fail_reasons"] == {"wrong label": 2}
    with pytest.raises(TailorError, match="needs a reason"):
        dr.decide(project, review["id"], review["items"][0], "fail", "alice")
    with pytest.raises(TailorError, match="not in the sample"):
        dr.decide(project, review["id"], "nope", "pass", "alice")
    with pytest.raises(TailorError, match="not a valid chat record|needs 'messages'"):
        dr.decide(project, review["id"], review["items"][0], "edit", "alice", edited={"messages": []})
    before = {r["id"] for r in project.store.select("dataset_versions")}
    new = dr.finish_data_review(project, review["id"])
    assert new["parents"] == [review["dataset_version"]] and new["id"] not in before
    assert new["accounting"]["kept"] == 38 and new["accounting"]["holds"]
    from tailorlm.data.versions import load_records, resolve
    records = {r.id: r for r in load_records(project, new)}
    assert review["items"][0] not in records and review["items"][1] not in records
    assert records[review["items"][2]].content["messages"][0]["content"] == "fixed question"
    old = {r.id: r for r in load_records(project, resolve(project, review["dataset_version"]))}
    assert len(old) == 40 and old[review["items"][2]].content["messages"][0]["content"] != "fixed question"
    assert dr.get_review(project, review["id"])["result_version"] == new["id"]
    with pytest.raises(TailorError, match="finished"):
        dr.decide(project, review["id"], review["items"][5], "pass", "alice")


def _rate_all(project, review_id, rater, prefer_b=True, noisy=()):
    """Rate every item blind: the better answer (B's) gets 4s, the other 2s, except on `noisy` items."""
    # The test peeks at the stored positions, which the rater never sees, to rate B's answer the better one.
    first = {i["example_id"]: i["shown_first"] for i in project.store.select("pair_review_items", review_id=review_id)}
    for item in pr.blind_items(project, review_id):
        is_b_left = first[item["example_id"]] == "b"
        good, bad = {c: 4 for c in pr.CRITERIA}, {c: 2 for c in pr.CRITERIA}
        if item["ord"] in noisy:
            good, bad = bad, good
        left, right = (good, bad) if is_b_left == prefer_b else (bad, good)
        pr.rate(project, review_id, item["example_id"], rater, left=left, right=right)


def test_blind_pair_review_ratings_positions_and_result(reviewed_project):
    project = reviewed_project
    review = pr.start_pair_review(project, "base", "tuned", suite="review", sample=10, seed=1)
    items = project.store.select("pair_review_items", review_id=review["id"])
    first = [i["shown_first"] for i in items]
    assert len(items) == 10 and 0 < first.count("a") < 10  # positions randomised, seeded
    again = pr.start_pair_review(project, "base", "tuned", suite="review", sample=10, seed=1)
    assert [i["shown_first"] for i in project.store.select("pair_review_items", review_id=again["id"])] == first
    blind = pr.blind_items(project, review["id"])
    assert set(blind[0]) >= {"left", "right", "input"} and "shown_first" not in blind[0]
    _rate_all(project, review["id"], "alice")
    _rate_all(project, review["id"], "bob", noisy={0, 1})
    stored = pr.ratings(project, review["id"])
    assert len(stored) == 20
    assert all((r["b_correctness"], r["a_correctness"]) == (4, 2) for r in stored if r["rater"] == "alice")
    s = pr.pair_summary(project, review["id"])
    # Per item the raters' mean overall: alice B 4 / A 2; bob the same except 2 items swapped -> 8 items B 4 A 2, 2 items 3/3.
    assert s["means"]["overall"]["a"]["mean"] == pytest.approx((8 * 2 + 2 * 3) / 10)
    assert s["means"]["overall"]["b"]["mean"] == pytest.approx((8 * 4 + 2 * 3) / 10)
    assert s["rule"]["gain"] == pytest.approx(3.8 / 2.2 - 1)
    assert s["rule"]["low"] >= 0.2 and s["rule"]["verdict"] == "met"
    assert s["preferences"] == {"a": 2, "b": 18, "tie": 0}
    assert s["win_rate_b"]["mean"] == pytest.approx(0.9) and s["win_rate_b"]["low"] < 0.9
    ag = s["agreement"]
    assert ag["raters"] == ["alice", "bob"] and ag["items"] == 10
    assert ag["kappa_preferences"] == pytest.approx(cohen_kappa(["b"] * 10, ["a", "a"] + ["b"] * 8) or 0, abs=1e-9) or \
        ag["kappa_preferences"] is None
    assert ag["alpha_ratings"] < 1


def test_rating_errors_and_undecided_rule(reviewed_project):
    project = reviewed_project
    review = pr.start_pair_review(project, "base", "tuned", suite="review", sample=4, seed=0)
    ex = pr.blind_items(project, review["id"])[0]["example_id"]
    with pytest.raises(TailorError, match="from 1 to 5"):
        pr.rate(project, review["id"], ex, "alice", left={"correctness": 6, "style": 1, "usefulness": 1},
                right={"correctness": 1, "style": 1, "usefulness": 1})
    with pytest.raises(TailorError, match="ratings, a preference"):
        pr.rate(project, review["id"], ex, "alice")
    with pytest.raises(TailorError, match="no eval report"):
        pr.start_pair_review(project, "base", "nobody", suite="review")
    for item in pr.blind_items(project, review["id"]):
        pr.rate(project, review["id"], item["example_id"], "alice", preference="left")
    s = pr.pair_summary(project, review["id"])
    assert "rule" not in s and sum(s["preferences"].values()) == 4  # preferences only: no ratings to take a gain of
    assert s["preferred_left"] == 4


def test_dpo_export_decontaminates_and_trains_from_a_non_eval_suite(reviewed_project):
    project = reviewed_project
    review = pr.start_pair_review(project, "base", "tuned", suite="review", sample=10, seed=1)
    _rate_all(project, review["id"], "alice")
    records = pr.preference_records(project, review["id"])
    assert records and all(r.content["chosen"] != r.content["rejected"] for r in records)
    assert all(r.meta["chosen_from"] == "shop:tuned" for r in records)
    out = pr.export_dpo(project, review["id"])
    # The review suite is the project's eval suite: every pair overlaps it, so none may train.
    assert out["pairs"] == len(records) and out["kept"] == 0 and out["dropped"].get("overlaps_eval") == len(records)
    fresh = pr.start_pair_review(project, "base", "tuned", suite="fresh", sample=10, seed=1)
    _rate_all(project, fresh["id"], "alice")
    out = pr.export_dpo(project, fresh["id"])
    assert out["kept"] == out["pairs"] > 0 and out["dataset_version"].startswith("human-pairs@")
    from tailorlm.data.versions import load_records, resolve
    kept = load_records(project, resolve(project, "human-pairs"))
    assert {r.kind for r in kept} == {"preference"} and len(kept) == out["kept"]
    from tailorlm.loop.curate import collect
    _, prefs, counts = collect(project)  # the loop takes them with the feedback's pairs
    assert counts["human_eval"] == 2 * len(records) and {r.id for r in kept} <= {r.id for r in prefs}


def test_feedback_queue_worst_first_and_answers_reach_the_loop(reviewed_project):
    project = reviewed_project
    q = fq.queue(project)
    assert [x["trace_id"] for x in q] == ["tr0", "tr2", "tr1"]  # thumbs down, unrated, thumbs up
    fq.answer(project, "tr0", "billing", "carol")
    nxt = fq.next_loop(project)
    assert any(s["trace"] == "tr0" and s["messages"][-1]["content"] == "billing" for s in nxt["sft"])
    assert fq.queue(project)[-1]["trace_id"] == "tr0" and fq.queue(project, include_reviewed=False)[0]["trace_id"] == "tr2"
    with pytest.raises(TailorError, match="empty"):
        fq.answer(project, "tr2", "  ", "carol")


def test_the_queue_is_cut_by_the_store_in_the_same_order(reviewed_project):
    from tailorlm.serve.traces import Traces, add_feedback

    project = reviewed_project
    traces = Traces(project, redact=False)
    chat = lambda i: ({"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},  # noqa: E731
                      {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"a{i}"}}]})
    for i, signal in enumerate([{"rating": 2}, {"rating": 5}, None, {"comment": "hm"}, {"thumbs": "down"}]):
        traces.record(f"x{i}", "m", *chat(i), 200, 0.01, 1, 1, "/v1/chat/completions")
        if signal:
            add_feedback(project, f"x{i}", redact=False, **signal)
    traces.record("emb", "m", {"model": "m", "input": ["text"]}, {"data": []}, 200, 0.01, 1, 0, "/v1/embeddings")
    add_feedback(project, "emb", thumbs="down", redact=False)  # no conversation: never queued, never counted
    fq.answer(project, "x4", "a better answer", "carol")  # reviewed: goes to the end although disliked
    everything = fq.queue(project, limit=1000)
    # Disliked (newest first), then nobody said anything, then liked or commented, then reviewed here.
    assert [q["trace_id"] for q in everything] == ["x0", "tr0", "x2", "tr2", "x3", "x1", "tr1", "x4"]
    assert [q["priority"] for q in everything] == [0, 0, 1, 1, 2, 2, 2, 3]
    for n in (1, 3, 5):  # the store's LIMIT keeps the same order as reading everything
        assert [q["trace_id"] for q in fq.queue(project, limit=n)] == [q["trace_id"] for q in everything[:n]]
    assert fq.queue(project, limit=1)[0]["feedback"] == [{"kind": "rating", "value": "2", "comment": None}]
    assert "x4" not in [q["trace_id"] for q in fq.queue(project, include_reviewed=False)]
    assert fq.waiting(project) == {"waiting": 7, "disliked": 2}


def test_reviews_on_a_postgresql_store(tmp_path, pg_url):
    project = build(tmp_path / "pg", store_url=pg_url)
    assert project.store.engine.dialect.name == "postgresql" and "003_human_review" in project.store.applied()
    review = dr.start_data_review(project, "tickets", sample=5, seed=0)
    for rid in review["items"]:
        dr.decide(project, review["id"], rid, "pass", "alice")
    dr.decide(project, review["id"], review["items"][0], "fail", "bob", reason="typo")  # the newest decision counts
    s = dr.data_review_summary(project, review["id"])
    assert (s["pass"], s["fail"]) == (4, 1) and s["target"] == pytest.approx(0.95)
    assert dr.finish_data_review(project, review["id"])["accounting"]["kept"] == 39
    pair = pr.start_pair_review(project, "base", "tuned", suite="fresh", sample=6, seed=0)
    _rate_all(project, pair["id"], "alice")
    _rate_all(project, pair["id"], "bob")
    summary = pr.pair_summary(project, pair["id"])
    assert summary["ratings"] == 12 and summary["preferences"]["b"] == 12 and summary["rule"]["verdict"] == "met"
    # The queue's and the loop's own SQL (GROUP BY, CASE, LIMIT/OFFSET, IN a subquery) on PostgreSQL too.
    assert [q["trace_id"] for q in fq.queue(project, limit=2)] == ["tr0", "tr2"]
    assert fq.waiting(project) == {"waiting": 3, "disliked": 1}
    fq.answer(project, "tr0", "billing", "carol")
    assert [s["trace"] for s in fq.next_loop(project)["sft"]] == ["tr0"]


def test_terminal_flows(reviewed_project, cli):
    root = reviewed_project.root
    r = cli("review", "data", "tickets", "--sample", "5", "--reviewer", "alice", "--project", root,
            input="p\np\nf\nwrong label\ns\nq\n")
    assert r.exit_code == 0, r.output
    assert "3/5 decided (2 pass, 1 fail, 0 edit)" in r.output
    [review] = reviewed_project.store.select("data_reviews")
    r = cli("review", "data", "tickets", "--resume", review["id"], "--reviewer", "alice", "--project", root,
            "--finish", input="p\np\n")
    assert "5/5 decided (4 pass, 1 fail" in r.output and "new version: tickets@" in r.output
    r = cli("review", "data", "tickets", "--sample", "7", "--project", root, "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)["items"]) == 7 and json.loads(r.output)["pass_rate"] is None

    r = cli("review", "pairs", "base", "tuned", "--suite", "fresh", "--sample", "3", "--rater", "bob", "--project", root,
            input="555222\n12\nd\na\n")
    assert r.exit_code == 0, r.output
    assert "type six digits" in r.output  # "12" was refused and asked again
    [pair] = reviewed_project.store.select("pair_reviews")
    rows = reviewed_project.store.select("pair_ratings", review_id=pair["id"])
    assert len(rows) == 3 and sum(1 for x in rows if x["preference"]) == 2
    out = json.loads(cli("review", "report", "--project", root, "--json").output)
    assert len(out["data_reviews"]) == 2 and out["pair_reviews"][0]["ratings"] == 3
    assert out["queue"] == {"waiting": 3, "disliked": 1}
    bad = cli("review", "pairs", "base", "nobody", "--suite", "fresh", "--project", root, "--json")
    assert bad.exit_code == 2 and "no eval report" in json.loads(bad.stdout)["error"]["message"]


def test_judge_agreement_and_its_ppi_correction(reviewed_project):
    from tailorlm.eval.runner import load_report
    from tailorlm.eval.judge import ppi_mean
    from tailorlm.review.judge import judge_agreement

    project = reviewed_project
    review = pr.start_pair_review(project, "base", "tuned", suite="fresh", sample=10, seed=1)
    assert judge_agreement(project, review["id"])["n"] == 0  # no judge scores: says which eval to run
    _rate_all(project, review["id"], "alice")  # B's answers 4, A's 2
    # A judge that agrees (B high, A low) vs one that scores at random: written into the reports' per-example
    # scores, as `tailor eval --metrics judge_rubric` would (per_example is (s - 1) / 4).
    for key, good in (("report_a", 0.25), ("report_b", 0.75)):
        report = load_report(project, review[key])
        for n, e in enumerate(report["examples"]):
            e["scores"]["judge_rubric"] = good if n % 5 else 1 - good  # wrong on every fifth example
        (project.root / report["path"]).write_text(json.dumps(report))
    j = judge_agreement(project, review["id"])
    assert j["n"] == 20 and j["spearman"]["rho"] > 0.5 and j["kappa"] is not None
    corrected = j["corrected"]["shop:tuned"]
    assert corrected["low"] < corrected["mean"] < corrected["high"]
    # The correction's interval is wider than the judge's alone: the human-judge gap varies.
    assert corrected["high"] - corrected["low"] > corrected["judge_only_high"] - corrected["judge_only_low"]
    same = ppi_mean([0.5, 0.75, 0.25, 1.0] * 5, [0.5, 0.75], [0.5, 0.75])
    assert same["mean"] == pytest.approx(same["judge_only"])  # a judge that matches people needs no correction


def _rate_answers(project, review_id, rater, overall):
    """Rate every item blind, each answer `overall(answer text)` on all three criteria."""
    from tailorlm.eval.runner import load_report

    review = pr.get_pair_review(project, review_id)
    text = {s: {e["id"]: e["prediction"] for e in load_report(project, review[f"report_{s}"])["examples"]} for s in "ab"}
    first = {i["example_id"]: i["shown_first"] for i in project.store.select("pair_review_items", review_id=review_id)}
    for item in pr.blind_items(project, review_id):
        e = item["example_id"]
        left, right = ("a", "b") if first[e] == "a" else ("b", "a")
        pr.rate(project, review_id, e, rater, left={c: overall(text[left][e]) for c in pr.CRITERIA},
                right={c: overall(text[right][e]) for c in pr.CRITERIA})


def _tuned(project):
    from tailorlm.eval.runner import load_report
    from tailorlm.eval.suite import load_suite
    from tailorlm.review.pairs import find_report

    suite = load_suite(project, "fresh.jsonl")
    by_id = {e["id"]: e["prediction"] for e in load_report(project, find_report(project, "tuned", "fresh")["id"])["examples"]}
    return suite, [by_id[e.id] for e in suite.examples]


def test_judge_intervals_of_eval_and_the_ladder_widen_for_a_judge_people_disagree_with(reviewed_project):
    from tailorlm.eval.judge import PPI_METHOD, with_human_ratings
    from tailorlm.eval.stats import mean_ci

    project = reviewed_project
    suite, preds = _tuned(project)
    right = [p in LABELS for p in preds]  # tuned says "not sure ..." on every third ticket
    agreeing = [0.75 if r else 0.25 for r in right]  # the judge's (s - 1) / 4: 4 when right, 2 when wrong
    careless = [0.75 if n % 2 else 0.25 for n in range(len(preds))]  # a judge blind to what people see
    entry = lambda per: {**mean_ci(per), "score": sum(per) / len(per), "per_example": per}  # noqa: E731
    width = lambda e: e["high"] - e["low"]  # noqa: E731
    assert with_human_ratings(project, suite, preds, entry(careless)) == entry(careless)  # nobody rated: unchanged
    review = pr.start_pair_review(project, "base", "tuned", suite="fresh", sample=24, seed=4)
    _rate_answers(project, review["id"], "alice", lambda text: 4 if text in LABELS else 2)
    good, bad = (with_human_ratings(project, suite, preds, entry(per)) for per in (agreeing, careless))
    for e in (good, bad):
        assert e["method"] == PPI_METHOD and e["human"]["n_rated"] == 24 and e["human"]["reviews"] == [review["id"]]
    # People agree with the first judge on every rated answer: no correction, and no wider than the judge alone.
    assert good["mean"] == pytest.approx(sum(agreeing) / len(agreeing)) and good["human"]["gap_mean"] == 0
    assert width(good) <= 1.1 * width(good["judge_only"])
    # The careless judge is moved to what people said (all 24 rated), and its interval widens.
    assert bad["mean"] == pytest.approx(sum(agreeing) / len(agreeing)) and bad["judge_only"]["mean"] == pytest.approx(0.5)
    assert width(bad) > 1.5 * width(bad["judge_only"])


def test_the_eval_runner_corrects_judge_rubric_with_people(reviewed_project, upstream):
    """Through `eval.runner.score`, which `tailor eval` and every ladder rung call: the judge here scores
    every answer 4, right or wrong, and people who rated the same answers expose it."""
    from tailorlm.eval.runner import score
    from tailorlm.project import Project
    from tests.helpers import extend_config

    extend_config(reviewed_project.root, {"models": {"judge": {"backend": "openai", "model": "judge",
                                                               "base_url": upstream.base_url}}})
    project = Project.load(reviewed_project.root)
    suite, preds = _tuned(project)
    upstream.answers = ["Score: 4"] * len(preds)
    alone = score(project, suite, preds, ["judge_rubric"])["judge_rubric"]
    assert "human" not in alone and alone["mean"] == pytest.approx(0.75)
    review = pr.start_pair_review(project, "base", "tuned", suite="fresh", sample=24, seed=0)
    _rate_answers(project, review["id"], "alice", lambda text: 5 if text in LABELS else 1)
    upstream.answers = ["Score: 4"] * len(preds)
    m = score(project, suite, preds, ["judge_rubric"])["judge_rubric"]
    assert m["human"]["n_rated"] == 24 and m["judge_only"]["mean"] == pytest.approx(0.75)
    assert m["mean"] == pytest.approx(16 / 24)  # what people said: two thirds right
    assert m["high"] - m["low"] > 0.2 > alone["high"] - alone["low"]
