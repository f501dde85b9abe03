"""Local backend throughput on the embedded model: batch 1 against batch 8, in the same run.

    python benchmarks/generate.py [--max-tokens 64] [--prompts 16] [--json]

Each prompt is answered greedily; throughput is completion tokens actually generated per second
of wall time (prompt processing included, EOS ends a row early). Batch 8 left-pads the same
prompts into one decode loop. Prints both figures and their ratio.
"""

import argparse
import json
import platform
import time

from tailorlm.models.base import GenParams
from tailorlm.models.local import LocalGenerator

TOPICS = ["the water cycle", "how vaccines work", "the French revolution", "photosynthesis", "black holes",
          "the stock market", "machine learning", "the history of the bicycle", "volcanoes", "the immune system",
          "renewable energy", "the Roman empire", "coffee brewing", "plate tectonics", "jazz music", "bees"]


def run(gen, prompts, params, batch_size):
    start = time.perf_counter()
    if batch_size == 1:
        outs = [gen.generate(p, params) for p in prompts]
    else:
        outs = gen.generate_batch(prompts, params, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    tokens = sum(o.usage.completion_tokens for o in outs)
    return {"batch_size": batch_size, "prompts": len(prompts), "completion_tokens": tokens,
            "seconds": round(elapsed, 2), "tokens_per_s": round(tokens / elapsed, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    gen = LocalGenerator.load("smollm2-135m-instruct")
    prompts = [[{"role": "user", "content": f"Explain {t} in a short paragraph."}] for t in TOPICS[: args.prompts]]
    params = GenParams(max_tokens=args.max_tokens)
    gen.generate(prompts[0], GenParams(max_tokens=8))  # warm-up: first-call allocations
    one = run(gen, prompts, params, 1)
    eight = run(gen, prompts, params, 8)
    result = {"benchmark": "generate", "model": "smollm2-135m-instruct (fp32)", "device": str(gen.device),
              "threads": torch.get_num_threads(), "machine": platform.machine(), "max_tokens": args.max_tokens,
              "batch_1": one, "batch_8": eight, "ratio_batch8_vs_batch1": round(eight["tokens_per_s"] / one["tokens_per_s"], 2)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"batch 1: {one['tokens_per_s']} tokens/s ({one['completion_tokens']} tokens in {one['seconds']} s)")
    print(f"batch 8: {eight['tokens_per_s']} tokens/s ({eight['completion_tokens']} tokens in {eight['seconds']} s)")
    print(f"ratio batch 8 / batch 1: {result['ratio_batch8_vs_batch1']}x")


if __name__ == "__main__":
    main()
