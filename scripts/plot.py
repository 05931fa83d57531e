#!/usr/bin/env python3
"""Latency-percentile plot of loadtest runs, as a hand-written SVG.

Usage: scripts/plot.py OUT.svg TITLE RUN.json [RUN.json ...]

Reads loadtest `--out` JSON files, groups them by `label` (one line per
server: the median over its runs, each run drawn faint behind it) and plots
latency against percentile: x is log10(1 / (1 - p)), so 50%, 90%, 99%,
99.9% ... are evenly spaced; y is latency on a log scale. The points are the
ones loadtest reports: p50, p99, p99.9 and the maximum, drawn at
p = 1 - 1/deliveries (the percentile of the last sample).

Python 3 standard library only. Also imported by scripts/bench_summary.py.
"""

import json
import math
import statistics
import sys
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 780, 440
LEFT, RIGHT, TOP, BOTTOM = 80, 230, 56, 56
COLORS = {
    "fanout": "#1f6fb4",
    "uws": "#d03a2a",
    "ws": "#2a9d4a",
    "fanout-embedded": "#7fb2de",
    "uws-socket": "#e99a90",
    "peer": "#d03a2a",
}
OTHER_COLORS = ["#8a4fbf", "#b8860b", "#555555"]
# Legend names of loadtest labels (bench.sh labels a run with its server kind).
NAMES = {
    "fanout": "fanout (tansu)",
    "uws": "uWS + kafkajs",
    "ws": "ws + kafkajs",
    "fanout-embedded": "fanout, embedded broker",
    "uws-socket": "uWS, socket-fed",
    "peer": "uWS peer",
}


def latency_points(report):
    """[(x, latency µs)] of one loadtest report, or [] without deliveries."""
    d = report.get("delivery") or {}
    lat = d.get("latency") or {}
    count = d.get("deliveries") or 0
    if count <= 0 or not lat.get("max_us"):
        return []
    pts = [(0.5, lat["p50_us"]), (0.99, lat["p99_us"]), (0.999, lat["p999_us"])]
    p_max = max(1.0 - 1.0 / count, 0.999)
    pts.append((p_max, lat["max_us"]))
    return [(math.log10(1.0 / (1.0 - p)), max(v, 1.0)) for p, v in pts]


def median_line(lines):
    """Pointwise median of lines that share their percentiles (max excepted)."""
    n = min(len(line) for line in lines)
    return [
        (statistics.median(line[i][0] for line in lines), statistics.median(line[i][1] for line in lines))
        for i in range(n)
    ]


def percentile_label(x):
    p = 100.0 * (1.0 - 10.0 ** -x)
    if x < 0.5:
        return "50%"
    digits = max(0, round(x) - 2)
    return f"{p:.{digits}f}%"


def latency_label(us):
    if us >= 1e6:
        return f"{us / 1e6:g} s"
    if us >= 1e3:
        return f"{us / 1e3:g} ms"
    return f"{us:g} µs"


def render(title, subtitle, series):
    """SVG text. series: {label: [line, ...]} with line = [(x, µs), ...]."""
    all_pts = [pt for lines in series.values() for line in lines for pt in line]
    if not all_pts:
        return None
    x_max = max(3.0, math.ceil(max(x for x, _ in all_pts)))
    y_lo = math.floor(math.log10(min(v for _, v in all_pts)))
    y_hi = math.ceil(math.log10(max(v for _, v in all_pts)))
    if y_hi <= y_lo:
        y_hi = y_lo + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x):
        return LEFT + plot_w * x / x_max

    def sy(us):
        return TOP + plot_h * (1.0 - (math.log10(us) - y_lo) / (y_hi - y_lo))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT}" y="40" fill="#555">{escape(subtitle)}</text>',
    ]
    # Grid and ticks.
    xticks = [math.log10(2)] + list(range(1, int(x_max) + 1))
    for x in xticks:
        out.append(
            f'<line x1="{sx(x):.1f}" y1="{TOP}" x2="{sx(x):.1f}" y2="{TOP + plot_h}" stroke="#e4e4e4"/>'
        )
        out.append(
            f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{percentile_label(x)}</text>'
        )
    # Decades, plus 2x and 5x when the range is narrow enough to need them.
    steps = (1, 2, 5) if y_hi - y_lo <= 3 else (1,)
    for e in range(y_lo, y_hi + 1):
        for m in steps:
            us = m * 10.0**e
            if math.log10(us) > y_hi + 1e-9:
                continue
            y = sy(us)
            shade = "#e4e4e4" if m == 1 else "#f2f2f2"
            out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="{shade}"/>')
            out.append(
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(latency_label(us))}</text>'
            )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 12}" text-anchor="middle" fill="#333">'
        "percentile (log scale of 1/(1-p)); last point = max</text>"
    )
    out.append(
        f'<text transform="translate(18 {TOP + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
        'fill="#333">end-to-end latency</text>'
    )
    # Lines: each run faint, the median bold.
    others = iter(OTHER_COLORS)
    legend_y = TOP + 10
    for label in sorted(series):
        lines = [line for line in series[label] if line]
        if not lines:
            continue
        color = COLORS.get(label) or next(others, "#000")
        for line in lines:
            pts = " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v in line)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-opacity="0.3"/>')
        med = median_line(lines)
        pts = " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v in med)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        for x, v in med:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(v):.1f}" r="3.5" fill="{color}"/>')
        name = NAMES.get(label, label)
        lx = LEFT + plot_w + 16
        out.append(f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 22}" y2="{legend_y}" stroke="{color}" stroke-width="2.5"/>')
        out.append(f'<text x="{lx + 28}" y="{legend_y + 4}">{escape(name)} ({len(lines)} run{"" if len(lines) == 1 else "s"})</text>')
        legend_y += 20
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_plot(path, title, subtitle, reports):
    """Writes the plot of `reports` (parsed loadtest JSON) to `path`.

    Returns False (and writes nothing) when no report has deliveries.
    """
    series = {}
    for r in reports:
        series.setdefault(r.get("label", "?"), []).append(latency_points(r))
    svg = render(title, subtitle, series)
    if svg is None:
        return False
    with open(path, "w", encoding="utf-8") as f:
        f.write(svg)
    return True


def main(argv):
    if len(argv) < 4:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    reports = []
    for path in argv[3:]:
        with open(path, encoding="utf-8") as f:
            reports.append(json.load(f))
    if not write_plot(argv[1], argv[2], f"{len(reports)} runs", reports):
        sys.stderr.write("plot: no deliveries in any run\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
