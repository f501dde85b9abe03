"""The prompt_opt rung on the tiny model: built from tailor.yaml, searched on the validation split only
(the golden file is not even there during the search), its winner saved as a versioned prompt with its
record, reused without a model call, checked for leakage on its own pools, and run by the ladder."""

import json

import pytest

from tailorlm.config import RungConfig
from tailorlm.errors import TailorError
from tailorlm.rungs.prompts import load_prompt
from tailorlm.rungs.build import build_rung
from tailorlm.models.pool import ModelPool
from tests.helpers import extend_config
from tests.test_ladder import LABELS, make_project

SEARCH = "  - {kind: prompt_opt, k: 2, train: {budget: 80, variants: 1, demo_sets: 1, minibatch: 3}}\n"


class Counting:
    """Counts the calls a real generator gets (score_choices is one held answer per conversation)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, messages, params=None):
        self.calls += 1
        return self.inner.generate(messages, params)

    def score_choices(self, conversations, choices):
        self.calls += len(conversations)
        return self.inner.score_choices(conversations, choices)


def test_the_search_scores_on_validation_only_and_saves_a_versioned_prompt(tmp_path, tiny_model_dir, monkeypatch):
    import tailorlm.eval.suite as suites
    from tailorlm.data.versions import load_records, resolve

    project = make_project(tmp_path / "p", tiny_model_dir, SEARCH)
    (project.root / "prompts" / "terse.md").write_text("Route it: {labels}.\n")
    golden = project.root / "golden.jsonl"
    golden_ids = {json.loads(line)["id"] for line in golden.read_text().splitlines()}
    golden.rename(tmp_path / "away.jsonl")  # the search cannot read what is not there
    monkeypatch.setattr(suites, "load_suite", lambda *a, **k: pytest.fail("the search loaded a suite"))

    pool = ModelPool(project)
    counting = Counting(pool.default())
    monkeypatch.setattr(pool, "default", lambda: counting)
    spec = project.config.rungs[0]
    rung = build_rung(project, spec, pool)

    record = json.loads((project.root / "prompts" / "prompt_opt.search.json").read_text())
    manifest = resolve(project, "tickets")
    validation = {r.id for r in load_records(project, manifest, "validation")}
    train = {r.id for r in load_records(project, manifest, "train")}
    assert set(record["validation_ids"]) == validation and not validation & golden_ids
    assert record["scored_on"] == f"{manifest['id']}:validation"
    # Every call the generator got is in the record, and the record stays within its budget.
    assert record["calls"] == counting.calls <= 80
    sources = {c["instruction"]["source"] for c in record["candidates"]}
    assert {"prompts/default.md", "prompts/terse.md"} <= sources and any(s.startswith("variant of") for s in sources)
    assert {"static", "none", "similar", "random-0"} <= {c["demos"] for c in record["candidates"]}
    assert all(set(c["shots"]) <= train for c in record["candidates"])
    ns = [r["n"] for r in record["rounds"]]
    assert ns == sorted(ns) and ns[0] == 3 and len(record["rounds"][-1]["candidates"]) <= len(record["rounds"][0]["candidates"])
    best = max(record["candidates"], key=lambda c: (c["scores"][-1]["n"], c["scores"][-1]["score"]))
    assert record["winner"]["id"] == record["rounds"][-1]["candidates"][0]
    assert record["winner"]["score"] == best["scores"][-1]["score"]

    prompt = load_prompt(project, "prompt_opt")  # a new version in the library, kept under .tailor/prompts/
    assert prompt["id"] == record["prompt"] == rung.meta["prompt"] and prompt["text"] == record["winner"]["instruction"]["text"]
    assert (project.artifacts("prompts") / f"{prompt['id']}.md").exists()
    assert (project.artifacts("prompts") / f"{prompt['id']}.search.json").exists()
    assert rung.kind == "prompt_opt" and rung.labels == LABELS and rung.system == prompt["text"]
    assert rung.describe()["demos"] == record["winner"]["demos"] and rung.meta["search_calls"] == record["calls"]
    if record["winner"]["demos"] not in ("none", "similar"):
        assert [s[2] for s in rung.static] == record["winner"]["shots"]

    # The same data, settings and library: the record is reused without a model call.
    before = counting.calls
    again = build_rung(project, spec, pool)
    assert again.reused and counting.calls == before and again.describe() == rung.describe()
    # A changed library prompt is a new search.
    (project.root / "prompts" / "terse.md").write_text("Pick one label: {labels}.\n")
    third = build_rung(project, spec, pool)
    assert not third.reused and counting.calls > before


def test_the_ladder_checks_the_search_pools_for_leaks(tmp_path, tiny_model_dir):
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.ladder.run import run_ladder

    project = make_project(tmp_path / "p", tiny_model_dir, SEARCH)
    manifest = resolve(project, "tickets")
    planted = load_records(project, manifest, "validation")[0]
    with open(project.root / "golden.jsonl", "a") as f:  # a golden example that is also a validation example
        f.write(json.dumps({"id": "g-planted", "input": planted.content["messages"][:1], "reference": "bug"}) + "\n")
    with pytest.raises(TailorError, match=rf"eval g-planted is in {manifest['id']}:validation as {planted.id} \(same text\)"):
        run_ladder(project, log=lambda m: None)
    assert not (project.root / "prompts" / "prompt_opt.search.json").exists()  # refused before any search


def test_bad_settings_and_a_missing_validation_split_are_named(tmp_path, tiny_model_dir):
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project

    project = make_project(tmp_path / "p", tiny_model_dir, SEARCH)
    with pytest.raises(TailorError, match="unknown prompt_opt setting.*budgte"):
        build_rung(project, RungConfig(kind="prompt_opt", train={"budgte": 3}), ModelPool(project))
    with pytest.raises(TailorError, match="cannot score one candidate"):
        build_rung(project, RungConfig(kind="prompt_opt", train={"budget": 2, "variants": 0}), ModelPool(project))
    extend_config(project.root, {"data": {"steps": [{"validate": {}}, {"split": {"train": 1.0, "validation": 0.0,
                                                                                   "test": 0.0}}]}})
    project = Project.load(project.root)
    prepare(project)
    with pytest.raises(TailorError, match="validation split.*has none"):
        build_rung(project, project.config.rungs[0], ModelPool(project))
