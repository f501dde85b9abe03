"""`tailor train grpo` on a tiny Llama: the reward rises on a task it can memorise, the adapter moves,
the version is registered with lineage, a cut-off run resumes, and the rewards combine with weights."""

import json

import pytest
import torch

from tailorlm.data.pipeline import prepare
from tailorlm.errors import TailorError
from tailorlm.project import Project
from tailorlm.train.config import TrainConfig
from tailorlm.train.runs import train
from tests.test_dpo import _one_thread  # noqa: F401  (autouse: one intra-op thread for the tiny model)

LABELS = ["yes", "no"]


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    root = tmp_path / "proj"
    root.mkdir()
    # The same questions answered yes and no: sft on `mixed` makes a model that says either, and grpo
    # on `chats` (whose reference is always yes) should teach it to say yes.
    for name, answers in (("chats", ["yes"]), ("mixed", ["yes", "no"])):
        with open(root / f"{name}.jsonl", "w") as f:
            for i in range(8):
                for a in answers:
                    f.write(json.dumps({"messages": [{"role": "user", "content": f"Question {i}: yes or no?"},
                                                     {"role": "assistant", "content": a}]}) + "\n")
    (root / "tailor.yaml").write_text(
        f"name: proj\ntask: {{description: Say yes., type: classification, labels: {LABELS}}}\n"
        f"models: {{generator: {{model: '{tiny_model_dir}'}}}}\n"
        "sources:\n  - {name: chats, path: chats.jsonl}\n  - {name: mixed, path: mixed.jsonl}\n"
        "data: {steps: [{validate: {}}, {split: {train: 1.0, validation: 0.0, test: 0.0}}]}\n")
    # A reward the random model earns now and then (an answer that starts with a vowel), so the groups
    # disagree and the policy gradient has something to push on.
    (root / "myrewards.py").write_text("def vowel(completions, examples):\n"
                                       "    return [float(c.strip()[:1].lower() in 'aeiou') for c in completions]\n")
    p = Project.load(root)
    prepare(p)
    return p


def sampled_reward(project, model_dir, adapter, tokenizer, temperature: float) -> float:
    """The label reward's mean over 32 answers to each of the 8 prompts, sampled as training samples
    them (same temperature and length), with a fixed seed: a measurement steadier than one step's 16."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tailorlm.train.grpo import encode_prompt, sample_group
    from tailorlm.train.rewards import build_rewards, score

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    rewards, rng, total = build_rewards(project, None), torch.Generator().manual_seed(1), []
    for i in range(8):
        messages = [{"role": "user", "content": f"Question {i}: yes or no?"}]
        answers = sample_group(model.eval(), encode_prompt(tokenizer, messages), 32, 2, temperature,
                               {tokenizer.eos_token_id}, rng)
        total += score(rewards, tokenizer.batch_decode(answers, skip_special_tokens=True),
                       [{"messages": messages, "reference": "yes"}] * 32)[0]
    return sum(total) / len(total)


def test_grpo_from_sft_raises_the_reward_and_moves_the_adapter(project, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from tailorlm.train import trainer
    from tailorlm.train.registry import resolve

    p = project
    # A model that says yes or no at random: full sft on the mixed answers (the tiny model learns it in 40 steps).
    sft = train(p, TrainConfig(method="sft", dataset="mixed", adapter="full", max_steps=40, batch_size=8,
                               learning_rate=1e-2, max_seq_len=128, warmup_ratio=0.0, eval_steps=1000))
    sft_dir = p.root / sft["weights_path"]
    tokenizer = AutoTokenizer.from_pretrained(sft_dir)
    before_reward = sampled_reward(p, sft_dir, None, tokenizer, 0.7)
    assert 0.2 < before_reward < 0.8, before_reward  # the task is not solved yet, and not hopeless

    before = {}
    real_load = trainer.load_model

    def recording(*args):  # the fresh adapter's weights, as training starts
        model, *rest = real_load(*args)
        before.update({n: t.detach().clone() for n, t in model.named_parameters() if t.requires_grad})
        return (model, *rest)

    monkeypatch.setattr(trainer, "load_model", recording)
    result = train(p, TrainConfig(method="grpo", dataset="chats", base=sft["model_version"], max_steps=20,
                                  batch_size=32, num_generations=8, max_completion_tokens=2, learning_rate=5e-3,
                                  temperature=0.7, lora_r=8, lora_alpha=64, beta=0.0, warmup_ratio=0.1,
                                  max_seq_len=128))
    after_reward = sampled_reward(p, sft_dir, p.root / result["adapter_path"], tokenizer, 0.7)
    curve = [round(h["value"], 2) for h in p.store.select("run_metrics", order_by="step", run_id=result["run_id"])
             if h["name"] == "reward_mean"]
    print(f"sampled reward (256 answers) {before_reward:.3f} -> {after_reward:.3f}; sampled reward per step {curve}")
    # Measured 0.461 -> 0.566 (seeded, one thread); an untrained adapter leaves it where it was.
    assert after_reward > before_reward + 0.08

    saved = load_file(p.root / result["adapter_path"] / "adapter_model.safetensors")
    assert before and set(saved) == {n.replace(".default", "") for n in before}
    moved = [n for n, t in before.items() if not torch.equal(t, saved[n.replace(".default", "")])]
    assert len(moved) == len(before)  # every LoRA matrix got a gradient

    assert result["model_version"] == "proj:grpo@v2" and result["parent"] == sft["model_version"]
    version = resolve(p, "proj:grpo@v2")
    assert version["lineage"]["method"] == "grpo" and version["lineage"]["parent"] == sft["model_version"]
    m = result["metrics"]
    assert m["steps"] == 20 and m["rewards"] == ["label"] and m["tokens_per_s"] > 0 and m["fused_lora"]
    stored = {r["name"] for r in p.store.select("run_metrics", run_id=result["run_id"])}
    assert {"reward_mean", "reward_std", "kl", "tokens_per_s", "reward/label", "loss"} <= stored


def test_the_ladder_trains_a_grpo_rung_from_its_sft_rung(tmp_path, tiny_model_dir):
    from tailorlm.ladder.run import run_ladder
    from tailorlm.train.registry import resolve
    from tests.test_ladder import make_project

    project = make_project(tmp_path / "l", tiny_model_dir, """  - {kind: grpo, train: {max_steps: 2, batch_size: 4, num_generations: 2, max_completion_tokens: 2}}
  - {kind: sft, train: {max_steps: 1, batch_size: 4, micro_batch_size: 4}}
""")
    ladder = run_ladder(project, log=lambda m: None)
    assert [r["name"] for r in ladder["rungs"]] == ["sft", "grpo"]  # trained after sft, whatever the order in the file
    sft, grpo = (resolve(project, r["model_version"]) for r in ladder["rungs"])
    assert grpo["id"].startswith("shop:grpo@") and grpo["lineage"]["parent"] == sft["id"]
    assert grpo["lineage"]["system_prompt"] == sft["lineage"]["system_prompt"]  # sampled as its parent is served
    pair = ladder["comparisons"][0]  # paired with sft on the same suite, with its CI
    assert (pair["a"], pair["b"]) == ("shop:sft", "shop:grpo") and pair["metrics"]
    assert ladder["leakage"]["pools"]  # its training prompts were checked against the suite


def test_costs_prices_grpo_by_its_sampled_tokens(cli):
    out = cli("costs", "--method", "grpo", "--params", "135M", "--trainable-params", "4.9M", "--prompts", "200",
              "--prompt-tokens", "120", "--completion-tokens", "8", "--num-generations", "4", "--gpu", "A100", "--json")
    assert out.exit_code == 0, out.output
    t = json.loads(out.output)["training"]
    assert t["method"] == "grpo" and t["sampled_tokens"] == 200 * 4 * 8
    # sampling: a prefill of the prompt and 2·N per sampled token; policy (4N + 2N_t) and reference 2N per scored token
    scored = 200 * (120 + 4 * 8)
    assert t["generation_flops"] == 2 * 135e6 * (200 * 120 + 200 * 4 * 8)
    assert t["flops"] == pytest.approx(t["generation_flops"] + (4 * 135e6 + 2 * 4.9e6) * scored + 2 * 135e6 * scored)
    assert t["gpu_hours"] == pytest.approx(t["flops"] / (312e12 * 0.4) / 3600)
    bad = cli("costs", "--method", "grpo", "--params", "135M")
    assert bad.exit_code != 0 and "--prompts, --prompt-tokens and --completion-tokens" in bad.output


def test_a_bad_reward_is_named_before_the_model_loads(project, cli):
    from tailorlm.train.rewards import parse_reward

    with pytest.raises(TailorError, match=r"--reward 'lable': unknown reward 'lable'"):
        parse_reward("lable")
    with pytest.raises(TailorError, match=r"rewards\[0\] \(format\): .*takes no|rewards\[0\]: unknown"):
        train(project, TrainConfig(method="grpo", dataset="chats", rewards=[{"kind": "nope"}]))
    with pytest.raises(TailorError, match=r"reward 'nomodule:fn': cannot import it"):
        train(project, TrainConfig(method="grpo", dataset="chats", rewards=[{"kind": "python", "function": "nomodule:fn"}]))


def test_rewards_combine_with_weights(project):
    from tailorlm.train.rewards import build_rewards, score

    rewards = build_rewards(project, [{"kind": "label", "weight": 1.0}, {"kind": "length", "max_chars": 3, "weight": 0.5},
                                      {"kind": "python", "function": "myrewards:vowel", "weight": 2.0},
                                      {"kind": "format", "regex": r"[a-z]+", "weight": 0.25}])
    totals, parts = score(rewards, ["yes", "no", "absolutely yes"], [{"messages": [], "reference": "yes"}] * 3)
    # yes: label 1 + length 0.5 + vowel 0 + format 0.25; no: 0.5 + 0.25; "absolutely yes": length 3 over 3
    # chars by 11 -> 0, vowel 2, format 0 (a space)
    assert totals == pytest.approx([1.75, 0.75, 2.0])
    assert parts["reward/label"] == pytest.approx(1 / 3) and parts["reward/myrewards:vowel"] == pytest.approx(1 / 3)


def test_a_cut_off_grpo_run_resumes_from_its_checkpoint(project, monkeypatch):
    from tailorlm.train import rewards as rewards_module

    real_score, calls = rewards_module.score, []

    def failing(*args):  # the third step's scoring dies, after the checkpoint of step 2
        calls.append(1)
        if len(calls) == 5:  # two prompts a step
            raise KeyboardInterrupt("cut off")
        return real_score(*args)

    monkeypatch.setattr(rewards_module, "score", failing)
    cfg = TrainConfig(method="grpo", dataset="chats", max_steps=4, eval_steps=2, batch_size=4, num_generations=2,
                      max_completion_tokens=2, max_seq_len=128)
    with pytest.raises(KeyboardInterrupt):
        train(project, cfg)
    run = project.store.select("runs")[-1]
    assert run["status"] == "failed"
    monkeypatch.setattr(rewards_module, "score", real_score)
    messages = []
    result = train(project, resume=True, on_message=messages.append)
    assert result["run_id"] == run["id"] and messages == [f"resuming {run['id']} from checkpoint-2"]
    assert result["metrics"]["steps"] == 4 and len(calls) == 5  # steps 1-2 were not sampled again
    steps = sorted({r["step"] for r in project.store.select("run_metrics", run_id=run["id"]) if r["name"] == "reward_mean"})
    assert steps == [1, 2, 3, 4]


def test_train_grpo_cli_combines_rewards_and_reports_json(project, cli):
    out = cli("train", "grpo", "--project", project.root, "--dataset", "chats", "--max-steps", "1", "--batch-size", "4",
              "--num-generations", "2", "--max-completion-tokens", "2", "--max-seq-len", "128", "--reward", "label",
              "--reward", "myrewards:vowel*0.5", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)  # transformers' loading bar goes to stderr
    assert result["model_version"] == "proj:grpo@v1" and result["metrics"]["rewards"] == ["label", "myrewards:vowel"]
    config = json.loads(project.store.select("runs", id=result["run_id"])[0]["config"])
    assert config["rewards"] == [{"kind": "label", "weight": 1.0},
                                 {"kind": "python", "function": "myrewards:vowel", "weight": 0.5}]
    bad = cli("train", "grpo", "--project", project.root, "--dataset", "chats", "--reward", "label*x")
    assert bad.exit_code != 0 and "the weight after '*' must be a number" in bad.output
