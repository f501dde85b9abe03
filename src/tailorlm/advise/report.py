"""Advice and cost reports as sections of rows: printed as terminal tables and as one HTML page.

Both renderings come from the same `sections` list, so the terminal and the HTML cannot disagree;
`--json` prints the underlying dictionary instead.
"""

import html

Section = tuple[str, list[str], list[list]]  # (title, column headers, rows)


def _num(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _money(cost: dict | None, currency: str) -> str:
    if not cost:
        return "-"
    if cost.get("amount") is None and cost.get("usd_per_1k") is None:
        return f"unknown: {cost.get('reason')}"
    value = cost["amount"] if "amount" in cost else cost["usd_per_1k"]
    return f"{value:.4g} {currency} ({cost.get('reason')})"


def training_rows(t: dict, currency: str) -> list[list]:
    if t.get("flops") is None:
        return [["training", t.get("reason", "-")]]
    rows = [["method", t["method"]], ["parameters", _num(t["n_params"])],
            ["trainable parameters", _num(t["trainable_params"])], ["tokens (all epochs)", _num(t["n_tokens"])],
            ["FLOPs", _num(t["flops"]) + (" (lower bound)" if t["flops_is_lower_bound"] else "")]]
    if t.get("gpu"):
        rows += [["GPU", f"{t['gpu']['name']}: {t['gpu']['peak_flops'] / 1e12:.4g} TFLOPs peak bf16 ({t['gpu']['source']})"],
                 ["GPU-hours", f"{_num(t['gpu_hours'])} at MFU {t['mfu']} (assumed)"],
                 ["cost", _money(t["cost"], currency)]]
    else:
        rows.append(["GPU-hours", "name a GPU (advise.gpu, or --gpu) to convert FLOPs to hours"])
    if t.get("hours_here") is not None:
        rows.append(["hours on this machine", _num(t["hours_here"])])
    rows += [["note", n] for n in t.get("notes", [])]
    return rows


def cost_sections(c: dict) -> list[Section]:
    """Sections for a costs dictionary (`costs_report`, or the `costs` part of an advice)."""
    currency = c.get("currency", "")
    out = []
    if c.get("training"):
        out.append(("Training", ["", ""], training_rows(c["training"], currency)))
    if c.get("chinchilla"):
        ch = c["chinchilla"]
        rows = [[m, _num(ch[m]["n_params"]), _num(ch[m]["n_tokens"]), _num(ch[m]["tokens_per_param"], 3),
                 _num(ch[m]["predicted_loss"], 3)] for m in ("tokens_per_param", "parametric")]
        out.append((f"Chinchilla-optimal for {_num(ch['flops'])} FLOPs (Hoffmann et al. 2022)",
                    ["method", "parameters", "tokens", "tokens/param", "predicted loss"], rows))
        out.append(("Pre-training that model", ["", ""], training_rows(ch["training"], currency)))
    if c.get("inference"):
        inf = c["inference"]
        rows = [["self-hosted", _money(inf["self_hosted"], currency)], ["hosted API", _money(inf["api"], currency)]]
        if inf.get("measured_on"):
            rows.append(["measured on", f"{inf.get('rung')}: {inf['measured_on']}"])
        out.append(("Inference per 1,000 queries", ["", ""], rows))
    if c.get("breakeven"):
        be = c["breakeven"]
        rows = [["breakeven (queries/day)", _num(be["queries_per_day"])], ["why", be["reason"]]]
        for k, v in (be.get("at_volume") or {}).items():
            rows.append([k.replace("_", " "), _num(v)])
        out.append(("Self-hosting vs API", ["", ""], rows))
    return out


def advice_sections(a: dict) -> list[Section]:
    out: list[Section] = [("Advice", ["", ""], [["next rung", a["rung"]], ["action", a["action"]]]
                           + [["why", r] for r in a["reasons"]]
                           + [["missing", m] for m in a["missing"]]
                           + [["warning", w] for w in a["warnings"]]
                           + [["run", s] for s in a["next_steps"]])]
    if a.get("serve"):
        out.append(("Serve now", ["", ""], [["rung", a["serve"]["rung"] or "-"], ["why", a["serve"]["reason"]]]))
    rows = []
    for r in a["rungs"]:
        q = r["measured"]
        measured = f"{q['mean']:.3f} [{q['low']:.3f}, {q['high']:.3f}]" if q else "-"
        state = "ready" if r["ready"] else ("not applicable" if not r["applicable"] else "needs data")
        rows.append([r["kind"], state, measured, "; ".join(filter(None, [r["note"], *r["missing"]]))])
    out.append(("Rungs", ["rung", "data", "measured (95% CI)", "notes"], rows))
    f = a.get("facts")
    if f:
        ex, docs = f["examples"], f["documents"]
        out.append(("Facts", ["", ""], [
            ["task", f"{f['task']['type']}; knowledge changes {f['task']['knowledge_changes']}"],
            ["labelled examples", f"{ex['real']} real, {ex['synthetic']} synthetic, {_num(ex['tokens'])} tokens"
                                  + ("" if ex["prepared"] else f" (raw: {', '.join(ex['raw_sources'])})")],
            ["preference pairs", str(f["preferences"]["pairs"])],
            ["documents", f"{docs['n']} documents, {_num(docs['tokens'])} tokens"
                          + ("" if docs["prepared"] else f" (raw: {', '.join(docs['raw_sources'])})")],
            ["golden suite", f"{f['eval']['n']} examples ({f['eval']['suite']})"],
            ["ladder", (f["ladder"] or {}).get("path") or "none yet"]]))
    return out + cost_sections(a.get("costs") or {})


def print_sections(sections: list[Section]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for title, headers, rows in sections:
        table = Table(title=title, show_header=any(headers))
        for h in headers:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*[str(c) for c in row])
        console.print(table)


def render_html(title: str, sections: list[Section]) -> str:
    """One self-contained page (no scripts) with a table per section."""
    e = html.escape
    body = []
    for name, headers, rows in sections:
        head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>" if any(headers) else ""
        cells = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        body.append(f"<h2>{e(name)}</h2><table>{head}{cells}</table>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}</style>
</head><body><h1>{e(title)}</h1>{''.join(body)}</body></html>"""
