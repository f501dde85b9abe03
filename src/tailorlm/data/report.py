"""`tailor data report NAME`: what a dataset version is made of, for a human to check.

Terminal tables, and one self-contained HTML page (inline SVG, no scripts) with: the token-length
histogram, the per-step funnel, the language mix, PII counts by type, the largest near-duplicate
clusters and 20 random samples for review.
"""

import html
import json
import random
from collections import Counter

from tailorlm.data.versions import load_records, resolve


def build_report(project, ref: str, samples: int = 20, seed: int = 0) -> dict:
    manifest = resolve(project, ref)
    records = load_records(project, manifest)
    tokens = [r.meta["tokens"] for r in records if "tokens" in r.meta]
    languages = Counter(r.meta.get("language", "unknown") for r in records)
    steps = {s["step"]: s for s in manifest["steps"]}
    pii = {k: v for k, v in steps.get("pii", {}).get("stats", {}).items()}
    funnel, remaining = [], manifest["accounting"]["read"]
    funnel.append({"stage": "read", "in": remaining, "out": remaining - manifest["accounting"]["rejected_by_readers"],
                   "dropped": {"unreadable": manifest["accounting"]["rejected_by_readers"]}})
    remaining = funnel[0]["out"]
    for s in manifest["steps"]:
        funnel.append({"stage": s["step"], "in": remaining, "out": s["kept"], "dropped": s["dropped"]})
        remaining = s["kept"]
    rng = random.Random(seed)
    picked = rng.sample(records, min(samples, len(records)))
    return {
        "id": manifest["id"], "kind": manifest["kind"], "records": len(records), "splits": manifest["splits"],
        "funnel": funnel, "tokens": {"n": len(tokens), "histogram": histogram(tokens),
                                     "mean": round(sum(tokens) / len(tokens), 1) if tokens else None,
                                     "max": max(tokens) if tokens else None},
        "languages": dict(languages.most_common()), "pii": pii,
        "near_duplicate_clusters": steps.get("near_dedup", {}).get("largest_clusters", [])[:10],
        "samples": [{"id": r.id, "split": r.meta.get("split"), "text": r.joined()[:600]} for r in picked],
        "accounting": manifest["accounting"],
    }


def write_report(project, ref: str, samples: int = 20, seed: int = 0) -> dict:
    """`build_report`, also written as `.tailor/reports/data-NAME-HASH.html`; the page's path is `html`."""
    rep = build_report(project, ref, samples, seed)
    path = project.artifacts("reports") / f"data-{rep['id'].replace('@', '-')}.html"
    path.write_text(render_html(rep), encoding="utf-8")
    rep["html"] = str(path)
    return rep


def quarantine_summary(project, ref: str, limit: int = 20) -> dict:
    """What a version's run did not keep: the total, counts by `step: reason` (most first), the first entries.

    >>> quarantine_summary(project, "tickets")["by_reason"]  # doctest: +SKIP
    {'validate: no assistant turn': 3, 'dedup: exact duplicate': 2}
    """
    manifest = resolve(project, ref)
    path = project.root / manifest["path"] / "quarantine.jsonl"
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_reason = Counter(f"{q['step']}: {q['reason']}" for q in entries)
    return {"id": manifest["id"], "path": str(path), "total": len(entries), "by_reason": dict(by_reason.most_common()),
            "entries": entries[:limit]}


def histogram(values: list[int], bins: int = 12) -> list[dict]:
    if not values:
        return []
    lo, hi = min(values), max(values)
    width = max(1, -(-(hi - lo + 1) // bins))
    counts = Counter((v - lo) // width for v in values)
    return [{"from": lo + i * width, "to": lo + (i + 1) * width - 1, "count": counts.get(i, 0)}
            for i in range(-(-(hi - lo + 1) // width))]


def render_html(report: dict) -> str:
    e = html.escape
    bars = report["tokens"]["histogram"]
    top = max((b["count"] for b in bars), default=1) or 1
    svg = "".join(
        f'<rect x="{i * 40}" y="{150 - 140 * b["count"] / top:.0f}" width="34" height="{140 * b["count"] / top:.0f}" fill="#4a7"/>'
        f'<text x="{i * 40 + 17}" y="165" font-size="9" text-anchor="middle">{b["from"]}</text>'
        f'<text x="{i * 40 + 17}" y="{145 - 140 * b["count"] / top:.0f}" font-size="9" text-anchor="middle">{b["count"]}</text>'
        for i, b in enumerate(bars))

    def table(headers, rows):
        head = "".join(f"<th>{e(str(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    funnel = table(["stage", "in", "out", "dropped"],
                   [[f["stage"], f["in"], f["out"], ", ".join(f"{k}: {v}" for k, v in f["dropped"].items()) or "-"]
                    for f in report["funnel"]])
    langs = table(["language", "records"], list(report["languages"].items()))
    pii = table(["type", "found"], list(report["pii"].items()) or [["(none found)", 0]])
    clusters = table(["kept", "dropped as near-duplicates"],
                     [[c["kept"], ", ".join(c["dropped"])] for c in report["near_duplicate_clusters"]] or [["(none)", ""]])
    samples = "".join(f"<details><summary>{e(s['id'])} ({e(str(s['split']))})</summary><pre>{e(s['text'])}</pre></details>"
                      for s in report["samples"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(report['id'])}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:8px}}</style>
</head><body><h1>Dataset {e(report['id'])}</h1>
<p>{report['records']} {e(report['kind'])} records; splits: {e(json.dumps(report['splits']))};
accounting holds: {report['accounting']['holds']}</p>
<h2>Token lengths</h2><p>n={report['tokens']['n']}, mean={report['tokens']['mean']}, max={report['tokens']['max']}</p>
<svg width="{40 * max(len(bars), 1)}" height="170">{svg}</svg>
<h2>Funnel</h2>{funnel}<h2>Languages</h2>{langs}<h2>PII replaced</h2>{pii}
<h2>Largest near-duplicate clusters</h2>{clusters}<h2>Samples for review</h2>{samples}</body></html>"""
