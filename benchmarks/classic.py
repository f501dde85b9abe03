"""The classic rung on real projects: fit time, golden-suite quality with its CI, latency and cost.

    python benchmarks/classic.py [--only keelbox|bbc] [--json]

Two projects, each built through the real pipeline (`data prepare`), then the rung exactly as the
ladder builds it (`build_rung` on `{kind: classic}`: TF-IDF and embedding features, C in 0.1..100,
tuned on the validation split) and scored by `evaluate` on the golden suite:
- keelbox: the shipped example (`tailor quickstart`'s project), 8 labels, golden.jsonl;
- bbc: the BBC News topics (`public_datasets.write_bbc_project`, "lead" view: headline + first
  paragraph), 5 labels, 321 golden stories no one here wrote.

Fit time is the wall time of the first `build_rung` (embedding the train and validation texts
included, the embedder's load excluded: it is loaded first and timed apart); a second build shows
the saved model is reused. Latency is per batch of 8, as the ladder measures every rung.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from public_datasets import write_bbc_project


def measure(project, label: str) -> dict:
    from tailorlm.config import RungConfig
    from tailorlm.eval.runner import evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.build import build_rung
    from tailorlm.models import get_embedder

    started = time.perf_counter()
    embedder = get_embedder(project.config.models.embedder)
    embedder.embed(["warm up"])
    load_s = time.perf_counter() - started
    spec = RungConfig(kind="classic")
    started = time.perf_counter()
    rung = build_rung(project, spec, None, embedder)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    again = build_rung(project, spec, None, embedder)
    reload_s = time.perf_counter() - started
    suite = load_suite(project)
    metrics = list(project.config.eval.metrics)
    report = evaluate(project, rung, suite, metrics, fresh=True)
    labels = [e.reference for e in suite.examples]
    majority = max(labels.count(x) for x in set(labels)) / len(labels)
    return {"project": label, "dataset": rung.meta["dataset"], "n_train": rung.meta["n_train"],
            "n_validation": rung.meta["n_validation"], "chosen": {"features": rung.meta["features"], "C": rung.meta["C"]},
            "validation": rung.meta["validation"], "tuning": rung.meta["tuning"],
            "embedder_load_s": round(load_s, 2), "fit_s": round(fit_s, 2), "reused": again.reused,
            "reload_s": round(reload_s, 3), "suite": f"{suite.name}@{suite.version}", "n": len(suite.examples),
            "majority": round(majority, 4),
            "metrics": {m: {k: report["metrics"][m][k] for k in ("score", "low", "high")} for m in metrics},
            "latency_ms": {k: round(report["latency"][k] * 1000, 2) for k in ("p50", "p95")},
            "cost_per_1k": report["cost_per_1k"]}


def keelbox(root: Path):
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project
    from tailorlm.quickstart import create_example

    project = Project.load(create_example(root))
    prepare(project)
    return project


def bbc(root: Path):
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project

    project = Project.load(write_bbc_project(root))
    prepare(project)
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["keelbox", "bbc"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {"load_average_start": os.getloadavg(), "cpus": os.cpu_count(), "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in (("keelbox", keelbox), ("bbc", bbc)):
            if args.only and args.only != name:
                continue
            started = time.perf_counter()
            project = make(Path(tmp) / name)
            prepare_s = time.perf_counter() - started
            result = measure(project, name)
            result["prepare_s"] = round(prepare_s, 1)
            out["results"].append(result)
            if not args.json:
                m = result["metrics"]
                print(f"{name}: {result['dataset']} train {result['n_train']}, validation {result['n_validation']}; "
                      f"chose {result['chosen']['features']} C={result['chosen']['C']} "
                      f"(validation {result['validation']})")
                for metric, v in m.items():
                    print(f"  {metric} {v['score']:.3f} [{v['low']:.3f}, {v['high']:.3f}] on {result['suite']} "
                          f"(n={result['n']}, majority class {result['majority']:.3f})")
                print(f"  fit {result['fit_s']} s (embedder load {result['embedder_load_s']} s apart), reused on "
                      f"rebuild: {result['reused']} ({result['reload_s']} s); latency p50 {result['latency_ms']['p50']} "
                      f"ms, p95 {result['latency_ms']['p95']} ms per batch of 8; cost/1k {result['cost_per_1k']}")
                for row in result["tuning"]:
                    print(f"    {row}")
    out["load_average_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"load average {out['load_average_start']} -> {out['load_average_end']} on {out['cpus']} CPUs")


if __name__ == "__main__":
    main()
