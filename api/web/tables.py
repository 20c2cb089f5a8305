"""Tables of the pages: sorted and filtered on the server from the query string (so they work without
JavaScript), each downloadable as CSV with exactly the rows and columns the page shows."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

MAX_QUERY = 100


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    numeric: bool = False


@dataclass
class DataTable:
    id: str
    columns: Sequence[Column]
    all_rows: Sequence[Mapping[str, Any]]
    path: str = ""
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{self.id}-"

    @property
    def sort_key(self) -> str | None:
        key = self.params.get(self.prefix + "sort")
        return key if key in {c.key for c in self.columns} else None

    @property
    def order(self) -> str:
        return "descending" if self.params.get(self.prefix + "order") == "descending" else "ascending"

    @property
    def query(self) -> str:
        return (self.params.get(self.prefix + "q") or "").strip()[:MAX_QUERY]

    @property
    def keep(self) -> list[tuple[str, str]]:
        """The other query parameters (the page's, and other tables'), kept by this table's filter form."""
        return [(k, v) for k, v in self.params.items() if k != self.prefix + "q" and k not in ("format", "table")]

    @property
    def rows(self) -> list[Mapping[str, Any]]:
        rows = list(self.all_rows)
        if self.query:
            needle = self.query.lower()
            rows = [r for r in rows if any(needle in _text(r.get(c.key)).lower() for c in self.columns)]
        key = self.sort_key
        if key:
            numbers = [r for r in rows if _is_number(r.get(key))]
            others = [r for r in rows if not _is_number(r.get(key))]
            numbers.sort(key=lambda r: r[key], reverse=self.order == "descending")
            others.sort(key=lambda r: _text(r.get(key)), reverse=self.order == "descending")
            rows = numbers + others  # figures first, then symbols (suppressed, not applicable) and blanks
        return rows

    def _url(self, **changes: str) -> str:
        params = {k: v for k, v in self.params.items() if k not in ("format", "table")}
        params.update(changes)
        return f"{self.path}?{urlencode(params)}"

    def sort_url(self, key: str) -> str:
        return self._url(**{self.prefix + "sort": key, self.prefix + "order": self.next_order(key)}) + f"#table-{self.id}"

    def next_order(self, key: str) -> str:
        return "descending" if self.sort_key == key and self.order == "ascending" else "ascending"

    def aria_sort(self, key: str) -> str:
        return self.order if self.sort_key == key else "none"

    @property
    def csv_url(self) -> str:
        return self._url(format="csv", table=self.id)

    def csv_bytes(self) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.title for c in self.columns])
        for r in self.rows:
            writer.writerow([_csv(r.get(c.key)) for c in self.columns])
        return out.getvalue().encode("utf-8")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _csv(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value
