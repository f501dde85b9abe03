"""`tailor train kto` on a tiny Llama with unpaired thumbs: the loss falls, the adapter moves, good
answers gain on bad ones, and the version is registered; a record without a verdict is refused."""

import json

import pytest
import torch

from tailorlm.data.pipeline import prepare
from tailorlm.errors import TailorError
from tailorlm.project import Project
from tailorlm.train.config import TrainConfig
from tailorlm.train.runs import train
from tests.test_dpo import FACTS, _one_thread, answer_logp  # noqa: F401  (_one_thread: autouse)


def thumbs() -> list[tuple[str, str, str]]:
    """(prompt, answer, verdict): each prompt gets ONE answer, good for half the facts and bad for the
    others, so nothing can be paired."""
    return [(f"Which colour is {thing}?", good if i % 2 == 0 else bad, "up" if i % 2 == 0 else "down")
            for i, (thing, good, bad) in enumerate(FACTS)] * 2


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    root = tmp_path / "proj"
    root.mkdir()
    with open(root / "thumbs.jsonl", "w") as f:
        for n, (prompt, answer, label) in enumerate(thumbs()):
            f.write(json.dumps({"id": n, "messages": [{"role": "user", "content": prompt},
                                                      {"role": "assistant", "content": answer}], "label": label}) + "\n")
    return write_project(root, tiny_model_dir, "thumbs")


def write_project(root, tiny_model_dir, source: str) -> Project:
    (root / "tailor.yaml").write_text(
        f"name: {root.name}\ntask: {{description: Name colours.}}\nmodels: {{generator: {{model: '{tiny_model_dir}'}}}}\n"
        f"sources:\n  - {{name: {source}, path: {source}.jsonl, kind: chat}}\n"
        "data: {steps: [{validate: {}}, {split: {train: 1.0, validation: 0.0, test: 0.0}}]}\n")
    p = Project.load(root)
    prepare(p)
    return p


def margin(model, tokenizer) -> float:
    """Mean log-prob of the good answers minus the bad ones, over the facts."""
    rows = thumbs()[: len(FACTS)]
    good = [answer_logp(model, tokenizer, p, a) for p, a, v in rows if v == "up"]
    bad = [answer_logp(model, tokenizer, p, a) for p, a, v in rows if v == "down"]
    return sum(good) / len(good) - sum(bad) / len(bad)


def test_kto_trains_on_unpaired_thumbs(project, tiny_model_dir, monkeypatch):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailorlm.train import trainer
    from tailorlm.train.registry import resolve

    before = {}
    real_load = trainer.load_model

    def recording(*args):
        model, *rest = real_load(*args)
        before.update({n: t.detach().clone() for n, t in model.named_parameters() if t.requires_grad})
        return (model, *rest)

    monkeypatch.setattr(trainer, "load_model", recording)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    margin_before = margin(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), tokenizer)
    result = train(project, TrainConfig(method="kto", dataset="thumbs", max_steps=15, learning_rate=5e-3, batch_size=8,
                                        lora_r=8, lora_alpha=64, max_seq_len=128, warmup_ratio=0.0))
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                       project.root / result["adapter_path"]).eval()
    margin_after = margin(policy, tokenizer)
    losses = [r["value"] for r in project.store.select("run_metrics", order_by="step", run_id=result["run_id"])
              if r["name"] == "loss"]
    print(f"good - bad log-prob {margin_before:.3f} -> {margin_after:.3f}; loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert margin_after > margin_before + 0.1
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3

    saved = load_file(project.root / result["adapter_path"] / "adapter_model.safetensors")
    assert before and set(saved) == {n.replace(".default", "") for n in before}
    for name, tensor in before.items():
        assert not torch.equal(tensor, saved[name.replace(".default", "")]), f"{name} did not change"
    assert result["model_version"] == "proj:kto@v1"
    assert resolve(project, "proj:kto@v1")["lineage"]["method"] == "kto"
    m = result["metrics"]
    assert m["desirable"] == len(FACTS) and m["undesirable"] == len(FACTS) and m["tokens_per_s"] > 0


def test_kto_refuses_answers_without_a_verdict(tmp_path, tiny_model_dir):
    root = tmp_path / "p2"
    root.mkdir()
    (root / "chats.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                               {"role": "assistant", "content": "Hello"}]}) + "\n")
    p = write_project(root, tiny_model_dir, "chats")
    with pytest.raises(TailorError, match=r"chats.jsonl:1: record .* has label None; kto needs each answer marked up or down"):
        train(p, TrainConfig(method="kto", dataset="chats", max_steps=1))


def test_the_loop_trains_kto_when_there_are_thumbs_but_no_pairs(tmp_path, tiny_model_dir):
    from tailorlm.loop.curate import collect
    from tailorlm.loop.run import promote, run_loop
    from tailorlm.serve.traces import add_feedback
    from tests.test_ladder import make_project
    from tests.test_loop import _serve

    project = make_project(tmp_path / "p", tiny_model_dir, "  - {kind: zero_shot}\n")
    first = train(project, TrainConfig(dataset="tickets", max_steps=1, batch_size=4, micro_batch_size=4,
                                       system_prompt="Route the ticket.", warmup_ratio=0.0))
    promote(project, first["model_version"], reason="first model")
    # Thumbs on answers to different prompts: nothing to pair, nothing corrected.
    for n, (question, answer, thumb) in enumerate([("my invoice shows the wrong company name", "billing", "up"),
                                                    ("the desktop app freezes on start", "billing", "down"),
                                                    ("I cannot log in with SSO since Monday", "login", "up"),
                                                    ("please delete my account and data", "bug", "down")]):
        _serve(project, f"t{n}", question, answer)
        add_feedback(project, f"t{n}", thumbs=thumb)
    sft, prefs, _ = collect(project)
    assert not sft and not prefs
    loop = run_loop(project, min_examples=1, train={"max_steps": 2, "batch_size": 4}, log=lambda m: None)
    assert loop["method"] == "kto" and loop["candidate"] == "shop:kto@v2"
    assert loop["datasets"]["kto"] and loop["datasets"]["sft"] is None and loop["datasets"]["dpo"] is None
    run = project.store.select("runs", id=loop["run"])[0]
    config = json.loads(run["config"])
    assert config["method"] == "kto" and config["base"] == first["model_version"]
    from tailorlm.data.versions import load_records, resolve

    records = load_records(project, resolve(project, loop["datasets"]["kto"]))
    assert sorted(r.meta["label"] for r in records) == ["down", "down", "up", "up"]
