"""`tailor serve --check`: does the server answer exactly what eval measured? (train/serve parity)

An eval report (`.tailor/reports/<id>/report.json`) records, for its subject (a served model name
such as `support:sft`), every golden example's input messages and the prediction eval scored, at
temperature 0. Replaying those inputs through the server at temperature 0 must give the same
texts; any difference (another prompt, chat template, tokenizer, adapter or stop rule on the
serving path) is a parity bug, and every mismatch is listed.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tailorlm.errors import TailorError


def find_report(project, ref: str | None = None) -> dict:
    """A report by id, unique id prefix or report.json path; the newest eval report when `ref` is None.

    Both come from the typed layer (`tailorlm.registry.reports`), so "newest" is the same report that
    `tailor reports list` shows last and `advise` reads, not the file touched last.
    """
    from tailorlm.eval.runner import load_report
    from tailorlm.registry.reports import latest

    if ref:
        return load_report(project, ref)
    report = latest(project, "eval")
    if report is None:
        raise TailorError("no eval report to check against: run `tailor eval` first (or pass --report)")
    return report.to_dict()


def check_parity(project, report: str | Path | None, base_url: str, api_key: str | None = None,
                 concurrency: int = 1) -> dict:
    """Replay a report's examples through the server at `base_url` and compare outputs exactly.

    `concurrency` > 1 sends requests side by side, so the server batches them as it would in
    production; at 1, each example is decoded alone.

    >>> check_parity(project, None, "http://127.0.0.1:8000/v1")["mismatched"]  # doctest: +SKIP
    0
    """
    from openai import OpenAI

    data = find_report(project, str(report) if report else None)
    model = data["subject"]
    params = data.get("params") or {}
    if params.get("temperature", 0) != 0:
        raise TailorError(f"{data['path']}: the report was sampled at temperature {params['temperature']}; "
                          "only temperature-0 reports can be replayed exactly")
    client = OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=3, timeout=600)
    args = {"model": model, "temperature": 0}
    if params.get("max_tokens"):
        args["max_tokens"] = params["max_tokens"]
    if params.get("stop"):
        args["stop"] = params["stop"]
    examples = [ex for ex in data["examples"] if not ex.get("error")]  # a failed example has nothing to match

    def replay(example: dict) -> dict:
        served = client.chat.completions.create(messages=example["input"], **args).choices[0].message.content or ""
        return {"id": example["id"], "match": served == example["prediction"], "expected": example["prediction"],
                "served": served}

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        results = list(pool.map(replay, examples))
    mismatches = [{k: r[k] for k in ("id", "expected", "served")} for r in results if not r["match"]]
    return {"report": data["id"], "path": data["path"], "subject": model, "n": len(results),
            "matched": len(results) - len(mismatches), "mismatched": len(mismatches),
            "skipped_errors": len(data["examples"]) - len(examples), "mismatches": mismatches}
