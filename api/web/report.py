"""The public transparency report: every metric of the catalogue for England, an LA or a trust, at a log
checkpoint, with disclosure control applied (``projections.disclosure``) across every area of the level at
once, so that no suppressed figure can be recovered from another area's page or from England's totals.
The same report is a page, a CSV and a JSON file; the JSON names the checkpoint it was computed from.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ledger.config import Settings
from projections.context import Context
from projections.disclosure import NOT_APPLICABLE, SUPPRESSED, TOTAL, UNAVAILABLE, Published, Release, Rules, Table, protect
from projections.funding import NOT_PUBLIC
from projections.metrics import Figure
from projections.published import ap_placements_by_setting_type

from . import catalogue
from .data import Checkpoint, WebData

FORMAT = "pupil-ledger/public-report@v1"
LEVELS = ("national", "la", "trust")
# Published DfE figures shown beside a live breakdown, where the shared data has them (by metric name).
DFE_COMPARATORS = {"open_ap_placements_by_setting_type": ap_placements_by_setting_type}


def rules_of(settings: Settings) -> Rules:
    """The disclosure rules ``settings`` ask for (``PUPIL_LEDGER_DISCLOSURE_THRESHOLD``; by default the rules' own)."""
    return Rules() if settings.disclosure_threshold is None else Rules(settings.disclosure_threshold)


@dataclass
class Category:
    code: str
    label: str
    value: Published | None
    national_value: Published | None


@dataclass
class PublicFigure:
    metric: str
    group: str
    kind: str
    title: str
    definition: str
    period_from: date | None
    period_to: date
    period: str
    value: Published | float | None
    national_value: Published | float | None
    categories: list[Category] = field(default_factory=list)
    published_dfe: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "group": self.group,
            "kind": self.kind,
            "title": self.title,
            "definition": self.definition,
            "period": {"from": catalogue.as_plain(self.period_from), "to": self.period_to.isoformat(), "text": self.period},
            "value": self.value,
            "national_value": self.national_value,
        }
        if self.kind == "breakdown":
            out["categories"] = [
                {"code": c.code, "label": c.label, "value": c.value, "national_value": c.national_value} for c in self.categories
            ]
        if self.published_dfe:
            out["published_dfe"] = self.published_dfe
        return out


@dataclass
class PublicReport:
    level: str
    org: str
    name: str
    as_of: date
    checkpoint: Checkpoint
    rules: Rules
    groups: list[tuple[str, str, list[PublicFigure]]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "level": self.level,
            "org": self.org,
            "name": self.name,
            "as_of": self.as_of.isoformat(),
            "checkpoint": self.checkpoint.as_dict(),
            "disclosure": {
                "threshold": self.rules.threshold,
                "rules": self.rules.statement,
                "symbols": {SUPPRESSED: "suppressed", NOT_APPLICABLE: "not applicable", UNAVAILABLE: "not available"},
            },
            "figures": [f.as_dict() for _, _, figs in self.groups for f in figs],
        }

    def json_bytes(self) -> bytes:
        return (json.dumps(self.as_dict(), ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode("utf-8")

    def csv_rows(self) -> list[list[Any]]:
        header = [
            "geographic_level",
            "org",
            "name",
            "as_of",
            "group",
            "metric",
            "kind",
            "category",
            "category_label",
            "value",
            "national_value",
            "period_from",
            "period_to",
            "definition",
            "tree_size",
            "root_hash",
        ]
        rows: list[list[Any]] = [header]
        common = [self.level, self.org, self.name, self.as_of.isoformat()]
        tail = [self.checkpoint.tree_size, self.checkpoint.root_hash]
        for group, _, figs in self.groups:
            for f in figs:
                period = [catalogue.as_plain(f.period_from) or "", f.period_to.isoformat(), f.definition]
                rows.append([*common, group, f.metric, f.kind, "", "", _cell(f.value), _cell(f.national_value), *period, *tail])
                for c in f.categories:
                    rows.append(
                        [*common, group, f.metric, f.kind, c.code, c.label, _cell(c.value), _cell(c.national_value), *period, *tail]
                    )
        return rows

    def csv_bytes(self) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(self.csv_rows())
        return out.getvalue().encode("utf-8")

    def digests(self) -> dict[str, str]:
        return {"json": hashlib.sha256(self.json_bytes()).hexdigest(), "csv": hashlib.sha256(self.csv_bytes()).hexdigest()}


def _cell(value: Any) -> Any:
    return "" if value is None else value


class Publication:
    """Every public report at one checkpoint and as-of date: England, each LA, each trust, protected together per level."""

    def __init__(self, data: WebData, ctx: Context, as_of: date, checkpoint: Checkpoint, rules: Rules):
        self.data, self.ctx, self.as_of, self.checkpoint = data, ctx, as_of, checkpoint
        self.rules = rules
        self._levels: dict[str, _LevelRelease] = {}
        self.rendered: dict[tuple[str, str, str], bytes] = {}  # (level, org, format) -> the bytes served, kept by the pages

    def release(self, level: str) -> _LevelRelease:
        key = "la" if level == "national" else level
        if key not in self._levels:
            self._levels[key] = _LevelRelease(self.data.level_figures(self.ctx, key), key, self.rules)
        return self._levels[key]

    def scopes(self, level: str) -> list[str]:
        return ["england"] if level == "national" else list(self.release(level).rows)

    def report(self, level: str, org: str) -> PublicReport:
        if level not in LEVELS:
            raise ValueError(f"public reports are for {', '.join(LEVELS)}")
        release = self.release(level)
        england = self.release("national")
        row = TOTAL if level == "national" else org
        if level != "national" and org not in release.rows:
            raise KeyError(org)
        groups = []
        for group, title, entries in catalogue.groups():
            figs = []
            for e in entries:
                if e.name in NOT_PUBLIC:  # spend would disclose small counts (projections.funding)
                    continue
                start, end, words = e.period(self.as_of)
                value, categories = release.published(e, row)
                national, national_categories = england.published(e, TOTAL)
                if level == "national":
                    national, national_categories = None, {}
                cats = [Category(code, e.label(code), v, national_categories.get(code)) for code, v in categories.items()]
                comparator = DFE_COMPARATORS.get(e.name)
                figs.append(
                    PublicFigure(
                        e.name,
                        e.group,
                        e.kind,
                        e.title,
                        e.anchor,
                        start,
                        end,
                        words,
                        value,
                        national,
                        cats,
                        comparator(org if level != "national" else "england") if comparator and level != "trust" else None,
                    )
                )
            groups.append((group, title, figs))
        name = "England" if level == "national" else self.data.name_of(org)
        return PublicReport(level, "england" if level == "national" else org, name, self.as_of, self.checkpoint, self.rules, groups)


class _LevelRelease:
    """The protected tables of every metric for all areas of one level (rows) and England (their total row
    where the areas add up to England; a table of its own where they do not, e.g. a provider counted under
    two LAs, or trusts, which do not cover England)."""

    def __init__(self, by_metric: dict[str, tuple[dict[str, Figure], Figure]], level: str, rules: Rules):
        self.level = level
        rows = sorted({scope for found, _ in by_metric.values() for scope in found})
        self.rows = tuple(rows)
        self.figures = by_metric
        self.additive: dict[str, bool] = {}
        self.labels: dict[str, tuple[str, ...]] = {}
        tables: list[Table] = []
        for e in catalogue.catalogue():
            if e.name in NOT_PUBLIC:
                continue
            found, national = by_metric[e.name]
            if e.kind == "breakdown":
                labels = tuple(sorted({k for f in (*found.values(), national) for k in (f.value or {})}))
                self.labels[e.name] = labels
                cells = {(r, k): int(found[r].value.get(k, 0)) for r in rows if r in found for k in labels}
                whole = {k: int(national.value.get(k, 0)) for k in labels}
            elif e.kind in ("count", "rate"):
                labels = ("value",)
                cells = {(r, "value"): _count(found[r], e.kind) for r in rows if r in found}
                whole = {"value": _count(national, e.kind)}
            else:
                continue  # averages are published on their item count alone (Release.rate)
            additive = level == "la" and all(sum(cells.get((r, k), 0) for r in rows) == whole[k] for k in labels)
            self.additive[e.name] = additive
            breakdown = e.kind == "breakdown"
            tables.append(Table(e.name, self.rows, labels, cells, row_totals=breakdown, column_totals=additive))
            if not additive:
                tables.append(
                    Table(
                        f"{e.name}@england",
                        ("england",),
                        labels,
                        {("england", k): whole[k] for k in labels},
                        row_totals=breakdown,
                        column_totals=False,
                    )
                )
        self.release: Release = protect(tables, rules)

    def _where(self, name: str, row: str) -> tuple[str, str]:
        if row == TOTAL and not self.additive.get(name, True):
            return f"{name}@england", "england"
        return name, row

    def published(self, e: catalogue.Entry, row: str) -> tuple[Published | float | None, dict[str, Published | None]]:
        found, national = self.figures[e.name]
        figure = national if row == TOTAL else found.get(row)
        if figure is None:
            return UNAVAILABLE, {}
        table, r = self._where(e.name, row)
        if e.kind == "count":
            return self.release.published(table, r, "value"), {}
        if e.kind == "rate":
            return self.release.rate(table, r, "value", figure.value, figure.denominator), {}
        if e.kind == "breakdown":
            cats = {k: self.release.published(table, r, k) for k in self.labels[e.name]}
            return self.release.published(table, r, TOTAL), cats
        # mean / median: the item count is the denominator
        if figure.value is None or not figure.denominator:
            return NOT_APPLICABLE, {}
        return (figure.value if figure.denominator >= self.release.rules.threshold else SUPPRESSED), {}


def _count(figure: Figure, kind: str) -> int:
    if kind == "count":
        return int(figure.value or 0)
    return int(figure.numerator or 0)
