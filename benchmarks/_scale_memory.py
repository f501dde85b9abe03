"""`benchmarks/data_prepare.py --docs N`: peak memory of Tailor's step chain as the input grows to N documents.

Input: N synthetic documents written to a JSONL file first (a source on disk, as a user's would be),
scaled up from the real corpus (`_corpus.py`): each document is 60-400 words drawn, with their real
frequencies, from the vocabulary of the first 2,000 corpus documents, in sentences of 8-20 words;
2% are exact copies of an earlier document, so exact dedup has real work. Seeded.

Run: the file is read line by line into `Record`s and pushed through the steps chained as generators
(normalize -> exact_dedup -> near_dedup -> quality -> pii without NER, as the speed comparison runs
them), the survivors written line by line to an output file: nothing holds the corpus. Peak RSS
(`ru_maxrss`) and docs/s are sampled at every tenth of the input. What still grows with N is the
dedup state: one 8-byte hash per kept document (exact) and the MinHash band keys (near).
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


def stream_run(path: Path, out: Path, names: list[str], params: dict, n_docs: int) -> list[dict]:
    from tailorlm.data.record import Record
    from tailorlm.data.steps import step_class

    samples = []
    every = max(n_docs // 10, 1)
    started = time.perf_counter()

    def read():
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                d = json.loads(line)
                yield Record(d["id"], "text", {"text": d["text"]}, {"source": "bench"})
                if i % every == 0:
                    samples.append({"docs_read": i, "peak_rss_mb": round(peak_rss_mb(), 1),
                                    "docs_per_s": round(i / (time.perf_counter() - started), 1)})

    steps = [step_class(n)(**params.get(n, {})) for n in names]
    stream = read()
    for s in steps:
        stream = s(stream)
    kept = 0
    with open(out, "w", encoding="utf-8") as f:
        for r in stream:
            f.write(json.dumps({"id": r.id, "text": r.content["text"]}) + "\n")
            kept += 1
    samples[-1]["kept"] = kept
    samples[-1]["dropped"] = {s.name: sum(s.dropped.values()) for s in steps}
    return samples


def scale_memory(n_docs: int, seed: int, names: list[str], params: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="tailor-scale-") as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        t = time.perf_counter()
        corpus = write_synthetic(src, n_docs, seed)
        corpus["writing_seconds"] = round(time.perf_counter() - t, 1)
        base = round(peak_rss_mb(), 1)  # the corpus sample and the interpreter, before the run
        samples = stream_run(src, dst, names, params, n_docs)
    first, last = samples[0], samples[-1]
    return {"input": corpus, "steps": names, "rss_before_run_mb": base, "samples": samples,
            "growth_mb_first_to_last_tenth": round(last["peak_rss_mb"] - first["peak_rss_mb"], 1),
            "goal_peak_rss_mb": 4096, "met": last["peak_rss_mb"] <= 4096}


def report(out: dict) -> None:
    s = out["scale"]
    print(f"{s['input']['documents']:,} synthetic documents ({s['input']['bytes'] / 1e6:.0f} MB of JSONL), "
          f"steps {' -> '.join(s['steps'])}; RSS before the run {s['rss_before_run_mb']} MB")
    print(f"{'docs read':>12} {'peak RSS MB':>12} {'docs/s':>8}")
    for row in s["samples"]:
        print(f"{row['docs_read']:>12,} {row['peak_rss_mb']:>12} {row['docs_per_s']:>8}")
    last = s["samples"][-1]
    print(f"kept {last['kept']:,}, dropped {last['dropped']}; peak grew {s['growth_mb_first_to_last_tenth']} MB "
          f"from the first tenth to the end; goal <= {s['goal_peak_rss_mb']} MB: {'met' if s['met'] else 'NOT met'}")
