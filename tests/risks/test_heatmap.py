"""The heat map: counts per cell, as text a reader sees, drawn without inline style."""

from __future__ import annotations

import re
from types import SimpleNamespace

from app.risks import heatmap

CELL = re.compile(r'<g class="heat-cell heat-(\w+)" data-likelihood="(\d)" data-impact="(\d)">'
                  r"<title>([^<]*)</title><rect [^>]*/><text [^>]*>(\d+)</text></g>")


def cells(page: str) -> dict[tuple[int, int], int]:
    """What each of the 25 squares of the map shows, keyed (likelihood, impact)."""
    return {(int(li), int(im)): int(n) for _, li, im, _, n in CELL.findall(page)}


def risk(likelihood: int, impact: int):
    return SimpleNamespace(likelihood=likelihood, impact=impact)


def test_each_cell_shows_how_many_risks_it_holds():
    drawn = str(heatmap.svg(heatmap.cell_counts([risk(3, 4), risk(3, 4), risk(5, 5), risk(1, 2)])))
    shown = cells(drawn)
    assert len(shown) == 25
    assert {k: n for k, n in shown.items() if n} == {(3, 4): 2, (5, 5): 1, (1, 2): 1}
    assert "style" not in drawn and "<script" not in drawn
    assert 'role="img"' in drawn and 'aria-labelledby="risk-heatmap-title risk-heatmap-desc"' in drawn
    desc = re.search(r'<desc id="risk-heatmap-desc">([^<]*)</desc>', drawn).group(1)
    assert desc == "4 risks in all. likelihood 5, impact 5: 1 risk; likelihood 3, impact 4: 2 risks;" \
                   " likelihood 1, impact 2: 1 risk."


def test_cells_are_coloured_by_rating_band_and_titled():
    drawn = str(heatmap.svg(heatmap.cell_counts([])))
    bands = {(int(li), int(im)): band for band, li, im, _, _ in CELL.findall(drawn)}
    assert (bands[1, 1], bands[2, 2], bands[3, 4], bands[5, 5]) == ("low", "low", "high", "critical")
    assert bands[3, 3] == "medium"
    assert "Likelihood 4, impact 5 (rating 20, critical): 0 risks" in drawn
    assert "0 risks in all." in drawn


def test_the_table_alternative_reads_top_row_first():
    rows = heatmap.grid(heatmap.cell_counts([risk(5, 1), risk(1, 5)]))
    assert rows[0] == (5, [(1, 1), (2, 0), (3, 0), (4, 0), (5, 0)])
    assert rows[-1] == (1, [(1, 0), (2, 0), (3, 0), (4, 0), (5, 1)])
