"""End to end over real HTTP: the command line signs and submits to a real server process."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ledger import own_events
from ledger.config import Settings
from ledger.storage.secrets import load_private_key
from ledger.tools import admin

from .conftest import upn
from .processes import Server, run_cli

pytestmark = pytest.mark.slow


def test_story_sign_submit_replay_conflict_history(settings: Settings, tmp_path: Path) -> None:
    init = run_cli(settings, "init").stdout
    admin_token = init.split("admin token: ")[1].split()[0]
    assert "log vkey: pupil-ledger.local/log+" in init
    run_cli(settings, "orgs", "add", "urn:100005", "--kind", "school", "--la", "la:801", "--name", "Bristol Academy")
    key_id = run_cli(settings, "keys", "generate", str(tmp_path / "school")).stdout.split()[0]
    assert run_cli(settings, "keys", "add", "urn:100005", "--public-key-file", str(tmp_path / "school.pub.pem")).stdout.strip() == key_id
    token = run_cli(settings, "tokens", "issue", "urn:100005", "--role", "school").stdout.strip()
    assert "urn:100005" in run_cli(settings, "orgs", "list").stdout

    today = datetime.now(UTC).date()
    admitted, left = today - timedelta(days=10), today - timedelta(days=2)

    def event_file(name: str, event_type: str, day: date, data: dict, event_id: str | None = None) -> Path:
        body = own_events.event_body(event_type, "urn:100005", {"upn": "H801200001001"}, data, day, datetime.now(UTC), event_id=event_id)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body, indent=2))  # not canonical: `sign` canonicalises
        return path

    def signed(path: Path) -> Path:
        out = path.with_suffix(".env.json")
        out.write_text(run_cli(settings, "sign", str(path), "--private-key-file", str(tmp_path / "school.pem"), "--key-id", key_id).stdout)
        return out

    admission_id = str(uuid.uuid4())
    admission = signed(
        event_file(
            "admission",
            "pupil.registered",
            admitted,
            {"school": "urn:100005", "enrolment_status": "C", "year_group": "8", "sen_status": "K", "looked_after": False},
            admission_id,
        )
    )
    removal = signed(
        event_file("removal", "pupil.deregistered", left, {"school": "urn:100005", "ground": "moved_away", "destination": "moved_away"})
    )
    server = Server(settings).start()
    try:
        url = ["--url", server.url, "--token", token]
        first = json.loads(run_cli(settings, "submit", str(admission), *url).stdout)
        assert first["status"] == "created"
        replay = json.loads(run_cli(settings, "submit", str(admission), *url).stdout)
        assert (replay["status"], replay["sequence"]) == ("duplicate", first["sequence"])
        other_bytes = signed(
            event_file(
                "admission2",
                "pupil.registered",
                admitted,
                {"school": "urn:100005", "enrolment_status": "C", "year_group": "9", "sen_status": "K", "looked_after": False},
                admission_id,
            )
        )
        conflict = run_cli(settings, "submit", str(other_bytes), *url, check=False)
        assert conflict.returncode == 1 and "409" in conflict.stderr and "event_id_conflict" in conflict.stderr
        assert json.loads(run_cli(settings, "submit", str(removal), *url).stdout)["status"] == "created"

        def history(as_of: date) -> dict:
            return json.loads(
                run_cli(
                    settings,
                    "history",
                    "H801200001001",
                    "--as-of",
                    as_of.isoformat(),
                    "--url",
                    server.url,
                    "--token",
                    admin_token,
                    "--purpose",
                    "data_correction",
                ).stdout
            )

        before, after = history(today - timedelta(days=5)), history(today)
        assert [e["type"] for e in before["events"]] == ["pupil.registered"] and before["on_roll"][0]["school"] == "urn:100005"
        assert [e["type"] for e in after["events"]] == ["pupil.registered", "pupil.deregistered"] and after["on_roll"] == []
        read = httpx.get(f"{server.url}/events/{admission_id}", headers={"authorization": f"Bearer {token}"}).json()
        assert read["sequence"] == first["sequence"]
        # every identified read above left exactly one access.record_viewed, naming who read, why and through which endpoint
        views = [
            v
            for v in httpx.get(f"{server.url}/access-log", headers={"authorization": f"Bearer {admin_token}"}).json()["views"]
            if v["type"] == "access.record_viewed"
        ]
        assert [(v["principal"]["org"], v["purpose"], v["endpoint"]) for v in views] == [
            ("dfe:admin", "data_correction", "pupilHistory"),
            ("dfe:admin", "data_correction", "pupilHistory"),
            ("urn:100005", "direct_education", "getEvent"),
        ]
        assert [before["access_event_id"], after["access_event_id"], read["access_event_id"]] == [v["event_id"] for v in views], views
    finally:
        server.stop()


def test_sigkill_loses_no_acknowledged_event(settings: Settings, tmp_path: Path) -> None:
    result = admin.initialise(settings)
    ledger = result.ledger
    admin.add_org(ledger, "urn:100005", "school", "School", "la:801")
    key_path = tmp_path / "school"
    run_cli(settings, "keys", "generate", str(key_path))
    key = load_private_key(key_path.with_suffix(".pem"))
    admin.add_key(ledger, "urn:100005", key.public_key())
    token = ledger.issue_token("urn:100005", "school")
    ledger.store.close()
    now = datetime.now(UTC)
    envelopes = [
        own_events.signed(
            own_events.event_body(
                "pupil.registered",
                "urn:100005",
                {"upn": upn(i)},
                {"school": "urn:100005", "enrolment_status": "C", "year_group": "7", "sen_status": "N", "looked_after": False},
                now.date(),
                now,
            ),
            key,
        )
        for i in range(1, 4001)
    ]
    acknowledged: list[str] = []
    lock = threading.Lock()
    server = Server(settings).start()

    def client(share: list[dict]) -> None:
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=5) as http:
            for env in share:
                try:
                    response = http.post("/events", json=env)
                except httpx.HTTPError:
                    return  # the server died under us
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(json.loads(__import__("base64").b64decode(env["payload"]))["event_id"])

    threads = [threading.Thread(target=client, args=(envelopes[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = datetime.now() + timedelta(seconds=30)
    while len(acknowledged) < 150 and datetime.now() < deadline:
        threading.Event().wait(0.05)
    server.kill()
    for t in threads:
        t.join(30)
    assert len(acknowledged) >= 150, "the server acknowledged too little before the kill to make the test meaningful"

    restarted = Server(settings).start()
    try:
        ledger = admin.open_ledger(settings)
        assert ledger.store.count_stored_events() == ledger.store.count_events(), (
            "every stored event has its index row and no index row lacks its event"
        )
        found = ledger.store.index_rows(acknowledged)
        assert set(found) == set(acknowledged), f"{len(set(acknowledged) - set(found))} acknowledged events were lost"
        views_before = ledger.store.query("SELECT COUNT(*) FROM ledger_index WHERE type = 'access.record_viewed'")[0][0]
        sample = acknowledged[:: max(1, len(acknowledged) // 50)]
        with httpx.Client(base_url=restarted.url, headers={"authorization": f"Bearer {token}"}) as http:
            for event_id in sample:
                assert http.get(f"/events/{event_id}").status_code == 200
        views_after = ledger.store.query("SELECT COUNT(*) FROM ledger_index WHERE type = 'access.record_viewed'")[0][0]
        assert views_after - views_before == len(sample), "every identified read leaves exactly one access.record_viewed"
        ledger.store.close()
    finally:
        restarted.stop()
