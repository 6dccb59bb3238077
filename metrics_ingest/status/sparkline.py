"""Sparklines: a few series' samples over a time span as a small inline SVG, drawn on the
server (no chart library, nothing fetched by the browser)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from metrics_ingest.store import SeriesSamples

WIDTH = 160
HEIGHT = 36
PAD = 3.0
# Lines after the first are dashed: the series tell apart without colour.
DASHES = ("", "4 2", "1 2", "6 2 1 2")


def value_range(lines: Sequence[SeriesSamples]) -> tuple[float, float] | None:
    """(lowest, highest) finite value drawn, or None when there is none."""
    values = [value for _, held in lines for value in held if math.isfinite(value)]
    return (min(values), max(values)) if values else None


def columns(times: Sequence[int], values: Sequence[float], start: int, end: int,
            width: int) -> list[tuple[float, float]]:
    """(x, value) points, at most two per pixel column (its lowest and highest, in time
    order) so a spike survives however many samples fall in one column."""
    span = max(end - start, 1)
    points: list[tuple[float, float]] = []
    column: int | None = None
    low = high = (0.0, 0.0)
    for timestamp, value in zip(times, values, strict=True):
        if not math.isfinite(value) or not start <= timestamp <= end:
            continue
        x = (timestamp - start) / span * width
        at = int(x)
        if at != column:
            if column is not None:
                points.extend(sorted({low, high}))
            column, low, high = at, (x, value), (x, value)
        elif value < low[1]:
            low = (x, value)
        elif value > high[1]:
            high = (x, value)
    if column is not None:
        points.extend(sorted({low, high}))
    return points


def sparkline(lines: Sequence[SeriesSamples], start: int, end: int, label: str,
              width: int = WIDTH, height: int = HEIGHT) -> str:
    """An <svg> of the lines over [start, end] on one shared scale, in currentColor;
    `label` (plain text) is its accessible name: say what it shows. Empty when
    there is no finite sample to draw."""
    bounds = value_range(lines)
    if bounds is None:
        return ""
    low, high = bounds
    label = html.escape(label)
    scale = (height - 2 * PAD) / (high - low) if high > low else 0.0

    def y(value: float) -> float:
        return height / 2 if scale == 0.0 else height - PAD - (value - low) * scale

    parts = [f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{label}"><title>{label}</title>']
    for number, (times, values) in enumerate(lines):
        points = columns(times, values, start, end, width)
        if not points:
            continue
        dash = DASHES[number % len(DASHES)]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        if len(points) == 1:
            x, value = points[0]
            parts.append(f'<circle cx="{x:.1f}" cy="{y(value):.1f}" r="2" '
                         'fill="currentColor"/>')
            continue
        coordinates = " ".join(f"{x:.1f},{y(value):.1f}" for x, value in points)
        parts.append(f'<polyline points="{coordinates}" fill="none" stroke="currentColor" '
                     f'stroke-width="1.5"{dashed}/>')
        if number == 0:
            x, value = points[-1]
            parts.append(f'<circle cx="{x:.1f}" cy="{y(value):.1f}" r="2" '
                         'fill="currentColor"/>')
    parts.append("</svg>")
    return "".join(parts)
