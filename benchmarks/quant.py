"""Quantised or half-precision serving on the CPU: int8 weight-only (models.generator.quant) or bfloat16
weights (models.generator.dtype) against float32, paired.

Measures, on the embedded SmolLM2-135M-Instruct in the same run:
- the bytes the weights take, as stored;
- decode tokens/s at batch 1 and batch 8, greedy, with the two models taking turns round by round
  (so a load change on a shared machine hits both alike); the ratio int8 / fp32;
- the ladder's prompting rungs (zero_shot, few_shot) on the Keelbox example's golden suite, each
  evaluated with both models, and the paired accuracy delta (bootstrap CI, McNemar) from
  `eval.compare.compare`.

    python benchmarks/quant.py [--candidate int8|bf16] [--rounds 3] [--tokens 32] [--rungs zero_shot,few_shot]
                                                                                  # JSON, part by part
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

PROMPTS = ["Write a short paragraph about the sea.", "How do I reset my password?",
           "Explain what a CPU cache is.", "List three uses of a spreadsheet.",
           "What is a good name for a cat?", "Describe a sunrise in two sentences.",
           "Why do leaves change colour?", "Give me a tip for writing clear e-mails."]


def decode_rates(gens: dict, rounds: int, tokens: int) -> dict:
    from tailorlm.models.base import GenParams

    params = GenParams(max_tokens=tokens)
    convo = [[{"role": "user", "content": p}] for p in PROMPTS]
    rates = {(name, b): [] for name in gens for b in (1, 8)}
    for gen in gens.values():
        gen.generate(convo[0], GenParams(max_tokens=2))  # warm-up
    for _ in range(rounds):
        for name, gen in gens.items():
            started = time.perf_counter()
            done = gen.generate(convo[0], params)
            rates[(name, 1)].append(done.usage.completion_tokens / (time.perf_counter() - started))
            started = time.perf_counter()
            batch = gen.generate_batch(convo, params, batch_size=8)
            rates[(name, 8)].append(sum(c.usage.completion_tokens for c in batch) / (time.perf_counter() - started))
    out = {f"{name}_batch{b}": round(statistics.median(v), 2) for (name, b), v in rates.items()}
    for b in (1, 8):
        out[f"ratio_batch{b}"] = round(out[f"{candidate(gens)}_batch{b}"] / out[f"fp32_batch{b}"], 3)
    return out


def same_text(gens: dict, tokens: int) -> float:
    from tailorlm.models.base import GenParams

    convo = [[{"role": "user", "content": p}] for p in PROMPTS]
    texts = {name: [c.text for c in gen.generate_batch(convo, GenParams(max_tokens=tokens), batch_size=8)]
             for name, gen in gens.items()}
    return sum(a == b for a, b in zip(texts["fp32"], texts[candidate(gens)])) / len(PROMPTS)


def candidate(named: dict) -> str:
    """The name of the setting measured against fp32."""
    return next(name for name in named if name != "fp32")


def ladder_delta(projects: dict, pools: dict, kinds: list[str]) -> list[dict]:
    from tailorlm.eval.compare import compare
    from tailorlm.eval.runner import default_params, evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.build import build_rung

    rows = []
    fp32 = projects["fp32"]
    suite, params = load_suite(fp32), default_params(fp32)
    for spec in fp32.config.rungs:
        if spec.kind not in kinds:
            continue
        reports = {}
        for name, project in projects.items():
            rung = build_rung(project, spec, pools[name])
            started = time.perf_counter()
            reports[name] = evaluate(project, rung, suite, ["accuracy"], params, subject=f"{spec.label}-{name}", fresh=True)
            reports[name]["seconds"] = round(time.perf_counter() - started, 1)
        d = compare(reports["fp32"], reports[candidate(reports)], ["accuracy"])["metrics"]["accuracy"]
        rows.append({"rung": spec.label, "n": reports["fp32"]["metrics"]["accuracy"]["n"],
                     "fp32": round(d["a"], 4), candidate(reports): round(d["b"], 4), "delta": round(d["delta"], 4),
                     "ci": [round(d["low"], 4), round(d["high"], 4)], "p_value": round(d["p_value"], 4), "test": d["test"],
                     "seconds": {k: r["seconds"] for k, r in reports.items()}})
        print(json.dumps({"ladder_rung": rows[-1]}), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", default="int8", choices=["int8", "bf16"],
                    help="int8: models.generator.quant int8; bf16: models.generator.dtype bfloat16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rungs", default="zero_shot,few_shot", help="Rung kinds to compare; '' skips the ladder.")
    args = ap.parse_args()

    from tailorlm.data.pipeline import prepare
    from tailorlm.models.pool import ModelPool
    from tailorlm.models.quant import weight_bytes
    from tailorlm.project import Project
    from tailorlm.quickstart import create_example

    root = create_example(Path(tempfile.mkdtemp()) / "keelbox")
    projects = {"fp32": Project.load(root), args.candidate: Project.load(root)}
    if args.candidate == "int8":
        projects["int8"].config.models.generator.quant = "int8"
    else:
        projects["bf16"].config.models.generator.dtype = "bfloat16"
    prepare(projects["fp32"])
    pools = {name: ModelPool(p) for name, p in projects.items()}
    gens = {name: pool.default() for name, pool in pools.items()}
    result = {"model": projects["fp32"].config.models.generator.model,
              "weight_bytes": {name: weight_bytes(g.model) for name, g in gens.items()}}
    result["weight_ratio"] = round(result["weight_bytes"][args.candidate] / result["weight_bytes"]["fp32"], 3)
    print(json.dumps(result), flush=True)  # each part as it is measured: a long run on a shared machine
    result["decode_tokens_per_s"] = decode_rates(gens, args.rounds, args.tokens)
    print(json.dumps({"decode_tokens_per_s": result["decode_tokens_per_s"]}), flush=True)
    result["same_greedy_text"] = same_text(gens, args.tokens)
    if args.rungs:
        result["ladder"] = ladder_delta(projects, pools, args.rungs.split(","))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
