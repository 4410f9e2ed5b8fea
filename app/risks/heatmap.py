"""The register's 5×5 heat map (likelihood × impact, how many risks in each cell), drawn on the server as SVG.

No script and no style attribute or element (the CSP allows neither): colours
are SVG presentation attributes. The image is labelled (title and a desc that
lists every occupied cell) and each cell also carries its count as text; the
page shows the same numbers as a table for anyone who does not see the image.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from markupsafe import Markup, escape

SCALE = (1, 2, 3, 4, 5)
CELL = 56
LEFT = 64          # room for the likelihood axis
TOP = 8
BOTTOM = 52        # room for the impact axis
WIDTH = LEFT + 5 * CELL + TOP
HEIGHT = TOP + 5 * CELL + BOTTOM

# Bands of the rating (likelihood × impact), light enough that dark text reads on each (contrast > 7:1).
BANDS = ((4, "low", "#cfe8c9"), (9, "medium", "#fbe7a1"), (16, "high", "#f8c58f"), (25, "critical", "#f2a29b"))
INK, MUTED = "#1b1f24", "#5b6470"


def band(rating: int) -> tuple[str, str]:
    """The band name and fill of a rating."""
    return next((name, fill) for top, name, fill in BANDS if rating <= top)


def cell_counts(risks: Iterable) -> dict[tuple[int, int], int]:
    """{(likelihood, impact): number of risks} for all 25 cells, empty ones 0."""
    counted = Counter((r.likelihood, r.impact) for r in risks)
    return {(likelihood, impact): counted[likelihood, impact] for likelihood in SCALE for impact in SCALE}


def grid(counts: dict[tuple[int, int], int]) -> list[tuple[int, list[tuple[int, int]]]]:
    """Rows as the map shows them, likelihood 5 at the top: [(likelihood, [(impact, count), ...]), ...]."""
    return [(likelihood, [(impact, counts.get((likelihood, impact), 0)) for impact in SCALE])
            for likelihood in reversed(SCALE)]


def _risks(n: int) -> str:
    return f"{n} risk" if n == 1 else f"{n} risks"


def _cell(x: int, y: int, likelihood: int, impact: int, n: int) -> str:
    name, fill = band(likelihood * impact)
    text = f'fill="{INK}" font-size="18" font-weight="700"' if n else f'fill="{MUTED}" font-size="14"'
    return (f'<g class="heat-cell heat-{name}" data-likelihood="{likelihood}" data-impact="{impact}">'
            f'<title>Likelihood {likelihood}, impact {impact} (rating {likelihood * impact}, {name}):'
            f' {_risks(n)}</title>'
            f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}" stroke="#ffffff" stroke-width="2"/>'
            f'<text x="{x + CELL // 2}" y="{y + CELL // 2}" text-anchor="middle" dominant-baseline="central" {text}>'
            f'{n}</text></g>')


def svg(counts: dict[tuple[int, int], int], *, element_id: str = "risk-heatmap",
        title: str = "Risk heat map: likelihood by impact") -> Markup:
    """The map; `element_id` prefixes the ids of its title and desc (unique on the page)."""
    ids = escape(element_id)
    occupied = [f"likelihood {li}, impact {im}: {_risks(n)}" for (li, im), n in sorted(counts.items(), reverse=True)
                if n]
    summary = f"{_risks(sum(counts.values()))} in all" + (". " + "; ".join(occupied) if occupied else "") + "."
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" font-family="system-ui, sans-serif" role="img"'
        f' aria-labelledby="{ids}-title {ids}-desc">',
        f'<title id="{ids}-title">{escape(title)}</title>',
        f'<desc id="{ids}-desc">{escape(summary)}</desc>',
    ]
    for row, (likelihood, cells) in enumerate(grid(counts)):
        y = TOP + row * CELL
        parts.append(f'<text x="{LEFT - 10}" y="{y + CELL // 2}" text-anchor="end" dominant-baseline="central"'
                     f' fill="{INK}" font-size="14">{likelihood}</text>')
        for column, (impact, n) in enumerate(cells):
            parts.append(_cell(LEFT + column * CELL, y, likelihood, impact, n))
    axis_y = TOP + 5 * CELL
    for column, impact in enumerate(SCALE):
        parts.append(f'<text x="{LEFT + column * CELL + CELL // 2}" y="{axis_y + 16}" text-anchor="middle"'
                     f' fill="{INK}" font-size="14">{impact}</text>')
    parts.append(f'<text x="{LEFT + 5 * CELL // 2}" y="{axis_y + 40}" text-anchor="middle" fill="{INK}"'
                 f' font-size="14">Impact</text>')
    middle = TOP + 5 * CELL // 2
    parts.append(f'<text x="16" y="{middle}" text-anchor="middle" fill="{INK}" font-size="14"'
                 f' transform="rotate(-90 16 {middle})">Likelihood</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
