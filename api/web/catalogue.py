"""The metric catalogue as the pages see it: the code's metrics (``projections.metrics.METRICS``: name,
group, kind) joined with their definitions in ``docs/metrics.md`` (the row of each metric's table and the
section it is in), and that page rendered to HTML with an anchor per metric. Pages are built from this,
never from per-metric code, so a metric group added later appears on every page by itself."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from ledger.core.codes import SCHEMAS_DIR, code_list
from ledger.core.schooltime import academic_year
from projections.context import TRAILING_DAYS
from projections.metrics import METRICS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
DEFINITIONS_PATH = "/reports/definitions"
WORDS = {"ap": "AP", "sen": "SEN", "dfe": "DfE", "ehcp": "EHCP", "post16": "post-16", "la": "LA", "las": "LAs", "send": "SEND"}


@dataclass(frozen=True)
class Entry:
    """One metric: the code's name, group and kind, and what docs/metrics.md says of it."""

    name: str
    group: str
    kind: str
    title: str
    section: str  # the docs section (its heading without the operation name)
    definition: dict[str, str] = field(default_factory=dict)  # column header -> cell text (markdown)

    @property
    def anchor(self) -> str:
        return f"{DEFINITIONS_PATH}#{self.name}"

    @property
    def window(self) -> str:
        return self.definition.get("window", "")

    def period(self, day: date) -> tuple[date | None, date, str]:
        """The dates the figure covers at as-of date ``day`` (from the docs' window), and in words."""
        text = self.window.lower()
        if "trailing" in text:
            start = day - timedelta(days=TRAILING_DAYS - 1)
            return start, day, f"{TRAILING_DAYS} days to {long_date(day)} (from {long_date(start)})"
        if "calendar year" in text:  # SEN2's period (the EHCP figures)
            start = date(day.year, 1, 1)
            return start, day, f"calendar year to date: {long_date(start)} to {long_date(day)}"
        if "year" in text:
            start = date(int(academic_year(day)[:4]), 9, 1)
            return start, day, f"academic year to date: {long_date(start)} to {long_date(day)}"
        return None, day, f"on {long_date(day)}"

    def code_list(self) -> str | None:
        """The code list naming this breakdown's labels, as its definition cites it (code list `name`)."""
        found = re.search(r"code list `([a-z0-9_]+)`", " ".join(self.definition.values()))
        return found.group(1) if found and (SCHEMAS_DIR / "codes" / f"{found.group(1)}.json").exists() else None

    def label(self, code: str) -> str:
        """A breakdown label in words, from its code list where the definition names one."""
        name = self.code_list()
        if name:
            for version in code_list(name).versions:
                if code in version.codes:
                    return f"{version.codes[code]} ({code})"
        return code


def long_date(day: date) -> str:
    return f"{day.day} {day.strftime('%B %Y')}"


def humanise(name: str) -> str:
    words = [WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _inline_text(token: Token) -> str:
    return token.content.strip()


@cache
def catalogue() -> tuple[Entry, ...]:
    """Every metric of the code, in catalogue order, with its docs row (empty if the docs lack one)."""
    rows = _docs_rows()
    out = []
    for metric in METRICS:
        section, definition = rows.get(metric.name, ("", {}))
        out.append(Entry(metric.name, metric.group, metric.kind, humanise(metric.name), section or humanise(metric.group), definition))
    return tuple(out)


def groups() -> list[tuple[str, str, list[Entry]]]:
    """(group, title, entries) in catalogue order; the title is the docs section its metrics are defined in."""
    out: dict[str, tuple[str, list[Entry]]] = {}
    for entry in catalogue():
        out.setdefault(entry.group, (entry.section, []))[1].append(entry)
    return [(g, title, entries) for g, (title, entries) in out.items()]


def entry(name: str) -> Entry:
    for e in catalogue():
        if e.name == name:
            return e
    raise KeyError(name)


def _section_title(text: str) -> str:
    return re.sub(r"\s*\(`[^`]*`(, [^)]*)?\)", "", text).strip()


def _docs_rows() -> dict[str, tuple[str, dict[str, str]]]:
    """metric name -> (section title, {column: cell}) from the tables of docs/metrics.md."""
    if not DOCS.exists():
        return {}
    tokens = _markdown().parse(DOCS.read_text("utf-8"))
    out: dict[str, tuple[str, dict[str, str]]] = {}
    section, cell_open, in_heading = "", False, 0
    header: list[str] = []
    row: list[str] = []
    for tok in tokens:
        if tok.type == "heading_open":
            in_heading = int(tok.tag[1])
        elif tok.type == "inline" and in_heading:
            if in_heading == 2:
                section = _section_title(tok.content)
            in_heading = 0
        elif tok.type == "thead_open":
            header = []
        elif tok.type in ("th_open", "td_open"):
            cell_open = True
        elif tok.type == "inline" and cell_open:
            row.append(_inline_text(tok))
            cell_open = False
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close":
            if not header:
                header = [h.lower() for h in row]
            elif row and row[0].startswith("`") and row[0].endswith("`"):
                name = row[0].strip("`")
                out[name] = (section, dict(zip(header[1:], row[1:], strict=False)))
        elif tok.type == "table_close":
            header = []
    return out


_CLASSES = {
    "paragraph_open": "govuk-body",
    "bullet_list_open": "govuk-list govuk-list--bullet",
    "ordered_list_open": "govuk-list govuk-list--number",
    "table_open": "govuk-table",
    "thead_open": "govuk-table__head",
    "tbody_open": "govuk-table__body",
    "tr_open": "govuk-table__row",
    "th_open": "govuk-table__header",
    "td_open": "govuk-table__cell",
    "link_open": "govuk-link",
}
_HEADINGS = {"h1": "govuk-heading-xl", "h2": "govuk-heading-l", "h3": "govuk-heading-m", "h4": "govuk-heading-s"}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@cache
def definitions_html() -> str:
    """docs/metrics.md as HTML with GOV.UK classes; each metric's table row has the metric's name as its id,
    each heading a slug of its text, so a figure on any page links to its definition."""
    if not DOCS.exists():
        return '<p class="govuk-body">The metric definitions (docs/metrics.md) are not installed with this copy.</p>'
    md = _markdown()
    tokens = md.parse(DOCS.read_text("utf-8"))
    names = {m.name for m in METRICS}
    row_start: Token | None = None
    first_cell = False
    for i, tok in enumerate(tokens):
        if tok.type in _CLASSES:
            tok.attrSet("class", _CLASSES[tok.type])
        if tok.type == "heading_open":
            tok.attrSet("class", _HEADINGS.get(tok.tag, "govuk-heading-s"))
            tok.attrSet("id", slug(tokens[i + 1].content))
            if tok.tag == "h1":  # the page's own heading is the template's; the docs' title becomes an h2
                tok.tag, tokens[i + 2].tag = "h2", "h2"
                tok.attrSet("class", "govuk-heading-l")
        elif tok.type == "th_open":
            tok.attrSet("scope", "col")
        elif tok.type == "tr_open":
            row_start, first_cell = tok, True
        elif tok.type == "inline" and first_cell and row_start is not None:
            first_cell = False
            name = tok.content.strip().strip("`")
            if name in names:
                row_start.attrSet("id", name)
    return str(md.renderer.render(tokens, md.options, {}))


def scheme_title(level: str) -> str:
    return {"national": "England", "la": "Local authority", "trust": "Trust", "school": "School or setting"}[level]


def figure_kind_hint(kind: str) -> str:
    return {"rate": "per 100", "mean": "average", "median": "median", "count": "count", "breakdown": "by category"}.get(kind, kind)


def as_plain(value: Any) -> Any:
    """A value as JSON and CSV hold it (dates as ISO text)."""
    return value.isoformat() if isinstance(value, date) else value
