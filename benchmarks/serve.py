"""`tailor serve` under 1-64 concurrent clients, against the in-process fixed batch of 16 in the same run.

    python benchmarks/serve.py [--requests 32] [--max-tokens 64] [--clients 1,4,16,64] [--max-queue 32]
                               [--dtype float32|bfloat16] [--engines] [--json]

Baseline: the generator answering the requests in-process, 16 at a time, each batch run to
completion (`generate_batch(batch_size=16)`, no HTTP): what a perfectly packed batch of 16 gives.
Then `tailor serve` in its own process, as it is deployed (uvicorn on loopback, continuous batching,
max batch 16, `--max-queue`), is driven by N threads, each with the official openai client,
streaming with usage. (Clients in the server's own process would share its GIL and slow its decode
loop with their chunk parsing: a cost no deployment has.) Each setting answers max(N, min(requests,
8 N)) requests. Throughput is completion tokens per second of wall time; TTFT is the time from first
sending a request to its first content chunk, waits after a 429 included. A client that gets 429
sleeps for its Retry-After and sends again; the 429s are counted, and the server's peak resident
memory (VmHWM) is read after each setting. Every request is greedy with the same max_tokens, so all
settings generate the same answers; EOS ends a row early.

`--engines` also compares decode loops in-process on the same 16 prompts, alternating, twice:
Tailor's (`DecodeBatch`, through `generate_batch`) and transformers' continuous batching
(`model.generate_batch`, paged attention).
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


def fixed(gen, batch, max_tokens: int) -> dict:
    start = time.perf_counter()
    tokens = sum(c.usage.completion_tokens for c in gen.generate_batch(batch, GenParams(max_tokens=max_tokens), batch_size=16))
    elapsed = time.perf_counter() - start
    return {"clients": 0, "requests": len(batch), "completion_tokens": tokens, "seconds": round(elapsed, 2),
            "tokens_per_s": round(tokens / elapsed, 1)}


def engines(gen, batch, max_tokens: int) -> list[dict]:
    """Tailor's decode loop and transformers' continuous batching on the same prompts, alternating."""
    from transformers import GenerationConfig

    ids = [gen.encode(m) for m in batch]
    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=sorted(gen.eos_ids),
                              pad_token_id=gen.pad_id)
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        ours = gen.generate_batch(batch, GenParams(max_tokens=max_tokens), batch_size=len(batch))
        elapsed = time.perf_counter() - start
        runs.append({"engine": "tailor", "tokens_per_s": round(sum(c.usage.completion_tokens for c in ours) / elapsed, 1)})
        start = time.perf_counter()
        theirs = gen.model.generate_batch(ids, generation_config=config, warmup=False)
        elapsed = time.perf_counter() - start
        texts = [gen.tokenizer.decode(r.generated_tokens, skip_special_tokens=True) for r in theirs.values()]
        runs.append({"engine": "transformers", "tokens_per_s": round(sum(len(r.generated_tokens) for r in theirs.values()) / elapsed, 1),
                     "same_answers": sum(t == c.text for t, c in zip(texts, ours))})
    return runs


def concurrent(base_url: str, batch, clients: int, max_tokens: int) -> dict:
    from openai import OpenAI, RateLimitError

    todo: queue.Queue = queue.Queue()
    for m in batch:
        todo.put(m)
    ttft, tokens, refused, lock = [], [0], [], threading.Lock()
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
            while True:
                try:
                    events = api.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens,
                                                         temperature=0, stream=True, stream_options={"include_usage": True})
                    break
                except RateLimitError as e:  # the queue is full: wait as told, then send again
                    with lock:
                        refused.append(e.response.headers.get("retry-after"))
                    time.sleep(float(e.response.headers.get("retry-after") or 1))
            for event in events:
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
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    # The clients share the server's 2 cores: the CPU seconds they used are a cost no remote client puts on it.
    client_cpu = time.process_time() - cpu
    ttft.sort()
    return {"clients": clients, "requests": len(batch), "completion_tokens": tokens[0], "seconds": round(elapsed, 2),
            "client_cpu_s": round(client_cpu, 2),
            "tokens_per_s": round(tokens[0] / elapsed, 1), "ttft_p50_s": round(statistics.median(ttft), 3),
            "ttft_p95_s": round(ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))], 3),
            "refused_429": len(refused), "retry_after": sorted(set(refused), key=str)}


@contextlib.contextmanager
def served(root, max_queue: int, batch_wait_ms: float | None = None):
    """(`tailor serve` on a free loopback port, its pid), until the block ends; `batch_wait_ms` None keeps
    the server's own default burst window."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tailorlm.cli", "serve", "-p", str(root), "--port", str(port),
                             "--max-batch", "16", "--max-queue", str(max_queue),
                             *(["--batch-wait-ms", str(batch_wait_ms)] if batch_wait_ms is not None else [])],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"tailor serve exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1", proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--max-queue", type=int, default=32, help="the server's queue: 64 clients overflow 16 + 32")
    ap.add_argument("--batch-wait-ms", type=float, default=None,
                    help="tailor serve's --batch-wait-ms (default: the server's own)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights dtype of the baseline and the server (models.generator.dtype)")
    ap.add_argument("--engines", action="store_true", help="also Tailor's decode loop vs transformers' generate_batch")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import gc

    import httpx
    import torch

    from tailorlm.project import init_project

    gen = LocalGenerator.load(MODEL, dtype=args.dtype)
    batch = prompts(max(args.requests, 64))
    gen.generate(batch[0], GenParams(max_tokens=8))  # warm-up: first-call allocations
    base = fixed(gen, batch[: args.requests], args.max_tokens)
    compared = engines(gen, batch[:16], args.max_tokens) if args.engines else []
    if not args.json:
        print(json.dumps({"fixed16": base, "engines": compared}), flush=True)
    device = str(gen.device)
    del gen
    gc.collect()
    project = init_project(tempfile.mkdtemp(prefix="tailor-bench-"), name="bench", description="Benchmark.")
    cfg = project.root / "tailor.yaml"  # the server loads the same weights as the baseline
    text = cfg.read_text()
    line = "    model: smollm2-135m-instruct "
    if line not in text:  # a silent miss would serve float32 against a bfloat16 baseline
        raise SystemExit(f"{cfg}: no `{line.strip()}` line under models.generator to set the dtype beside")
    cfg.write_text(text.replace(line, f"    dtype: {args.dtype}\n{line}", 1))
    runs = []
    with served(project.root, args.max_queue, args.batch_wait_ms) as (url, pid):
        concurrent(url, batch[:1], 1, 8)  # warm-up through the server
        for c in map(int, args.clients.split(",")):
            run = concurrent(url, batch[: max(c, min(args.requests, 8 * c))], c, args.max_tokens)
            run["ratio_vs_fixed16"] = round(run["tokens_per_s"] / base["tokens_per_s"], 2)
            run["server_peak_rss_mb"] = peak_rss_mb(pid)
            runs.append(run)
            if not args.json:
                print(json.dumps(run), flush=True)  # a long run shows each setting as it finishes
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics").text
    sizes = [ln for ln in metrics.splitlines() if ln.startswith("tailor_batch_size_sum") or ln.startswith("tailor_batch_size_count")]
    result = {"benchmark": "serve", "model": f"{MODEL} ({args.dtype})", "device": device, "threads": torch.get_num_threads(),
              "machine": platform.machine(), "max_tokens": args.max_tokens, "max_queue": args.max_queue,
              "fixed16": base, "engines": compared, "served": runs, "joins": sizes}
    if args.json:
        print(json.dumps(result))
        return
    print(f"fixed batch of 16 (in-process): {base['tokens_per_s']} tokens/s "
          f"({base['completion_tokens']} tokens in {base['seconds']} s)")
    for e in compared:
        print(f"engine {e['engine']}: {e['tokens_per_s']} tokens/s" + (f" ({e['same_answers']}/16 answers as Tailor's)"
                                                                        if "same_answers" in e else ""))
    for r in runs:
        print(f"{r['clients']:>2} clients, {r['requests']} requests: {r['tokens_per_s']} tokens/s "
              f"({r['ratio_vs_fixed16']}x fixed 16), TTFT p50 {r['ttft_p50_s']} s p95 {r['ttft_p95_s']} s, "
              f"{r['refused_429']} x 429 (Retry-After {r['retry_after']}), server peak RSS {r['server_peak_rss_mb']} MB, "
              f"clients' CPU {r['client_cpu_s']} s")
    print("rows joining together: " + ", ".join(sizes))


if __name__ == "__main__":
    main()
