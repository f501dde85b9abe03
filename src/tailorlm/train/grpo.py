"""Reinforcement fine-tuning with verifiable rewards: `tailor train grpo`.

GRPO (Shao et al. 2024, DeepSeekMath) on a chat dataset: each step takes a few prompts, samples
`num_generations` answers to each from the current policy, scores them with the task's rewards
(train/rewards.py), and pushes up the answers that beat their group's mean, with a KL penalty
(`beta`) to the starting model. No reward model, no value network: the group is the baseline.

Why Tailor's own loop and not TRL's GRPOTrainer: measured on this machine (docs/benchmarks.md,
benchmarks/grpo.py), this loop sampled 1.7x TRL's tokens/s on the 135M model and 6.5x on the tiny one, because
- the prompt is prefilled once and its KV cache shared by the group's answers, then decoded
  together, instead of a generate() call over G padded copies of it;
- the policy's log-probs come from the fused LoRA forward (train/fastpath.py), with the prompt as
  the shared prefix of the group, and the LM head runs only at answer tokens;
- the reference is the same forward with the LoRA branch left out: no second model, no adapter swap.
On-policy with one update per batch (TRL's default num_iterations=1), the clipped ratio is 1, so
the loss is the plain policy gradient `-A·logp` plus `beta·KL` (the k3 estimator), averaged over
the step's answer tokens (DAPO's token-level mean).

Runs start from the base or from an sft model version (merged first), train a fresh LoRA adapter,
save a checkpoint every `eval_steps` (adapter, optimizer, scheduler, step, history) and resume
from it; progress reports reward mean and spread, KL to the reference and tokens/s.
"""

import json
import math
import random
import shutil
import time
from pathlib import Path

from tailorlm.errors import TailorError
from tailorlm.train.config import TrainConfig

STATE = "trainer_state.json"  # written last: its presence marks a complete checkpoint (trainer.last_checkpoint)


def prompt_examples(records, system: str | None) -> list[dict]:
    """{messages, reference} per chat record: the turns before its last answer, and that answer.

    >>> from tailorlm.data.record import Record
    >>> prompt_examples([Record("1", "chat", {"messages": [{"role": "user", "content": "2+2?"},
    ...                  {"role": "assistant", "content": "4"}]})], None)[0]["reference"]
    '4'
    """
    from tailorlm.rungs.base import with_system

    out = []
    for r in records:
        msgs = r.content.get("messages") or []
        if msgs and msgs[-1]["role"] == "assistant":
            out.append({"messages": with_system(msgs[:-1], system), "reference": msgs[-1]["content"], "id": r.id})
        elif msgs:
            out.append({"messages": with_system(msgs, system), "reference": None, "id": r.id})
    return out


def ladder_settings(project, spec, settings: dict) -> dict:
    """A grpo rung's training settings: it starts from `train.base` (another rung's name, or a model
    version id), by default the first sft rung's model, which the ladder has trained by then (sft sorts
    first), and samples with that model's system prompt unless the rung sets one."""
    from tailorlm.rungs.build import resolve_version

    settings = dict(settings)
    specs = {s.label: s for s in project.config.rungs}
    start = settings.pop("base", None) or next((s.label for s in project.config.rungs if s.kind == "sft"), None)
    if start in specs:
        version = resolve_version(project, specs[start], list(specs.values()))
        start = version["id"]
        if "system_prompt" not in spec.train:
            settings["system_prompt"] = version["lineage"].get("system_prompt")
    return {**settings, "method": "grpo", "base": start}


def encode_prompt(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def sample_group(model, prompt: list[int], n: int, max_tokens: int, temperature: float, eos: set[int],
                 generator) -> list[list[int]]:
    """`n` answers to one prompt: its KV cache computed once and shared, the answers decoded as a batch.
    Each answer's ids end with the EOS token when the model stopped (so stopping is learnt too)."""
    import torch

    from tailorlm.models.kv import returned_cache, with_cache

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        cache = returned_cache(out)
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].float().expand(n, -1)
        rows: list[list[int]] = [[] for _ in range(n)]
        done = torch.zeros(n, dtype=torch.bool)
        pad = min(eos)
        for step in range(max_tokens):
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
            nxt = torch.where(done, pad, nxt)
            for i, token in enumerate(nxt.tolist()):
                if not done[i]:
                    rows[i].append(token)
            done |= torch.tensor([t in eos for t in nxt.tolist()])
            if bool(done.all()) or step == max_tokens - 1:
                break
            position = torch.full((n, 1), len(prompt) + step)
            out = model(input_ids=nxt[:, None], position_ids=position, use_cache=True, **with_cache(cache))
            cache = returned_cache(out)
            logits = out.logits[:, -1].float()
    return rows


def answer_logps(model, plan, prompt: list[int], answers: list[list[int]], reference: bool = False):
    """(per-token log-probs (G, L), mask (G, L)) of each answer after `prompt`, under the policy, or with
    `reference` under the starting model (the LoRA branch left out). The prompt runs once, as the
    group's shared prefix; the LM head runs only at answer tokens."""
    import dataclasses

    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    width = max(len(a) for a in answers)
    pad = 0
    # Row i is [last prompt token] + answer i: position j predicts the answer's token j.
    ids = torch.full((len(answers), width + 1), pad, dtype=torch.long)
    mask = torch.zeros((len(answers), width), dtype=torch.bool)
    for i, a in enumerate(answers):
        ids[i, 0] = prompt[-1]
        ids[i, 1 : len(a) + 1] = torch.tensor(a)
        mask[i, : len(a)] = True
    if plan:
        from tailorlm.train.fastpath import hidden_states

        groups = [[dataclasses.replace(g, adapted=False) for g in layer] for layer in plan] if reference else plan
        prefix = torch.tensor([prompt[:-1]]) if len(prompt) > 1 else None
        hidden = hidden_states(base.model, groups, ids, prefix)[:, :-1]
    else:  # transformers' forward over the whole rows (other architectures, bf16, QLoRA)
        full = torch.cat([torch.tensor([prompt[:-1]]).expand(len(answers), -1), ids], dim=1)
        attn = torch.cat([torch.ones(len(answers), len(prompt), dtype=torch.long), mask.long()], dim=1)
        if reference and hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                hidden = base.model(input_ids=full, attention_mask=attn, use_cache=False).last_hidden_state
        else:
            hidden = base.model(input_ids=full, attention_mask=attn, use_cache=False).last_hidden_state
        hidden = hidden[:, len(prompt) - 1 : -1]
    logits = base.get_output_embeddings()(hidden[mask]).float()
    target = ids[:, 1:][mask]
    flat = torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
    out = torch.zeros(mask.shape, dtype=flat.dtype)
    out[mask] = flat
    return out, mask


def advantages(rewards: list[float]) -> list[float]:
    """Each reward against its group: (r - mean) / (std + 1e-4); all zero when the group agrees.

    >>> [round(a, 3) for a in advantages([1.0, 0.0, 0.0, 1.0])]
    [1.0, -1.0, -1.0, 1.0]
    """
    mean = sum(rewards) / len(rewards)
    std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
    return [(r - mean) / (std + 1e-4) for r in rewards]


def plan_steps(cfg: TrainConfig, n_prompts: int) -> tuple[int, int]:
    """(prompts per step, steps): batch_size counts answers, as in TRL, so prompts = batch_size // G."""
    per_step = max(1, cfg.batch_size // cfg.num_generations)
    if cfg.max_steps > 0:
        return per_step, cfg.max_steps
    epochs = 1.0 if cfg.epochs == "auto" else cfg.epochs  # sampling dominates: one pass unless asked
    return per_step, max(1, math.ceil(epochs * n_prompts / per_step))


def prompt_order(n: int, seed: int, steps: int, per_step: int) -> list[int]:
    """Prompt indices for every step, epoch after epoch, each epoch its own seeded shuffle: the same on resume."""
    order, epoch = [], 0
    while len(order) < steps * per_step:
        idx = list(range(n))
        random.Random(seed * 1000 + epoch).shuffle(idx)
        order += idx
        epoch += 1
    return order


def save_checkpoint(folder: Path, model, optimizer, scheduler, step: int, history: list, rng, keep: int) -> None:
    import torch

    path = folder / f"checkpoint-{step}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    model.save_pretrained(path, selected_adapters=["default"])
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng.get_state()},
               path / "optimizer.pt")
    (path / STATE).write_text(json.dumps({"global_step": step, "log_history": history}))
    done = sorted((p for p in folder.glob("checkpoint-*") if (p / STATE).exists()), key=lambda p: int(p.name.split("-")[1]))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, model, optimizer, scheduler, rng) -> tuple[int, list]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
    state = torch.load(path / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng.set_state(state["rng"])
    saved = json.loads((path / STATE).read_text())
    return saved["global_step"], saved["log_history"]


def run_grpo(project, cfg: TrainConfig, run_id: str, out: Path, checkpoint: Path | None, on_progress, on_message) -> dict:
    """Train one GRPO run; same contract as `run_sft` (runs.train registers the result).

    >>> train(project, TrainConfig(method="grpo", dataset="tickets", base="acme:sft@v1", max_steps=20))  # doctest: +SKIP
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from tailorlm.train import fastpath
    from tailorlm.train.rewards import build_rewards, score
    from tailorlm.train.sft import load_splits
    from tailorlm.train.trainer import load_model

    if cfg.adapter == "full":
        raise TailorError("grpo trains a LoRA adapter (the reference is the model without it); use --adapter lora")
    manifest, splits = load_splits(project, cfg)
    rewards = build_rewards(project, cfg.rewards)  # before the model loads: a bad reward fails fast
    model, tokenizer, base, parent = load_model(project, cfg)
    if cfg.system_prompt is None and parent:
        # Sampled the way the parent is served, and the lineage (built from cfg) says so for the new version.
        cfg.system_prompt = parent["lineage"].get("system_prompt")
    examples = prompt_examples(splits["train"], cfg.system_prompt)
    prompts = [encode_prompt(tokenizer, e["messages"]) for e in examples]
    keep = [i for i, p in enumerate(prompts) if len(p) + cfg.max_completion_tokens <= cfg.max_seq_len]
    if len(keep) < len(prompts):
        on_message(f"over {cfg.max_seq_len} tokens with a {cfg.max_completion_tokens}-token answer: "
                   f"{len(prompts) - len(keep)} prompts left out")
    examples, prompts = [examples[i] for i in keep], [prompts[i] for i in keep]
    if not examples:
        raise TailorError(f"no prompts in {manifest['id']} fit max_seq_len {cfg.max_seq_len}")
    eos = {tokenizer.eos_token_id} | set(_as_list(getattr(model.generation_config, "eos_token_id", None)))
    eos.discard(None)
    per_step, steps = plan_steps(cfg, len(examples))
    order = prompt_order(len(examples), cfg.seed, steps, per_step)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    rng = torch.Generator().manual_seed(cfg.seed)
    start, history = 0, []
    if checkpoint is not None:
        start, history = load_checkpoint(checkpoint, model, optimizer, scheduler, rng)
    plan = fastpath.plan(model) if cfg.fused_lora else None  # grpo runs in fp32, which the fused forward needs
    sampled = sum(h["sampled_tokens"] for h in history)
    seconds = sum(h["seconds"] for h in history)
    began = time.perf_counter()
    for step in range(start, steps):
        t0 = time.perf_counter()
        batch = [order[step * per_step + j] for j in range(per_step)]
        groups = []
        model.eval()
        for i in batch:
            answers = sample_group(model, prompts[i], cfg.num_generations, cfg.max_completion_tokens,
                                   cfg.temperature, eos, rng)
            texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
            totals, parts = score(rewards, texts, [examples[i]] * len(texts))
            groups.append((i, [a or [min(eos)] for a in answers], totals, parts))
        n_tokens = sum(len(a) for _, answers, _, _ in groups for a in answers)
        sampling = time.perf_counter() - t0  # sampling and scoring: the share `tailor costs` is about
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_sum, kl_sum = 0.0, 0.0
        for i, answers, totals, _ in groups:
            adv = torch.tensor(advantages(totals))
            if cfg.beta == 0 and not bool(adv.any()):
                continue  # a group whose answers all scored the same teaches nothing without a KL term
            logp, mask = answer_logps(model, plan, prompts[i], answers)
            with torch.no_grad():
                ref, _ = answer_logps(model, plan, prompts[i], answers, reference=True)
            diff = ref - logp
            kl = torch.exp(diff) - diff - 1
            per_token = -torch.exp(logp - logp.detach()) * adv[:, None] + cfg.beta * kl
            loss = (per_token * mask).sum() / n_tokens
            loss.backward()
            loss_sum += loss.item()
            kl_sum += float((kl.detach() * mask).sum())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        optimizer.step()
        scheduler.step()
        all_rewards = [r for _, _, totals, _ in groups for r in totals]
        mean = sum(all_rewards) / len(all_rewards)
        spread = sum(_std(totals) for _, _, totals, _ in groups) / len(groups)
        elapsed = time.perf_counter() - t0
        sampled += n_tokens
        seconds += elapsed
        log = {"step": step + 1, "reward_mean": mean, "reward_std": spread, "kl": kl_sum / n_tokens, "loss": loss_sum,
               "grad_norm": grad_norm, "learning_rate": scheduler.get_last_lr()[0], "sampled_tokens": n_tokens,
               "completion_length": n_tokens / len(all_rewards), "seconds": elapsed, "sample_seconds": sampling,
               "tokens_per_s": sampled / seconds}
        for _, _, _, parts in groups:
            for k, v in parts.items():
                log[k] = log.get(k, 0.0) + v / len(groups)
        history.append(log)
        for key, value in log.items():
            if key != "step" and math.isfinite(value):
                project.store.upsert_metric(run_id, step + 1, key, float(value))
        if not math.isfinite(loss_sum):
            raise TailorError(f"the GRPO loss became NaN at step {step + 1}; lower --learning-rate")
        if on_progress:
            on_progress(step + 1, steps, log, log["tokens_per_s"])
        if (step + 1) % cfg.eval_steps == 0 and step + 1 < steps:
            save_checkpoint(out / "checkpoints", model, optimizer, scheduler, step + 1, history, rng, cfg.save_total_limit)
    final = out / "model"
    model.save_pretrained(final, selected_adapters=["default"])
    tokenizer.save_pretrained(final)
    first, last = history[0] if history else {}, history[-1] if history else {}
    window = max(1, len(history) // 4)  # reward is noisy step to step: compare the first and last quarters
    metrics = {"steps": steps, "examples": len(examples), "prompts_per_step": per_step,
               "num_generations": cfg.num_generations, "rewards": [r.name for r in rewards],
               "reward_first": first.get("reward_mean"), "reward_last": last.get("reward_mean"),
               "reward_first_quarter": _mean([h["reward_mean"] for h in history[:window]]),
               "reward_last_quarter": _mean([h["reward_mean"] for h in history[-window:]]),
               "kl_last": last.get("kl"), "sampled_tokens": sampled, "train_seconds": round(seconds, 1),
               "sampling_share": round(sum(h["sample_seconds"] for h in history) / seconds, 3) if seconds else None,
               "seconds": round(time.perf_counter() - began, 1),
               "tokens_per_s": round(sampled / seconds, 1) if seconds else None, "beta": cfg.beta,
               "fused_lora": bool(plan), "train_loss_first": first.get("loss"), "train_loss_last": last.get("loss")}
    rel = str(final.relative_to(project.root))
    return {"base": base, "parent": parent["id"] if parent else None, "dataset_version": manifest["id"],
            "adapter_path": rel, "weights_path": None, "metrics": metrics, "best_checkpoint": None}


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]
