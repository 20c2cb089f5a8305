"""The error catalogue (issue 19): every code the ledger and the API emit is in ``ledger/core/error_codes.py`` with its
HTTP status and message, nothing stale is listed, and the README's table is the catalogue's."""

from __future__ import annotations

from ledger.core import error_codes

from .error_scan import ROOT, scan


def test_every_code_the_source_emits_is_in_the_catalogue() -> None:
    listed = error_codes.by_code()
    missing = sorted({f"{f.code} ({f.where})" for f in scan() if f.code not in listed})
    assert missing == [], "add these to ledger/core/error_codes.py (and regenerate the README table)"


def test_the_catalogue_lists_no_code_the_source_no_longer_emits() -> None:
    emitted = {f.code for f in scan()}
    stale = [e.code for e in error_codes.CATALOGUE if e.code not in emitted and not e.code.startswith(error_codes.SCHEMA_KEYWORD_PREFIX)]
    assert stale == []


def test_each_code_once_with_a_status_and_a_message() -> None:
    codes = [e.code for e in error_codes.CATALOGUE]
    assert len(codes) == len(set(codes))
    for entry in error_codes.CATALOGUE:
        assert entry.message and entry.status and all(400 <= s < 600 for s in entry.status), entry


def test_the_readme_table_is_the_catalogue() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    table = readme.split("<!-- error-codes: begin -->\n")[1].split("<!-- error-codes: end -->")[0]
    assert table == error_codes.readme_table(), "regenerate it: python -m ledger.core.error_codes"
