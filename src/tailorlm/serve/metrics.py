"""`GET /metrics`: the server's counters in Prometheus' text exposition format (version 0.0.4).

Requests by endpoint, model (names that routed to no model share the value `other`) and status; tokens by model and kind; request latency and time to
first token as histograms; queue depth, rows decoding and batch sizes. A few dozen lines of our own
instead of a client library: the server needs only counters, gauges and fixed-bucket histograms.
"""

import threading
from bisect import bisect_left
from collections import defaultdict

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
UNKNOWN = "other"  # the model label of every request whose name did not route to a model


def _labels(labels: tuple) -> str:
    def esc(value) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}" if labels else ""


class _Histogram:
    def __init__(self, buckets):
        self.buckets, self.counts, self.sum, self.n = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        i = bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.n += 1

    def lines(self, name: str, labels: tuple) -> list[str]:
        out, total = [], 0
        for bound, count in zip(self.buckets, self.counts):
            total += count
            out.append(f"{name}_bucket{_labels(labels + (('le', bound),))} {total}")
        out.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {self.n}")
        out += [f"{name}_sum{_labels(labels)} {self.sum:.6f}", f"{name}_count{_labels(labels)} {self.n}"]
        return out


class Metrics:
    """Thread-safe counters for one server; `render()` is the /metrics body.

    >>> m = Metrics(); m.tokens("support:rag", 120, 35)
    >>> "tailor_tokens_total" in m.render()
    True
    """

    def __init__(self, gauges: dict | None = None):
        self.gauges = gauges or {}  # name -> (help, callable returning the current value)
        self._lock = threading.Lock()
        self._requests: dict[tuple, int] = defaultdict(int)
        self._tokens: dict[tuple, int] = defaultdict(int)
        self._latency: dict[tuple, _Histogram] = {}
        self._ttft: dict[tuple, _Histogram] = {}
        self._batches = _Histogram(BATCH_BUCKETS)
        self._models: set[str] = set()  # names that routed to a model: the only ones that get their own series

    def served(self, model: str) -> None:
        """Give `model` its own label value: the gateway calls this once a name has routed to a model
        (served names are bounded by the project; names clients make up are not)."""
        with self._lock:
            self._models.add(model)

    def request(self, endpoint: str, model: str, status: int, latency_s: float) -> None:
        with self._lock:
            # Any other name (a typo, a probe's random names, a 404) shares one series, as unknown paths do.
            model = model if not model or model in self._models else UNKNOWN
            self._requests[(("endpoint", endpoint), ("model", model), ("status", status))] += 1
            self._latency.setdefault((("endpoint", endpoint),), _Histogram(LATENCY_BUCKETS)).observe(latency_s)

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        with self._lock:
            self._tokens[(("model", model), ("type", "prompt"))] += prompt
            self._tokens[(("model", model), ("type", "completion"))] += completion

    def first_token(self, model: str, seconds: float) -> None:
        with self._lock:
            self._ttft.setdefault((("model", model),), _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, size: int) -> None:
        with self._lock:
            self._batches.observe(size)

    def render(self) -> str:
        with self._lock:
            out = _family("tailor_requests_total", "counter", "Requests answered, by endpoint, model and HTTP status.",
                          [f"tailor_requests_total{_labels(k)} {v}" for k, v in sorted(self._requests.items(), key=str)])
            out += _family("tailor_tokens_total", "counter", "Tokens processed, by model and type (prompt, completion).",
                           [f"tailor_tokens_total{_labels(k)} {v}" for k, v in sorted(self._tokens.items())])
            for name, help_, hists in (
                ("tailor_request_latency_seconds", "Time from request to the last byte of the answer.", self._latency),
                ("tailor_time_to_first_token_seconds", "Time from request to the first generated text.", self._ttft),
            ):
                out += _family(name, "histogram", help_, [ln for k, h in sorted(hists.items()) for ln in h.lines(name, k)])
            out += _family("tailor_batch_size", "histogram", "Rows decoded together by the local batcher.",
                           self._batches.lines("tailor_batch_size", ()))
        for name, (help_, value) in self.gauges.items():
            out += _family(name, "gauge", help_, [f"{name} {value()}"])
        return "\n".join(out) + "\n"


def _family(name: str, kind: str, help_: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]
