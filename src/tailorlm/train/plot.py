"""Loss curves for `tailor runs show`: a terminal plot, and a PNG beside the run (`loss.png`).

The PNG goes through matplotlib (Agg backend, no display needed), imported only when a chart is
written so that `tailor --help` stays fast; the ladder chart (ladder/chart.py) is drawn the same way.
"""

from pathlib import Path


def ascii_plot(series: dict[str, list[tuple[int, float]]], width: int = 60, height: int = 12) -> str:
    """Curves as characters: one letter per series, x = step, y = value."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return "(no metrics yet)"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]
    for mark, pts in zip("*o+x", series.values()):
        for x, y in pts:
            col = int((x - x0) / ((x1 - x0) or 1) * (width - 1))
            row = height - 1 - int((y - y0) / ((y1 - y0) or 1) * (height - 1))
            grid[row][col] = mark
    lines = [f"{y1:9.4f} |" + "".join(grid[0])] + ["          |" + "".join(r) for r in grid[1:-1]]
    lines.append(f"{y0:9.4f} |" + "".join(grid[-1]))
    lines.append("          +" + "-" * width)
    lines.append(f"           step {x0}{' ' * max(1, width - 12 - len(str(x0)) - len(str(x1)))}step {x1}")
    legend = "   ".join(f"{mark} {name}" for mark, name in zip("*o+x", series))
    return "\n".join(lines + ["           " + legend])


def png_plot(series: dict[str, list[tuple[int, float]]], path: Path, width: int = 640, height: int = 360) -> Path:
    """Curves as a PNG line chart of `width` x `height` pixels, one colour per series, with a legend.

        >>> png_plot({"loss": [(1, 2.3), (2, 1.9)]}, Path("loss.png"))
        PosixPath('loss.png')
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    for name, pts in series.items():
        xs, ys = zip(*sorted(pts))
        ax.plot(xs, ys, label=name, marker="o" if len(pts) == 1 else None)  # one point still shows
    if series:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "(no metrics yet)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
