"""`tailor eval`: one rung (or model version) scored on one suite, per example and in aggregate.

Answers are written to `.tailor/reports/ID/examples.jsonl` batch by batch, so a crashed or
interrupted eval continues where it stopped; the report id is a hash of what was measured (the
rung with its prompt and model versions, the suite version and the sampling parameters), so the
same question asked twice reuses its answers and a changed prompt gets a new report.

A rung that fails on an example scores that example as wrong (its error is kept in the report).
Every metric's point value carries a 95% confidence interval: for a mean metric the mean and its
Wilson or bootstrap interval, for a corpus metric (macro-F1, micro-F1, BLEU, chrF) the corpus value
and a bootstrap of that corpus value over examples (`mean` is the point value either way, so
readers need not tell them apart). When a classification rung's answers carry a confidence (the
chosen label's probability, `answer.meta["confidence"]`), the report adds its expected calibration
error with a bootstrap interval and the bins for a reliability diagram. Latency is per query at
the batch size used, and cost per 1k queries comes from the measured seconds and the config's
price table.
"""

import hashlib
import json

from tailorlm.errors import TailorError
from tailorlm.eval import metrics as M
from tailorlm.eval import redteam
from tailorlm.eval.stats import corpus_ci, mean_ci
from tailorlm.models.base import GenParams
from tailorlm.progress import native, pair
from tailorlm.store import now

LABEL_METRICS = ("accuracy", "macro_f1", "micro_f1")
CORPUS_METRICS = {"macro_f1", "micro_f1", "bleu", "chrf"}  # their score is not the mean of per-example scores
ECE_BINS = 10
LOWER_IS_BETTER = {"perplexity"}


def report_id(subject: str, rung: dict, suite: dict, params: GenParams) -> str:
    blob = json.dumps({"subject": subject, "rung": rung, "suite": [suite["name"], suite["version"]],
                       "params": vars(params)}, sort_keys=True, default=str)
    return "rep-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def evaluate(project, rung, suite, metrics: list[str] | None = None, params: GenParams | None = None,
             subject: str | None = None, batch_size: int = 8, on_progress=None, fresh: bool = False,
             progress_task: str | None = None) -> dict:
    """Score `rung` on `suite`; returns the report (also written to disk and the store).

    `on_progress(task, done, total)` (tailorlm.progress) counts the examples answered, as `progress_task`
    (default: the subject); a `(done, total)` callback is still taken.

    >>> evaluate(project, rung, load_suite(project), ["accuracy"])["metrics"]["accuracy"]  # doctest: +SKIP
    {'score': 0.64, 'mean': 0.64, 'low': 0.52, 'high': 0.75, 'n': 64, 'method': 'wilson'}
    """
    red = all("checks" in e.meta for e in suite.examples)  # a red-team suite is scored on its checks
    metrics = list(metrics or (["redteam"] if red else project.config.eval.metrics))
    unknown = [m for m in metrics if m not in M.METRICS and m != "perplexity" and not m.startswith("judge_")
               and m not in redteam.METRICS]
    if unknown:
        raise TailorError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(sorted(M.METRICS))}, perplexity, "
                          "judge_rubric, judge_pairwise")
    params = params or default_params(project)
    subject = subject or f"{project.config.name}:{rung.name}"
    on_progress = native(on_progress, pair)
    described = rung.describe()
    rid = report_id(subject, described, suite.describe(), params)
    folder = project.artifacts("reports") / rid
    folder.mkdir(parents=True, exist_ok=True)
    done = {} if fresh else _load_done(folder / "examples.jsonl")
    todo = [e for e in suite.examples if e.id not in done]
    # Batch examples of similar length together: a batch is padded to its longest prompt, and in suite
    # order the padding was 12-20% of the prefill on the example's golden set. The report keeps suite order.
    todo.sort(key=lambda e: sum(len(str(m.get("content") or "")) for m in e.input))
    with open(folder / "examples.jsonl", "w" if fresh else "a", encoding="utf-8") as out:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            for e, a in zip(batch, rung.answer_batch([e.input for e in batch], params, batch_size)):
                row = {"id": e.id, "prediction": a.text, "error": a.error, "latency_s": a.latency_s,
                       "compute_s": a.meta.get("compute_s", a.latency_s), "usage": a.usage.to_dict(),
                       "finish_reason": a.finish_reason, "citations": a.citations,
                       "shots": a.meta.get("shots"), "retrieved": [r.get("path") for r in a.meta.get("retrieved", [])],
                       "confidence": a.meta.get("confidence"), "raw": a.meta.get("raw")}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[e.id] = row
            out.flush()
            if on_progress:
                on_progress(progress_task or subject, len(done), len(suite.examples))
    rows = [done[e.id] for e in suite.examples]
    scores = score(project, suite, [r["prediction"] if not r["error"] else None for r in rows], metrics, rung)
    report = _assemble(project, rid, subject, described, suite, params, rows, scores, metrics)
    from tailorlm.registry.reports import save_report

    save_report(project, report, folder)  # report.json and its row in the store; sets report["path"]
    return report


def default_params(project) -> GenParams:
    """Greedy decoding, with an answer budget that suits the task: a label needs a few tokens."""
    task = project.config.task
    return GenParams(temperature=0.0, max_tokens=12 if task.type == "classification" else 128)


def _load_done(path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash is answered again
            done[row["id"]] = row
    return done


def score(project, suite, preds: list[str | None], metrics: list[str], rung=None) -> dict:
    """{metric: {per_example, score, mean, low, high, n, method}} for the suite's examples."""
    examples = suite.examples
    labels = list(project.config.task.labels) or sorted({e.target for e in examples if e.target})
    out = {}
    for name in metrics:
        if name in LABEL_METRICS:
            refs = [e.target for e in examples]
            if any(r is None for r in refs):
                raise TailorError(f"{name} needs a label or reference on every example of suite {suite.name}")
            extracted = [M.extract_label(p, labels, "first") for p in preds]
            result = M.METRICS[name](extracted, refs, labels=labels)
            result["extracted"] = extracted
        elif name == "perplexity":
            result = _perplexity(rung, examples)
        elif name.startswith("judge_"):
            result = _judge(project, name, examples, preds)
        elif name in redteam.METRICS:
            result = redteam.METRICS[name](project, examples, preds, rung)
        elif name == "schema_valid":  # needs the task's schema, not references
            result = M.schema_valid(preds, schema=project.config.task.json_schema)
        else:
            refs = [e.reference for e in examples]
            if any(r is None for r in refs):
                raise TailorError(f"{name} needs a reference on every example of suite {suite.name}")
            result = M.METRICS[name](preds, refs)
        if "stats" in result:
            ci = corpus_ci(result["stats"], result["from_stats"])
            ci["method"] = "bootstrap (corpus)"
        else:
            ci = mean_ci(result["per_example"])
        entry = {"score": result.get("score", ci["mean"]), "mean": ci["mean"], "low": ci["low"], "high": ci["high"],
                 "n": ci["n"], "method": ci["method"], "per_example": result["per_example"]}
        for extra in ("extracted", "per_label", "labels", "warning", "perplexity", "per_category", "critical_failed"):
            if extra in result:
                entry[extra] = result[extra]
        if name == "judge_rubric":  # people who rated these answers correct the judge (PPI, eval/judge.py)
            from tailorlm.eval.judge import with_human_ratings

            entry = with_human_ratings(project, suite, preds, entry)
        out[name] = entry
    return out


def _perplexity(rung, examples) -> dict:
    gen = getattr(rung, "generator", None)
    if gen is None or not hasattr(gen, "model"):
        raise TailorError("perplexity needs a local model (the rung's generator has no weights here)")
    nlls = []
    for e in examples:
        if not e.reference:
            raise TailorError(f"perplexity needs a reference on every example ({e.id} has none)")
        prepared = rung.prepare(e.input, GenParams())
        nlls.append(M.reference_nll(gen, None, prepared.messages, e.reference))
    result = M.perplexity(nlls)
    return {"per_example": result["per_example"], "score": result["mean_nll"], "perplexity": result["perplexity"]}


def _judge(project, name: str, examples, preds) -> dict:
    from tailorlm.eval.judge import JUDGE_METRICS

    if name not in JUDGE_METRICS:
        raise TailorError(f"unknown judge metric {name!r}; known: {', '.join(JUDGE_METRICS)}")
    return JUDGE_METRICS[name](project, examples, preds)


def _assemble(project, rid, subject, rung, suite, params, rows, scores, metrics) -> dict:
    prices = project.config.prices
    compute = sum(r["compute_s"] for r in rows)
    prompt_tokens = sum(r["usage"]["prompt_tokens"] for r in rows)
    completion_tokens = sum(r["usage"]["completion_tokens"] for r in rows)
    price_table = {"api_input_per_1m": prices.api_input_per_1m, "api_output_per_1m": prices.api_output_per_1m} \
        if rung.get("backend") == "openai" else {"cpu_hour": prices.cpu_hour, "seconds": compute}
    label = next((scores[m] for m in LABEL_METRICS if m in scores), None)
    examples = []
    for i, (e, r) in enumerate(zip(suite.examples, rows)):
        ex = {"id": e.id, "input": e.input, "reference": e.reference, "labels": e.labels, **r,
              "scores": {m: scores[m]["per_example"][i] for m in metrics}}
        if label is not None:
            ex["label"] = label["extracted"][i]
        examples.append(ex)
    aggregate = {m: {k: v for k, v in s.items() if k not in ("per_example", "extracted")} for m, s in scores.items()}
    return {
        "id": rid, "kind": "eval", "subject": subject, "rung": rung, "suite": suite.describe(),
        "params": vars(params), "metrics": aggregate, "primary": metrics[0],
        "errors": sum(1 for r in rows if r["error"]),
        "latency": M.latency_summary([r["latency_s"] for r in rows]),
        "tokens": {"prompt": M.tokens_summary([r["usage"]["prompt_tokens"] for r in rows]),
                   "completion": M.tokens_summary([r["usage"]["completion_tokens"] for r in rows])},
        "throughput": {"seconds": compute, "queries_per_s": len(rows) / compute if compute else None,
                       "completion_tokens_per_s": completion_tokens / compute if compute else None},
        "cost_per_1k": M.cost_per_1k(prompt_tokens, completion_tokens, len(rows), price_table),
        "calibration": calibration(rows, scores), "examples": examples, "created_at": now(),
    }


def calibration(rows: list[dict], scores: dict) -> dict | None:
    """Expected calibration error of the answers' confidences against label correctness, or None.

    Over the examples whose answer carries `confidence` (a failed one has none), in 10 equal-width
    bins, with a percentile bootstrap interval of the ECE over those examples.
    """
    label = next((scores[m] for m in LABEL_METRICS if m in scores), None)
    if label is None:
        return None
    pairs = [(r["confidence"], hit) for r, hit in zip(rows, label["per_example"]) if r.get("confidence") is not None]
    if not pairs:
        return None
    confidences, correct = zip(*pairs)
    result = M.expected_calibration_error(confidences, correct, ECE_BINS)
    ci = corpus_ci(result["stats"], result["from_stats"])
    return {"ece": result["ece"], "low": ci["low"], "high": ci["high"], "n": result["n"], "n_bins": ECE_BINS,
            "bins": result["bins"], "mean_confidence": sum(confidences) / len(confidences),
            "accuracy": sum(correct) / len(correct), "method": f"{ECE_BINS} equal-width bins, bootstrap interval"}


def load_report(project, ref: str) -> dict:
    """An eval report by id (or a unique prefix), or by path to its report.json, as a dict.

    Found through the typed layer (`tailorlm.registry.reports.find`), like every other reader's.
    """
    from tailorlm.registry.reports import find

    return find(project, ref, kind=None if ref.endswith(".json") else "eval").to_dict()
