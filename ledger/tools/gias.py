"""Import a GIAS-style establishments extract as signed ``org.*`` events (signed by the ledger as dfe:admin).

Columns (GIAS "all establishment data" names): ``URN``, ``LA (code)``, ``EstablishmentName``,
``TypeOfEstablishment (code)``, ``PhaseOfEducation (code)``, ``EstablishmentStatus (code)``,
``OpenDate``, ``CloseDate`` (DD-MM-YYYY or YYYY-MM-DD), ``PredecessorURN`` and ``Trusts (code)``
(a trust reference, TRnnnnn or the GIAS group number), optionally ``JoinedTrustDate``.

Each row becomes the events that bring the ledger up to date with it: ``org.registered`` (effective
on the opening date), ``org.left_trust``/``org.joined_trust`` when the trust changed (effective on
``JoinedTrustDate``, else the import date) and ``org.closed`` on the closing date. Event ids are derived
from the row, so importing the same file twice stores nothing new.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ledger.core.codes import la_codes
from ledger.core.errors import LedgerError, Problem
from ledger.core.identifiers import check_org_id
from ledger.own_events import event_body, signed
from ledger.service import ADMIN_ORG, Ledger, Receipt

AP_TYPES = ("14", "38", "42", "43")  # pupil referral unit, AP free school, AP academy converter / sponsor led
STATUS_OPEN, STATUS_CLOSED, STATUS_PROPOSED_TO_OPEN = "1", "2", "4"
NAMESPACE = uuid.UUID("0f9a3a52-8c1e-4d55-9d2c-6a7b1e0c4f11")
EARLIEST_EFFECTIVE = date(2000, 9, 1)  # the code lists start in 2000/01: older opening dates are recorded as this
REQUIRED = ("URN", "LA (code)", "EstablishmentName", "TypeOfEstablishment (code)", "EstablishmentStatus (code)")


@dataclass(frozen=True)
class Row:
    line: int
    org: str
    la: str
    name: str
    gias_type: str
    phase: str | None
    status: str
    opened: date
    closed: date | None
    predecessor: str | None
    trust: str | None
    joined_trust: date | None


def _date(value: str, line: int, column: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    for fmt in ("%d-%m-%Y", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise LedgerError.one("gias_date", f"$[{line}].{column}", f"{value!r} is not a date (DD-MM-YYYY)")


def _trust(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if value.upper().startswith("TR"):
        return f"trust:{value.upper()}"
    return f"trust:TR{int(value):05d}" if value.isdigit() else f"trust:{value}"


def _parse(line: int, raw: dict[str, str]) -> tuple[Row | None, list[Problem]]:
    found: list[Problem] = []

    def check(column: str, value: str | None, scheme: str) -> None:
        reason = check_org_id(value, {scheme}, la_codes()) if value else None
        if reason:
            found.append(Problem("gias_value", f"$[{line}].{column}", reason))

    def day(column: str) -> date | None:
        try:
            return _date(raw.get(column) or "", line, column)
        except LedgerError as exc:
            found.extend(exc.problems)
            return None

    org, la = f"urn:{raw['URN'].strip()}", f"la:{raw['LA (code)'].strip()}"
    predecessor = f"urn:{raw['PredecessorURN'].strip()}" if (raw.get("PredecessorURN") or "").strip() else None
    trust = _trust(raw.get("Trusts (code)") or "")
    for column, value, scheme in (
        ("URN", org, "urn"),
        ("LA (code)", la, "la"),
        ("PredecessorURN", predecessor, "urn"),
        ("Trusts (code)", trust, "trust"),
    ):
        check(column, value, scheme)
    opened, closed, joined = day("OpenDate"), day("CloseDate"), day("JoinedTrustDate")
    if found:
        return None, found
    return Row(
        line,
        org,
        la,
        raw["EstablishmentName"].strip(),
        raw["TypeOfEstablishment (code)"].strip().zfill(2),
        (raw.get("PhaseOfEducation (code)") or "").strip() or None,
        raw["EstablishmentStatus (code)"].strip(),
        max(opened or EARLIEST_EFFECTIVE, EARLIEST_EFFECTIVE),
        closed,
        predecessor,
        trust,
        joined,
    ), []


def read_rows(path: Path) -> list[Row]:
    """Parse and check the whole file first: a bad row rejects the import before anything is stored."""
    rows: list[Row] = []
    problems: list[Problem] = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise LedgerError.one("gias_columns", "$", f"missing column(s): {', '.join(missing)}")
        for line, raw in enumerate(reader, start=2):
            row, found = _parse(line, raw)
            problems.extend(found)
            if row is not None:
                rows.append(row)
    if problems:
        raise LedgerError(problems)
    return rows


def _event(ledger: Ledger, row: Row, event_type: str, data: dict[str, Any], day: date, tag: str) -> dict[str, Any]:
    event_id = str(uuid.uuid5(NAMESPACE, f"{row.org}|{event_type}|{tag}"))
    body = event_body(event_type, ADMIN_ORG, {"org": row.org}, data, day, ledger.clock(), event_id=event_id)
    return signed(body, ledger.secrets.signing_key)


def events_for(ledger: Ledger, row: Row, today: date) -> Iterator[dict[str, Any]]:
    """The events that bring the ledger's record of ``row.org`` in line with the row."""
    state = ledger.org_state(row.org)
    if row.status == STATUS_PROPOSED_TO_OPEN and not state.registered:
        return
    if not state.registered:
        data: dict[str, Any] = {
            "kind": "ap_setting" if row.gias_type in AP_TYPES else "school",
            "name": row.name,
            "la": row.la,
            "gias_type": row.gias_type,
        }
        if row.phase:
            data["phase"] = row.phase
        if row.predecessor:
            data["predecessor"] = row.predecessor
        if row.trust and row.joined_trust is None:
            data["trust"] = row.trust
        yield _event(ledger, row, "org.registered", data, min(row.opened, today), "")
        current = data.get("trust")
    else:
        current = state.trust
        if state.closed:
            return
    if row.trust != current:
        when = min(row.joined_trust or today, today)
        if current:
            yield _event(ledger, row, "org.left_trust", {"trust": current}, when, f"{current}|{when}")
        if row.trust:
            yield _event(ledger, row, "org.joined_trust", {"trust": row.trust}, when, f"{row.trust}|{when}")
    if row.status == STATUS_CLOSED:
        yield _event(ledger, row, "org.closed", {}, min(row.closed or today, today), "")


def _row_path(line: int) -> Callable[[int], str]:
    def path(_: int) -> str:
        return f"$[{line}]"

    return path


def import_gias(ledger: Ledger, rows: Sequence[Row], on_progress: Callable[[int], None] = lambda n: None) -> list[Receipt]:
    """Import the rows of a file (:func:`read_rows`); each row's events are one transaction (all of a row, or none)."""
    today = ledger.clock().date()
    receipts: list[Receipt] = []
    for row in rows:
        envelopes = list(events_for(ledger, row, today))
        if envelopes:
            try:
                receipts.extend(ledger.submit_batch(envelopes, path_of=_row_path(row.line)))
            except LedgerError as exc:
                raise LedgerError(
                    [Problem(p.code, p.path, f"row {row.line} ({row.org}): {p.message}", p.category) for p in exc.problems]
                ) from None
        on_progress(1)
    return receipts
