"""`tailor serve` throughput under concurrent clients, against sequential generation in the same run.

    python benchmarks/serve.py [--requests 32] [--max-tokens 64] [--clients 1,4,16] [--json]

Baseline: the generator answering the requests one at a time, in-process (no HTTP).
Then `tailor serve` in its own process, as it is deployed (uvicorn on loopback, dynamic batching on),
is driven by N threads, each with the official openai client, streaming with usage, until all
requests are answered. (Clients in the server's own process would share its GIL and slow its decode
loop with their chunk parsing: a cost no deployment has.) Throughput is
completion tokens per second of wall time; TTFT is the time from sending a request to its first
content chunk. Every request is greedy with the same max_tokens, so all settings generate the
same answers; EOS ends a row early.
"""

import argparse
import contextlib
import json
import platform
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from generate import TOPICS  # the prompts of benchmarks/generate.py

from tailorlm.models.base import GenParams
from tailorlm.models.local import LocalGenerator

MODEL = "smollm2-135m-instruct"


def prompts(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Explain {TOPICS[i % len(TOPICS)]} in a short paragraph."}] for i in range(n)]


def sequential(gen, batch, max_tokens: int) -> dict:
    start = time.perf_counter()
    tokens = sum(gen.generate(m, GenParams(max_tokens=max_tokens)).usage.completion_tokens for m in batch)
    elapsed = time.perf_counter() - start
    return {"clients": 0, "completion_tokens": tokens, "seconds": round(elapsed, 2), "tokens_per_s": round(tokens / elapsed, 1)}


def concurrent(base_url: str, batch, clients: int, max_tokens: int) -> dict:
    from openai import OpenAI

    todo: queue.Queue = queue.Queue()
    for m in batch:
        todo.put(m)
    ttft, tokens, lock = [], [0], threading.Lock()
    # Clients are made before the clock starts, as a long-lived application would hold them; then
    # all threads start together.
    apis = [OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600) for _ in range(clients)]
    go = threading.Barrier(clients + 1)

    def client(api):
        go.wait()
        while True:
            try:
                messages = todo.get_nowait()
            except queue.Empty:
                return
            sent, first, used = time.perf_counter(), None, 0
            for event in api.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}):
                if first is None and event.choices and event.choices[0].delta.content:
                    first = time.perf_counter() - sent
                if event.usage:
                    used = event.usage.completion_tokens
            with lock:
                ttft.append(first)
                tokens[0] += used

    threads = [threading.Thread(target=client, args=(api,)) for api in apis]
    for t in threads:
        t.start()
    go.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ttft.sort()
    return {"clients": clients, "completion_tokens": tokens[0], "seconds": round(elapsed, 2),
            "tokens_per_s": round(tokens[0] / elapsed, 1), "ttft_p50_s": round(statistics.median(ttft), 3),
            "ttft_p95_s": round(ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))], 3)}


@contextlib.contextmanager
def served(root):
    """`tailor serve` on a free loopback port, until the block ends."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tailorlm.cli", "serve", "-p", str(root), "--port", str(port),
                             "--max-batch", "16"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"tailor serve exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import gc

    import httpx
    import torch

    from tailorlm.project import init_project

    gen = LocalGenerator.load(MODEL)
    batch = prompts(args.requests)
    gen.generate(batch[0], GenParams(max_tokens=8))  # warm-up: first-call allocations
    base = sequential(gen, batch, args.max_tokens)
    device = str(gen.device)
    del gen
    gc.collect()
    project = init_project(tempfile.mkdtemp(prefix="tailor-bench-"), name="bench", description="Benchmark.")
    runs = []
    with served(project.root) as url:
        concurrent(url, batch[:1], 1, 8)  # warm-up through the server
        for c in map(int, args.clients.split(",")):
            run = concurrent(url, batch, c, args.max_tokens)
            run["ratio_vs_sequential"] = round(run["tokens_per_s"] / base["tokens_per_s"], 2)
            runs.append(run)
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics").text
    sizes = [ln for ln in metrics.splitlines() if ln.startswith("tailor_batch_size_sum") or ln.startswith("tailor_batch_size_count")]
    result = {"benchmark": "serve", "model": f"{MODEL} (fp32)", "device": device, "threads": torch.get_num_threads(),
              "machine": platform.machine(), "requests": args.requests, "max_tokens": args.max_tokens,
              "sequential": base, "served": runs, "batches": sizes}
    if args.json:
        print(json.dumps(result))
        return
    print(f"sequential (in-process, one at a time): {base['tokens_per_s']} tokens/s "
          f"({base['completion_tokens']} tokens in {base['seconds']} s)")
    for r in runs:
        print(f"{r['clients']:>2} clients: {r['tokens_per_s']} tokens/s ({r['completion_tokens']} tokens in {r['seconds']} s), "
              f"TTFT p50 {r['ttft_p50_s']} s p95 {r['ttft_p95_s']} s, ratio vs sequential {r['ratio_vs_sequential']}x")
    print("batches: " + ", ".join(sizes))


if __name__ == "__main__":
    main()
