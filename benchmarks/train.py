"""Tailor's default SFT path against a naive padded Hugging Face training loop, in the same run.

    python benchmarks/train.py [--steps 12] [--batch-size 8] [--repeats 3] [--micro-batch-size N] [--no-fused] [--json]

Both sides fine-tune the embedded SmolLM2-135M-Instruct (fp32, CPU) with the same LoRA (Tailor's
defaults: r=16, alpha=32, dropout 0, all linear layers), AdamW at 2e-4 and batches of 8 conversations from the train split
of the shipped Keelbox example's `tickets` dataset, labels on assistant tokens only.
- naive: right-padded batches in file order, `model(input_ids, attention_mask, labels)`, the
  standard loop from the transformers docs;
- tailor: `tailor train sft` as a user runs it (length-grouped padded micro-batches of 4
  accumulated to 8, the prompt prefix they share run once per micro-batch, loss projected to the
  vocabulary only at labelled positions, and the fused LoRA forward of train/fastpath.py, which
  `--no-fused` turns off to measure what it adds).

Each side runs in its own process so its peak RSS is its own; the sides alternate `--repeats`
times and the median run of each is reported. Throughput counts each example's own tokens
(padding excluded; a shared prefix counted once per example, as the data holds it) per second of
training-loop wall time: model loading excluded, and on Tailor's side its end-of-run validation pass
and checkpoint write too (the naive loop does neither; Tailor reports them apart as `seconds` less
`train_seconds`).
"""

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def prepared_project(root: Path):
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project
    from tailorlm.quickstart import create_example

    create_example(root)
    project = Project.load(root)
    prepare(project, ["tickets"])
    return project


def naive(args) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailorlm.data.versions import load_records, resolve
    from tailorlm.models.embedded import ensure
    from tailorlm.project import Project
    from tailorlm.train.data import PaddedCollator, encode_chat

    project = Project.load(args.project)
    records = load_records(project, resolve(project, "tickets"), "train")
    path = ensure("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)  # the LoRA initialisation too, so that repeats see the same losses
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    examples = [encode_chat(tok, r.content["messages"]) for r in records]
    collate = PaddedCollator(tok.pad_token_id)  # right padding to the longest in the batch
    tokens, started = 0, time.perf_counter()
    for step in range(args.steps):
        batch = collate(examples[step * args.batch_size : (step + 1) * args.batch_size])
        loss = model(**batch).loss  # full logits over every position, masked by the labels
        mask = batch["attention_mask"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += int(mask.sum())
    seconds = time.perf_counter() - started
    return {"side": "naive", "steps": args.steps, "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), "last_loss": round(float(loss), 4)}


def tailor(args) -> dict:
    from tailorlm.project import Project
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train

    project = Project.load(args.project)
    micro = {"micro_batch_size": args.micro_batch_size} if args.micro_batch_size else {}
    result = train(project, TrainConfig(dataset="tickets", max_steps=args.steps, batch_size=args.batch_size,
                                        eval_steps=10_000, early_stopping_patience=None, warmup_ratio=0.0,
                                        fused_lora=not args.no_fused, **micro))
    m = result["metrics"]
    return {"side": "tailor", "steps": m["steps"], "tokens": m["tokens_seen"], "seconds": m["train_seconds"],
            "tokens_per_s": m["tokens_per_s"], "last_loss": round(m["train_loss_last"], 4)}


def child(args) -> None:
    out = naive(args) if args.side == "naive" else tailor(args)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--micro-batch-size", type=int, help="Tailor's micro-batch (default: Tailor's default)")
    ap.add_argument("--no-fused", action="store_true", help="Tailor without its fused LoRA forward")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side, alternating; medians are reported")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--side", choices=["naive", "tailor"], help=argparse.SUPPRESS)
    ap.add_argument("--project", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        return child(args)
    tmp = Path(tempfile.mkdtemp(prefix="tailor-bench-train-"))
    try:
        prepared_project(tmp / "keelbox")
        runs = {"naive": [], "tailor": []}
        # The sides alternate, so that a slow spell of a shared machine falls on both alike.
        for _ in range(args.repeats):
            for side in runs:
                proc = subprocess.run([sys.executable, __file__, "--side", side, "--project", str(tmp / "keelbox"),
                                       "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                                       *(["--micro-batch-size", str(args.micro_batch_size)] if args.micro_batch_size else []),
                                       *(["--no-fused"] if args.no_fused else [])],
                                      capture_output=True, text=True, check=True)
                runs[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n, t = (median_run(runs[side]) for side in ("naive", "tailor"))
    pairs = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(runs["naive"], runs["tailor"])]
    report = {"benchmark": "train", "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
              "model": "smollm2-135m-instruct fp32 + LoRA r16 all-linear", "data": "Keelbox tickets train split",
              "repeats": args.repeats, "fused_lora": not args.no_fused, "naive": n, "tailor": t, "runs": runs,
              "speedup_tokens_per_s": round(t["tokens_per_s"] / n["tokens_per_s"], 2),
              "speedup_per_pair": [round(r, 2) for r in pairs],
              "peak_rss_ratio": round(t["peak_rss_mb"] / n["peak_rss_mb"], 2)}
    if args.json:
        print(json.dumps(report))
        return
    for side in (n, t):
        print(f"{side['side']:7} {side['tokens_per_s']:8} tokens/s  ({side['tokens']} tokens, {side['seconds']} s)  "
              f"peak RSS {side['peak_rss_mb']} MB  last loss {side['last_loss']}   (median of {args.repeats})")
    print(f"tokens/s ratio tailor/naive: {report['speedup_tokens_per_s']}x (pairs: {report['speedup_per_pair']})   "
          f"peak RSS ratio: {report['peak_rss_ratio']}x")


def median_run(runs: list[dict]) -> dict:
    """The run with the median tokens/s (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["tokens_per_s"])[(len(runs) - 1) // 2]


if __name__ == "__main__":
    main()
