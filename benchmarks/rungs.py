"""The prompt_opt and ensemble rungs on the shipped example, paired against the rungs they must beat.

    python benchmarks/rungs.py [FOLDER] [--budget 115] [--variants 1] [--demo-sets 0] [--no-replay] [--json]

The Keelbox example (`tailor quickstart`'s project: 8 labels, 306 train / 37 validation tickets, 64
golden) with the embedded SmolLM2-135M-Instruct, every rung built as the ladder builds it
(`build_rung`, held to the labels by scoring) and scored by `evaluate` on the golden suite:

1. few_shot_static and few_shot_similar, as configured in the example;
2. prompt_opt (`{kind: prompt_opt, k: 4, train: {budget: B, variants: V, demo_sets: D}}`): the search on
   the validation split
   (timed apart, calls counted), then the golden suite; compared with both few-shot rungs, paired
   (`eval/compare.py`: McNemar on accuracy, paired bootstrap interval);
3. ensemble over classic, few_shot_similar and prompt_opt, confidence-weighted and majority; each
   compared, paired, with its best member on the golden suite. By default (`--replay`) the ensemble
   votes over its members' answers as their own eval reports saved them (greedy decoding: the same
   prompts give the same answers, latency and confidence), so its latency and compute are the sums of
   the members' measured ones without answering everything a second time; `--no-replay` builds it
   with `build_rung` and has every member answer again.

Answers saved by an earlier run of the same rung in FOLDER are reused (evaluate resumes), so an
interrupted run continues; the defaults keep the search near two golden runs' worth of calls.
Seconds depend on the machine's load; accuracies do not.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


class Replay:
    """A member rung that answers with what its eval report saved for each golden input."""

    def __init__(self, report: dict):
        self.report, self.name = report, report["rung"]["name"]
        self.saved = {json.dumps(e["input"], sort_keys=True): e for e in report["examples"]}

    def answer_batch(self, batch, params=None, batch_size=8):
        from tailorlm.rungs.base import Answer
        from tailorlm.models.base import Usage

        out = []
        for messages in batch:
            e = self.saved[json.dumps(messages, sort_keys=True)]
            usage = Usage(e["usage"]["prompt_tokens"], e["usage"]["completion_tokens"])
            out.append(Answer(e["prediction"], self.name, usage, e["latency_s"], e["finish_reason"],
                              meta={"confidence": e["confidence"], "compute_s": e["compute_s"]}, error=e["error"]))
        return out

    def describe(self) -> dict:
        return {**self.report["rung"], "replayed_from": self.report["id"]}


def replayed(project, spec, member_reports: list[dict]):
    from tailorlm.rungs.ensemble import EnsembleRung, vote_for

    return EnsembleRung([Replay(r) for r in member_reports], vote_for(project, spec), list(project.config.task.labels),
                        name=spec.label)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", help="where to create the example (default: a temporary folder)")
    ap.add_argument("--budget", type=int, default=115, help="prompt_opt's budget of model calls")
    ap.add_argument("--variants", type=int, default=1, help="instructions the generator writes for the search")
    ap.add_argument("--demo-sets", type=int, default=0, help="random demonstration sets the search tries")
    ap.add_argument("--replay", action=argparse.BooleanOptionalAction, default=True,
                    help="vote over the members' saved answers instead of answering again")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    import yaml

    from tailorlm.data.pipeline import prepare
    from tailorlm.eval.compare import compare
    from tailorlm.eval.runner import evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.build import build_rung
    from tailorlm.models import get_embedder
    from tailorlm.models.pool import ModelPool
    from tailorlm.project import Project
    from tailorlm.quickstart import create_example

    root = Path(args.folder or tempfile.mkdtemp(prefix="tailor-rungs-")) / "example"
    create_example(root)
    cfg = yaml.safe_load((root / "tailor.yaml").read_text())
    keep = {"classic", "few_shot_static", "few_shot_similar"}
    cfg["rungs"] = [r for r in cfg["rungs"] if (r.get("name") or r["kind"]) in keep] + [
        {"kind": "prompt_opt", "k": 4,
         "train": {"budget": args.budget, "variants": args.variants, "demo_sets": args.demo_sets}},
        {"kind": "ensemble", "name": "ensemble_confidence", "members": ["classic", "few_shot_similar", "prompt_opt"]},
        {"kind": "ensemble", "name": "ensemble_majority", "members": ["classic", "few_shot_similar", "prompt_opt"],
         "vote": "majority"}]
    (root / "tailor.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    project = Project.load(root)
    if not project.store.select("dataset_versions"):
        prepare(project)
    pool, suite = ModelPool(project), load_suite(project)
    embedder = get_embedder(project.config.models.embedder)
    specs = {s.label: s for s in project.config.rungs}
    say = (lambda m: None) if args.json else (lambda m: print(m, flush=True))
    out = {"suite": suite.describe(), "budget": args.budget, "rungs": {}, "comparisons": []}
    reports = {}

    def score(name: str, ensemble=None) -> None:
        started = time.perf_counter()
        rung = ensemble or build_rung(project, specs[name], pool, embedder, specs=project.config.rungs)
        built = time.perf_counter() - started
        started = time.perf_counter()
        report = evaluate(project, rung, suite, ["accuracy", "macro_f1"])
        reports[name] = report
        acc, f1 = report["metrics"]["accuracy"], report["metrics"]["macro_f1"]
        row = {"accuracy": round(acc["score"], 4), "low": round(acc["low"], 3), "high": round(acc["high"], 3),
               "macro_f1": round(f1["score"], 4), "build_s": round(built, 1),
               "eval_s": round(time.perf_counter() - started, 1), "latency_p50_s": round(report["latency"]["p50"], 3),
               "compute_s": round(report["throughput"]["seconds"], 2),
               "cost_per_1k": report["cost_per_1k"]["usd_per_1k"], "errors": report["errors"]}
        if getattr(rung, "kind", None) == "prompt_opt":
            record = json.loads((root / rung.meta["search"]).read_text())
            row["search"] = {"calls": record["calls"], "seconds": record["seconds"], "candidates": len(record["candidates"]),
                             "rounds": [(r["n"], len(r["candidates"])) for r in record["rounds"]],
                             "winner": {k: record["winner"][k] for k in ("instruction", "demos", "shots", "score", "n")},
                             "variants": [v["text"] for v in record["variants"]], "prompt": record["prompt"]}
        out["rungs"][name] = row
        say(f"{name}: {json.dumps(row, ensure_ascii=False)}")

    def paired(a: str, b: str) -> None:
        full = compare(reports[a], reports[b], ["accuracy"])
        c = full["metrics"]["accuracy"]
        row = {"a": a, "b": b, "n": full["n"], "n_differ": full["n_differ"],
               **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()
                  if k in ("delta", "low", "high", "p_value", "test")}}
        out["comparisons"].append(row)
        say(f"{b} - {a}: {json.dumps(row)}")

    for name in ("few_shot_static", "few_shot_similar", "prompt_opt"):
        score(name)
    paired("few_shot_static", "prompt_opt")
    paired("few_shot_similar", "prompt_opt")
    score("classic")
    members = ["classic", "few_shot_similar", "prompt_opt"]
    best = max(members, key=lambda m: out["rungs"][m]["accuracy"])
    for name in ("ensemble_confidence", "ensemble_majority"):
        if args.replay:
            score(name, ensemble=replayed(project, specs[name], [reports[m] for m in members]))
        else:
            score(name)
        paired(best, name)
        summed = round(sum(out["rungs"][m]["compute_s"] for m in members), 2)
        out["rungs"][name]["members_compute_s_alone"] = summed  # measured in their own runs, for comparison
    if args.json:
        json.dump(out, sys.stdout, ensure_ascii=False)
        print()


if __name__ == "__main__":
    main()
