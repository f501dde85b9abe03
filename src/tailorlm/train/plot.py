"""Loss curves for `tailor runs show`: a terminal plot and a PNG, with no plotting library.

The PNG is drawn on a pixel grid and encoded with zlib: a chart of one or two curves does not
justify a matplotlib dependency.
"""

import struct
import zlib
from pathlib import Path

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]


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
    """Curves as a PNG line chart (white background, light grid, one colour per series)."""
    pixels = [[(255, 255, 255)] * width for _ in range(height)]
    margin = 20
    points = [p for pts in series.values() for p in pts]
    for i in range(5):  # horizontal grid lines
        y = margin + i * (height - 2 * margin) // 4
        for x in range(margin, width - margin):
            pixels[y][x] = (225, 225, 225)
    if points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)

        def to_px(x, y):
            return (margin + int((x - x0) / ((x1 - x0) or 1) * (width - 2 * margin - 1)),
                    height - margin - 1 - int((y - y0) / ((y1 - y0) or 1) * (height - 2 * margin - 1)))

        for color, pts in zip(COLORS, series.values()):
            coords = [to_px(x, y) for x, y in sorted(pts)]
            for (ax, ay), (bx, by) in zip(coords, coords[1:] or coords):
                steps = max(abs(bx - ax), abs(by - ay), 1)
                for t in range(steps + 1):
                    px, py = ax + (bx - ax) * t // steps, ay + (by - ay) * t // steps
                    for dx, dy in ((0, 0), (1, 0), (0, 1)):
                        if 0 <= px + dx < width and 0 <= py + dy < height:
                            pixels[py + dy][px + dx] = color
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    path.write_bytes(png)
    return path
