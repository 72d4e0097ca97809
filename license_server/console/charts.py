"""Charts as SVG drawn on the server: readable without JavaScript, and the same drawing can go into an invoice PDF.

Pure functions from numbers to an SVG string; labels are escaped here. Values are exact (int or Decimal) and are
scaled with Decimal arithmetic, so a chart never rounds a credit balance through float.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from html import escape

Number = int | Decimal

_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 56, 12, 12, 36
_INK, _BAR, _LINE, _GRID = "#1b1f24", "#0b57d0", "#a50e0e", "#c9ced6"


@dataclass(frozen=True)
class Point:
    label: str
    value: Number


def _scale(value: Number, top: Number, span: int) -> Decimal:
    return Decimal(0) if top == 0 else (Decimal(value) * span / Decimal(top)).quantize(Decimal("0.1"))


def _frame(title: str, width: int, height: int, body: Iterable[str], top: Number, chart_id: str) -> str:
    plot_height = height - _PAD_TOP - _PAD_BOTTOM
    axis = [
        f'<line x1="{_PAD_LEFT}" y1="{_PAD_TOP}" x2="{_PAD_LEFT}" y2="{_PAD_TOP + plot_height}" stroke="{_INK}"/>',
        f'<line x1="{_PAD_LEFT}" y1="{_PAD_TOP + plot_height}" x2="{width - _PAD_RIGHT}" '
        f'y2="{_PAD_TOP + plot_height}" stroke="{_INK}"/>',
        f'<text x="{_PAD_LEFT - 6}" y="{_PAD_TOP + 10}" text-anchor="end">{escape(_number(top))}</text>',
        f'<text x="{_PAD_LEFT - 6}" y="{_PAD_TOP + plot_height}" text-anchor="end">0</text>',
    ]
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{chart_id}-title">'
        f'<title id="{chart_id}-title">{escape(title)}</title>' + "".join(axis) + "".join(body) + "</svg>"
    )


def _number(value: Number) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def bar_chart(points: Sequence[Point], *, title: str, chart_id: str, width: int = 640, height: int = 220) -> str:
    """One bar per point (e.g. usage per day), each with its value in a tooltip title for screen readers."""
    top = max((p.value for p in points), default=0)
    plot_width = width - _PAD_LEFT - _PAD_RIGHT
    plot_height = height - _PAD_TOP - _PAD_BOTTOM
    step = Decimal(plot_width) / max(len(points), 1)
    body = []
    for index, point in enumerate(points):
        bar = _scale(point.value, top, plot_height)
        x = (_PAD_LEFT + step * index + step / 10).quantize(Decimal("0.1"))
        bar_width = (step * 8 / 10).quantize(Decimal("0.1"))
        body.append(
            f'<rect x="{x}" y="{_PAD_TOP + plot_height - bar}" width="{bar_width}" height="{bar}" fill="{_BAR}">'
            f"<title>{escape(point.label)}: {escape(_number(point.value))}</title></rect>"
        )
    body += _labels(points, step, height)
    return _frame(title, width, height, body, top, chart_id)


def line_chart(points: Sequence[Point], *, title: str, chart_id: str, width: int = 640, height: int = 220) -> str:
    """A line through the points (e.g. a credit balance burning down), negative values drawn at zero."""
    top = max((max(p.value, 0) for p in points), default=0)
    plot_width = width - _PAD_LEFT - _PAD_RIGHT
    plot_height = height - _PAD_TOP - _PAD_BOTTOM
    step = Decimal(plot_width) / max(len(points) - 1, 1)
    coordinates = [
        (
            (_PAD_LEFT + step * index).quantize(Decimal("0.1")),
            _PAD_TOP + plot_height - _scale(max(point.value, 0), top, plot_height),
        )
        for index, point in enumerate(points)
    ]
    body = []
    if coordinates:
        path = " ".join(f"{x},{y}" for x, y in coordinates)
        body.append(f'<polyline points="{path}" fill="none" stroke="{_LINE}" stroke-width="2"/>')
        for (x, y), point in zip(coordinates, points, strict=True):
            body.append(
                f'<circle cx="{x}" cy="{y}" r="3" fill="{_LINE}">'
                f"<title>{escape(point.label)}: {escape(_number(point.value))}</title></circle>"
            )
    body += _labels(points, step, height, centred=False)
    return _frame(title, width, height, body, top, chart_id)


def _labels(points: Sequence[Point], step: Decimal, height: int, *, centred: bool = True) -> list[str]:
    """At most about eight x-axis labels, so they never overlap."""
    every = max(1, len(points) // 8 + (1 if len(points) % 8 else 0))
    labels = []
    for index, point in enumerate(points):
        if index % every:
            continue
        x = (_PAD_LEFT + step * index + (step / 2 if centred else 0)).quantize(Decimal("0.1"))
        labels.append(
            f'<text x="{x}" y="{height - _PAD_BOTTOM + 16}" text-anchor="middle">{escape(point.label)}</text>'
        )
    return labels


def daily_totals(entries: Iterable[tuple[datetime, Number]], *, first: date, last: date) -> list[Point]:
    """Sum amounts per UTC day from ``first`` to ``last``, days without any shown as zero."""
    totals: dict[date, Number] = {}
    for moment, amount in entries:
        day = moment.date()
        if first <= day <= last:
            totals[day] = totals.get(day, 0) + amount
    points, day = [], first
    while day <= last:
        points.append(Point(day.strftime("%m-%d"), totals.get(day, 0)))
        day = date.fromordinal(day.toordinal() + 1)
    return points


def running_balance(movements: Iterable[tuple[datetime, Decimal]], *, opening: Decimal = Decimal(0)) -> list[Point]:
    """The balance after each movement (oldest first): a credits burn-down."""
    points, balance = [], opening
    for moment, amount in movements:
        balance += amount
        points.append(Point(moment.strftime("%m-%d %H:%M"), balance))
    return points
