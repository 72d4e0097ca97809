"""Server-rendered SVG charts: pure functions from (label, amount) pairs to an SVG string.

Readable without JavaScript (the numbers are text in the drawing, and the page puts the same figures in a table),
the same markup usable inside an invoice PDF, and exact: amounts stay ``Decimal``; only the geometry is rounded.
Every string from the data is escaped, so a hostile agent name cannot inject markup.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from xml.sax.saxutils import escape

BAR_HEIGHT = 22
GAP = 8
LABEL_WIDTH = 180
BAR_AREA = 420
VALUE_WIDTH = 120
WIDTH = LABEL_WIDTH + BAR_AREA + VALUE_WIDTH
# Bars in the console's accent blue on white: 7:1 contrast for the figures drawn in ink beside them.
BAR_FILL = "#0b57d0"
INK = "#1b1f24"


def amount_text(value: Decimal) -> str:
    """``12.50`` -> ``12.5``, ``3E+1`` -> ``30``: no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def bar_width(value: Decimal, largest: Decimal) -> Decimal:
    """The bar's length in pixels, to 0.1 px; the largest bar fills the area, a zero or negative value draws none."""
    if largest <= 0 or value <= 0:
        return Decimal(0)
    return (value * BAR_AREA / largest).quantize(Decimal("0.1"), rounding=ROUND_DOWN)


def bar_chart_svg(bars: list[tuple[str, Decimal]], *, title: str, unit: str = "credits") -> str:
    """A horizontal bar chart, one row per (label, amount), in the given order."""
    height = max(1, len(bars)) * (BAR_HEIGHT + GAP) + GAP
    largest = max((value for _, value in bars), default=Decimal(0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-title" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" class="chart">',
        f'<title id="chart-title">{escape(title)}</title>',
    ]
    if not bars:
        parts.append(f'<text x="0" y="{BAR_HEIGHT}" fill="{INK}" font-size="14">No usage in this period</text>')
    for index, (label, value) in enumerate(bars):
        y = GAP + index * (BAR_HEIGHT + GAP)
        text_y = y + BAR_HEIGHT - 6
        shown = label if len(label) <= 24 else label[:23] + "…"
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{text_y}" text-anchor="end" fill="{INK}" font-size="14">'
            f"{escape(shown)}</text>"
        )
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{bar_width(value, largest)}" height="{BAR_HEIGHT}" '
            f'fill="{BAR_FILL}"><title>{escape(label)}: {amount_text(value)} {escape(unit)}</title></rect>'
        )
        parts.append(
            f'<text x="{LABEL_WIDTH + BAR_AREA + 8}" y="{text_y}" fill="{INK}" font-size="14">'
            f"{amount_text(value)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
