"""The ladder chart: quality with its 95% CI per rung, beside latency, as PNG and as HTML.

The PNG is drawn with matplotlib (Agg, no display needed); the HTML is one self-contained file
with an inline SVG, the full table, every metric with its interval, the power analysis and, for
rungs whose answers carry a confidence, a reliability diagram (matplotlib, embedded as a base64
PNG), so it opens anywhere without a network.
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


def reliability_png(rows: list[dict]) -> str | None:
    """A reliability diagram per calibrated rung (accuracy against mean confidence in each bin), as base64 PNG."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("calibration")]
    if not rows:
        return None
    cols = min(4, len(rows))  # four diagrams a row keep the page inside 960 px
    lines = -(-len(rows) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(2.6 * cols + 0.4, 2.9 * lines), squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, rows):
        c = r["calibration"]
        filled = [b for b in c["bins"] if b["n"]]
        width = 1 / c["n_bins"]
        ax.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
               color="#1f77b4", edgecolor="white", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="#888888", linewidth=1)
        ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color="#ff7f0e", markersize=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{r['name']}\nECE {c['ece']:.3f} [{c['low']:.3f}, {c['high']:.3f}]", fontsize=8)
        ax.set_xlabel("confidence", fontsize=8)
        ax.tick_params(labelsize=7)
    for row in axes:
        row[0].set_ylabel("accuracy", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _ci(m: dict) -> str:
    return f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def _extras(ladder: dict) -> str:
    """The metrics table, the power analysis and the reliability diagrams, as HTML."""
    from tailorlm.eval.compare import ladder_power

    rows, e = ladder["rungs"], html.escape
    names = list(ladder.get("metrics") or [ladder["primary"]])
    head = "".join(f"<th>{e(m)} [95% CI]</th>" for m in names)
    body = "".join(f"<tr><td>{e(r['name'])}</td>" + "".join(
        f"<td>{_ci(r['metrics'][m]) if m in r.get('metrics', {}) else '-'}</td>" for m in names) + "</tr>" for r in rows)
    out = [f"<h2>Metrics</h2><table><tr><th>rung</th>{head}</tr>{body}</table>",
           "<p>Corpus metrics (macro_f1, micro_f1, bleu, chrf) are the value on the whole suite, with a percentile "
           "bootstrap over examples of that value (10,000 resamples); 0/1 metrics carry a Wilson interval.</p>"]
    power = ladder.get("power") or ladder_power(ladder)
    if power.get("pairs"):
        items = "".join(
            f"<li>{e(p['a'])} → {e(p['b'])}: disagree on {p['discordance']:.1%}; {p['n_needed']} examples to detect "
            f"{power['delta'] * 100:g} points</li>" for p in power["pairs"])
        warns = "".join(f"<p><b>Warning:</b> {e(w)}</p>" for w in power["warnings"])
        out.append(f"<h2>Power</h2><p>Golden examples needed to detect a difference of {power['delta'] * 100:g} points "
                   f"of {e(power['metric'])} at {power['power']:.0%} power (two-sided McNemar, alpha {power['alpha']}; "
                   f"Connor 1987, with continuity correction), from the disagreement observed between adjacent rungs; "
                   f"the suite has {power['n']}.</p><ul>{items}</ul>{warns}")
    png = reliability_png(rows)
    if png:
        out.append("<h2>Calibration</h2><p>Expected calibration error of each answer's confidence (the chosen label's "
                   "probability), 10 equal-width bins, with a bootstrap 95% interval. Bars: accuracy per bin; dots: "
                   f"mean confidence per bin; dashed: perfect calibration.</p><img alt=\"reliability diagrams\" "
                   f"src=\"data:image/png;base64,{png}\">")
    return "".join(out)


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
{_extras(ladder)}
<p>Leakage check: no eval example in {html.escape(', '.join(ladder['leakage']['pools']) or 'any pool')}.
Latency is per query at the eval batch size; cost comes from the measured seconds and the project's price table.</p>
</body></html>
"""
