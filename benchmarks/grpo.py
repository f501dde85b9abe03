"""GRPO engines side by side: Tailor's own loop (train/grpo.py) and TRL's GRPOTrainer, same work.

    python benchmarks/grpo.py [--model tiny|smollm2-135m-instruct] [--steps 3] [--rounds 2] [--threads 1] [--json]

Both train a fresh LoRA adapter (r 16, alpha 32, all linear layers) on the same 8 Keelbox tickets,
8 answers per step (2 prompts x 4 generations), at most 16 sampled tokens each, temperature 1,
beta 0.04, one update per batch. The figure is sampled answer tokens per second of training time
(generation dominates GRPO's cost), and the ratio of Tailor's to TRL's in the same run. The two
engines alternate (Tailor, TRL, Tailor, TRL, `--rounds` times each) so that load from other work falls on both.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "tailorlm" / "examples" / "support"
G, PROMPTS, MAX_TOKENS, BETA = 4, 2, 16, 0.04


def tickets(n: int = 8) -> list[dict]:
    rows = [json.loads(line) for line in (EXAMPLE / "tickets.jsonl").read_text().splitlines() if line.strip()]
    return rows[:n]


def model_dir(name: str, root: Path) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tailorlm.models.embedded import ensure

    smol = ensure("smollm2-135m-instruct")
    if name != "tiny":
        return str(ensure(name))
    tok = AutoTokenizer.from_pretrained(smol)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    path = root / "tiny"
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def run_tailor(model: str, root: Path, steps: int) -> dict:
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train

    proj = root / f"tailor-{time.time_ns()}"
    proj.mkdir()
    with open(proj / "t.jsonl", "w") as f:
        for row in tickets():
            f.write(json.dumps({"messages": row["messages"]}) + "\n")
    labels = json.dumps(["billing", "login_sso", "sync_conflict", "data_restore", "api_error", "performance",
                         "account_deletion", "feature_request"])
    (proj / "tailor.yaml").write_text(
        f"name: b\ntask: {{description: Triage tickets., type: classification, labels: {labels}}}\n"
        f"models: {{generator: {{model: '{model}'}}}}\nsources:\n  - {{name: t, path: t.jsonl}}\n"
        "data: {steps: [{validate: {}}, {split: {train: 1.0, validation: 0.0, test: 0.0}}]}\n")
    p = Project.load(proj)
    prepare(p)
    r = train(p, TrainConfig(method="grpo", dataset="t", max_steps=steps, batch_size=G * PROMPTS, num_generations=G,
                             max_completion_tokens=MAX_TOKENS, temperature=1.0, beta=BETA, learning_rate=1e-4,
                             max_seq_len=1024, eval_steps=1000))
    m = r["metrics"]
    return {"sampled_tokens": m["sampled_tokens"], "seconds": m["train_seconds"], "tokens_per_s": m["tokens_per_s"]}


def run_trl(model: str, root: Path, steps: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    data = [{"prompt": row["messages"][:-1], "answer": row["messages"][-1]["content"]} for row in tickets()]

    def reward(completions, answer, **kw):
        return [float(c[0]["content"].strip() == a) for c, a in zip(completions, answer)]

    args = GRPOConfig(output_dir=str(root / "trl"), per_device_train_batch_size=G * PROMPTS, num_generations=G,
                      max_completion_length=MAX_TOKENS, max_steps=steps, learning_rate=1e-4, logging_steps=1,
                      report_to=[], save_strategy="no", beta=BETA, disable_tqdm=True, use_cpu=True, temperature=1.0)
    trainer = GRPOTrainer(model=lm, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(data),
                          processing_class=tok, peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                                       task_type="CAUSAL_LM"))
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    sampled = sum(n * G * PROMPTS for n in lengths)
    return {"sampled_tokens": round(sampled), "seconds": round(seconds, 1), "tokens_per_s": round(sampled / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["TAILOR_PROJECT"] = ""
        model = model_dir(args.model, root)
        runs = {"tailor": [], "trl": []}
        for _ in range(args.rounds):
            runs["tailor"].append(run_tailor(model, root, args.steps))
            runs["trl"].append(run_trl(model, root, args.steps))

    def rate(rows):
        return sum(r["sampled_tokens"] for r in rows) / sum(r["seconds"] for r in rows)

    out = {"model": args.model, "steps": args.steps, "threads": args.threads, "answers_per_step": G * PROMPTS,
           "max_tokens": MAX_TOKENS, "runs": runs, "tailor_tokens_per_s": round(rate(runs["tailor"]), 1),
           "trl_tokens_per_s": round(rate(runs["trl"]), 1),
           "ratio": round(rate(runs["tailor"]) / rate(runs["trl"]), 2), "load_average": os.getloadavg()}
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(runs))
        print(f"{args.model}: tailor {out['tailor_tokens_per_s']} sampled tok/s, TRL {out['trl_tokens_per_s']}; "
              f"ratio {out['ratio']}x (load average {out['load_average'][0]:.1f})")


if __name__ == "__main__":
    main()
