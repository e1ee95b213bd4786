"""The overview's chart: jobs finished per minute over the last hour, as inline SVG."""

from __future__ import annotations

from typing import TYPE_CHECKING

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["MINUTES", "per_minute", "throughput_svg"]

MINUTES = 60
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 160, 44, 20, 8
BAR = (WIDTH - LEFT) / MINUTES


def per_minute(rows: Iterable[Mapping[str, int]]) -> list[tuple[int, int]]:
    """`(succeeded, failed)` for each minute, oldest first, from `throughput` rows."""
    slots = [(0, 0)] * MINUTES
    for row in rows:
        ago = row["minutes_ago"]
        if 0 <= ago < MINUTES:
            slots[MINUTES - 1 - ago] = (row["succeeded"], row["failed"])
    return slots


def throughput_svg(slots: list[tuple[int, int]]) -> Markup:
    """A bar per minute: succeeded stacked on failed, with a scale and a title per bar."""
    peak = max((ok + failed for ok, failed in slots), default=0)
    scale = _nice_ceiling(peak)
    plot = HEIGHT - BOTTOM - TOP
    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="jobs finished per minute, last hour (peak {peak})">'
        ),
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot}" x2="{WIDTH}" y2="{TOP + plot}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{scale}</text>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + plot}" text-anchor="end">0</text>',
        f'<text class="tick" x="{LEFT}" y="{HEIGHT - 4}">60 min ago</text>',
        f'<text class="tick" x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end">now</text>',
    ]
    for index, (ok, failed) in enumerate(slots):
        x = LEFT + index * BAR
        ok_height = plot * ok / scale
        failed_height = plot * failed / scale
        ago = MINUTES - 1 - index
        title = escape(f"{ago} min ago: {ok} succeeded, {failed} failed")
        parts.append(f"<g><title>{title}</title>")
        y = TOP + plot - failed_height
        parts.append(_bar("failed", x, y, failed_height))
        parts.append(_bar("succeeded", x, y - ok_height, ok_height))
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- built from numbers and escaped titles


def _bar(kind: str, x: float, y: float, height: float) -> str:
    if height <= 0:
        return ""
    return (
        f'<rect class="{kind}" x="{x + 1:.1f}" y="{y:.1f}" width="{BAR - 2:.1f}" '
        f'height="{height:.1f}"/>'
    )


def _nice_ceiling(peak: int) -> int:
    """The smallest of 1, 2 and 5 times a power of ten at or above `peak` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= peak:
                return step * factor
        step *= 10
