"""`benchmarks/data_prepare.py --docs N`: peak memory of Tailor's step chain as the input grows to N documents.

Input: N synthetic documents written to a JSONL file first (a source on disk, as a user's would be),
scaled up from the real corpus (`_corpus.py`): each document is 60-400 words drawn, with their real
frequencies, from the vocabulary of the first 2,000 corpus documents, in sentences of 8-20 words;
2% are exact copies of an earlier document, so exact dedup has real work. Seeded.

Run: `tailor data prepare` itself (the library's `prepare`) on a temporary project whose one source
is that file, with the steps normalize -> exact_dedup -> near_dedup -> quality -> pii without NER (as
the speed comparison runs them) as tailor.yaml's `data.steps`, writing a real dataset version. Peak
RSS (`ru_maxrss`) is taken at the end, and a thread samples the current RSS every second (reported at
each tenth of the run's time). What may still grow with N is the dedup state: one hash per kept
document (exact) and the MinHash band keys (near), both compact.
"""

import itertools
import json
import random
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_synthetic(path: Path, n_docs: int, seed: int) -> dict:
    from _corpus import load_corpus

    docs, _ = load_corpus(2000, seed)
    counts = Counter(w for _, text in docs for w in text.split() if w.isalpha())
    words, weights = zip(*counts.most_common(20000))
    cum = list(itertools.accumulate(weights))  # given once: choices() would re-add 20,000 weights per sentence
    rng = random.Random(seed)
    recent: list[str] = []
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_docs):
            if recent and rng.random() < 0.02:
                text = rng.choice(recent)
            else:
                sentences, left = [], rng.randint(60, 400)
                while left > 0:
                    k = min(left, rng.randint(8, 20))
                    s = " ".join(rng.choices(words, cum_weights=cum, k=k))
                    sentences.append(s[0].upper() + s[1:] + ".")
                    left -= k
                text = " ".join(sentences)
                recent = (recent + [text])[-1000:]
            line = json.dumps({"id": f"d{i}", "text": text}) + "\n"
            size += len(line)
            f.write(line)
    return {"documents": n_docs, "bytes": size, "vocabulary": len(words)}


def prepare_run(path: Path, root: Path, names: list[str], params: dict) -> dict:
    """`tailor data prepare` itself (library call) on a project whose one source is the synthetic file,
    with the benchmark's steps as tailor.yaml's `data.steps`; a thread samples this process's RSS."""
    import threading

    import yaml

    from tailorlm.data.pipeline import prepare
    from tailorlm.project import init_project

    project = init_project(root, name="scale")
    config = yaml.safe_load((root / "tailor.yaml").read_text())
    config["sources"] = [{"name": "synthetic", "path": str(path.relative_to(root)), "kind": "text"}]
    config.setdefault("data", {})["steps"] = [{n: params.get(n, {})} for n in names]
    (root / "tailor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    project = type(project).load(root)
    samples, done = [], threading.Event()
    started = time.perf_counter()

    def sample():
        while not done.wait(1.0):
            samples.append((round(time.perf_counter() - started, 1), current_rss_mb()))

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        [manifest] = prepare(project)
    finally:
        done.set()
        watcher.join()
    seconds = time.perf_counter() - started
    # The RSS at each tenth of the run's time: flat means the state does not grow with the input.
    tenths = [max((rss for t, rss in samples if t <= seconds * k / 10), default=None) for k in range(1, 11)]
    return {"seconds": round(seconds, 1), "docs_per_s": round(manifest["accounting"]["read"] / seconds, 1),
            "version": manifest["id"], "accounting": manifest["accounting"],
            "dropped": {s["step"]: sum(s["dropped"].values()) for s in manifest["steps"]},
            "rss_by_tenth_of_time_mb": tenths}


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def scale_memory(n_docs: int, seed: int, names: list[str], params: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="tailor-scale-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        src = root / "data" / "in.jsonl"
        t = time.perf_counter()
        corpus = write_synthetic(src, n_docs, seed)
        corpus["writing_seconds"] = round(time.perf_counter() - t, 1)
        base = round(peak_rss_mb(), 1)  # the corpus sample and the interpreter, before the run
        run = prepare_run(src, root, names, params)
    peak = round(peak_rss_mb(), 1)
    return {"input": corpus, "steps": names, "rss_before_run_mb": base, "run": run, "peak_rss_mb": peak,
            "goal_peak_rss_mb": 4096, "met": peak <= 4096}


def report(out: dict) -> None:
    s = out["scale"]
    print(f"{s['input']['documents']:,} synthetic documents ({s['input']['bytes'] / 1e6:.0f} MB of JSONL), "
          f"steps {' -> '.join(s['steps'])}; RSS before the run {s['rss_before_run_mb']} MB")
    r = s["run"]
    print(f"tailor data prepare: {r['seconds']} s, {r['docs_per_s']} docs/s, version {r['version']}")
    print(f"RSS at each tenth of the run (MB): {r['rss_by_tenth_of_time_mb']}")
    print(f"kept {r['accounting']['kept']:,}, dropped {r['dropped']}; peak RSS {s['peak_rss_mb']} MB; "
          f"goal <= {s['goal_peak_rss_mb']} MB: {'met' if s['met'] else 'NOT met'}")
