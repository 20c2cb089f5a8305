"""Researchers' anonymised exports (docs/research.md), over HTTP on SQLite and PostgreSQL: approval, revocation,
expiry and variable limits; reproducible releases recorded in the ledger; erased pupils never released; subject
access shows the projects; and every release's stated k and l equal what pycanon (an independent library, in its
own environment) measures on the files."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger import own_events
from ledger.core import ed25519, envelope, jcs
from ledger.research.releases import project_key, pseudonym
from ledger.tools import admin
from ledger.tools.simulate import Area, simulate_area
from ledger.tools.simulate_load import load_area
from projections.research import package

from .conftest import World
from .research_oracle import Oracle, csv_columns, environment

RESEARCHER, OTHER_RESEARCHER = "research:uni-bristol", "research:uni-leeds"
VARIABLES = [
    "kind",
    "start",
    "end",
    "duration",
    "establishment",
    "year_group",
    "sen_status",
    "looked_after",
    "setting_type",
    "reason",
    "outcome",
]


@pytest.fixture(scope="session")
def oracle(request: pytest.FixtureRequest) -> Iterator[Oracle]:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider: then a folder of the system's temp dir
    folder = Path(cache.mkdir("pycanon-1.3.6")) if cache is not None else Path(tempfile.gettempdir()) / "pupil-ledger-pycanon-1.3.6"
    folder.mkdir(parents=True, exist_ok=True)
    python = environment(folder)
    found = Oracle(python)
    yield found
    found.close()


def approval(project: str = "ap-moves", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project": project,
        "purpose": "Movements into and out of alternative provision",
        "unit": "episode",
        "variables": VARIABLES,
        "quasi_identifiers": ["start", "establishment", "year_group", "looked_after"],
        "sensitive": ["reason", "sen_status"],
        "population": {"kinds": ["placement", "exclusion", "registration"]},
        "period": {"from": "2024-09-01", "to": "2026-10-05"},
        "expires_on": "2027-03-31",
        "k": 5,
        "l": 2,
    }
    data.update(changes)
    return data


@pytest.fixture
def area(world: World) -> Area:
    """A simulated local area of 400 pupils loaded into the world's ledger, researcher organisations, and a sealed log."""
    simulated = simulate_area(pupils=400, seed=3, la_code="202", today=world.clock.now.date())
    load_area(world.ledger, simulated)
    for org, name in ((RESEARCHER, "University of Bristol"), (OTHER_RESEARCHER, "University of Leeds")):
        admin.add_org(world.ledger, org, "researcher", name)
    seal(world)
    return simulated


def seal(world: World) -> int:
    admin.sealer(world.ledger).seal_all()
    return int(world.ledger.store.query("SELECT MAX(tree_size) FROM log_checkpoints")[0][0])


def post_admin(world: World, client: TestClient, event_type: str, org: str, data: dict[str, Any]) -> Any:
    """The operator posting over HTTP, signed with the dfe:admin key."""
    return client.post("/events", json=own_events.admin_event(world.ledger, event_type, org, data))


def assert_measured(oracle: Oracle, files: dict[str, bytes]) -> dict[str, Any]:
    """The manifest's k and l are what pycanon measures on rows.csv; the files are those the manifest lists."""
    manifest = json.loads(files[package.MANIFEST])
    for item in manifest["files"]:
        assert hashlib.sha256(files[item["name"]]).hexdigest() == item["sha256"] and len(files[item["name"]]) == item["bytes"]
    anonymity = manifest["anonymity"]
    measured = oracle.measure(csv_columns(files[package.ROWS_CSV]), anonymity["quasi_identifiers"], anonymity["sensitive"])
    assert measured == {"k": anonymity["k"], "k_rows": anonymity["k_rows"], "l": anonymity["l"]}, (measured, anonymity)
    if manifest["rows"]:
        assert anonymity["k"] >= anonymity["k_required"] and (anonymity["l"] is None or anonymity["l"] >= anonymity["l_required"])
    return dict(manifest)


def world_upn_without_rows(world: World) -> str:
    """A pupil registered after the project's period: in no release."""
    from .conftest import upn

    world.admit(upn(77), occurred_on=world.clock.now.date())
    return upn(77)


def fetch(client: TestClient, release_id: str) -> dict[str, bytes]:
    listing = client.get(f"/research/exports/{release_id}")
    assert listing.status_code == 200, listing.text
    return {item["name"]: client.get(item["url"]).content for item in listing.json()["files"]}


def releases_recorded(world: World) -> int:
    return int(world.ledger.store.query("SELECT COUNT(*) FROM ledger_index WHERE type = 'research.export_released'")[0][0])


@pytest.mark.postgres
def test_approval_revocation_expiry_and_variable_limits_over_http(world: World, area: Area, oracle: Oracle) -> None:
    ledger = world.ledger
    app = create_app(ledger)
    operator = TestClient(app, headers={"authorization": f"Bearer {world.admin_token}"})
    researcher = TestClient(app, headers={"authorization": f"Bearer {ledger.issue_token(RESEARCHER, 'researcher')}"})
    other = TestClient(app, headers={"authorization": f"Bearer {ledger.issue_token(OTHER_RESEARCHER, 'researcher')}"})
    school = TestClient(app, headers={"authorization": f"Bearer {ledger.issue_token('urn:100005', 'school')}"})

    # not approved yet: no such project, and nothing is recorded or kept
    assert researcher.post("/research/exports", json={"project": "ap-moves"}).json()["errors"][0]["code"] == "project_unknown"
    # only the operator approves; a researcher token cannot post it, nor a release
    forged = own_events.admin_event(ledger, "research.project_approved", RESEARCHER, approval())
    assert researcher.post("/events", json=forged).json()["errors"][0]["code"] == "submitter_mismatch"
    forged_release = own_events.admin_event(
        ledger,
        "research.export_released",
        RESEARCHER,
        {
            "project": "ap-moves",
            "manifest_digest": "0" * 64,
            "checkpoint": {"tree_size": 1, "root": "A" * 43 + "="},
            "spec": {"unit": "episode", "variables": ["kind"]},
            "rows": 0,
            "suppressed_rows": 0,
            "k": None,
            "l": None,
        },
    )
    assert operator.post("/events", json=forged_release).json()["errors"][0]["code"] == "role_cannot_submit"  # the ledger alone writes it
    bad = post_admin(world, operator, "research.project_approved", RESEARCHER, approval(sensitive=["year_group"]))
    assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "sensitive_and_quasi_identifier"
    assert (
        post_admin(world, operator, "research.project_approved", "urn:100005", approval()).json()["errors"][0]["code"] == "not_researcher"
    )
    assert post_admin(world, operator, "research.project_approved", RESEARCHER, approval()).status_code == 201
    again = post_admin(world, operator, "research.project_approved", RESEARCHER, approval())
    assert again.status_code == 409 and again.json()["errors"][0]["code"] == "project_exists"

    made = researcher.post("/research/exports", json={"project": "ap-moves"})
    assert made.status_code == 201, made.text
    release_id = made.json()["release_id"]
    files = fetch(researcher, release_id)
    manifest = assert_measured(oracle, files)
    assert (
        manifest["rows"] > 0
        and manifest["checkpoint"]["tree_size"] == ledger.store.query("SELECT MAX(tree_size) FROM log_checkpoints")[0][0]
    )
    # the manifest is signed by the ledger's key (DSSE), and the release recorded with its digest
    signed = json.loads(files[package.SIGNED_MANIFEST])
    payload = envelope.b64decode_strict(signed["payload"])
    assert payload + b"\n" == files[package.MANIFEST] and hashlib.sha256(payload).hexdigest() == made.json()["manifest_digest"]
    assert ed25519.verify(
        ledger.secrets.signing_public_raw,
        envelope.b64decode_strict(signed["signatures"][0]["sig"]),
        envelope.pae(package.MANIFEST_PAYLOAD_TYPE, payload),
    )
    recorded = operator.get(f"/events/{release_id}").json()
    body = jcs.parse(base64.b64decode(recorded["envelope"]["payload"]))
    assert body["type"] == "research.export_released" and body["data"]["manifest_digest"] == made.json()["manifest_digest"]
    assert body["data"]["k"] == manifest["anonymity"]["k"] and body["data"]["rows"] == manifest["rows"]
    # the researcher sees the releases of its project (oversight); another researcher, a school, do not
    project = researcher.get("/research/projects/ap-moves").json()
    assert project["status"] == "active" and [r["release_id"] for r in project["releases"]] == [release_id]
    assert other.get("/research/projects/ap-moves").status_code == 404
    assert other.get(f"/research/exports/{release_id}").status_code == 404
    assert other.post("/research/exports", json={"project": "ap-moves"}).status_code == 404
    assert school.post("/research/exports", json={"project": "ap-moves"}).json()["errors"][0]["code"] == "role_cannot_export"
    assert [p["project"] for p in operator.get("/research/projects").json()["projects"]] == ["ap-moves"]
    # a researcher token never reads identified data
    assert researcher.get(f"/pupils/{area.example_upn}/history").json()["errors"][0]["code"] == "role_cannot_read_pupils"

    before = releases_recorded(world)
    unapproved = researcher.post("/research/exports", json={"project": "ap-moves", "variables": ["kind", "tier"]})
    assert unapproved.status_code == 403 and unapproved.json()["errors"] == [
        {"code": "variable_not_approved", "path": "$.spec.variables[1]", "message": unapproved.json()["errors"][0]["message"]}
    ]
    assert researcher.post("/research/exports", json={"project": "ap-moves", "tree_size": 10**9}).status_code == 404
    assert researcher.post("/research/exports", json={"project": "ap-moves", "colour": "red"}).status_code == 422
    assert researcher.post("/research/exports", content=b"{not json").status_code == 400
    narrower = researcher.post(
        "/research/exports", json={"project": "ap-moves", "variables": ["kind", "start", "establishment", "year_group"]}
    )
    assert narrower.status_code == 201 and narrower.json()["manifest"]["spec"]["variables"] == [
        "kind",
        "start",
        "establishment",
        "year_group",
    ]
    assert_measured(oracle, fetch(researcher, narrower.json()["release_id"]))
    assert releases_recorded(world) == before + 1

    # revoked: refused at once, nothing recorded or kept
    assert (
        post_admin(world, operator, "research.project_revoked", RESEARCHER, {"project": "ap-moves", "reason": "breach"}).status_code == 201
    )
    revoked = researcher.post("/research/exports", json={"project": "ap-moves"})
    assert revoked.status_code == 403 and revoked.json()["errors"][0]["code"] == "project_revoked"
    assert releases_recorded(world) == before + 1
    kept = ledger.store.query("SELECT COUNT(DISTINCT release_id) FROM research_release_files")[0][0]
    assert kept == releases_recorded(world)

    # expiry: approved until a day, refused the day after
    assert (
        post_admin(world, operator, "research.project_approved", RESEARCHER, approval("short", expires_on="2026-10-06")).status_code == 201
    )
    world.clock.advance(days=1)
    assert researcher.post("/research/exports", json={"project": "short"}).status_code == 201
    world.clock.advance(days=1)
    expired = researcher.post("/research/exports", json={"project": "short"})
    assert expired.status_code == 403 and expired.json()["errors"][0]["code"] == "project_expired"
    assert researcher.get("/research/projects/short").json()["status"] == "expired"


@pytest.mark.postgres
def test_releases_are_reproducible_and_pseudonyms_keyed_per_project(world: World, area: Area, oracle: Oracle) -> None:
    from api.research_release import release
    from ledger.research import operator
    from ledger.research.releases import all_projects
    from projections.research.export import Spec, build
    from projections.research.reader import checkpoint_cut

    ledger = world.ledger
    operator.approve_project(ledger, RESEARCHER, approval())
    operator.approve_project(ledger, OTHER_RESEARCHER, approval("other-study"))
    size = seal(world)
    first = release(ledger, "ap-moves")["built"].files
    # the log grows (and is sealed again) between the two releases
    upn = area.example_upn
    admin.add_org(ledger, "research:uni-york", "researcher", "University of York")
    assert seal(world) > size
    again = release(ledger, "ap-moves", tree_size=size)["built"].files
    assert again == first, "the same project, spec and checkpoint give byte-identical files"
    project = all_projects(ledger.store)["ap-moves"]
    in_three = build(
        ledger.store,
        ledger.secrets,
        ledger.settings,
        project,
        Spec(project.unit, project.variables),
        checkpoint_cut(ledger.store, size),
        readers=3,
    ).files
    assert in_three == first, "read by three processes, each a slice of the pupils: the same bytes"
    latest = release(ledger, "ap-moves")
    assert json.loads(latest["built"].files[package.MANIFEST])["checkpoint"]["tree_size"] > size
    other = release(ledger, "other-study", tree_size=size)["built"].files
    for files in (first, latest["built"].files, other):
        assert_measured(oracle, files)
    mine = set(csv_columns(first[package.ROWS_CSV])["pseudonym"])
    theirs = set(csv_columns(other[package.ROWS_CSV])["pseudonym"])
    assert mine and theirs and not mine & theirs, "two projects cannot link their rows"
    assert mine <= set(csv_columns(latest["built"].files[package.ROWS_CSV])["pseudonym"]) | mine
    assert all(len(p) == 32 for p in mine)
    # no UPN, no URN below the approved level, no day-level date
    text = first[package.ROWS_CSV].decode()
    assert not any(u in text for u in (upn, "urn:")) and "-03," not in text.replace("2026-03,", "")


@pytest.mark.postgres
def test_erased_pupils_never_appear_and_subject_access_lists_the_releases(world: World, area: Area, oracle: Oracle) -> None:
    from api.research_release import release
    from ledger.research import operator

    ledger = world.ledger
    operator.approve_project(
        ledger, RESEARCHER, approval(population={"kinds": ["registration"]}, period={"from": "2024-09-01", "to": "2026-09-30"})
    )
    pupils = sorted({body["subject"]["upn"] for _, body in area.events if "upn" in body["subject"]})
    key = project_key(ledger.secrets.pseudonym_key, "ap-moves")
    before = release(ledger, "ap-moves")
    rows_before = set(csv_columns(before["built"].files[package.ROWS_CSV])["pseudonym"])
    released = [u for u in pupils if pseudonym(key, ledger.secrets.pupil_id(u)) in rows_before]
    assert len(released) >= 2
    erased, kept = released[0], released[1]
    erased_pseudonym = pseudonym(key, ledger.secrets.pupil_id(erased))

    client = TestClient(create_app(ledger), headers={"authorization": f"Bearer {world.admin_token}"})
    access = client.get("/access-log", params={"upn": kept, "purpose": "subject_access_request"}).json()
    assert [(r["release_id"], r["project"], r["researcher"]) for r in access["research_releases"]] == [
        (before["release_id"], "ap-moves", RESEARCHER)
    ]
    never = client.get("/access-log", params={"upn": world_upn_without_rows(world), "purpose": "subject_access_request"}).json()
    assert never["research_releases"] == []

    ledger.erase(erased, "erasure_request")
    after = release(ledger, "ap-moves", tree_size=before["manifest"]["checkpoint"]["tree_size"])
    assert erased_pseudonym not in set(csv_columns(after["built"].files[package.ROWS_CSV])["pseudonym"])
    assert_measured(oracle, after["built"].files)


def test_the_demo_project_exports_through_the_api(world: World, oracle: Oracle) -> None:
    """What `pupil-ledger demo` sets up: project demo and a researcher token that can export it at once."""
    from api.cli_research import demo_project

    ledger = world.ledger
    load_area(ledger, simulate_area(pupils=600, seed=1, la_code="202", today=world.clock.now.date()))
    token = demo_project(ledger, "202")
    seal(world)
    client = TestClient(create_app(ledger), headers={"authorization": f"Bearer {token}"})
    made = client.post("/research/exports", json={"project": "demo"})
    assert made.status_code == 201, made.text
    manifest = assert_measured(oracle, fetch(client, made.json()["release_id"]))
    assert manifest["rows"] > 0 and manifest["project"]["researcher"] == "research:demo-university"
    operations = {op["operationId"] for path in client.get("/openapi.json").json()["paths"].values() for op in path.values()}
    assert {"createResearchExport", "getResearchExport"} <= operations  # the names design.md 8 fixes


def test_export_research_command_line(tmp_path: Path, oracle: Oracle) -> None:
    """`pupil-ledger export research --project P OUT` as the operator, and `research approve | revoke`, in real processes."""
    from ledger.config import Settings

    from .processes import run_cli

    settings = Settings(home=tmp_path / "home")
    run_cli(settings, "init")
    ledger = admin.open_ledger(settings)
    load_area(ledger, simulate_area(pupils=300, seed=2, la_code="202", today=ledger.clock().date()))
    admin.sealer(ledger).seal_all()
    ledger.store.close()
    run_cli(settings, "orgs", "add", RESEARCHER, "--kind", "researcher", "--name", "Bristol")
    approved = run_cli(
        settings,
        "research",
        "approve",
        RESEARCHER,
        "--project",
        "cli-study",
        "--purpose",
        "Exclusions in Camden",
        "--variables",
        "kind,start,establishment,year_group,reason",
        "--qi",
        "start,establishment,year_group",
        "--sensitive",
        "reason",
        "--from",
        "2024-09-01",
        "--k",
        "5",
    )
    assert "approved project cli-study" in approved.stdout
    out = tmp_path / "out"
    done = run_cli(settings, "export", "research", "--project", "cli-study", str(out))
    assert "release" in done.stdout and (out / package.ROWS_PARQUET).exists() and (out / package.DATAPACKAGE).exists()
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert_measured(oracle, files)
    unapproved = run_cli(settings, "export", "research", "--project", "cli-study", "--variables", "tier", str(tmp_path / "no"), check=False)
    assert unapproved.returncode == 1 and "variable_not_approved" in unapproved.stderr and not (tmp_path / "no").exists()
    run_cli(settings, "research", "revoke", "cli-study", "--reason", "ended")
    refused = run_cli(settings, "export", "research", "--project", "cli-study", str(tmp_path / "late"), check=False)
    assert refused.returncode == 1 and "project_revoked" in refused.stderr
    listed = json.loads(run_cli(settings, "research", "list").stdout)
    assert listed[0]["status"] == "revoked" and len(listed[0]["releases"]) == 1


def test_the_data_package_validates_and_describes_every_column(world: World, area: Area, tmp_path: Path) -> None:
    import frictionless
    import pyarrow.parquet as pq

    from api.research_release import release
    from ledger.research import operator

    operator.approve_project(world.ledger, RESEARCHER, approval())
    files = release(world.ledger, "ap-moves")["built"].files
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    report = frictionless.validate(str(tmp_path / package.DATAPACKAGE))
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])[:10]
    descriptor = json.loads(files[package.DATAPACKAGE])
    rows = descriptor["resources"][0]
    assert [f["name"] for f in rows["schema"]["fields"]] == ["pseudonym", *VARIABLES]
    assert all(f["description"] for f in rows["schema"]["fields"])
    assert any(c["label"] for f in rows["schema"]["fields"] for c in f.get("categories", []))
    table = pq.read_table(tmp_path / package.ROWS_PARQUET)
    assert table.column_names == ["pseudonym", *VARIABLES] and table.num_rows == json.loads(files[package.MANIFEST])["rows"]
    assert csv_columns(files[package.ROWS_CSV]) == {name: table[name].to_pylist() for name in table.column_names}
    page = files[package.DICTIONARY].decode()
    assert all(f"<code>{name}</code>" in page for name in VARIABLES) and "k-anonymity" in page
    # the aggregate tables are published under disclosure control: no count below the threshold
    for path, facts in json.loads(files[package.MANIFEST])["tables"].items():
        for line in files[path].decode().splitlines()[1:]:
            value = line.rsplit(",", 1)[1]
            assert value == "c" or value == "0" or int(value) >= facts["threshold"], (path, line)


@pytest.mark.postgres
def test_the_reader_decrypts_what_the_store_does_and_stops_at_the_checkpoint(world: World, area: Area) -> None:
    from projections.research.reader import checkpoint_cut, pupils

    ledger = world.ledger
    cut = checkpoint_cut(ledger.store)
    world.admit("H801200001001")  # after the checkpoint: not read
    read = dict(pupils(ledger.store, cut, page=7))  # small pages: streams cut across pages
    assert len(read) == len({b["subject"]["upn"] for _, b in area.events if "upn" in b["subject"]})
    for stream, records in read.items():
        stored = ledger.store.subject(stream)
        assert stored is not None and records == stored.records
    assert ledger.secrets.pupil_id("H801200001001") not in read
    halves = [dict(pupils(ledger.store, cut, low=0, high=1 << 127)), dict(pupils(ledger.store, cut, low=1 << 127))]
    assert {**halves[0], **halves[1]} == read and not set(halves[0]) & set(halves[1])


@pytest.mark.postgres
def test_a_release_of_nobody_is_kept_and_read_back_byte_for_byte(
    world: World, area: Area, oracle: Oracle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A population no pupil is in (the City of London: no pupils here): a release of no rows, still signed, recorded and kept;
    every file the store gives back (PostgreSQL: written by binary COPY, here 7 bytes at a time) is the bytes built."""
    from api.research_release import release, released_file
    from ledger.research import operator
    from ledger.storage import releases

    monkeypatch.setattr(releases, "COPY_SLICE", 7)

    operator.approve_project(world.ledger, RESEARCHER, approval("nobody", population={"las": ["la:201"]}))
    seal(world)
    made = release(world.ledger, "nobody")
    built = made["built"]
    manifest = assert_measured(oracle, built.files)
    assert (manifest["rows"], manifest["pupils"], manifest["anonymity"]["k"], len(built.pseudonyms)) == (0, 0, None, 0)
    assert list(csv.reader(io.StringIO(built.files[package.ROWS_CSV].decode()))) == [["pseudonym", *manifest["spec"]["variables"]]]
    for name, content in built.files.items():
        assert released_file(world.ledger, made["release_id"], name, None) == content, name
    assert world.ledger.store.query("SELECT COUNT(*) FROM research_release_members WHERE release_id = ?", (made["release_id"],))[0][0] == 0
