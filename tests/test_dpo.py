"""`tailor train dpo` end to end on a tiny Llama: the policy learns to prefer `chosen`, the adapter
changes, the model version is registered with its dataset, and reward metrics reach the store."""

import json

import pytest
import torch

from tailorlm.data.pipeline import prepare
from tailorlm.errors import TailorError
from tailorlm.project import Project
from tailorlm.train.config import TrainConfig
from tailorlm.train.runs import train

FACTS = [("the sky", "blue", "green"), ("grass", "green", "purple"), ("snow", "white", "black"),
         ("coal", "black", "white"), ("a banana", "yellow", "blue"), ("blood", "red", "grey"),
         ("an orange", "orange", "pink"), ("a lemon", "yellow", "red"), ("the sea", "blue", "brown"),
         ("a cherry", "red", "green"), ("chocolate", "brown", "white"), ("a tomato", "red", "blue")]
SYSTEM = {"role": "system", "content": "Answer in one word."}
# Half the prompts are plain strings, half are message lists (with a system turn): both record shapes.
PAIRS = [(f"Which colour is {thing}?", good, bad) for thing, good, bad in FACTS] + \
        [([SYSTEM, {"role": "user", "content": f"What colour is {thing}?"}], good, bad) for thing, good, bad in FACTS]


@pytest.fixture(autouse=True)
def _one_thread():
    # The tiny model's matrices are too small to split across threads: a second intra-op thread
    # only adds synchronisation, measured at over 10x slower on a loaded 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    root = tmp_path / "proj"
    root.mkdir()
    with open(root / "prefs.jsonl", "w") as f:
        for prompt, good, bad in PAIRS:
            f.write(json.dumps({"prompt": prompt, "chosen": good, "rejected": bad}) + "\n")
    with open(root / "chats.jsonl", "w") as f:
        for prompt, good, _ in PAIRS:
            f.write(json.dumps({"messages": as_messages(prompt) + [{"role": "assistant", "content": good}]}) + "\n")
    (root / "tailor.yaml").write_text(
        f"name: proj\ntask: {{description: Name colours.}}\nmodels: {{generator: {{model: '{tiny_model_dir}'}}}}\n"
        "sources:\n  - {name: prefs, path: prefs.jsonl}\n  - {name: chats, path: chats.jsonl}\n"
        "data: {steps: [{validate: {}}, {split: {train: 0.75, validation: 0.25, test: 0.0}}]}\n")
    p = Project.load(root)
    manifests = {m["name"]: m for m in prepare(p)}
    assert manifests["prefs"]["kind"] == "preference" and manifests["prefs"]["splits"] == {"train": 18, "validation": 6}
    return p, manifests


def as_messages(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def answer_logp(model, tokenizer, prompt, answer: str) -> float:
    """Sum of the answer's token log-probs after the chat-templated prompt, as serving renders it."""
    msgs = as_messages(prompt)
    head = tokenizer(tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)["input_ids"]
    full = tokenizer(tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=False),
                     add_special_tokens=False)["input_ids"]
    assert full[:len(head)] == head
    ids = torch.tensor([full])
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[0, :-1].float(), -1).gather(1, ids[0, 1:, None])[:, 0]
    return logps[len(head) - 1:].sum().item()


def mean_margin(model, tokenizer, pairs) -> float:
    return sum(answer_logp(model, tokenizer, p, c) - answer_logp(model, tokenizer, p, r) for p, c, r in pairs) / len(pairs)


def test_dpo_raises_the_chosen_margin_and_registers_a_version(project, tiny_model_dir, monkeypatch):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailorlm.data.versions import load_records
    from tailorlm.train import dpo
    from tailorlm.train.registry import resolve

    p, manifests = project
    before = {}

    def recording_load_model(*args):  # a copy of the fresh LoRA weights, taken before training
        model, *rest = real_load_model(*args)
        before.update({n: t.detach().clone() for n, t in model.named_parameters() if t.requires_grad})
        return (model, *rest)

    def keeping_make_trainer(*args):
        trainers.append(real_make_trainer(*args))
        return trainers[-1]

    real_load_model, real_make_trainer, trainers = dpo.load_model, dpo.make_trainer, []
    monkeypatch.setattr(dpo, "load_model", recording_load_model)
    monkeypatch.setattr(dpo, "make_trainer", keeping_make_trainer)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pairs = [(r.content["prompt"], r.content["chosen"], r.content["rejected"])
             for r in load_records(p, manifests["prefs"], "train")]
    margin_before = mean_margin(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), tokenizer, pairs)

    result = train(p, TrainConfig(method="dpo", dataset="prefs", max_steps=15, learning_rate=5e-3, batch_size=4,
                                  eval_steps=5, lora_r=8, lora_alpha=64, max_seq_len=128, warmup_ratio=0.0))

    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                       p.root / result["adapter_path"]).eval()
    margin_after = mean_margin(policy, tokenizer, pairs)
    print(f"log-prob margin chosen - rejected: before {margin_before:.3f}, after {margin_after:.3f}")
    # The tiny model's small random LM head caps how far two answers' log-probs can part (about a nat
    # per token). With the adapter's initialisation seeded (seed 0) the measured rise is +0.22; about
    # half of it is the bar, far above what an untrained adapter gives (0).
    assert margin_after > margin_before + 0.1
    # The reference is the starting model without a second copy: TRL keeps a frozen `ref` adapter.
    assert trainers[0].ref_model is None and "ref" in trainers[0].model.peft_config

    saved = load_file(p.root / result["adapter_path"] / "adapter_model.safetensors")
    assert before and set(saved) == {n.replace(".default", "") for n in before}  # no TRL `ref` adapter saved
    for name, tensor in before.items():
        assert not torch.equal(tensor, saved[name.replace(".default", "")]), f"{name} did not change"

    assert result["model_version"] == "proj:dpo@v1"
    version = resolve(p, "proj:dpo@v1")
    assert version["dataset_version"] == manifests["prefs"]["id"] and version["lineage"]["method"] == "dpo"
    m = result["metrics"]
    assert m["steps"] == 15 and m["train_loss_first"] is not None and m["tokens_per_s"] > 0
    assert m["reward_margin_last"] is not None and m["reward_accuracy_last"] is not None
    stored = {r["name"] for r in p.store.select("run_metrics", run_id=result["run_id"])}
    assert {"loss", "eval_loss", "tokens_per_s", "rewards/margins", "rewards/accuracies",
            "eval_rewards/margins"} <= stored


def test_dpo_refuses_a_chat_dataset(project):
    p, manifests = project
    with pytest.raises(TailorError, match=r"holds chat records.*tailor train dpo.*needs preference.*tailor train sft"):
        train(p, TrainConfig(method="dpo", dataset="chats", max_steps=1))
    assert p.store.select("runs")[-1]["status"] == "failed"


def test_dpo_starts_from_an_sft_model_version(project):
    p, _ = project
    sft = train(p, TrainConfig(method="sft", dataset="chats", max_steps=3, batch_size=4, learning_rate=5e-3))
    assert sft["model_version"] == "proj:sft@v1"
    result = train(p, TrainConfig(method="dpo", dataset="prefs", base="proj:sft@v1", max_steps=3, batch_size=4,
                                  eval_steps=3, max_seq_len=128))
    assert result["parent"] == "proj:sft@v1" and result["model_version"] == "proj:dpo@v2"
    from tailorlm.train.registry import resolve

    assert resolve(p, "proj:dpo@v2")["lineage"]["parent"] == "proj:sft@v1"
