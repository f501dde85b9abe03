"""Tailor's data pipeline against one built from datatrove's stock blocks, in the same run.

    python benchmarks/data_prepare.py [--max-docs 5000] [--sample 3000] [--repeats 1] [--json]
    python benchmarks/data_prepare.py --docs 1000000 [--no-line-dedup]   # peak RSS of `tailor data prepare` as the input grows

Corpus: real text already on this machine, read offline (`_corpus.py`): every text file under
/usr/share/doc (READMEs, changelogs, NEWS, copyright files; `.gz` decompressed) and the English
man pages /usr/share/man/man[1-8]/*.gz with roff markup stripped crudely. Files that are
binary, not UTF-8, empty, `.so` redirects or over 100 kB are skipped; a seeded shuffle picks
`--max-docs` of the rest. The output states how many documents and bytes were used. Nothing is
written by hand and no duplicate is planted: the duplicates are the real ones (packages from
one source ship the same copyright file; gcloud's alpha, beta and GA man pages differ by a word).

Speed: docs/s of the whole pipeline on the same in-memory documents, corpus loading excluded
from both, after a warm-up run of both on the first `--warmup-docs` documents, best of
`--repeats` runs each (runs alternate between the two). Both sides run in one process:
- Tailor: the library's steps chained as generators: normalize -> exact_dedup -> near_dedup
  (MinHash LSH, word 5-grams, Jaccard 0.8, candidates verified exactly) -> line_dedup ->
  quality -> pii (regex-only, as datatrove's PIIFormatter), over `Record`s of kind `text`.
- datatrove (`_datatrove_baseline.py`): ExactDedupSignature/ExactFindDedups/ExactDedupFilter,
  MinhashDedupSignature/Buckets/Cluster/Filter (stock MinhashConfig: 5-grams, 14 bands x 8),
  SentenceDedup* configured line-level (spans of one line), GopherRepetitionFilter,
  GopherQualityFilter, FineWebQualityFilter, PIIFormatter. One LocalPipelineExecutor per stage
  (tasks=1, workers=1; 14 sequential tasks for the bucket stage), writing signatures to a temp
  folder, as datatrove's examples do; each task deep-copies its steps, as datatrove does, so
  spaCy's blank tokenizer (~0.1 s) is set up per stage. It has no normalize step, so Tailor
  does one step more. `--no-line-dedup` leaves line-level dedup out of both sides.
- Left out of both: language ID (datatrove's LanguageFilter downloads a fastText model at run
  time, impossible offline) and toxicity.

Near-duplicate quality: on a seeded sample of `--sample` documents (exact duplicates removed
first, as the pipeline does), every pair's exact Jaccard of word 5-gram sets (Tailor's
`shingles`) is computed; pairs at >= 0.8 are the truth. Tailor's `NearDedup(threshold=0.8).pairs`
and datatrove's band collisions are scored against it, pair by pair and by co-membership of
clusters, with 95% Wilson intervals.

`--pii-ner N` also times the pii step alone on the first N documents, regex-only against the
same step finding names with each embedded NER model (`benchmarks/pii_names.py` measures how well).

If the ratio is under 1.5 or Tailor's F1 under 0.95 (or with `--profile`), Tailor's run is
profiled with cProfile and the top functions by cumulative time are printed.
"""

import argparse
import cProfile
import datetime
import math
import os
import platform
import pstats
import random
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from _corpus import MAX_BYTES, load_corpus
from _datatrove_baseline import (MINHASH, canonical_text, documents, dropped_by_step, minhash_duplicates,
                                 run_datatrove)
from _neardup_truth import clusters, co_clustered, scores, true_pairs

from tailorlm.data.record import Record
from tailorlm.data.steps import step_class
from tailorlm.data.steps.dedup import NearDedup, shingles

GOAL_RATIO, GOAL_F1 = 1.5, 0.95
THRESHOLD, NGRAM = 0.8, 5


def tailor_steps(line_dedup: bool) -> list[str]:
    return ["normalize", "exact_dedup", "near_dedup", *(["line_dedup"] if line_dedup else []), "quality", "pii"]


# datatrove's PIIFormatter is regex-only, so the comparison runs Tailor's pii step without its NER
# model (`--pii-ner` measures what the names cost).
STEP_PARAMS = {"pii": {"names": "off"}}


def records(docs) -> list[Record]:
    # Fresh each run: steps write to record.meta (duplicate_of ...).
    return [Record(doc_id, "text", {"text": text}, {"source": "bench"}) for doc_id, text in docs]


def run_tailor(recs: list[Record], names: list[str]) -> tuple[list[Record], list]:
    steps = [step_class(n)(**STEP_PARAMS.get(n, {})) for n in names]
    stream = iter(recs)
    for s in steps:
        stream = s(stream)
    return list(stream), steps


def speed(docs, line_dedup: bool, repeats: int, warmup: int) -> dict:
    names = tailor_steps(line_dedup)
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: imports, spaCy, compiled regexes
        run_tailor(records(docs[:warmup]), names)
        run_datatrove(documents(docs[:warmup]), Path(tmp), line_dedup)
    t_runs, d_runs = [], []
    for _ in range(repeats):
        recs = records(docs)
        start = time.perf_counter()
        t_kept, steps = run_tailor(recs, names)
        t_runs.append(time.perf_counter() - start)
        dt_docs = documents(docs)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            d_kept, stage_seconds = run_datatrove(dt_docs, Path(tmp), line_dedup)
            d_runs.append(time.perf_counter() - start)
            d_dropped = dropped_by_step(Path(tmp))
    n = len(docs)
    per_step = [{k: v for k, v in s.summary().items() if k in ("step", "kept", "dropped", "stats")} for s in steps]
    tailor = {"steps": names, "seconds_per_run": [round(s, 3) for s in t_runs],
              "docs_per_s": round(n / min(t_runs), 1), "kept": len(t_kept), "per_step": per_step}
    datatrove = {"stages_seconds_last_run": {k: round(v, 3) for k, v in stage_seconds.items()},
                 "seconds_per_run": [round(s, 3) for s in d_runs], "docs_per_s": round(n / min(d_runs), 1),
                 "kept": len(d_kept), "per_step": d_dropped}
    return {"documents": n, "repeats": repeats, "warmup_docs": warmup, "tailor": tailor, "datatrove": datatrove,
            "ratio_tailor_over_datatrove": round(min(d_runs) / min(t_runs), 2)}


def pii_ner_cost(docs, n_docs: int, repeats: int) -> dict:
    """The pii step alone on the same documents: regex-only against regex plus each NER model."""
    sample = docs[:n_docs]
    chars = sum(len(t) for _, t in sample)
    sides = {"regex only": {"names": "off"}, "ner en-core-web-sm": {"names": "ner", "ner_model": "en-core-web-sm"},
             "ner en-core-web-md (default)": {"names": "ner", "ner_model": "en-core-web-md"}}
    out = {"documents": len(sample), "chars": chars}
    for label, params in sides.items():
        list(step_class("pii")(**params)(records(sample[:20])))  # warm-up: model load
        runs = []
        for _ in range(repeats):
            step = step_class("pii")(**params)
            start = time.perf_counter()
            list(step(records(sample)))
            runs.append(time.perf_counter() - start)
        best = min(runs)
        out[label] = {"seconds": round(best, 3), "docs_per_s": round(len(sample) / best, 1),
                      "chars_per_s": round(chars / best), "found": dict(step.stats)}
    base = out["regex only"]["seconds"]
    for label in list(sides)[1:]:
        out[label]["times_slower_than_regex"] = round(out[label]["seconds"] / base, 1)
    return out


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    mid, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [round((mid - half) / (1 + z * z / n), 4), round((mid + half) / (1 + z * z / n), 4)]


def scored(predicted, truth) -> dict:
    s = scores(predicted, truth)
    s["precision_ci95"] = wilson(s["true_positives"], s["predicted_pairs"])
    s["recall_ci95"] = wilson(s["true_positives"], s["true_pairs"])
    return s


def near_dup_quality(docs, size: int, seed: int) -> dict:
    # Exact duplicates go first, as in the pipeline: they are trivially found and would flatter both.
    first: dict[str, tuple[str, str]] = {}
    for doc_id, text in docs:
        first.setdefault(" ".join(text.casefold().split()), (doc_id, text))  # the earliest copy stays
    distinct = list(first.values())
    sample = random.Random(seed).sample(distinct, min(size, len(distinct)))
    sample = [(str(k), t) for k, (_, t) in enumerate(sample)]  # ids are sample indices
    sets = [shingles(t, NGRAM) for _, t in sample]
    start = time.perf_counter()
    truth = true_pairs(sets, THRESHOLD)
    truth_s = time.perf_counter() - start
    true_clusters = co_clustered(clusters(len(sample), truth))

    nd = NearDedup(threshold=THRESHOLD, ngram=NGRAM)
    list(nd(records(sample)))
    t_pairs = {tuple(sorted((int(a), int(b)))) for a, b in nd.pairs}
    with tempfile.TemporaryDirectory() as tmp:
        d_pairs, d_groups = minhash_duplicates(documents(sample), Path(tmp))
    d_labels = list(range(len(sample)))
    for group in d_groups:
        for i in group:
            d_labels[i] = min(group)
    return {
        "sample_documents": len(sample), "drawn_from": f"{len(distinct)} documents left after exact dedup", "seed": seed,
        "empty_ngram_sets": sum(not s for s in sets), "truth": f"all pairs, exact Jaccard of word {NGRAM}-gram sets >= {THRESHOLD}",
        "truth_seconds": round(truth_s, 2), "true_pairs": len(truth),
        "true_pairs_identical_sets": sum(sets[a] == sets[b] for a, b in truth),
        "true_cluster_pairs": len(true_clusters),
        "tailor": {"pairs": scored(t_pairs, truth),
                   "clusters": scored(co_clustered(clusters(len(sample), t_pairs)), true_clusters)},
        "datatrove": {"note": "band collisions, unverified; its own shingles (spaCy tokens, numbers -> 0, no punctuation)",
                      "pairs": scored(d_pairs, truth), "clusters": scored(co_clustered(d_labels), true_clusters)},
    }


def profile_tailor(docs, line_dedup: bool, top: int = 10) -> list[dict]:
    recs = records(docs)
    prof = cProfile.Profile()
    prof.runcall(run_tailor, recs, tailor_steps(line_dedup))
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])[:top]
    return [{"function": f"{Path(f).name}:{line}({name})", "calls": nc, "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3)}
            for (f, line, name), (_, nc, tt, ct, _) in rows]


def report(out: dict) -> None:
    c, s, q = out["corpus"], out["speed"], out["near_dup"]
    t, d = s["tailor"], s["datatrove"]
    print("Tailor data pipeline vs datatrove: same steps, same documents, same process, same run")
    print(f"corpus: {c['documents']} documents, {c['bytes'] / 1e6:.1f} MB ({c['documents_from_usr_share_doc']} from "
          f"/usr/share/doc, {c['documents_from_man_pages']} man pages), seed {c['seed']}, of {c['files_available']} files; "
          f"skipped: {c['skip_reasons']}")
    print(f"machine: {out['machine']['platform']}, {out['machine']['cpu_count']} CPUs; {out['date']}; "
          f"tailorlm {out['versions']['tailorlm']}, datatrove {out['versions']['datatrove']}")
    print(f"Tailor steps:    {' -> '.join(t['steps'])}")
    print(f"datatrove steps: {' -> '.join(d['stages_seconds_last_run'])}")
    print(f"left out of both: {out['left_out']}")
    print(f"timing: corpus loading excluded; warm-up on {s['warmup_docs']} docs; best of {s['repeats']} run(s) each")
    for name, side in (("Tailor", t), ("datatrove", d)):
        print(f"  {name:<9} {side['docs_per_s']:>8.1f} docs/s  (runs: {side['seconds_per_run']} s)  kept {side['kept']}"
              f" of {s['documents']}")
    verdict = "meets" if s["ratio_tailor_over_datatrove"] >= GOAL_RATIO else "BELOW"
    print(f"  ratio Tailor / datatrove: {s['ratio_tailor_over_datatrove']}x ({verdict} the >= {GOAL_RATIO}x goal)")
    print(f"  datatrove seconds by stage: {d['stages_seconds_last_run']}")
    def lines(p: dict) -> str:
        n = p.get("lines_removed", p.get("stats", {}).get("lines_removed"))
        return f" ({n} lines removed)" if n is not None else ""

    print("  Tailor dropped by step:    " + "; ".join(f"{p['step']} {sum(p['dropped'].values())}{lines(p)}"
                                                  for p in t["per_step"]))
    print("  datatrove dropped by step: " + "; ".join(f"{p['step']} {p['dropped']}{lines(p)}" for p in d["per_step"]))
    print(f"  kept counts differ because the rules differ: {out['why_kept_differs']}")
    print(f"near-dup quality: {q['sample_documents']} docs sampled (seed {q['seed']}) from {q['drawn_from']}; truth = "
          f"{q['truth']}: {q['true_pairs']} true pairs ({q['true_pairs_identical_sets']} with identical sets), "
          f"{q['true_cluster_pairs']} co-clustered pairs")
    for name in ("tailor", "datatrove"):
        for level in ("pairs", "clusters"):
            m = q[name][level]
            print(f"  {name:<9} {level:<8} P {m['precision']:.4f} {m['precision_ci95']}  R {m['recall']:.4f} "
                  f"{m['recall_ci95']}  F1 {m['f1']:.4f}  (predicted {m['predicted_pairs']}, true {m['true_pairs']})")
    verdict = "meets" if q["tailor"]["pairs"]["f1"] >= GOAL_F1 else "BELOW"
    print(f"  Tailor pair F1 {verdict} the >= {GOAL_F1} goal. datatrove: {q['datatrove']['note']}")
    if out.get("pii_ner"):
        p = out["pii_ner"]
        print(f"pii step alone on the first {p['documents']} documents ({p['chars'] / 1e6:.2f} M chars), best of "
              f"{s['repeats']}:")
        for label, side in p.items():
            if isinstance(side, dict):
                slower = f"  {side['times_slower_than_regex']}x the regex-only time" if "times_slower_than_regex" in side else ""
                print(f"  {label:<30} {side['docs_per_s']:>8.1f} docs/s {side['chars_per_s']:>10,} chars/s{slower}  "
                      f"found {side['found']}")
    if out.get("profile"):
        print(f"profile of Tailor's run (cProfile, top {len(out['profile'])} by cumulative time):")
        for row in out["profile"]:
            print(f"  {row['cumtime_s']:>8.3f}s cum {row['tottime_s']:>8.3f}s own {row['calls']:>9} calls  {row['function']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-docs", type=int, default=5000, help="Documents to run through both pipelines.")
    ap.add_argument("--sample", type=int, default=3000, help="Documents in the near-duplicate quality sample.")
    ap.add_argument("--repeats", type=int, default=1, choices=range(1, 11), metavar="1..10",
                    help="Timed runs of each side; the best counts.")
    ap.add_argument("--warmup-docs", type=int, default=200, help="Documents in the untimed warm-up run of each side.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the corpus shuffle and of the sample.")
    ap.add_argument("--no-line-dedup", action="store_true", help="Leave line-level dedup out of both sides.")
    ap.add_argument("--profile", action="store_true", help="Profile Tailor's run even when the goals are met.")
    ap.add_argument("--pii-ner", type=int, default=0, metavar="N",
                    help="Also time the pii step alone on the first N documents: regex-only, and with each NER model.")
    ap.add_argument("--docs", type=int, default=0, metavar="N",
                    help="Instead: peak RSS of `tailor data prepare` over N synthetic documents (_scale_memory.py).")
    ap.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
    args = ap.parse_args()
    if args.docs:
        import json

        from _scale_memory import report as scale_report
        from _scale_memory import scale_memory

        out = {"benchmark": "data_prepare --docs", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
               "scale": scale_memory(args.docs, args.seed, tailor_steps(not args.no_line_dedup), STEP_PARAMS)}
        print(json.dumps(out, indent=1)) if args.json else scale_report(out)
        return

    start = time.perf_counter()
    docs, corpus = load_corpus(args.max_docs, args.seed)
    corpus["loading_seconds"] = round(time.perf_counter() - start, 1)
    corpus["max_bytes_per_document"] = MAX_BYTES
    out = {
        "benchmark": "data_prepare", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "versions": {p: version(p) for p in ("tailorlm", "datatrove", "spacy")},
        "corpus": corpus,
        "left_out": "language ID (datatrove's LanguageFilter downloads a fastText model at run time: not possible "
                    "offline) and toxicity" + ("; line-level dedup (--no-line-dedup)" if args.no_line_dedup else ""),
        "config": {"minhash_datatrove": MINHASH, "near_dedup_tailor": {"threshold": THRESHOLD, "ngram": NGRAM},
                   "exact_dedup_key_both": canonical_text.__doc__.split(".")[0]},
        "why_kept_differs": "datatrove's Gopher filter needs >= 50 words and 2 stop words and counts spaCy tokens "
                            "(punctuation included) for its alphabetic-word ratio; FineWeb's char-dup limit is 0.01 "
                            "(Tailor 0.05) and it adds a newline/word rule; its line dedup drops every repeat of any "
                            "line after the first, Tailor's only lines of >= 10 chars found in >= 3 documents; "
                            "its MinHash keeps unverified band collisions (threshold ~0.72), Tailor verifies J >= 0.8",
    }
    out["speed"] = speed(docs, not args.no_line_dedup, args.repeats, args.warmup_docs)
    out["near_dup"] = near_dup_quality(docs, args.sample, args.seed)
    if args.pii_ner:
        out["pii_ner"] = pii_ner_cost(docs, args.pii_ner, args.repeats)
    below = (out["speed"]["ratio_tailor_over_datatrove"] < GOAL_RATIO or out["near_dup"]["tailor"]["pairs"]["f1"] < GOAL_F1)
    out["goals"] = {"ratio": GOAL_RATIO, "tailor_pair_f1": GOAL_F1, "met": not below}
    if below or args.profile:
        out["profile"] = profile_tailor(docs, not args.no_line_dedup)
    if args.json:
        import json

        print(json.dumps(out, indent=1))
    else:
        report(out)


if __name__ == "__main__":
    main()
