"""The directory folded from the organisation facts of one ledger time at any D (``projections.orgs.OrgFacts``): after
the first fold, the organisations whose one fact is their registration are made once and shared; every directory must
still be the plain fold's, for any facts and any D."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from projections.facts import Moment
from projections.orgs import ORG_TYPES, Directory, Org, OrgFacts, _fold

DAYS = [date(2025, 9, 1) + timedelta(days=30 * i) for i in range(6)]
fact = st.tuples(
    st.sampled_from(["urn:100001", "urn:100002", "urn:100003", "uprov:801-1", "trust:1"]),
    st.sampled_from(ORG_TYPES),
    st.sampled_from([d.isoformat() for d in DAYS]),
    st.sampled_from(["school", "ap_setting", "unregistered_provider"]),
    st.sampled_from([None, "la:801", "la:202"]),
    st.sampled_from([None, "trust:1", "trust:2"]),
    st.sampled_from([None, "28", "34"]),
)


def _plain(rows: list[tuple[object, ...]], day: date) -> dict[str, Org]:
    return _fold(rows, day.isoformat(), Directory()).orgs


@hsettings(max_examples=300, deadline=None)
@given(st.lists(fact, max_size=12), st.lists(st.sampled_from([d - timedelta(days=1) for d in DAYS] + DAYS), min_size=2, max_size=6))
def test_every_directory_of_the_same_facts_is_the_plain_folds(unordered: list[tuple[object, ...]], days: list[date]) -> None:
    rows = sorted(unordered, key=lambda row: str(row[2]))  # effective order, then ledger order (the list's), as read
    facts = OrgFacts(rows)
    for day in days:  # the first fold is the plain one; the others share the organisations registered once
        assert facts.at(Moment(day)).orgs == _plain(rows, day), day
    assert facts._shared is not None  # noqa: SLF001 - the second fold and after were made from the shared part


def test_organisations_registered_once_are_shared_and_the_others_folded_at_each_date() -> None:
    rows = [
        ("urn:100001", "org.registered", "2025-09-01", "school", "la:801", None, "28"),
        ("urn:100002", "org.registered", "2025-10-01", "school", "la:801", "trust:1", "28"),
        ("urn:100003", "org.registered", "2025-09-01", "school", "la:202", None, "34"),
        ("urn:100003", "org.joined_trust", "2025-11-01", None, None, "trust:2", None),
    ]
    facts = OrgFacts(rows)
    before, after = (facts.at(Moment(day)) for day in (date(2025, 9, 15), date(2025, 11, 15)))
    assert facts.at(Moment(date(2025, 9, 15))) == before and facts.at(Moment(date(2025, 11, 15))) == after
    shared = facts.at(Moment(date(2025, 12, 1)))
    assert shared.orgs["urn:100001"] is after.orgs["urn:100001"]  # one Org at every D (after the first fold)
    assert [before.trust_of(o) for o in ("urn:100001", "urn:100002", "urn:100003")] == [None, None, None]
    assert [after.trust_of(o) for o in ("urn:100001", "urn:100002", "urn:100003")] == [None, "trust:1", "trust:2"]
    assert shared.orgs["urn:100003"] is not after.orgs["urn:100003"]  # (folded again at each D: it has two facts)
    assert before.of_kind("school") == ["urn:100001", "urn:100002", "urn:100003"]
