"""The feedback loop on a tiny model: feedback -> curated data -> candidate -> gate -> promote, and back."""

import json

import pytest

from tailorlm.errors import TailorError
from tailorlm.loop.curate import collect
from tailorlm.loop.run import promote, rollback, run_loop
from tailorlm.serve.traces import Traces, add_feedback
from tailorlm.train.config import TrainConfig
from tailorlm.train.runs import train
from tests.test_ladder import make_project


def _serve(project, trace_id, question, answer):
    request = {"model": "shop:production", "messages": [{"role": "user", "content": question}]}
    response = {"id": trace_id, "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                             "finish_reason": "stop"}]}
    Traces(project).record(trace_id, "shop:production", request, response, 200, 0.01, 5, 2, "/v1/chat/completions")


@pytest.fixture
def looped(tmp_path, tiny_model_dir):
    project = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: zero_shot}\n")
    first = train(project, TrainConfig(dataset="tickets", max_steps=1, batch_size=4, micro_batch_size=4,
                                       system_prompt="Route the ticket.", warmup_ratio=0.0, learning_rate=5e-2))
    promote(project, first["model_version"], reason="first model")
    _serve(project, "t1", "my invoice 77 shows the wrong company name", "login")
    add_feedback(project, "t1", thumbs="down", correction="billing (mail ops@example.com for the copy)")
    _serve(project, "t2", "the desktop app freezes on start", "bug")
    add_feedback(project, "t2", thumbs="up")
    _serve(project, "t3", "the desktop app freezes on start", "billing")
    add_feedback(project, "t3", thumbs="down")
    golden = json.loads((project.root / "golden.jsonl").read_text().splitlines()[4])  # six words: long enough to match
    _serve(project, "t4", golden["input"][0]["content"], "bug")  # an eval ticket, served and corrected
    add_feedback(project, "t4", correction=golden["reference"])
    return project, first["model_version"]


def test_feedback_becomes_sft_examples_and_preference_pairs(looped):
    project, _ = looped
    sft, prefs, counts = collect(project)
    assert {r.id for r in sft} == {"fb-t1", "fb-t4"}
    fixed = next(r for r in sft if r.id == "fb-t1").content["messages"]
    assert fixed[-1] == {"role": "assistant", "content": "billing (mail [EMAIL] for the copy)"}  # stored redacted
    pairs = {(p.content["chosen"], p.content["rejected"]) for p in prefs}
    assert ("bug", "billing") in pairs  # thumbs up over thumbs down on the same prompt
    assert ("billing (mail [EMAIL] for the copy)", "login") in pairs  # a correction over the served answer
    assert counts["feedback"] == 5


def test_loop_trains_a_candidate_gates_it_and_promotes_only_on_pass(looped):
    project, first = looped
    loop = run_loop(project, min_examples=1, train={"max_steps": 2, "batch_size": 2, "micro_batch_size": 2},
                    log=lambda m: None)
    manifest = json.loads((project.root / ".tailor" / "datasets" / "feedback-sft").glob("*/manifest.json").__next__().read_text())
    decon = next(s for s in manifest["steps"] if s["step"] == "decontaminate")
    assert decon["dropped"] == {"overlaps_eval": 1} and manifest["accounting"]["kept"] == 1  # the eval ticket never trains
    assert loop["method"] == "sft" and loop["candidate"] == "shop:sft@v2"
    run = project.store.select("runs", id=loop["run"])[0]
    assert json.loads(run["config"])["base"] == first  # the candidate starts from production
    assert {r["suite"] for r in loop["reports"]} == {"golden", "general"} and len(loop["reports"]) == 4
    # The fixture's verdict is pinned: the tiny model answers the same before and after two steps, so every
    # check's delta is 0 and the gate passes. If training on this fixture ever changes that, this fails
    # here instead of silently skipping the rollback half below.
    checks = {(c["suite"], c["metric"]): (c["delta"], c["passed"]) for c in loop["gate"]["checks"]}
    assert checks == {("golden", "accuracy"): (0.0, True), ("golden", "macro_f1"): (0.0, True),
                      ("general", "contains"): (0.0, True)}
    assert loop["gate"]["passed"] is True and loop["promoted"] is True
    assert project.store.get_alias("model", "shop", "production") == "shop:sft@v2"
    assert project.store.get_alias("model", "shop", "candidate") == "shop:sft@v2"
    assert json.loads((project.root / loop["path"]).read_text())["gate"] == loop["gate"]
    back = rollback(project)
    assert back["target"] == first and project.store.get_alias("model", "shop", "production") == first
    history = [h for h in project.store.select("alias_history", order_by="at") if h["alias"] == "production"]
    assert [h["target"] for h in history] == [first, "shop:sft@v2", first]


def test_loop_needs_production_and_enough_feedback(tmp_path, tiny_model_dir, looped):
    project, _ = looped
    with pytest.raises(TailorError, match="not enough curated feedback for sft: 1 examples"):
        run_loop(project, method="sft", min_examples=5, log=lambda m: None)
    bare = make_project(tmp_path / "bare", tiny_model_dir, "  - {kind: zero_shot}\n")
    with pytest.raises(TailorError, match="promote VERSION"):
        run_loop(bare, log=lambda m: None)


def test_promote_and_rollback_cli(looped, cli):
    project, first = looped
    second = train(project, TrainConfig(dataset="tickets", max_steps=1, batch_size=4, micro_batch_size=4))
    out = json.loads(cli("promote", second["model_version"], "--project", project.root, "--json").stdout)
    assert out == {"name": "shop", "alias": "production", "target": second["model_version"], "previous": first}
    out = json.loads(cli("rollback", "--project", project.root, "--json").stdout)
    assert out["target"] == first and project.store.get_alias("model", "shop", "production") == first


def test_a_version_trained_from_a_version_is_served_on_its_parents_weights(looped, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tailorlm.models.pool import ModelPool
    from tailorlm.train.registry import resolve

    project, first = looped
    second = resolve(project, train(project, TrainConfig(dataset="tickets", base=first, max_steps=1, batch_size=4,
                                                         micro_batch_size=4, learning_rate=5e-2,
                                                         warmup_ratio=0.0))["model_version"])
    served = ModelPool(project).for_version(second)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                       project.root / resolve(project, first)["adapter_path"]).merge_and_unload()
    expected = PeftModel.from_pretrained(merged, project.root / second["adapter_path"]).eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([served.encode([{"role": "user", "content": "refund my invoice"}])])
    with torch.no_grad():
        got = served.model(ids).logits
        assert torch.allclose(got, expected(ids).logits, atol=1e-5)
        assert (got - plain(ids).logits).abs().max() > 1e-6  # the adapters really are applied
