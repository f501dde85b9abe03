"""SFT and CPT on a tiny random Llama with the real SmolLM2 tokenizer: masking, packing, learning,
resume after kill -9, NaN and full-disk handling, registration and the CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tailorlm.data.pipeline import prepare
from tailorlm.errors import TailorError
from tailorlm.project import Project
from tailorlm.train.config import TrainConfig
from tailorlm.train.data import IGNORE, PackedCollator, PaddedCollator, encode_chat
from tailorlm.train.runs import train

CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
         {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}]


def test_labels_cover_exactly_the_assistant_turns_and_their_end_tokens(tokenizer):
    enc = encode_chat(tokenizer, CONVO)
    labelled = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE]
    assert tokenizer.decode(labelled) == "Hello! How can I help?<|im_end|>4<|im_end|>"
    assert all(lab in (IGNORE, t) for t, lab in zip(enc["input_ids"], enc["labels"]))
    unlabelled = tokenizer.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab == IGNORE])
    assert "Be brief." in unlabelled and "Hi there" in unlabelled and "2+2?" in unlabelled
    assert tokenizer.decode(enc["input_ids"]) == tokenizer.apply_chat_template(CONVO, tokenize=False)


def test_packed_batches_give_the_same_loss_as_padded_ones(tiny_model, tokenizer):
    from tailorlm.train.trainer import make_trainer_class

    examples = [encode_chat(tokenizer, CONVO), encode_chat(tokenizer, CONVO[:3]),
                encode_chat(tokenizer, [{"role": "user", "content": "Name a colour"}, {"role": "assistant", "content": "Teal."}])]
    trainer = make_trainer_class().__new__(make_trainer_class())
    trainer.tokens_seen = 0
    packed = trainer.compute_loss(tiny_model, PackedCollator()(examples))
    padded = trainer.compute_loss(tiny_model, PaddedCollator(tokenizer.pad_token_id)(examples))
    # Same tokens, same labels: block-diagonal attention over the packed row must equal padding.
    assert torch.allclose(packed, padded, atol=1e-5), (packed, padded)


def test_a_shared_prefix_is_run_once_with_the_same_loss_and_gradients(tiny_model, tokenizer):
    from tailorlm.train.data import shared_prefix
    from tailorlm.train.trainer import make_trainer_class

    system = {"role": "system", "content": "You answer questions about the Keelbox backup agent."}
    examples = [encode_chat(tokenizer, [system, {"role": "user", "content": q}, {"role": "assistant", "content": a}])
                for q, a in [("Where are logs kept?", "In /var/log/keel."), ("Is there a Linux agent?", "Yes."),
                             ("Can restores run at night?", "Yes, schedule them in the console.")]]
    cut = shared_prefix(examples)
    # The system turn and the user turn's opening: everything up to where the questions differ.
    assert tokenizer.decode(examples[0]["input_ids"][:cut]) == (
        "<|im_start|>system\nYou answer questions about the Keelbox backup agent.<|im_end|>\n<|im_start|>user\n")
    shared = PaddedCollator(tokenizer.pad_token_id, share_prefix=True)(examples)
    plain = PaddedCollator(tokenizer.pad_token_id)(examples)
    assert shared["prefix_ids"].shape == (1, cut) and shared["input_ids"].shape[1] == plain["input_ids"].shape[1] - cut

    trainer = make_trainer_class().__new__(make_trainer_class())
    trainer.tokens_seen = 0
    results = []
    for batch in (plain, shared):
        tiny_model.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(tiny_model, dict(batch))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}))
    tiny_model.zero_grad(set_to_none=True)
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-5), (loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-4), name


def test_no_prefix_is_shared_where_labels_start_early_or_sequences_differ(tokenizer):
    from tailorlm.train.data import shared_prefix

    text = [{"input_ids": [5, 6, 7, 8, 9, 10], "labels": [5, 6, 7, 8, 9, 10]},  # cpt: every token is labelled
            {"input_ids": [5, 6, 7, 8, 9, 11], "labels": [5, 6, 7, 8, 9, 11]}]
    assert shared_prefix(text) == 0
    chat = [encode_chat(tokenizer, [{"role": "system", "content": s}, {"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Hello"}]) for s in ("Be brief.", "Speak French.")]
    # They share only `<|im_start|>system\n`, 3 tokens: too short to be worth a second forward pass.
    assert len(tokenizer("<|im_start|>system\n", add_special_tokens=False)["input_ids"]) == 3
    assert shared_prefix(chat) == 0
    assert shared_prefix(chat[:1]) == 0  # one sequence: nothing to share
    batch = PaddedCollator(tokenizer.pad_token_id, share_prefix=True)(chat)
    assert "prefix_ids" not in batch


MEMORISE = [(f"What is the access code for vault {name}?", f"The code for {name} is {code}.")
            for name, code in [("alpha", "7731"), ("bravo", "2208"), ("charlie", "9154"), ("delta", "4470"),
                               ("echo", "3862"), ("foxtrot", "5519"), ("golf", "1047"), ("hotel", "6685")]]


@pytest.fixture
def train_project(tmp_path, tiny_model_dir):
    root = tmp_path / "p"
    root.mkdir()
    rows = [{"id": f"{i}-{j}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for j in range(3) for i, (q, a) in enumerate(MEMORISE)]
    # Three copies of eight facts: dedup would remove the copies, so this dataset skips it.
    (root / "facts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "docs.jsonl").write_text(json.dumps({"text": "A document about vaults. " * 20}) + "\n")
    (root / "tailor.yaml").write_text(
        f"name: vaults\ntask: {{description: Answer vault questions.}}\nmodels:\n  generator: {{model: '{tiny_model_dir}'}}\n"
        "sources:\n  - {name: facts, path: facts.jsonl}\n  - {name: docs, path: docs.jsonl}\n"
        "data:\n  steps:\n    - validate: {}\n    - split: {train: 0.75, validation: 0.25, test: 0.0, stratify: false}\n")
    project = Project.load(root)
    prepare(project)
    return project


FAST = dict(dataset="facts", learning_rate=3e-3, batch_size=6, eval_steps=4, warmup_ratio=0.0, lora_dropout=0.0)


def test_sft_learns_changes_only_lora_params_and_registers_a_version(train_project):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train(train_project, TrainConfig(max_steps=12, **{**FAST, "learning_rate": 3e-2}))
    m = result["metrics"]
    assert m["train_loss_last"] < m["train_loss_first"] - 0.2
    assert m["eval_loss_best"] is not None and m["tokens_per_s"] > 0
    assert result["model_version"] == "vaults:sft@v1"
    run_dir = train_project.root / ".tailor" / "runs" / result["run_id"]
    saved = TrainConfig.model_validate(__import__("yaml").safe_load((run_dir / "config.yaml").read_text()))
    assert saved.max_steps == 12 and saved.dataset == "facts"
    base = AutoModelForCausalLM.from_pretrained(train_project.config.models.generator.model)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(train_project.config.models.generator.model),
                                      run_dir / "model")
    lora = {n: p for n, p in tuned.named_parameters() if "lora_B" in n}
    assert lora and all(p.abs().sum() > 0 for p in lora.values())  # B starts at zero: every adapter moved
    for name, p in base.named_parameters():
        assert torch.equal(p, tuned.get_base_model().get_parameter(name)), name  # the base stays frozen
    assert (run_dir / "model" / "chat_template.jinja").exists()  # serving renders prompts as training did
    steps = [r["step"] for r in train_project.store.select("run_metrics", run_id=result["run_id"], name="loss")]
    assert steps == list(range(1, 13))


def test_lora_layers_adapts_only_the_top_layers_and_they_learn(train_project):
    import re

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train(train_project, TrainConfig(max_steps=4, lora_layers=1, **{**FAST, "learning_rate": 3e-2}))
    base = AutoModelForCausalLM.from_pretrained(train_project.config.models.generator.model)
    top = base.config.num_hidden_layers - 1
    tuned = PeftModel.from_pretrained(base, train_project.root / result["adapter_path"])
    lora = {n: p for n, p in tuned.named_parameters() if "lora_B" in n}
    assert {int(re.search(r"\.layers\.(\d+)\.", n).group(1)) for n in lora} == {top}
    assert len(lora) == 7 and all(p.abs().sum() > 0 for p in lora.values())  # q k v o gate up down, all moved
    assert result["metrics"]["train_loss_last"] < result["metrics"]["train_loss_first"]


def test_split_rows_keeps_every_row_once_trimmed_to_its_group(tokenizer):
    from tailorlm.train.data import split_rows

    examples = [encode_chat(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
                for q, a in MEMORISE[:5]]
    batch = PaddedCollator(tokenizer.pad_token_id)(examples)
    rows, length = batch["input_ids"].shape
    parts = split_rows(batch, max_tokens=2 * length)
    assert [p["input_ids"].shape[0] for p in parts] == [2, 2, 1]
    for part, start in zip(parts, (0, 2, 4)):
        n = part["input_ids"].shape[0]
        longest = int(batch["attention_mask"][start : start + n].sum(1).max())
        assert part["input_ids"].shape[1] == longest  # trimmed to the group's own longest row
        for key in ("input_ids", "labels", "attention_mask"):
            assert torch.equal(part[key], batch[key][start : start + n, :longest])
    assert split_rows(batch, max_tokens=rows * length) == [batch] and split_rows(batch, None) == [batch]


def test_micro_batches_over_the_token_limit_are_split_with_the_same_updates(train_project, monkeypatch):
    from safetensors.torch import load_file

    from tailorlm.train import data

    passes, real = [], data.split_rows

    def counted(batch, limit):  # the real split, with the number of passes it makes recorded
        parts = real(batch, limit)
        passes.append(len(parts))
        return parts

    monkeypatch.setattr(data, "split_rows", counted)
    results = [train(train_project, TrainConfig(max_steps=3, micro_batch_tokens=limit, **FAST)) for limit in (None, 16)]
    assert passes[:3] == [1, 1, 1] and passes[3:] == [6, 6, 6]  # 16 tokens: one sequence per pass
    curves = [[r["value"] for r in train_project.store.select("run_metrics", run_id=res["run_id"], name="loss")]
              for res in results]
    assert len(curves[0]) == 3 and curves[0] == pytest.approx(curves[1], abs=1e-5)
    weights = [load_file(train_project.root / res["adapter_path"] / "adapter_model.safetensors") for res in results]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.allclose(weights[0][name], weights[1][name], atol=1e-6), name


def tensorboard_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of a TensorBoard event file: TFRecord framing (length, its CRC, the Event, its CRC)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    data, scalars, i = path.read_bytes(), {}, 0
    while i < len(data):
        (length,) = struct.unpack("<Q", data[i : i + 8])
        event = Event.FromString(data[i + 12 : i + 12 + length])
        i += 12 + length + 4
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_report_to_tensorboard_writes_the_loss_curve_into_the_run_folder(train_project):
    result = train(train_project, TrainConfig(max_steps=3, report_to=["tensorboard"], **FAST))
    events = list((Path(result["run_dir"]) / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    logged = tensorboard_scalars(events[0])["train/loss"]
    stored = train_project.store.select("run_metrics", run_id=result["run_id"], name="loss")
    assert [step for step, _ in logged] == [r["step"] for r in stored] == [1, 2, 3]
    assert [v for _, v in logged] == pytest.approx([r["value"] for r in stored], rel=1e-6)


def test_a_tracker_that_is_not_installed_fails_before_the_run_starts(train_project):
    import importlib.util

    if importlib.util.find_spec("mlflow"):
        pytest.skip("mlflow is installed here")
    with pytest.raises(TailorError, match=r"report_to: mlflow is not installed; pip install mlflow"):
        train(train_project, TrainConfig(max_steps=1, report_to=["mlflow"], **FAST))
    assert train_project.store.select("runs") == []


def test_full_fine_tuning_memorises_the_facts(train_project):
    result = train(train_project, TrainConfig(adapter="full", max_steps=16, **{**FAST, "learning_rate": 3e-2}))
    m = result["metrics"]
    assert m["train_loss_last"] < 0.5 * m["train_loss_first"], m
    assert result["model_version"] == "vaults:sft@v1"
    assert (train_project.root / ".tailor" / "runs" / result["run_id"] / "model" / "model.safetensors").exists()


def test_wrong_kind_and_overlength_policies(train_project):
    with pytest.raises(TailorError, match="holds text records; `tailor train sft` needs chat"):
        train(train_project, TrainConfig(dataset="docs", max_steps=1))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(train_project.config.models.generator.model)
    lengths = [len(encode_chat(tok, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])["input_ids"])
               for q, a in MEMORISE]
    limit = min(lengths) - 2  # every example is too long by a little: the answer's start survives a cut
    result = train(train_project, TrainConfig(max_steps=1, max_seq_len=limit, overlength="truncate", **FAST))
    assert result["metrics"]["truncated"] == 18 and result["metrics"]["rejected"] == 0
    with pytest.raises(TailorError, match="no trainable examples.*'rejected': 18"):
        train(train_project, TrainConfig(max_steps=1, max_seq_len=limit, overlength="reject", **FAST))


def test_cpt_trains_on_documents(train_project):
    result = train(train_project, TrainConfig(method="cpt", dataset="docs", max_steps=4, max_seq_len=32,
                                              learning_rate=3e-3, batch_size=2, warmup_ratio=0.0))
    assert result["metrics"]["train_loss_last"] < result["metrics"]["train_loss_first"]
    assert result["model_version"] == "vaults:cpt@v1"


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(train_project, monkeypatch):
    from tailorlm.train import sft, trainer

    real = trainer.make_trainer_class

    def poisoned():
        base = real()

        class Poisoned(base):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
                return loss * float("nan") if self.state.global_step >= 5 and model.training else loss

        return Poisoned

    monkeypatch.setattr(sft, "make_trainer_class", poisoned)
    with pytest.raises(TailorError, match=r"loss became NaN at step 6.*checkpoint-4"):
        train(train_project, TrainConfig(max_steps=10, **FAST))
    [run] = train_project.store.select("runs")
    assert run["status"] == "failed"
    checkpoints = sorted(p.name for p in (train_project.root / run["output_dir"] / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-4"]


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(train_project, monkeypatch):
    from transformers import Trainer

    calls = {"n": 0}
    real = Trainer._save_optimizer_and_scheduler

    def flaky(self, output_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", flaky)
    with pytest.raises(TailorError, match="No space left on device.*previous checkpoint is intact: .*checkpoint-4"):
        train(train_project, TrainConfig(max_steps=12, **FAST))
    [run] = train_project.store.select("runs")
    folder = train_project.root / run["output_dir"] / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-4"]
    assert (folder / "checkpoint-4" / "trainer_state.json").exists()


def test_resume_after_kill_9_ends_at_the_same_step_with_a_continuous_curve(train_project):
    args = [sys.executable, "-m", "tailorlm.cli", "train", "sft", "-p", str(train_project.root), "--max-steps", "16",
            "--dataset", "facts", "--learning-rate", "3e-3", "--batch-size", "6", "--eval-steps", "4", "--json"]
    config = train_project.root / "fast.yaml"
    config.write_text(__import__("yaml").safe_dump({k: v for k, v in FAST.items() if k != "dataset"}))
    args += ["--config", str(config)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    runs_dir = train_project.root / ".tailor" / "runs"
    deadline = time.time() + 240
    while time.time() < deadline:
        done = list(runs_dir.glob("*/checkpoints/checkpoint-8/trainer_state.json"))
        if done:
            break
        time.sleep(0.2)
    assert done, proc.communicate(timeout=5)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9, mid-run
    proc.wait()
    [run] = train_project.store.select("runs")
    assert run["status"] == "running"
    resumed = subprocess.run([sys.executable, "-m", "tailorlm.cli", "train", "sft", "--resume", "-p", str(train_project.root),
                              "--json"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run["id"] and result["metrics"]["steps"] == 16
    losses = {r["step"]: r["value"] for r in train_project.store.select("run_metrics", run_id=run["id"], name="loss")}
    assert sorted(losses) == list(range(1, 17))  # no gap, no step logged twice
    # The same run uninterrupted gives the same curve: resuming restored weights, optimizer and data
    # order. (Not bit for bit: CPU thread reductions differ between processes, so 1% relative.)
    fresh = train(train_project, TrainConfig(max_steps=16, **FAST))
    again = {r["step"]: r["value"] for r in train_project.store.select("run_metrics", run_id=fresh["run_id"], name="loss")}
    for step in range(1, 17):
        assert abs(losses[step] - again[step]) < 1e-2 * again[step], (step, losses[step], again[step])


def test_cli_train_runs_show_and_export(train_project, cli, tmp_path):
    r = cli("train", "sft", "--dataset", "facts", "--max-steps", "3", "--batch-size", "6", "-p", train_project.root, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    shown = json.loads(cli("runs", "show", result["run_id"], "-p", train_project.root, "--json").stdout)
    assert [s for s, _ in shown["curves"]["loss"]] == [1, 2, 3]
    assert open(shown["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    versions = json.loads(cli("models", "versions", "-p", train_project.root, "--json").stdout)["versions"]
    assert versions[-1]["id"] == result["model_version"] and "latest" in versions[-1]["aliases"]
    out = tmp_path / "adapter"
    e = cli("export", result["model_version"], out, "--format", "adapter", "-p", train_project.root, "--json")
    assert e.exit_code == 0, e.output
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    dry = cli("train", "sft", "--dataset", "facts", "--launcher", "accelerate", "--gpus", "8", "--strategy", "fsdp",
              "--dry-run", "-p", train_project.root, "--json")
    plan = json.loads(dry.stdout)
    assert plan["config"]["distributed_type"] == "FSDP" and plan["config"]["num_processes"] == 8
    assert "tailorlm.train.worker" in plan["command"]
    qlora = cli("train", "sft", "--dataset", "facts", "--adapter", "qlora", "--max-steps", "1", "-p", train_project.root)
    assert qlora.exit_code == 2 and "QLoRA needs a CUDA GPU" in qlora.output


def test_pretrain_builds_a_tokenizer_and_a_chinchilla_sized_model(train_project, cli):
    from transformers import AutoTokenizer

    r = cli("train", "pretrain", "--dataset", "docs", "--params", "200000", "--vocab-size", "300", "--max-steps", "4",
            "--max-seq-len", "32", "--batch-size", "2", "--learning-rate", "1e-2", "-p", train_project.root, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    m = result["metrics"]
    assert 150_000 <= m["params"] <= 250_000 and m["vocab_size"] <= 300
    assert m["train_loss_last"] < m["train_loss_first"]
    assert result["model_version"] == "vaults:pretrain@v1" and result["weights_path"]
    tok = AutoTokenizer.from_pretrained(train_project.root / result["weights_path"])
    assert tok.decode(tok("A document about vaults.")["input_ids"]) == "A document about vaults."
    from tailorlm.train.pretrain import plan

    sized = plan(TrainConfig(method="pretrain", dataset="docs", compute_flops=1.2e20), corpus_tokens=10_000)
    assert round(sized["params_target"] / 1e9, 2) == 1.0 and sized["chinchilla_tokens"] == 20 * sized["params_target"]


def test_the_saved_model_is_the_checkpoint_with_the_best_validation_loss(train_project):
    from safetensors.torch import load_file

    from tailorlm.data.record import Record
    from tailorlm.data.versions import write_version

    # A real overfit. Validation shares the chat template with training but none of its answers: the first
    # steps learn the template, so validation loss falls; then the model memorises the vault codes and it climbs
    # (here about 10.6, 9.9, then 12.6 by step 8). LoRA on lm_head lets the tiny random model's logits move at
    # all; without it its loss stays within noise of ln(vocab), and which step is best depended on the CPU.
    def chat(i, q, a):
        return Record(f"c{i}", "chat", {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})

    unrelated = [("Which river runs through Lisbon?", "Lisbon sits on the Tagus estuary."),
                 ("Name a dessert from Vienna.", "Sachertorte, served with whipped cream."),
                 ("Who painted sunflowers?", "Vincent van Gogh painted several versions.")]
    write_version(train_project, "overfit",
                  {"train": [chat(i, q, a) for i, (q, a) in enumerate(MEMORISE * 3)],
                   "validation": [chat(100 + i, q, a) for i, (q, a) in enumerate(unrelated)]},
                  {"kind": "chat", "license": "internal", "parents": [], "steps": [], "accounting": {},
                   "sources": [{"name": "overfit", "path": "overfit.jsonl", "files": []}], "recipe": {"v": 1}}, [])
    result = train(train_project, TrainConfig(
        max_steps=8, early_stopping_patience=None, save_total_limit=8, target_modules=["q_proj", "v_proj", "lm_head"],
        **{**FAST, "dataset": "overfit", "eval_steps": 1, "learning_rate": 3e-2}))
    run_dir = train_project.root / ".tailor" / "runs" / result["run_id"]
    state = json.loads((run_dir / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    evals = {h["step"]: h["eval_loss"] for h in state["log_history"] if "eval_loss" in h}
    best_step = min(evals, key=evals.get)
    assert best_step != max(evals), f"the fixture should overfit: {evals}"
    assert result["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert result["metrics"]["eval_loss_best"] == pytest.approx(evals[best_step])
    saved = load_file(run_dir / "model" / "adapter_model.safetensors")
    best = load_file(run_dir / "checkpoints" / f"checkpoint-{best_step}" / "adapter_model.safetensors")
    last = load_file(run_dir / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors")
    assert saved.keys() == best.keys()
    assert all(torch.equal(saved[k], best[k]) for k in saved)
    assert any(not torch.equal(saved[k], last[k]) for k in saved)
