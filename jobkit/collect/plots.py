"""Charts as inline SVG: self-contained (no image files, no JavaScript, no plotting library).

`line_chart` draws every run of a workload on one plot (train solid, validation dashed with dots);
`bar_chart` draws one value per category (a score per run). Each line carries a `<title>`, so hovering it
in a browser names the run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

# Colour-blind-friendly (Okabe–Ito, then Tableau): one colour per run, the same in every chart and table.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
           "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF")
MAX_POINTS = 1500  # per line; longer curves are thinned (the last point is always kept)


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]
    color: str = PALETTE[0]
    dashed: bool = False
    dots: bool = False
    meta: dict = field(default_factory=dict)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** e
            if lo <= v <= hi:
                ticks.append(v)
    if len(ticks) > 8:
        ticks = [t for t in ticks if f"{t:e}".startswith("1")]
    return ticks


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    k = math.ceil(len(points) / MAX_POINTS)
    return points[::k] + ([points[-1]] if (len(points) - 1) % k else [])


def line_chart(series: list[Series], *, title: str, x_label: str = "step", y_label: str = "",
               width: int = 720, height: int = 340, log_y: bool | None = None) -> str:
    """An `<svg>` with one polyline per series; empty series are skipped. Log y when the data span
    more than ~30x (early losses would otherwise flatten the rest); `log_y` forces either way."""
    clean = []
    for s in series:
        pts = [(float(x), float(y)) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
        if pts:
            clean.append((s, _thin(sorted(pts))))
    left, right, top, bottom = 62, 16, 30, 44
    pw, ph = width - left - right, height - top - bottom
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{left}" y="18" class="title">{escape(title)}</text>']
    if not clean:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">no data yet</text></svg>')
        return "".join(out)
    xs = [x for _, pts in clean for x, _ in pts]
    ys = [y for _, pts in clean for _, y in pts]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1
    y0, y1 = min(ys), max(ys)
    if log_y is None:
        log_y = y0 > 0 and y1 / y0 > 30
    if log_y and y0 <= 0:
        log_y = False
    if log_y:
        ly0, ly1 = math.log10(y0), math.log10(y1)
        if ly1 - ly0 < 1e-9:
            ly0, ly1 = ly0 - 0.5, ly1 + 0.5
        yticks = log_ticks(10 ** ly0, 10 ** ly1)
        fy = lambda v: top + ph - (math.log10(v) - ly0) / (ly1 - ly0) * ph  # noqa: E731
    else:
        if y1 - y0 < 1e-12:
            y0, y1 = y0 - (abs(y0) * 0.1 or 0.5), y1 + (abs(y1) * 0.1 or 0.5)
        pad = (y1 - y0) * 0.04
        y0, y1 = y0 - pad, y1 + pad
        yticks = [t for t in nice_ticks(y0, y1) if y0 <= t <= y1]
        fy = lambda v: top + ph - (v - y0) / (y1 - y0) * ph  # noqa: E731
    fx = lambda v: left + (v - x0) / (x1 - x0) * pw  # noqa: E731
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>')
    for t in yticks:
        y = fy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    for t in nice_ticks(x0, x1, 6):
        if x0 <= t <= x1:
            x = fx(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="grid"/>'
                       f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" class="axis">{escape(x_label)}'
               f'</text>')
    if y_label:
        out.append(f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle" '
                   f'class="axis">{escape(y_label + (" (log)" if log_y else ""))}</text>')
    for s, pts in clean:
        coords = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in pts)
        last = pts[-1]
        tip = escape(f"{s.label}: {_fmt(last[1])} at step {int(last[0])}")
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(f'<g class="series"><title>{tip}</title>'
                   f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="1.8"{dash}/>')
        if s.dots or len(pts) == 1:
            out.extend(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="2.6" fill="{s.color}"/>'
                       for x, y in pts[-200:])
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def bar_chart(bars: list[tuple[str, float | None, str]], *, title: str, y_label: str = "",
              width: int = 420, height: int = 260) -> str:
    """One bar per (label, value, colour); a None value is drawn as 'n/a'."""
    left, right, top, bottom = 52, 12, 30, 40
    pw, ph = width - left - right, height - top - bottom
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{left}" y="18" class="title">{escape(title)}</text>']
    vals = [v for _, v, _ in bars if v is not None and math.isfinite(v)]
    if not bars:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">no data yet</text></svg>')
        return "".join(out)
    lo = min([0.0] + vals)
    hi = (max([0.0] + vals) or 1.0) * 1.12  # room for the value printed above the tallest bar
    ticks = nice_ticks(lo, hi, 4)
    hi = max(hi, ticks[-1] if ticks else hi)
    fy = lambda v: top + ph - (v - lo) / ((hi - lo) or 1) * ph  # noqa: E731
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>')
    for t in ticks:
        y = fy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    slot = pw / len(bars)
    bw = min(48.0, slot * 0.7)
    for i, (label, value, col) in enumerate(bars):
        cx = left + slot * (i + 0.5)
        out.append(f'<text x="{cx:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{escape(label)}</text>')
        if value is None or not math.isfinite(value):
            out.append(f'<text x="{cx:.1f}" y="{top + ph - 6}" text-anchor="middle" class="empty">n/a</text>')
            continue
        y, base = fy(value), fy(0.0)
        out.append(f'<g><title>{escape(f"{label}: {_fmt(value)}")}</title>'
                   f'<rect x="{cx - bw / 2:.1f}" y="{min(y, base):.1f}" width="{bw:.1f}" '
                   f'height="{abs(base - y):.1f}" fill="{col}"/></g>'
                   f'<text x="{cx:.1f}" y="{min(y, base) - 4:.1f}" text-anchor="middle" class="tick">{_fmt(value)}</text>')
    if y_label:
        out.append(f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle" '
                   f'class="axis">{escape(y_label)}</text>')
    out.append("</svg>")
    return "".join(out)


STANDALONE_STYLE = ("<style>.title{font:600 13px sans-serif;fill:#1f2328}.tick{font:11px sans-serif;fill:#656d76}"
                    ".axis{font:12px sans-serif;fill:#656d76}.grid{stroke:#eaeef2}.plot{fill:none;stroke:#d0d7de}"
                    ".legend{font:12px sans-serif}</style>")


def standalone(svg: str, legend: list[str] = ()) -> str:
    """A chart as an .svg file of its own (docs, benchmarks): the report's styles inline, and a
    legend (one label per series, in the series' colours) in the top right corner."""
    head, rest = svg.split(">", 1)
    width = float(head.split('viewBox="0 0 ')[1].split()[0])
    labels = "".join(f'<text x="{width - 20}" y="{48 + 15 * i}" text-anchor="end" class="legend" '
                     f'fill="{color(i)}">{escape(label)}</text>' for i, label in enumerate(legend))
    return head + ">" + STANDALONE_STYLE + rest.replace("</svg>", labels + "</svg>")
