"""Workbench page times on a busy project: 10k traces (1k with feedback) and 20 eval reports.

The issue's aim: the overview in <= 300 ms of server time. Each page is requested over real HTTP on
loopback 20 times after one warm-up; the server time is the app's own `Server-Timing` header (the
request through the UI's middleware, page built and rendered), and the whole HTTP round trip is
printed beside it. The warm-up's own server time is kept as `first_ms`: on the overview it includes
working out the advice (`tailor advise`'s decision), which later requests reuse until the project
changes. The same page on an empty project, measured in the same run, is the baseline.

    python benchmarks/ui.py [--traces 10000] [--reports 20] [--json]
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

PAGES = ["/", "/data", "/reports", "/review/pairs", "/queue", "/judge", "/runs", "/api/overview"]


def busy_project(root: Path, traces: int, reports: int):
    from tailorlm.eval.runner import evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.base import PromptRung
    from tailorlm.models.base import Completion, Usage
    from tailorlm.project import init_project
    from tailorlm.store import now

    project = init_project(root, name="busy")
    rows = [{"id": f"q{i}", "input": [{"role": "user", "content": f"question {i} about the product"}], "reference": "yes"}
            for i in range(50)]
    (root / "suite.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = load_suite(project, "suite.jsonl")

    class Echo:
        name = "echo"

        def generate(self, messages, params=None):
            return Completion("yes" if len(messages[-1]["content"]) % 2 else "no", "stop", Usage(5, 1), "echo")

        def generate_batch(self, batch, params=None, batch_size=8):
            return [self.generate(m) for m in batch]

    for n in range(reports):
        evaluate(project, PromptRung(Echo(), system=f"variant {n}", name=f"v{n}"), suite, ["exact_match"], subject=f"busy:v{n}")
    sa = project.store._sa
    with project.store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO traces (id, model, request, response, status, latency_ms, prompt_tokens, "
                             "completion_tokens, created_at, endpoint) VALUES (:id, 'busy', :rq, :rs, 200, 12.5, 9, 3, :t, "
                             "'/v1/chat/completions')"),
                     [{"id": f"tr{i}", "t": now(),
                       "rq": json.dumps({"model": "busy", "messages": [{"role": "user", "content": f"help with order {i}"}]}),
                       "rs": json.dumps({"choices": [{"message": {"role": "assistant", "content": f"answer {i}"}}]})}
                      for i in range(traces)])
        conn.execute(sa.text("INSERT INTO feedback (id, trace_id, kind, value, comment, created_at) "
                             "VALUES (:id, :tr, 'thumbs', :v, NULL, :t)"),
                     [{"id": f"fb{i}", "tr": f"tr{i * 10}", "v": "down" if i % 3 else "up", "t": now()}
                      for i in range(traces // 10)])
    return project


def time_pages(project, repeat: int = 20) -> dict:
    import httpx

    from tailorlm.serve.server import running
    from tailorlm.ui.app import create_ui_app

    out = {}
    with running(create_ui_app(project)) as url:
        client = httpx.Client(base_url=url.removesuffix("/v1"), timeout=120)
        for page in PAGES:
            first = client.get(page)
            assert first.status_code == 200, page
            times, server = [], []
            for _ in range(repeat):
                started = time.perf_counter()
                r = client.get(page)
                times.append((time.perf_counter() - started) * 1000)
                server.append(float(r.headers["server-timing"].partition("dur=")[2]))
            times.sort()
            server.sort()
            out[page] = {"median_ms": round(statistics.median(server), 1), "p95_ms": round(server[int(0.95 * (len(server) - 1))], 1),
                         "http_median_ms": round(statistics.median(times), 1),
                         "first_ms": float(first.headers["server-timing"].partition("dur=")[2])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from tailorlm.project import init_project

    with tempfile.TemporaryDirectory() as tmp:
        busy = time_pages(busy_project(Path(tmp) / "busy", args.traces, args.reports))
        empty = time_pages(init_project(Path(tmp) / "empty", name="empty"))
    result = {"traces": args.traces, "reports": args.reports, "busy": busy, "empty": empty,
              "ratio_busy_to_empty": {p: round(busy[p]["median_ms"] / max(empty[p]["median_ms"], 0.01), 2) for p in PAGES},
              "overview_target_ms": 300, "overview_meets_target": busy["/"]["median_ms"] <= 300}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.traces} traces, {args.reports} reports; server median (p95) ms, empty project as baseline")
    for p in PAGES:
        print(f"  {p:<16} busy {busy[p]['median_ms']:>7} ({busy[p]['p95_ms']}, first {busy[p]['first_ms']})   "
              f"empty {empty[p]['median_ms']:>6}   x{result['ratio_busy_to_empty'][p]}   "
              f"(HTTP round trip {busy[p]['http_median_ms']} ms)")
    print(f"overview: {busy['/']['median_ms']} ms vs target 300 ms: {'meets' if result['overview_meets_target'] else 'misses'}")


if __name__ == "__main__":
    main()
