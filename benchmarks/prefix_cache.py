"""Prefix caching on a few-shot rung: the same prompts with and without it, in the same run.

    python benchmarks/prefix_cache.py [--examples 16] [--json]

The Keelbox example's `few_shot_static` rung (8 solved tickets before each question) answers the
first N golden tickets in batches of 8, greedily, once with the local backend's prefix cache off
and once with it on (warm: the shared start was encoded by a previous call, as in a ladder or a
server). Prints queries/s for both, their ratio, and whether every answer is identical.
"""

import argparse
import json
import platform
import tempfile
import time

from tailorlm.config import RungConfig
from tailorlm.data.pipeline import prepare
from tailorlm.eval.suite import load_suite
from tailorlm.rungs.build import build_rung
from tailorlm.models.base import GenParams
from tailorlm.models.pool import ModelPool
from tailorlm.project import Project
from tailorlm.quickstart import create_example


def timed(rung, batch, params):
    started = time.perf_counter()
    answers = rung.answer_batch(batch, params, batch_size=8)
    return [a.text for a in answers], time.perf_counter() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    project = Project.load(create_example(tempfile.mkdtemp() + "/keelbox"))
    prepare(project, ["tickets"])
    rung = build_rung(project, RungConfig(kind="few_shot", k=8), ModelPool(project))
    batch = [e.input for e in load_suite(project).examples[: args.examples]]
    params = GenParams(max_tokens=12)
    gen = rung.generator
    prompt_tokens = len(gen.encode(rung.prepare(batch[0], params).messages))
    gen.MIN_PREFIX = 10**9  # off: every row encodes its whole prompt
    plain, t_plain = timed(rung, batch, params)
    gen.MIN_PREFIX = type(gen).MIN_PREFIX
    timed(rung, batch[:8], params)  # warm the cache, as an earlier batch of a ladder would
    cached, t_cached = timed(rung, batch, params)
    result = {"benchmark": "prefix_cache", "model": "smollm2-135m-instruct (fp32)", "threads": torch.get_num_threads(),
              "machine": platform.machine(), "examples": len(batch), "prompt_tokens_first": prompt_tokens,
              "plain_queries_per_s": round(len(batch) / t_plain, 2), "cached_queries_per_s": round(len(batch) / t_cached, 2),
              "ratio_cached_vs_plain": round(t_plain / t_cached, 2), "identical_answers": plain == cached}
    if args.json:
        print(json.dumps(result))
        return
    print(f"few-shot prompts of ~{prompt_tokens} tokens, {len(batch)} golden tickets, batch 8")
    print(f"without prefix cache: {result['plain_queries_per_s']} queries/s ({t_plain:.1f} s)")
    print(f"with prefix cache:    {result['cached_queries_per_s']} queries/s ({t_cached:.1f} s)")
    print(f"ratio: {result['ratio_cached_vs_plain']}x; identical answers: {result['identical_answers']}")


if __name__ == "__main__":
    main()
