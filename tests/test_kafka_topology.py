"""The distributed topology as processes (docker-compose.yml without a container engine): API, relay (active and
standby), projection workers in a consumer group, on PostgreSQL and a real Kafka-protocol broker. Events go in
over HTTP while workers join and die (kill -9) and the relay dies mid-publish; the views then equal a direct
rebuild, an erasure reaches the workers, and /healthz shows the feed."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaConsumer

from feed.relay import ensure_topic
from ledger import own_events
from ledger.config import Settings
from ledger.feed import FeedConfig
from ledger.tools import admin
from projections.runner import Projector

from .conftest import upn
from .processes import CLI, Server, env_for, run_cli
from .test_projections import dump

pytestmark = pytest.mark.slow
A, B, LA = "urn:100005", "urn:100006", "la:801"


class Proc:
    """One ``pupil-ledger`` command as its own process, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path):
        self.name, self.log = name, logs / f"{name}.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=out)

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def assignments(self) -> list[list[int]]:
        """The partitions given to this worker at each rebalance, from its log."""
        return [
            json.loads(line.rsplit("partitions assigned: ", 1)[1])
            for line in self.log.read_text(errors="replace").splitlines()
            if "partitions assigned: " in line
        ]

    def settled(self) -> bool:
        """Its last rebalance is over (the last partitions line of its log is an assignment)."""
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if "partitions " in line]
        return bool(lines) and "partitions assigned: " in lines[-1]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:]


def envelopes(keys: dict[str, Ed25519PrivateKey], kind: str, pupils: range) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    day = now.date()
    out = []
    for n in pupils:
        if kind == "register":
            body = own_events.event_body(
                "pupil.registered",
                A,
                {"upn": upn(n)},
                {
                    "school": A,
                    "enrolment_status": "C",
                    "year_group": "9",
                    "sen_status": "K" if n % 5 == 0 else "N",
                    "looked_after": n % 7 == 0,
                },
                day,
                now,
            )
        elif kind == "suspend":
            body = own_events.event_body(
                "pupil.excluded", A, {"upn": upn(n)}, {"school": A, "kind": "SUSP", "reasons": ["PP"], "sessions": 2}, day, now
            )
        elif kind == "leave":
            body = own_events.event_body(
                "pupil.deregistered",
                A,
                {"upn": upn(n)},
                {"school": A, "ground": "registered_elsewhere", "destination": "school", "destination_school": B},
                day,
                now,
            )
        else:
            body = own_events.event_body(
                "pupil.registered",
                B,
                {"upn": upn(n)},
                {"school": B, "enrolment_status": "C", "year_group": "9", "sen_status": "N", "looked_after": False},
                day,
                now,
            )
        out.append(own_events.signed(body, keys[body["submitter"]]))
    return out


def post_all(client: httpx.Client, tokens: dict[str, str], items: list[dict[str, Any]], chunk: int = 40) -> int:
    last = 0
    for i in range(0, len(items), chunk):
        part = items[i : i + chunk]
        submitter = json.loads(__import__("base64").b64decode(part[0]["payload"]))["submitter"]
        r = client.post("/batches", json={"envelopes": part}, headers={"authorization": f"Bearer {tokens[submitter]}"})
        assert r.status_code == 201, r.text
        last = max(last, max(x["sequence"] for x in r.json()["receipts"]))
    return last


def join(start: Any, config: FeedConfig, others: list[Proc], broker_log: Path, attempts: int = 5) -> Proc:
    """A second (dynamic) member joins, and the group splits the partitions between the two. The test broker (noida-db
    0.2.3, the newest) never drops a member whose session has timed out: a member that died without leaving (killed
    while it waited in a join) stays listed, and every later rebalance waits for it, so the group stays in
    PreparingRebalance and each further member only joins the wait. A real Kafka drops it at the session timeout; here,
    when a member got nothing in 20 s, it is stopped and the members with no process behind them (every dynamic member:
    the only other live one is the static ``worker-1``) are removed as an operator would remove them
    (``remove_group_members``), and another joins. If none does, the failure says what the broker and every member saw
    (the group as the broker describes it, each member's log)."""
    tails = []
    for attempt in range(attempts):
        worker = start(f"worker-2-{attempt}", ["project", "run", "--source", "kafka", "--idle", "0.1", "--batch", "60"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if worker.settled() and worker.assignments()[-1]:
                return worker
            time.sleep(0.2)
        tails.append(f"--- {worker.name}:\n{worker.tail()}\n--- the group then: {describe_group(config)}")
        worker.stop()
        tails.append(f"--- removed: {remove_dynamic_members(config)}")
    raise AssertionError(
        f"no second worker got partitions in {attempts} attempts\n--- the group: {describe_group(config)}\n"
        + "\n".join([*tails, *(f"--- {p.name}:\n{p.tail()}" for p in others)])
        + f"\n--- the broker:\n{broker_log.read_text(errors='replace')[-3000:]}"
    )


def remove_dynamic_members(config: FeedConfig) -> str:
    """Remove the group's dynamic members (what a real Kafka does to a dead one at its session timeout); says which."""
    from kafka import KafkaAdminClient
    from kafka.admin import MemberToRemove
    from kafka.errors import KafkaError

    try:
        admin_client = KafkaAdminClient(bootstrap_servers=config.servers, request_timeout_ms=5000)
        try:
            members = admin_client.describe_groups([config.group])[config.group]["members"]
            dead = [MemberToRemove(member_id=m["member_id"]) for m in members if m["group_instance_id"] is None]
            return repr(admin_client.remove_group_members(config.group, dead))
        finally:
            admin_client.close()
    except (KafkaError, OSError) as exc:  # the next attempt, and the failure's message, say what happened then
        return f"(not removed: {exc!r})"


def describe_group(config: FeedConfig) -> str:
    """The consumer group's state and members as the broker reports them (for a failure's message)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin_client = KafkaAdminClient(bootstrap_servers=config.servers, request_timeout_ms=5000)
        try:
            return repr(admin_client.describe_groups([config.group]))  # (kafka-python 3.x; 2.x called it describe_consumer_groups)
        finally:
            admin_client.close()
    except (KafkaError, OSError) as exc:  # a diagnosis must not hide the failure it describes
        return f"(not described: {exc!r})"


def feed_tables(store: Any) -> str:
    return repr({t: store.query(f"SELECT * FROM {t}") for t in ("feed_relay", "pv_kafka_offsets")}) + repr(
        store.query("SELECT * FROM feed_marks ORDER BY sequence DESC LIMIT 3")
    )


def wait_until(check: Any, timeout: float, what: Any) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.2)


@pytest.fixture
def own_broker(tmp_path: Path) -> Any:
    """A broker of its own (it starts in milliseconds): the test broker's group coordinator is happiest with few groups."""
    from .kafka_broker import Broker

    broker = Broker(tmp_path / "kafka").start()
    yield broker
    broker.stop()


def test_topology_survives_kills_and_rebalances_and_equals_a_direct_rebuild(pg_url: str, tmp_path: Path, own_broker: Any) -> None:
    kafka_broker = own_broker
    settings = Settings(home=tmp_path / "home", database_url=pg_url)
    ledger = admin.initialise(settings).ledger
    keys = {}
    for org, kind in ((A, "school"), (B, "school"), (LA, "la")):
        admin.add_org(ledger, org, kind, f"Test {org}", LA if kind != "la" else None)
        keys[org] = Ed25519PrivateKey.generate()
        admin.add_key(ledger, org, keys[org].public_key())
    tokens = {org: ledger.issue_token(org, "school") for org in (A, B)}
    name = uuid.uuid4().hex[:8]
    config = FeedConfig(kafka_broker.bootstrap, f"pupil-ledger.events.v1.t{name}", 3, f"projections-{name}")
    ensure_topic(config)
    env = {
        **env_for(settings),
        "PUPIL_LEDGER_KAFKA": config.bootstrap,
        "PUPIL_LEDGER_KAFKA_TOPIC": config.topic,
        "PUPIL_LEDGER_KAFKA_PARTITIONS": "3",
        "PUPIL_LEDGER_KAFKA_GROUP": config.group,
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    run = ["project", "run", "--source", "kafka", "--idle", "0.1", "--batch", "60"]
    procs: list[Proc] = []

    def start(name: str, args: list[str]) -> Proc:
        procs.append(Proc(name, args, env, logs))
        return procs[-1]

    server = Server(settings, args=("--no-followers",), env={k: v for k, v in env.items() if k.startswith("PUPIL_LEDGER_KAFKA")}).start()
    store = ledger.store
    positions = Projector(store).positions

    def caught_up(sequence: int) -> bool:
        return min(positions().values()) >= sequence

    try:
        relay = start("relay-1", ["relay", "--batch", "50"])
        standby = start("relay-2", ["relay", "--batch", "50"])
        worker_1 = start("worker-1", [*run, "--instance", "worker-1"])
        with httpx.Client(base_url=server.url, timeout=30) as client:
            last = post_all(client, tokens, envelopes(keys, "register", range(1, 201)))
            worker_1.kill9()  # mid-batch; restarted under its instance name, it takes its partitions back from the database's offsets
            worker_1 = start("worker-1b", [*run, "--instance", "worker-1"])
            relay.kill9()  # mid-publish: the standby takes over from the stored position (records sent twice are expected)
            last = post_all(client, tokens, envelopes(keys, "register", range(201, 401)))
            wait_until(lambda: worker_1.settled(), 30, lambda: f"worker-1 back\n{worker_1.tail()}")
            worker_2 = join(start, config, [worker_1], kafka_broker.log)  # 1 -> 2 workers while records flow
            last = post_all(client, tokens, envelopes(keys, "suspend", range(1, 401, 2)))
            last = post_all(client, tokens, envelopes(keys, "leave", range(1, 401, 3)))
            worker_2.stop()  # 2 -> 1: it leaves the group, worker-1 gets every partition
            wait_until(lambda: worker_1.assignments()[-1] == [0, 1, 2], 30, lambda: f"worker-1 taking every partition\n{worker_1.tail()}")
            last = post_all(client, tokens, envelopes(keys, "join", range(1, 401, 3)))
            wait_until(
                lambda: caught_up(last),
                90,
                lambda: f"the views reaching {last}: {positions()} {feed_tables(store)}\n{worker_1.tail()}\n{standby.tail()}",
            )
            # min_sequence waits on the views' position, as for the direct projector
            figures = client.get(
                "/views/metrics",
                params={"level": "school", "org": A, "min_sequence": last},
                headers={"authorization": f"Bearer {tokens[A]}"},
            )
            assert figures.status_code == 200, figures.text
            # erasure: the relay publishes it keyed by the pseudonym; the workers drop the pupil everywhere
            pseudonym = str(ledger.secrets.pupil_id(upn(3)))
            assert store.query("SELECT COUNT(*) FROM pv_pupil_facts WHERE subject = ?", (pseudonym,))[0][0] > 0
            run_cli(settings, "erase", upn(3), "--ground", "erasure_request", "--yes")
            erased_at = store.max_sequence()
            wait_until(lambda: caught_up(erased_at), 60, "the erasure reaching the views")
            assert store.query("SELECT COUNT(*) FROM pv_pupil_facts WHERE subject = ?", (pseudonym,))[0][0] == 0
            health = client.get("/healthz").json()
        assert worker_1.process.poll() is None and standby.process.poll() is None, worker_1.tail() + standby.tail()
        feed = health["feed"]
        assert feed["relay"]["position"] == erased_at and feed["relay"]["error"] is None and feed["relay"]["published_at"]
        partitions = feed["groups"][config.group]["partitions"]
        assert sorted(partitions) == ["0", "1", "2"] and all(p["lag"] == 0 for p in partitions.values()), partitions
        erasures = [
            json.loads(r.value)
            for r in KafkaConsumer(config.topic, bootstrap_servers=config.servers, auto_offset_reset="earliest", consumer_timeout_ms=1500)
            if r.key == pseudonym.encode()
        ]
        assert erasures[-1]["type"] == "access.record_erased" and erasures[-1]["data"] == {"ground": "erasure_request"}
        status = subprocess.run([*CLI, "project", "status"], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
        assert f"pupils: {erased_at} (latest {erased_at})" in status and f"relay: {erased_at} (0 behind)" in status, status
        assert f"group {config.group}: lag per partition {{0: 0, 1: 0, 2: 0}}; dead letters 0" in status, status
    finally:
        for p in procs:
            p.stop()
        server.stop()
    via_kafka = dump(store)
    assert via_kafka["pv_pupil_facts"], "nothing was projected"
    Projector(store).rebuild()
    assert dump(store) == via_kafka
    ledger.store.close()
