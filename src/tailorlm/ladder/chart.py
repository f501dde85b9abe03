"""The ladder chart: quality with its 95% CI per rung, beside latency, as PNG and as HTML.

The PNG is drawn with matplotlib (Agg, no display needed); the HTML is one self-contained file
with an inline SVG and the full table, so it opens anywhere without a network.
"""

import html


def write_charts(ladder: dict, folder, root) -> dict:
    png, page = folder / "ladder.png", folder / "ladder.html"
    _png(ladder, png)
    page.write_text(_html(ladder), encoding="utf-8")
    return {"chart_png": str(png.relative_to(root)), "chart_html": str(page.relative_to(root))}


def _png(ladder: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, primary = ladder["rungs"], ladder["primary"]
    names = [r["name"] for r in rows]
    means = [r["quality"]["mean"] for r in rows]
    err = [[m - r["quality"]["low"] for m, r in zip(means, rows)], [r["quality"]["high"] - m for m, r in zip(means, rows)]]
    colors = ["#2ca02c" if r["name"] == ladder["recommendation"]["rung"] else "#1f77b4" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.6 * len(rows) + 1.8), sharey=True,
                                      gridspec_kw={"width_ratios": [3, 2]})
    y = list(range(len(rows)))[::-1]
    left.barh(y, means, xerr=err, color=colors, capsize=4)
    left.set_yticks(y, names)
    left.set_xlabel(f"{primary} (95% CI)")
    left.set_title(f"{ladder['suite']['name']}@{ladder['suite']['version']}, n = {ladder['suite']['n']}")
    p50 = [r["latency"]["p50"] * 1000 for r in rows]
    p95 = [r["latency"]["p95"] * 1000 for r in rows]
    right.barh(y, p95, color="#cccccc", label="p95")
    right.barh(y, p50, color="#ff7f0e", label="p50")
    right.set_xlabel("latency per query (ms)")
    right.legend(loc="lower right")
    fig.suptitle(f"recommended: {ladder['recommendation']['rung']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _html(ladder: dict) -> str:
    rows, primary, rec = ladder["rungs"], ladder["primary"], ladder["recommendation"]
    width, bar_h, left = 420, 26, 130
    svg = [f'<svg width="{left + width + 60}" height="{len(rows) * bar_h + 30}" xmlns="http://www.w3.org/2000/svg" '
           'font-family="sans-serif" font-size="12">']
    top = max([r["quality"]["high"] for r in rows] + [1e-9])
    scale = width / (1.0 if top <= 1 else top)
    for i, r in enumerate(rows):
        q, y = r["quality"], 10 + i * bar_h
        color = "#2ca02c" if r["name"] == rec["rung"] else "#1f77b4"
        svg.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{html.escape(r["name"])}</text>')
        svg.append(f'<rect x="{left}" y="{y + 3}" width="{q["mean"] * scale:.1f}" height="{bar_h - 8}" fill="{color}"/>')
        svg.append(f'<line x1="{left + q["low"] * scale:.1f}" x2="{left + q["high"] * scale:.1f}" y1="{y + 11}" '
                   f'y2="{y + 11}" stroke="black" stroke-width="2"/>')
        svg.append(f'<text x="{left + q["high"] * scale + 6:.1f}" y="{y + 15}">{q["mean"]:.3f}</text>')
    svg.append("</svg>")

    def cost(r):
        c = r["cost_per_1k"]
        return f"{c['usd_per_1k']:.4f}" if c.get("usd_per_1k") is not None else "n/a"

    table = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{r['kind']}</td><td>{r['quality']['mean']:.3f}</td>"
        f"<td>[{r['quality']['low']:.3f}, {r['quality']['high']:.3f}]</td><td>{r['latency']['p50'] * 1000:.0f}</td>"
        f"<td>{r['latency']['p95'] * 1000:.0f}</td><td>{cost(r)}</td><td>{r['errors']}</td></tr>" for r in rows)
    comps = "".join(
        f"<li>{html.escape(c['a'])} → {html.escape(c['b'])}: {primary} {c['metrics'][primary]['delta']:+.3f} "
        f"[{c['metrics'][primary]['low']:+.3f}, {c['metrics'][primary]['high']:+.3f}], "
        f"p = {c['metrics'][primary]['p_value']:.3g} ({c['metrics'][primary]['test']})</li>" for c in ladder["comparisons"])
    s = ladder["suite"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Tailor ladder {html.escape(ladder['id'])}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}td,th{{padding:4px 10px;text-align:left}}
tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>Ladder: {html.escape(s['name'])}@{s['version']} (n = {s['n']})</h1>
<p><b>Recommended: {html.escape(rec['rung'])}.</b> {html.escape(rec['reason'])}</p>
{''.join(svg)}
<table><tr><th>rung</th><th>kind</th><th>{primary}</th><th>95% CI</th><th>p50 ms</th><th>p95 ms</th>
<th>cost / 1k queries ({html.escape(ladder.get('currency', 'USD'))})</th><th>errors</th></tr>{table}</table>
<h2>Adjacent rungs</h2><ul>{comps}</ul>
<p>Leakage check: no eval example in {html.escape(', '.join(ladder['leakage']['pools']) or 'any pool')}.
Latency is per query at the eval batch size; cost comes from the measured seconds and the project's price table.</p>
</body></html>
"""
