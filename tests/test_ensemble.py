"""The ensemble rung: the vote checked by hand, members built from tailor.yaml on the tiny model, latency
and cost the sum of the members', judge-picked best of N for generation tasks, and both new rungs on
the ladder end to end."""

import json

import pytest

from tailorlm.config import RungConfig
from tailorlm.errors import TailorError
from tailorlm.eval.runner import evaluate
from tailorlm.eval.suite import load_suite
from tailorlm.rungs.base import Answer, PromptRung
from tailorlm.rungs.ensemble import EnsembleRung, combine_votes
from tailorlm.rungs.build import build_rung
from tailorlm.models.pool import ModelPool
from tests.helpers import ScriptedGenerator
from tests.serve_fixtures import project, start  # noqa: F401  (the loopback server fixtures)
from tests.test_ladder import LABELS, make_project

MEMBERS = """  - {kind: classic, train: {features: [tfidf]}}
  - {kind: zero_shot}
  - {kind: few_shot, name: static, k: 3}
  - {kind: ensemble, name: vote, members: [classic, zero_shot, static]}
  - {kind: ensemble, name: majority, members: [classic, zero_shot, static], vote: majority}
"""


def _a(text, confidence=None, error=None):
    return Answer(text, "m", meta={} if confidence is None else {"confidence": confidence}, error=error)


def test_the_vote_by_hand():
    labels = ["billing", "login", "bug"]
    # Two weak votes for billing against one sure vote for login: majority and confidence disagree.
    answers = [_a("billing", 0.40), _a("login", 0.95), _a("billing", 0.35)]
    assert combine_votes(answers, labels, weighted=False) == ("billing", 2 / 3, {"billing": 2.0, "login": 1.0})
    label, share, weights = combine_votes(answers, labels, weighted=True)
    assert label == "login" and weights == {"billing": 0.75, "login": 0.95} and share == pytest.approx(0.95 / 1.70)
    # A tie in votes goes to the label with more summed confidence, then to the earlier member.
    assert combine_votes([_a("bug", 0.5), _a("login", 0.9)], labels, weighted=False)[0] == "login"
    assert combine_votes([_a("bug"), _a("login")], labels, weighted=False)[0] == "bug"
    # Failed members and answers that are no label abstain; a member without a confidence weighs 1.
    assert combine_votes([_a("", error="boom"), _a("refund please"), _a("bug", 0.2)], labels, weighted=True) == \
        ("bug", 1.0, {"bug": 0.2})
    assert combine_votes([_a("login"), _a("bug", 0.6), _a("bug", 0.3)], labels, weighted=True)[0] == "login"
    assert combine_votes([_a("", error="x")], labels, weighted=True) == (None, 0.0, {})


def test_ensemble_built_from_tailor_yaml_votes_as_its_members_say_and_sums_their_cost(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "p", tiny_model_dir, MEMBERS)
    pool = ModelPool(project)
    specs = {s.label: s for s in project.config.rungs}
    rung = build_rung(project, specs["vote"], pool)
    assert [m.name for m in rung.members] == ["classic", "zero_shot", "static"] and rung.vote == "confidence"
    assert all(m.labels == LABELS for m in rung.members[1:])  # every member is held to the labels
    described = rung.describe()
    assert [m["name"] for m in described["members"]] == ["classic", "zero_shot", "static"]
    assert described["latency"].startswith("sum of the members'") and described["cost"].startswith("sum of the members'")

    suite = load_suite(project)
    report = evaluate(project, rung, suite, ["accuracy"])
    assert report["errors"] == 0 and {e["prediction"] for e in report["examples"]} <= set(LABELS)
    saved = [json.loads(line) for line in (project.root / ".tailor" / "reports" / report["id"] / "examples.jsonl")
             .read_text().splitlines()]
    answers = rung.answer_batch([e.input for e in suite.examples[:4]])
    for a in answers:  # recount every vote from what each member said
        members = a.meta["members"]
        weights = {}
        for m in members:
            weights[m["text"]] = weights.get(m["text"], 0.0) + m["confidence"]
        assert a.text == max(weights, key=lambda k: (round(weights[k], 9), -[m["text"] for m in members].index(k)))
        assert a.latency_s == pytest.approx(sum(m["latency_s"] for m in members), abs=1e-3)
        assert a.meta["compute_s"] == pytest.approx(sum(m["compute_s"] for m in members), abs=1e-3)
        assert a.meta["confidence"] == pytest.approx(weights[a.text] / sum(weights.values()), abs=1e-5)
    assert all(row["confidence"] is not None for row in saved)

    # Each member alone, on the same suite: the ensemble's compute seconds and tokens are their sums.
    alone = [evaluate(project, build_rung(project, specs[n], pool), suite, ["accuracy"], fresh=True)
             for n in ("classic", "zero_shot", "static")]
    tokens = sum(r["tokens"]["prompt"]["mean"] for r in alone)
    assert report["tokens"]["prompt"]["mean"] == pytest.approx(tokens, rel=1e-6)
    majority = evaluate(project, build_rung(project, specs["majority"], pool), suite, ["accuracy"])
    assert majority["rung"]["vote"] == "majority" and majority["id"] != report["id"]


def test_best_of_n_lets_the_judge_pick(tmp_path):
    short = PromptRung(ScriptedGenerator(default="Paris."), name="short")
    long = PromptRung(ScriptedGenerator(default="The capital of France is Paris."), name="long")
    # The judge reads the two answers in member order for each question: it prefers the second.
    judge = ScriptedGenerator(["Score: 2", "Score: 5", "Score: 4", "Score: 4"])
    rung = EnsembleRung([short, long], "judge", [], judge=judge)
    first, second = rung.answer_batch([[{"role": "user", "content": "Capital of France?"}]] * 2)
    assert first.text == "The capital of France is Paris." and first.meta["chosen"] == "long"
    assert [m["judge_score"] for m in first.meta["members"]] == [2.0, 5.0]
    assert second.text == "Paris." and second.meta["chosen"] == "short"  # a tie goes to the earlier member
    assert len(judge.calls) == 4 and "<<<\nParis.\n>>>" in judge.calls[0][0]["content"]
    assert first.usage.completion_tokens == 1 + 6 and first.latency_s >= first.meta["judge_s"]
    assert rung.describe()["latency"].endswith("plus the judge's")
    failed = EnsembleRung([PromptRung(None, name="a"), PromptRung(None, name="b")], "judge", [], judge=judge)
    assert failed.answer([{"role": "user", "content": "x"}]).error == "every member failed"


def test_members_are_checked(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "p", tiny_model_dir, MEMBERS)
    pool = ModelPool(project)
    for members, message in (([], "at least two members"), (["classic", "classic"], "named twice"),
                             (["classic", "nope"], "member 'nope' is not a configured rung"),
                             (["classic", "vote"], "is an ensemble")):
        with pytest.raises(TailorError, match=message):
            build_rung(project, RungConfig(kind="ensemble", name="e", members=members), pool)


def test_the_ladder_runs_both_new_rungs_end_to_end(tmp_path, tiny_model_dir):
    from tailorlm.ladder.run import run_ladder

    rungs = """  - {kind: ensemble, members: [static, prompt_opt]}
  - {kind: few_shot, name: static, k: 3}
  - {kind: prompt_opt, k: 2, train: {budget: 40, variants: 0, demo_sets: 0, similar: false, minibatch: 4}}
"""
    project = make_project(tmp_path / "p", tiny_model_dir, rungs)
    ladder = run_ladder(project, log=lambda m: None)
    assert [r["name"] for r in ladder["rungs"]] == ["static", "prompt_opt", "ensemble"]  # by effort
    assert all(r["quality"]["n"] == 12 and r["errors"] == 0 for r in ladder["rungs"])
    assert ladder["rungs"][1]["prompt"] == json.loads((project.root / "prompts" / "prompt_opt.search.json")
                                                      .read_text())["prompt"]
    assert any(p.endswith(":validation") for p in ladder["leakage"]["pools"])
    # Run alone, the ensemble still has its members' pools checked.
    alone = run_ladder(project, only=["ensemble"], log=lambda m: None)
    assert alone["leakage"]["pools"] == ladder["leakage"]["pools"]
    assert alone["rungs"][0]["report"] == ladder["rungs"][2]["report"]


def test_served_as_a_chat_model_that_answers_with_the_voted_label(tmp_path, tiny_model_dir, start):
    from tests.serve_fixtures import client_for

    shop = make_project(tmp_path / "p", tiny_model_dir, MEMBERS)
    url, _ = start(project=shop)
    client = client_for(url)
    assert "shop:vote" in [m.id for m in client.models.list().data]
    ask = [{"role": "user", "content": "please refund order 777, it was charged twice"}]
    r = client.chat.completions.create(model="shop:vote", messages=ask)
    direct = build_rung(shop, next(s for s in shop.config.rungs if s.label == "vote"), ModelPool(shop)).answer(ask)
    assert r.choices[0].message.content == direct.text in LABELS and r.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model="shop:vote", messages=ask, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == direct.text
