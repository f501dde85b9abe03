"""Embedder runtimes side by side, taking turns: chunks/s of embedding and of a whole index build.

    apt-get install debian-faq debian-reference-en
    python benchmarks/embed.py [--runtimes torch,onnx-int8] [--chunks 256] [--rounds 3] [--builds 1] [--json]

`benchmarks/rag.py` builds each runtime's index once, one after the other, so on a shared machine the
two sides of its speed ratio can run under different loads. Here the runtimes alternate (A, B, A, B, ...)
on the same real chunks (the Debian FAQ and Reference, chunked as `tailor rag index` chunks them), so a
change of load falls on both; the figure is the median per runtime and the ratio of medians.

- embedding: `embedder.embed` over the first `--chunks` chunk texts, `--rounds` times per runtime;
- build: `RagIndex.build` of the whole corpus into a fresh table (chunking, embedding, writing, BM25
  indexes), `--builds` times per runtime: what a user waits for;
- agreement: the cosine of each runtime's vectors to the first runtime's, on the same chunks.
"""

import sys

sys.path.append(sys.path.pop(0))  # this folder's datasets.py must not shadow the `datasets` package

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _rag_golden import debian_golden  # noqa: E402

from tailorlm.config import EmbedderConfig, RagConfig  # noqa: E402
from tailorlm.rag.index import RagIndex, index_settings  # noqa: E402


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtimes", default="torch,onnx-int8", help="the first is the baseline")
    ap.add_argument("--chunks", type=int, default=256, help="chunks embedded per round")
    ap.add_argument("--rounds", type=int, default=3, help="embedding rounds per runtime, alternating")
    ap.add_argument("--builds", type=int, default=1, help="whole index builds per runtime, alternating (0: none)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from tailorlm.models import get_embedder

    runtimes = args.runtimes.split(",")
    docs, _, about = debian_golden()
    settings = index_settings(EmbedderConfig(), RagConfig())
    embedders = {r: get_embedder(EmbedderConfig(runtime=r)) for r in runtimes}
    with tempfile.TemporaryDirectory(prefix="tailor-embed-chunks-") as tmp:  # the texts the index would embed
        chunker = RagIndex(tmp, embedders[runtimes[0]], settings)
        texts = [row["embed_text"] for d in docs for row in chunker._chunk(d)][: args.chunks]
    vectors = {r: np.asarray(e.embed(texts[:8])) for r, e in embedders.items()}  # warm-up
    out = {"corpus": about["corpus"], "chunks": len(texts), "load_avg_start": os.getloadavg(), "runtimes": {}}
    embed_rate = {r: [] for r in runtimes}
    loads = []
    for _ in range(args.rounds):
        for r, e in embedders.items():
            loads.append(os.getloadavg()[0])
            vecs, seconds = timed(e.embed, texts)
            vectors[r] = np.asarray(vecs, dtype=np.float32)
            embed_rate[r].append(len(texts) / seconds)
    build_rate = {r: [] for r in runtimes}
    with tempfile.TemporaryDirectory(prefix="tailor-embed-bench-") as tmp:
        for i in range(args.builds):
            for r, e in embedders.items():
                loads.append(os.getloadavg()[0])
                index = RagIndex(str(Path(tmp) / f"{r}-{i}"), e, settings)
                built, seconds = timed(index.build, docs)
                build_rate[r].append(built["chunks_added"] / seconds)
    base = vectors[runtimes[0]]
    for r in runtimes:
        v = vectors[r]
        cos = np.sum(v * base, axis=1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(base, axis=1))
        entry = {"embed_chunks_per_s": embed_rate[r], "embed_median": statistics.median(embed_rate[r]),
                 "cosine_to_" + runtimes[0]: {"mean": float(cos.mean()), "min": float(cos.min())}}
        if build_rate[r]:
            entry |= {"build_chunks_per_s": build_rate[r], "build_median": statistics.median(build_rate[r])}
        out["runtimes"][r] = entry
    first = out["runtimes"][runtimes[0]]
    for r in runtimes[1:]:
        e = out["runtimes"][r]
        e["embed_ratio"] = e["embed_median"] / first["embed_median"]
        if "build_median" in e:
            e["build_ratio"] = e["build_median"] / first["build_median"]
    out["load_avg_during"] = [min(loads), max(loads)]
    out["load_avg_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{out['corpus']}: {len(texts)} chunks per embedding round; load average {min(loads):.1f}-{max(loads):.1f}")
    for r, e in out["runtimes"].items():
        line = f"  {r:<10} embed {e['embed_median']:.1f} chunks/s"
        if "build_median" in e:
            line += f", whole build {e['build_median']:.1f} chunks/s"
        if "embed_ratio" in e:
            line += f"  ({e['embed_ratio']:.2f}x embed" + (f", {e['build_ratio']:.2f}x build" if "build_ratio" in e else "") + ")"
        c = e["cosine_to_" + runtimes[0]]
        print(line + f"; cosine to {runtimes[0]} mean {c['mean']:.3f} min {c['min']:.3f}")


if __name__ == "__main__":
    main()
