"""What the workbench's read-only pages show, gathered from the store and the artifacts tree.

Each function returns plain data (also served as JSON by the API), so the templates only lay it out.
"""

from __future__ import annotations

import json
from collections import Counter

from tailorlm.errors import TailorError


def newest_ladder(project) -> dict | None:
    from tailorlm.registry.reports import latest  # the one way every reader finds the newest ladder

    ladder = latest(project, "ladder")
    return ladder.to_dict() if ladder else None


def ladder_bars(ladder: dict, width: int = 480, row_h: int = 26) -> list[dict]:
    """Geometry for the overview's SVG chart: one bar per rung with its interval as a whisker."""
    bars = []
    for i, r in enumerate(ladder["rungs"]):
        q = r["quality"]
        bars.append({"name": r["name"], "y": i * row_h, "w": q["mean"] * width, "lo": q["low"] * width,
                     "hi": q["high"] * width, "mean": q["mean"]})
    return bars


def overview(project) -> dict:
    """The project, its task, dataset versions, the newest ladder, the aliases and what advise says next."""
    from tailorlm.data.versions import list_versions
    from tailorlm.registry.resolve import aliases as all_aliases, summary

    cfg = project.config
    ladder = newest_ladder(project)
    aliases = [{k: getattr(a, k) for k in ("scope", "name", "alias", "target", "updated_at")}
               for a in all_aliases(project)]
    registered = summary(project)  # traces, feedback and runs are the store's own rows: no registry artifact
    counts = {t: registered[t][0] if t in registered else project.store.count(t)
              for t in ("traces", "feedback", "reports", "runs", "model_versions")}
    out = {"name": cfg.name, "task": cfg.task.model_dump(mode="json"), "datasets": list_versions(project),
           "aliases": aliases, "counts": counts, "ladder": None}
    if ladder:
        out["ladder"] = {k: ladder.get(k) for k in ("id", "suite", "primary", "rungs", "recommendation", "created_at")}
    out["advice"] = next_step(project)
    return out


_ADVICE: dict = {}  # project root -> (what the advice was read from, the advice)


def _advice_inputs(project) -> tuple:
    """What the advice depends on, cheaply: tailor.yaml, the source files, the dataset versions and the reports."""
    from tailorlm.paths import inside
    from tailorlm.registry.resolve import summary

    files = [project.root / "tailor.yaml"] + [inside(project.root, s.path) for s in project.config.sources]
    stats = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) if f.exists() else (str(f),) for f in files)
    registered = summary(project)
    return stats + tuple(registered[t] for t in ("dataset_versions", "reports", "aliases"))


def next_step(project) -> dict:
    """What `tailor advise` says next: the advisor's decision (`advise.advisor.decide` on
    `advise.facts.gather`), without its cost table (`tailor advise` prices it).

    Gathering the facts reads every prepared record, so the advice is kept until tailor.yaml, a
    source file, a dataset version, a report or an alias changes. An error (a broken source) is
    shown instead of the advice, as `tailor advise` would say it.
    """
    from tailorlm.advise.advisor import decide
    from tailorlm.advise.facts import gather

    key = _advice_inputs(project)
    cached = _ADVICE.get(project.root)
    if cached and cached[0] == key:
        return cached[1]
    try:
        advice = decide(gather(project))
        out = {k: advice[k] for k in ("rung", "action", "reasons", "missing", "next_steps", "warnings")}
        out["serve"] = advice.get("serve")
    except TailorError as e:
        out = {"error": str(e)}
    _ADVICE[project.root] = (key, out)
    return out


def dataset(project, ref: str, reason: str | None = None, limit: int = 200) -> dict:
    """A version's funnel (read -> each step -> kept), its quarantine (filtered by reason) and a token-length histogram."""
    from tailorlm.data.versions import load_records, resolve

    m = resolve(project, ref)
    funnel, left = [{"step": "read", "count": m["accounting"]["read"]}], m["accounting"]["read"]
    for s in m.get("steps", []):
        left = s.get("kept", left)
        funnel.append({"step": s["step"], "count": left, "dropped": s.get("dropped", {})})
    quarantine = []
    qpath = project.root / m["path"] / "quarantine.jsonl"
    reasons: Counter = Counter()
    if qpath.exists():
        for line in qpath.read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            reasons[q.get("reason", "?")] += 1
            if reason in (None, "", q.get("reason")) and len(quarantine) < limit:
                meta = q.get("meta") or {}
                where, line_no = q.get("file") or meta.get("path") or "", q.get("line") or meta.get("line")
                text = json.dumps(q.get("record", q.get("text", "")), ensure_ascii=False)[:400]
                quarantine.append({"step": q.get("step"), "reason": q.get("reason"),
                                   "where": f"{where}:{line_no}" if line_no else where, "text": text})
    tokens = [r.meta.get("tokens") for r in load_records(project, m) if r.meta.get("tokens")]
    hist = []
    if tokens:
        top, bins = max(tokens), 10
        step = max(1, -(-top // bins))
        counts = Counter(min(t // step, bins - 1) for t in tokens)
        hist = [{"from": i * step, "to": (i + 1) * step, "n": counts.get(i, 0)} for i in range(bins)]
    pii: Counter = Counter()  # the pii step counts what it redacted by type (EMAIL, PERSON, ...)
    for s in m.get("steps", []):
        if s["step"] == "pii":
            pii.update({k: v for k, v in s.get("stats", {}).items() if isinstance(v, int)})
    dups = sum(sum(s.get("dropped", {}).values()) for s in m.get("steps", []) if "dedup" in s["step"])
    return {"id": m["id"], "kind": m["kind"], "splits": m["splits"], "parents": m.get("parents", []),
            "origin": m.get("origin"), "funnel": funnel, "reasons": dict(reasons.most_common()), "reason": reason,
            "quarantine": quarantine, "histogram": hist, "hist_max": max([h["n"] for h in hist] or [1]),
            "pii": dict(pii), "duplicates": dups, "created_at": m.get("created_at")}


def runs(project) -> list[dict]:
    from tailorlm.registry.resolve import models

    by_run: dict[str, list[str]] = {}
    for v in models(project):
        by_run.setdefault(v.run_id, []).append(v.id)
    out = []
    for r in project.store.select("runs", order_by="created_at DESC"):
        versions = by_run.get(r["id"], [])
        out.append({"id": r["id"], "method": r["method"], "status": r["status"], "dataset": r["dataset_version"],
                    "created_at": r["created_at"], "model_versions": versions})
    return out


def run(project, run_id: str, width: int = 520, height: int = 160) -> dict:
    """A run's settings, model versions and loss curves (train and validation) as SVG polylines."""
    from tailorlm.registry.resolve import models

    rows = project.store.select("runs", id=run_id)
    if not rows:
        raise TailorError(f"no run {run_id!r}")
    r = rows[0]
    series: dict[str, list[tuple[int, float]]] = {}
    for m in project.store.select("run_metrics", order_by="step", run_id=run_id):
        series.setdefault(m["name"], []).append((m["step"], m["value"]))
    curves = {}
    losses = {k: v for k, v in series.items() if "loss" in k}
    points = [p for v in losses.values() for p in v]
    y_range = None
    if points:
        # The y axis spans the losses' own range (not 0..max): a loss that moves from 10.35 to 10.30 must show.
        x_max = max(s for s, _ in points) or 1
        y_lo, y_hi = min(v for _, v in points), max(v for _, v in points)
        span = (y_hi - y_lo) or 1
        y_range = (y_lo, y_hi, x_max)
        for name, pts in losses.items():
            curves[name] = " ".join(f"{s / x_max * width:.1f},{height - (v - y_lo) / span * height:.1f}" for s, v in pts)
    last = {k: v[-1][1] for k, v in series.items()}
    return {"id": r["id"], "method": r["method"], "status": r["status"], "dataset": r["dataset_version"],
            "config": json.loads(r["config"]), "error": r["error"], "curves": curves, "last": last,
            "tokens_per_s": last.get("tokens_per_s") or last.get("train_tokens_per_s"),
            "model_versions": [v.id for v in models(project) if v.run_id == run_id],
            "width": width, "height": height, "y_range": y_range}


def reports(project) -> list[dict]:
    from tailorlm.registry.reports import entries

    return [{k: e.to_dict()[k] for k in ("id", "suite", "subject", "n", "created_at", "metrics")}
            for e in reversed(entries(project))]


def compare_reports(project, a: str, b: str) -> dict:
    from tailorlm.eval.compare import compare
    from tailorlm.eval.runner import load_report

    ra, rb = load_report(project, a), load_report(project, b)
    c = compare(ra, rb)
    eb = {e["id"]: e for e in rb["examples"]}
    differ = [{"id": e["id"], "input": e["input"], "a": e.get("prediction"), "b": eb[e["id"]].get("prediction")}
              for e in ra["examples"] if e["id"] in eb and e.get("prediction") != eb[e["id"]].get("prediction")]
    return {"a": ra["subject"], "b": rb["subject"], "comparison": c, "differ": differ[:100]}


def served_sources(project, trace_id: str) -> dict:
    """The retrieved sources and citations of a served chat answer, as its trace stored them (the
    gateway writes them in the response's `tailor` block; a streamed answer's events do not carry them)."""
    rows = project.store.select("traces", id=trace_id)
    if not rows:
        raise TailorError(f"no trace {trace_id!r}")
    tailor = json.loads(rows[0]["response"]).get("tailor") or {}
    return {"trace_id": trace_id, "rung": tailor.get("rung"), "model_version": tailor.get("model_version"),
            "sources": tailor.get("sources") or [], "citations": tailor.get("citations") or []}
