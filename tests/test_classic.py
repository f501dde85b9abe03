"""The classic rung (TF-IDF or embeddings + logistic regression): fitted on a prepared chat dataset's
train split, tuned on validation (never on the golden suite), reused from disk until the data
change, first on the ladder, and served as a chat model name over real HTTP."""

import json

import pytest

from tailorlm.config import RungConfig
from tailorlm.errors import TailorError
from tailorlm.eval.runner import evaluate
from tailorlm.eval.suite import load_suite
from tailorlm.rungs.build import build_rung
from tests.serve_fixtures import project, start  # noqa: F401  (the loopback server fixtures)
from tests.test_ladder import LABELS, _tickets, make_project

TFIDF = "  - {kind: classic, train: {features: [tfidf]}}\n"


@pytest.fixture(scope="module")
def embedder():
    from tailorlm.config import EmbedderConfig
    from tailorlm.models import get_embedder

    return get_embedder(EmbedderConfig())


def _classic(project, embedder=None, **train):
    spec = RungConfig(kind="classic", train=train) if train else project.config.rungs[0]
    return build_rung(project, spec, None, embedder)


def test_predictions_are_labels_and_beat_the_majority_class(tmp_path, tiny_model_dir, embedder):
    project = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: classic}\n")
    rung = _classic(project, embedder)
    assert rung.meta["tuned_on"].startswith("validation") and rung.meta["n_validation"] > 0
    tried = {(r["features"], r["C"]) for r in rung.meta["tuning"]}
    assert tried == {(f, c) for f in ("tfidf", "embedding") for c in (0.1, 1.0, 10.0, 100.0)}
    assert (rung.meta["features"], rung.meta["C"]) in tried

    suite = load_suite(project)
    report = evaluate(project, rung, suite, ["accuracy"])
    predictions = [e["prediction"] for e in report["examples"]]
    assert set(predictions) <= set(LABELS) and report["errors"] == 0
    references = [e.reference for e in suite.examples]
    majority = max(references.count(x) for x in LABELS) / len(references)
    assert report["metrics"]["accuracy"]["score"] >= majority + 0.4
    assert report["rung"]["kind"] == "classic" and report["rung"]["dataset"] == rung.meta["dataset"]
    assert report["tokens"]["prompt"]["mean"] == report["tokens"]["completion"]["mean"] == 0
    assert report["throughput"]["seconds"] > 0 and report["cost_per_1k"]  # from compute seconds, like every rung

    a = rung.answer(suite.examples[0].input)
    assert a.text == a.meta["raw"] in LABELS and 1 / len(LABELS) < a.meta["confidence"] <= 1 and a.latency_s > 0
    assert a.usage.total_tokens == 0
    chunks = list(rung.stream(suite.examples[0].input))
    assert len(chunks) == 1 and chunks[0].text == a.text and chunks[0].finish_reason == "stop"


def test_tuning_never_reads_the_golden_suite(tmp_path, tiny_model_dir, monkeypatch):
    import tailorlm.data.versions as versions

    project = make_project(tmp_path / "p", tiny_model_dir, TFIDF)
    # The golden suite becomes prepare's test split: train, validation and test all exist.
    cfg = project.root / "tailor.yaml"
    cfg.write_text(cfg.read_text().replace("train: 0.8, validation: 0.2, test: 0.0",
                                                                "train: 0.6, validation: 0.2, test: 0.2").replace("eval: {path: golden.jsonl, ", "eval: {suite: tickets, "))
    (project.root / "golden.jsonl").unlink()
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project

    project = Project.load(project.root)
    prepare(project)
    manifest = versions.resolve(project, "tickets")
    assert manifest["splits"]["test"] > 0 and load_suite(project).source

    read = []
    real = versions.load_records
    monkeypatch.setattr(versions, "load_records", lambda p, m, split=None: read.append(split) or real(p, m, split))
    rung = _classic(project)
    assert sorted(read) == ["train", "validation"]
    assert rung.meta["n_train"] == manifest["splits"]["train"]
    assert rung.meta["n_validation"] == manifest["splits"]["validation"]


def test_without_a_validation_split_it_tunes_by_cross_validation(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "p", tiny_model_dir, TFIDF)
    cfg = project.root / "tailor.yaml"
    cfg.write_text(cfg.read_text().replace("train: 0.8, validation: 0.2", "train: 1.0, validation: 0.0"))
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project

    project = Project.load(project.root)
    prepare(project)
    rung = _classic(project)
    assert "fold cross-validation on train" in rung.meta["tuned_on"] and rung.meta["n_validation"] == 0
    assert all(row["accuracy"] is not None for row in rung.meta["tuning"])


def test_the_fitted_model_is_reused_until_the_data_or_settings_change(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "p", tiny_model_dir, TFIDF)
    first = _classic(project)
    saved = first.path / "model.joblib"
    stamp = saved.stat().st_mtime_ns
    again = _classic(project)
    assert not first.reused and again.reused and again.path == first.path
    assert saved.stat().st_mtime_ns == stamp and again.describe() == first.describe()

    with open(project.root / "tickets.jsonl", "a") as f:  # new data: a new dataset version
        f.write("".join(json.dumps(r) + "\n" for r in _tickets(200, 1)))
    from tailorlm.data.pipeline import prepare

    prepare(project)
    refit = _classic(project)
    assert not refit.reused and refit.path != first.path
    assert refit.meta["dataset"] != first.meta["dataset"] and refit.meta["n_train"] > first.meta["n_train"]
    other = _classic(project, features=["tfidf"], C=[1.0])
    assert not other.reused and other.meta["tuning"] == [{"features": "tfidf", "C": 1.0, "accuracy": other.meta["tuning"][0]["accuracy"],
                                                          "log_loss": other.meta["tuning"][0]["log_loss"]}]


def test_bad_settings_are_named(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "p", tiny_model_dir, TFIDF)
    with pytest.raises(TailorError, match="unknown classic setting.*feature"):
        _classic(project, feature=["tfidf"])
    with pytest.raises(TailorError, match="features must be some of tfidf, embedding"):
        _classic(project, features=["bow"])


def test_the_ladder_runs_classic_first_and_recommends_it_when_nothing_beats_it(tmp_path, tiny_model_dir):
    from tailorlm.ladder.run import run_ladder

    project = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: zero_shot}\n" + TFIDF)
    ladder = run_ladder(project, log=lambda m: None)
    assert [r["name"] for r in ladder["rungs"]] == ["classic", "zero_shot"]
    classic = ladder["rungs"][0]
    assert classic["kind"] == "classic" and classic["errors"] == 0 and classic["tokens"]["prompt_mean"] == 0
    assert classic["latency"]["p50"] > 0
    assert ladder["recommendation"]["rung"] == "classic"
    assert any(p.endswith(":train") for p in ladder["leakage"]["pools"])


def test_served_as_a_chat_model_that_answers_with_the_label(tmp_path, tiny_model_dir, start):
    from tests.serve_fixtures import client_for

    shop = make_project(tmp_path / "p", tiny_model_dir, TFIDF)
    url, _ = start(project=shop)
    client = client_for(url)
    assert "shop:classic" in [m.id for m in client.models.list().data]
    ask = [{"role": "user", "content": "please refund order 777, it was charged twice"}]
    r = client.chat.completions.create(model="shop:classic", messages=ask)
    assert r.choices[0].message.content == "billing" and r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == r.usage.completion_tokens == 0
    stream = client.chat.completions.create(model="shop:classic", messages=ask, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "billing"
    assert {t["model"] for t in shop.store.select("traces")} == {"shop:classic"}
