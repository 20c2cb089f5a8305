"""Charts as accessible server-side SVG, drawn by pygal (no JavaScript, no CDN: ``js=[]``), always beside
a table of the same figures (the table is the text alternative). The SVG is made deterministic (a chart id
from its name, no generation comment), so a published report is byte-for-byte reproducible."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from functools import lru_cache

import pygal
from markupsafe import Markup
from pygal.style import Style

STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#0b0c0c",
    foreground_strong="#0b0c0c",
    foreground_subtle="#505a5f",
    colors=("#1d70b8", "#f47738", "#00703c", "#d4351c", "#4c2c92"),
    font_family="Arial, sans-serif",
    label_font_size=14,
    major_label_font_size=14,
    value_font_size=14,
    title_font_size=18,
    legend_font_size=14,
)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_SCRIPT = re.compile(r"<script[^>]*>.*?</script>", re.S)
STYLESHEET = "charts.css"  # in api/web/static: pygal's CSS for every chart, so pages need no inline styles (CSP)


def _finish(chart: pygal.graph.graph.Graph, chart_id: str, title: str, description: str) -> Markup:
    chart.uuid = chart_id  # pygal draws a random id into the SVG and its CSS otherwise
    svg = chart.render(is_unicode=True)
    svg = _COMMENT.sub("", svg)
    # no inline style or script (the pages' CSP allows neither): styles come from charts.css; pygal's config
    # script only serves its tooltips, which need its JavaScript (not loaded: js=[]), so they are hidden there
    svg = (
        _SCRIPT.sub("", _STYLE.sub("", svg))
        .replace(' style="opacity: 0"', "")
        .replace("<defs></defs>", "")
        .replace("<title>Pygal</title>", "")
    )
    # valid HTML: pygal draws a 0 bar as a rect with no width, and gives every chart's legend entries the same ids
    svg = re.sub(r"<rect(?![^>]*\bwidth=)", '<rect width="0"', svg).replace('id="activate-serie-', f'id="chart-{chart_id}-serie-')
    svg = svg.replace("<svg ", f'<svg role="img" aria-labelledby="chart-{chart_id}-title chart-{chart_id}-desc" focusable="false" ', 1)
    head = (
        f'<title id="chart-{chart_id}-title">{html.escape(title)}</title><desc id="chart-{chart_id}-desc">{html.escape(description)}</desc>'
    )
    svg = re.sub(r"(<svg[^>]*>)", lambda m: m.group(1) + head, svg, count=1)
    return Markup(svg)  # noqa: S704 - pygal's own SVG, with our escaped title and description


def bar_chart(
    chart_id: str, title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], description: str
) -> Markup | None:
    """Horizontal bars (see ``_bar``); the same chart asked again is not drawn again."""
    return _bar(chart_id, title, tuple(labels), tuple((name, tuple(values)) for name, values in series), description)


@lru_cache(maxsize=1024)
def _bar(
    chart_id: str, title: str, labels: tuple[str, ...], series: tuple[tuple[str, tuple[float | None, ...]], ...], description: str
) -> Markup | None:
    """Horizontal bars, one group per label, the first label at the top (as in the table beside it); a ``None``
    (a suppressed or unavailable figure) draws no bar. None when there is nothing to draw."""
    if not any(v is not None for _, values in series for v in values):
        return None
    chart = pygal.HorizontalBar(
        js=[],
        disable_xml_declaration=True,
        style=STYLE,
        show_legend=len(series) > 1,
        legend_at_bottom=True,
        width=720,
        height=max(220, 60 + 40 * len(labels) * max(1, len(series))),
        print_values=False,
        show_y_guides=False,
        truncate_label=60,
        truncate_legend=-1,
        margin=12,
        # the value axis's ticks: pygal's own put a number at every unit up to 20 (they ran together), and hiding its
        # minor ones (show_minor_y_labels) also hid a horizontal chart's category labels
        y_labels=value_ticks([v for _, values in series for v in values if v is not None]),
        value_formatter=_number,
        margin_right=40,  # room for half of the last tick's number, centred on the plot's edge
    )
    chart.x_labels = list(reversed(labels))  # pygal draws the first label at the bottom
    for name, values in series:
        chart.add(name, list(reversed(values)))
    return _finish(chart, chart_id, title, description)


def value_ticks(values: Sequence[float], most: int = 6) -> list[float]:
    """At most ``most`` evenly spaced round numbers (1, 2 or 5 times a power of ten apart; whole numbers when every
    value is whole) from 0, or below the least value, to at or above the greatest."""
    values = [v for v in values if math.isfinite(v)]
    low, high = min([0.0, *values]), max([0.0, *values])
    whole = all(float(v).is_integer() for v in values)
    if high == low:
        return [low, low + 1]
    if not math.isfinite(high - low) or (high - low) / most == 0:
        return [low, high]  # beyond what a float's steps can divide (a span past 1.8e308, or of a few subnormals)
    power = 10.0 ** math.floor(math.log10((high - low) / most))
    for step in (f * power * 10**k for k in range(3) for f in (1, 2, 5)):
        if whole and step < 1:
            continue
        first, last = math.floor(low / step), math.ceil(high / step)
        if last - first + 1 <= most:
            ticks = [float(f"{i * step:.12g}") for i in range(first, last + 1)]  # 0.30000000000000004: 0.3
            return ticks if math.isfinite(ticks[0]) and math.isfinite(ticks[-1]) else [low, high]
    raise AssertionError("unreachable: a step of 100 times the range's sixth fits")


def _number(value: float) -> str:
    return f"{value:,.10g}"


def line_chart(
    chart_id: str, title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], description: str
) -> Markup | None:
    return _line(chart_id, title, tuple(labels), tuple((name, tuple(values)) for name, values in series), description)


@lru_cache(maxsize=1024)
def _line(
    chart_id: str, title: str, labels: tuple[str, ...], series: tuple[tuple[str, tuple[float | None, ...]], ...], description: str
) -> Markup | None:
    if not any(v is not None for _, values in series for v in values):
        return None
    chart = pygal.Line(
        js=[],
        disable_xml_declaration=True,
        style=STYLE,
        show_legend=len(series) > 1,
        legend_at_bottom=True,
        truncate_legend=-1,
        width=720,
        height=320,
        x_label_rotation=30,
        allow_interruptions=True,
        margin=12,
        dots_size=4,
    )
    chart.x_labels = list(labels)
    for name, values in series:
        chart.add(name, list(values))
    return _finish(chart, chart_id, title, description)


def stylesheet() -> str:
    """pygal's CSS for these charts, scoped to the ``pygal-chart`` class instead of one chart's id (the
    content of ``static/charts.css``; ``tests/test_web.py`` checks the file is current)."""
    chart = pygal.HorizontalBar(js=[], disable_xml_declaration=True, style=STYLE)
    for i in range(len(STYLE.colors)):
        chart.add(f"s{i}", [1])
    chart.uuid = "shared"
    found = _STYLE.findall(chart.render(is_unicode=True))
    css = html.unescape("\n".join(found)).replace("#chart-shared", ".pygal-chart")
    return f"/* generated by api.web.charts.stylesheet() from pygal {pygal.__version__} */\n{css.strip()}\n.pygal-chart .tooltip{{opacity:0}}\n"


def plottable(value: object) -> float | None:
    """A figure as a chart can draw it: numbers as they are; symbols (suppressed, not applicable), and numbers no float
    holds or no axis can show (NaN, infinite, an integer past 1.8e308), as no mark."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
