"""GIAS extract import: signed org.* events, historical trust membership, idempotent re-import, bad rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ledger.config import Settings
from ledger.core.errors import LedgerError
from ledger.tools import admin
from ledger.tools.gias import import_gias, read_rows
from projections.facts import Moment
from projections.orgs import directory
from projections.runner import Projector, Reader

from .processes import run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "gias"


def test_import_registers_establishments_with_history(settings: Settings) -> None:
    ledger = admin.initialise(settings).ledger
    receipts = import_gias(ledger, read_rows(FIXTURES / "establishments.csv"))
    # 100005; 100004 and its closure; 137001 and its joining the trust on 2012-04-01; 100020; 141234 (trust from
    # registration); 150001 is only proposed to open
    assert [r.created for r in receipts] == [True] * 7
    orgs = {o["org"]: o for o in ledger.list_orgs()}
    assert "urn:150001" not in orgs
    assert (orgs["urn:100020"]["kind"], orgs["urn:141234"]["kind"], orgs["urn:100005"]["kind"]) == ("ap_setting", "ap_setting", "school")
    assert orgs["urn:100004"]["closed"] and orgs["urn:141234"]["trust"] == "trust:TR02345"
    assert orgs["urn:137001"]["trust"] == "trust:TR01234"
    stored = ledger.store.count_events()
    assert import_gias(ledger, read_rows(FIXTURES / "establishments.csv")) == [] and ledger.store.count_events() == stored  # nothing new

    update = import_gias(ledger, read_rows(FIXTURES / "establishments_2026-09.csv"))
    assert sorted(ledger.get_event(r.event_id)["type"] for r in update) == ["org.closed", "org.joined_trust", "org.left_trust"]
    Projector(ledger.store).catch_up()
    before, after = (directory(Reader(ledger.store), Moment(day)) for day in (date(2026, 8, 30), date(2026, 9, 1)))
    assert (before.trust_of("urn:137001"), after.trust_of("urn:137001")) == ("trust:TR01234", "trust:TR05678")
    assert before.orgs["urn:100020"].open and not after.orgs["urn:100020"].open
    assert after.la_of("urn:141234") == "la:202"
    ledger.store.close()


def test_a_bad_row_rejects_the_whole_file(settings: Settings) -> None:
    ledger = admin.initialise(settings).ledger
    before = ledger.store.count_events()
    with pytest.raises(LedgerError) as exc:
        import_gias(ledger, read_rows(FIXTURES / "bad_la.csv"))
    assert sorted((p.code, p.path) for p in exc.value.problems) == [("gias_date", "$[3].OpenDate"), ("gias_value", "$[3].LA (code)")]
    assert ledger.store.count_events() == before
    ledger.store.close()


def test_import_gias_command(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    run_cli(settings, "init")
    done = run_cli(settings, "orgs", "import-gias", str(FIXTURES / "establishments.csv"))
    assert "7 org events stored" in done.stdout
    assert "0 org events stored" in run_cli(settings, "orgs", "import-gias", str(FIXTURES / "establishments.csv")).stdout
    failed = run_cli(settings, "orgs", "import-gias", str(FIXTURES / "bad_la.csv"), check=False)
    assert failed.returncode == 1 and "$[3].LA (code)" in failed.stderr
    assert "Example:" in run_cli(settings, "orgs", "import-gias", "--help").stdout
