"""The change feed on a real Kafka-protocol broker: relay -> topic -> consumer group -> views == a direct rebuild."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2 as kafka_murmur2

from feed.consumer import FeedWorker
from feed.encoder import murmur2
from feed.relay import Relay, ensure_topic
from feed.state import FeedState
from ledger.config import Settings
from ledger.feed import SCHEMA_HEADER, FeedConfig, record_schema
from projections.runner import Projector

from .conftest import upn
from .test_projections import dump
from .test_projections_scenario import Area, build_area


def config_for(broker: Any, partitions: int = 3) -> FeedConfig:
    name = uuid.uuid4().hex[:8]  # a topic and group per test: the broker is shared by the session
    return FeedConfig(broker.bootstrap, f"pupil-ledger.events.v1.t{name}", partitions, f"projections-{name}")


@pytest.fixture
def pg_area(pg_url: str, tmp_path: Any) -> Iterator[Area]:
    area = build_area(Settings(home=tmp_path / "home", database_url=pg_url))
    Projector(area.ledger.store).ensure()  # empty views at position 0 (new views would be built from the log first)
    yield area
    area.ledger.store.close()


@pytest.fixture
def any_area(settings: Settings) -> Iterator[Area]:
    """The scenario's area on SQLite and on PostgreSQL, with empty views."""
    area = build_area(settings)
    Projector(area.ledger.store).ensure()
    yield area
    area.ledger.store.close()


def relay_all(area: Area, config: FeedConfig) -> int:
    relay = Relay(area.ledger.store, config, area.ledger.settings.database_url, batch_size=25)
    relay.state.ensure_relay()
    total = 0
    while done := relay.step():
        total += done
    relay.close()
    return total


def topic_records(config: FeedConfig) -> list[Any]:
    consumer = KafkaConsumer(
        config.topic, bootstrap_servers=config.servers, auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1500
    )
    records = list(consumer)
    consumer.close()
    return records


def consume_until_caught_up(workers: list[FeedWorker], sequence: int, rounds: int = 200) -> None:
    for _ in range(rounds):
        for w in workers:
            w.poll_once(0.1)
        if min(w.projector.positions().values() for w in workers[:1]) and min(workers[0].projector.positions().values()) >= sequence:
            return
    raise AssertionError(f"the views did not reach {sequence}: {workers[0].projector.positions()}")


@contextmanager
def following(*followers: Relay | FeedWorker) -> Iterator[None]:
    """The relays and workers running, each on a thread of its own; stopped, joined and closed on the way out."""
    threads = [threading.Thread(target=f.run) for f in followers]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for f in followers:
            f.stopping.set()
        for t in threads:
            t.join(30)
        for f in followers:
            f.close()


def wait_caught_up(store: Any, timeout: float = 60, pause: float = 0.05) -> bool:
    """Whether every view reached the log's end within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while min(Projector(store).positions().values()) < store.max_sequence():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
    return True


def direct_rebuild(area: Area) -> dict[str, Any]:
    Projector(area.ledger.store).rebuild()
    return dump(area.ledger.store)


def test_relay_publishes_every_pupil_and_org_event_once_keyed_by_pseudonym_without_the_upn(any_area: Area, kafka_broker: Any) -> None:
    pg_area = any_area  # SQLite or PostgreSQL
    config = config_for(kafka_broker)
    store = pg_area.ledger.store
    assert relay_all(pg_area, config) == store.max_sequence()
    records = topic_records(config)
    validate = fastjsonschema.compile(record_schema())
    bodies = [json.loads(r.value) for r in records]
    for r, body in zip(records, bodies, strict=True):
        validate(body)
        assert dict(r.headers)["schema"] == SCHEMA_HEADER[1]
        assert r.key.decode() == body["subject"]
    expected = {s for (s,) in store.query("SELECT sequence FROM ledger_index WHERE type NOT LIKE ?", ("access.%",))}
    assert sorted(b["sequence"] for b in bodies) == sorted(expected)  # once each, no gap
    pupil_key = str(pg_area.ledger.secrets.pupil_id(upn(2)))
    p2 = [b for b in bodies if b["subject"] == pupil_key]
    assert p2 and len({r.partition for r, b in zip(records, bodies, strict=True) if b["subject"] == pupil_key}) == 1
    assert [b["sequence"] for b in p2] == sorted(b["sequence"] for b in p2)  # a pupil's records in order on one partition
    # on the partition any Kafka client's default partitioner gives the key (an LA's own producer or tooling agrees)
    assert all(r.partition == (kafka_murmur2(r.key) & 0x7FFFFFFF) % config.partitions for r in records)
    text = b"".join(r.value for r in records)
    assert not any(upn(n).encode() in text for n in range(1, 13))  # no UPN anywhere on the topic
    # published position and mark are durable: a new relay resumes after them and sends nothing again
    assert FeedState(store).relay_position(config.topic)[0] == store.max_sequence()
    assert relay_all(pg_area, config) == 0 and len(topic_records(config)) == len(records)


def test_consumers_build_the_same_views_as_a_direct_rebuild_and_redelivery_counts_nothing_twice(any_area: Area, kafka_broker: Any) -> None:
    pg_area = any_area  # SQLite or PostgreSQL
    config = config_for(kafka_broker)
    store = pg_area.ledger.store
    ensure_topic(config)
    relay_all(pg_area, config)
    worker = FeedWorker(store, config, batch_size=40)
    worker.start()
    try:
        consume_until_caught_up([worker], store.max_sequence())
        via_kafka = dump(store)
        # the relay crashed after sending but before storing its position: the whole log is on the topic twice
        with store.cursor(commit=True) as cur:
            cur.execute("UPDATE feed_relay SET position = 0")
        relay_all(pg_area, config)
        for _ in range(30):
            worker.poll_once(0.1)
        assert dump(store) == via_kafka
    finally:
        worker.close()
    assert direct_rebuild(pg_area) == via_kafka


def test_a_batch_the_database_rolls_back_in_a_deadlock_is_applied_again(pg_area: Area, kafka_broker: Any) -> None:
    """Two workers' batches can deadlock on the read model's shared numbers (rm_roll): PostgreSQL rolls one back, and
    that worker applies the batch again from the stored offsets rather than stopping. Here the first batch is rolled
    back after its rows were written (the deadlock's own error, raised inside the transaction)."""

    import psycopg

    config = config_for(kafka_broker)
    store = pg_area.ledger.store
    ensure_topic(config)
    relay_all(pg_area, config)
    worker = FeedWorker(store, config, batch_size=40, idle=0.05)
    apply_events = worker.projector.apply_events
    failed: list[int] = []

    def deadlocked_once(cur: Any, events: Any, positions: Any) -> None:
        apply_events(cur, events, positions)
        if not failed and events:
            failed.append(len(events))
            raise psycopg.errors.DeadlockDetected("deadlock detected")

    worker.projector.apply_events = deadlocked_once  # type: ignore[method-assign]
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while min(Projector(store).positions().values()) < store.max_sequence():
            assert thread.is_alive(), "the worker stopped at the rolled-back batch"
            assert time.monotonic() < deadline, "the worker did not catch up after the rolled-back batch"
            time.sleep(0.1)
    finally:
        worker.stopping.set()
        thread.join(30)
        worker.close()
    assert failed
    via_kafka = dump(store)
    assert direct_rebuild(pg_area) == via_kafka  # the rolled-back batch counted once


def test_a_poison_record_goes_to_the_dead_letter_topic_and_the_worker_goes_on(pg_area: Area, kafka_broker: Any) -> None:
    config = config_for(kafka_broker, partitions=1)
    store = pg_area.ledger.store
    ensure_topic(config)
    producer = KafkaProducer(bootstrap_servers=config.servers)
    producer.send(config.topic, key=b"x", value=b'{"sequence": 1, "type": "pupil.from_the_future"}', headers=[SCHEMA_HEADER])
    producer.send(config.topic, key=b"y", value=b"{}", headers=[("schema", b"event-record.v9")])
    producer.flush()
    producer.close()
    relay_all(pg_area, config)
    worker = FeedWorker(store, config, batch_size=40)
    worker.start()
    try:
        consume_until_caught_up([worker], store.max_sequence())
    finally:
        worker.close()
    report = FeedState(store).consumer_report(config.topic)[config.group]
    assert report["dead_letters"] == 2
    dead = KafkaConsumer(config.dead_letter_topic, bootstrap_servers=config.servers, auto_offset_reset="earliest", consumer_timeout_ms=1500)
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    dead.close()
    assert len(reasons) == 2 and any("event-record.v9" in r for r in reasons)
    via_kafka = dump(store)
    assert direct_rebuild(pg_area) == via_kafka  # the poison cost nothing else


def test_broker_unreachable_relay_and_workers_wait_then_resume_and_healthz_says_so(
    pg_area: Area, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    from fastapi.testclient import TestClient

    from api.app import create_app

    from .kafka_broker import Broker

    broker = Broker(tmp_path / "kafka").start()  # its own: this test freezes it
    config = config_for(broker)
    for name, value in (
        ("PUPIL_LEDGER_KAFKA", config.bootstrap),
        ("PUPIL_LEDGER_KAFKA_TOPIC", config.topic),
        ("PUPIL_LEDGER_KAFKA_GROUP", config.group),
    ):
        monkeypatch.setenv(name, value)
    store = pg_area.ledger.store
    relay = Relay(store, config, pg_area.ledger.settings.database_url, batch_size=50, idle=0.05, flush_seconds=2)
    worker = FeedWorker(store, config, batch_size=50, idle=0.1)

    def wait(check: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    try:
        with following(relay, worker):
            assert wait_caught_up(store), "caught up before the outage"
            client = TestClient(create_app(pg_area.ledger))
            assert client.get("/healthz").json()["feed"]["relay"]["error"] is None
            assert broker.process is not None
            os.kill(broker.process.pid, signal.SIGSTOP)  # unreachable: connections hang, nothing answers
            try:
                pg_area.admit(upn(40), "urn:100005")
                pg_area.admit(upn(41), "urn:100006")
                wait(lambda: client.get("/healthz").json()["feed"]["relay"]["error"] is not None, "/healthz telling of the outage", 30)
                health = client.get("/healthz").json()
                assert (
                    health["status"] == "ok"
                    and "broker unreachable" in health["feed"]["relay"]["error"]
                    and health["feed"]["relay"]["behind"] >= 2
                )
            finally:
                os.kill(broker.process.pid, signal.SIGCONT)
            assert wait_caught_up(store, 90), "caught up after the outage"
            assert client.get("/healthz").json()["feed"]["relay"]["error"] is None
    finally:
        broker.stop()
    via_kafka = dump(store)
    assert direct_rebuild(pg_area) == via_kafka


def test_a_rebuild_from_the_log_hands_over_to_the_topic_at_the_matching_position(pg_area: Area, kafka_broker: Any) -> None:
    config = config_for(kafka_broker)
    store = pg_area.ledger.store
    ensure_topic(config)
    relay_all(pg_area, config)
    handed_over = store.max_sequence()
    Projector(store).rebuild()  # `project rebuild`: the views from the log, then the workers start at the relay's mark
    FeedState(store).reset_consumers()
    pg_area.admit(upn(50), "urn:100005")
    relay_all(pg_area, config)
    worker = FeedWorker(store, config, batch_size=40)
    worker.start()
    try:
        consume_until_caught_up([worker], store.max_sequence())
        report = FeedState(store).consumer_report(config.topic)[config.group]
    finally:
        worker.close()
    mark = FeedState(store).mark_at_or_before(config.topic, handed_over)[1]
    assert mark and sum(mark.values()) == handed_over - len(store.query("SELECT 1 FROM ledger_index WHERE type LIKE ?", ("access.%",)))
    assert worker.applied_events == 1  # only the record after the hand-over was read from the topic
    assert all(p["lag"] == 0 for p in report["partitions"].values())
    via_kafka = dump(store)
    assert direct_rebuild(pg_area) == via_kafka


def test_the_documented_example_consumer_follows_the_feed_and_forgets_an_erased_pupil(
    pg_area: Area, kafka_broker: Any, tmp_path: Any
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "feed_consumer_example", Path(__file__).resolve().parent.parent / "docs" / "examples" / "feed_consumer.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    config = config_for(kafka_broker)
    ensure_topic(config)
    relay_all(pg_area, config)
    relay_all(pg_area, config)  # nothing new
    db = example.consume(config.bootstrap, "la-example", str(tmp_path / "roll.sqlite3"), config.topic, idle_polls=4)
    secrets = pg_area.ledger.secrets
    roll = dict(db.execute("SELECT subject, school FROM roll").fetchall())
    assert roll[str(secrets.pupil_id(upn(1)))] == "urn:100005" and str(secrets.pupil_id(upn(3))) not in roll  # P3 left A
    # an erasure, through the command line's path (Ledger.erase, then the views and the feed are told)
    from feed.relay import announce_erasure
    from projections.runner import forget_pupil

    gone = pg_area.ledger.secrets.pupil_id(upn(1))
    FeedState(pg_area.ledger.store).ensure_relay()
    result = pg_area.ledger.erase(upn(1), "erasure_request")
    forget_pupil(pg_area.ledger.store, gone)
    announce_erasure(pg_area.ledger.store, result["erasure_event_id"], str(gone))
    erasure_at = pg_area.ledger.store.index_rows([result["erasure_event_id"]])[result["erasure_event_id"]].sequence
    assert FeedState(pg_area.ledger.store).erased_pseudonym(erasure_at) == str(gone)
    relay_all(pg_area, config)
    db.close()
    db = example.consume(config.bootstrap, "la-example", str(tmp_path / "roll.sqlite3"), config.topic, idle_polls=4)
    assert str(gone) not in dict(db.execute("SELECT subject, school FROM roll").fetchall())
    assert FeedState(pg_area.ledger.store).erased_pseudonym(erasure_at) is None  # the link is deleted once published


def test_a_worker_finding_no_views_builds_them_from_the_log_then_reads_on_from_the_topic(
    pg_url: str, tmp_path: Any, kafka_broker: Any
) -> None:
    area = build_area(Settings(home=tmp_path / "home", database_url=pg_url))  # no views yet
    try:
        config = config_for(kafka_broker)
        store = area.ledger.store
        ensure_topic(config)
        relay_all(area, config)
        worker = FeedWorker(store, config, batch_size=40)
        worker.start()
        try:
            assert min(worker.projector.positions().values()) == store.max_sequence()  # from the log, at once
            area.admit(upn(60), "urn:100005")
            relay_all(area, config)
            consume_until_caught_up([worker], store.max_sequence())
        finally:
            worker.close()
        assert worker.applied_events == 1
        via_kafka = dump(store)
        assert direct_rebuild(area) == via_kafka
    finally:
        area.ledger.store.close()


@pytest.mark.parametrize(
    "subject",
    [
        "ofsted",
        "cqc",
        "dfe:regions",
        "dfe:admin",
        "urn:100005",
        "icb:QE1",
        "mediation:send-north",
        "uprov:801-1",
        "0a1b2c3d-4e5f-8a7b-9c8d-0e1f2a3b4c5d",
    ],
)
def test_the_record_schema_takes_every_kind_of_subject_but_a_upn(subject: str) -> None:
    validate = fastjsonschema.compile(record_schema())
    record = {
        "sequence": 1,
        "event_id": str(uuid.uuid4()),
        "type": "org.registered",
        "subject": subject,
        "submitter": "dfe:admin",
        "occurred_on": "2026-09-01",
        "received_at": "2026-09-01T10:00:00.000000Z",
        "corrects": None,
        "flags": [],
        "event_digest": "0" * 64,
        "envelope_digest": "f" * 64,
        "data": {"kind": "school"},
    }
    validate(record)
    for bad in ({"subject": upn(1)}, {"data": {"upn": upn(1)}}, {"submitter": "Urn:1"}, {"extra": 1}):
        with pytest.raises(fastjsonschema.JsonSchemaException):
            validate({**record, **bad})


@pytest.mark.parametrize("paced", ["relay", "worker"])
def test_a_trickle_of_events_is_relayed_and_applied_in_few_batches_after_a_short_one_each_waits_its_pace(
    pg_area: Area, kafka_broker: Any, paced: str
) -> None:
    """After a batch short of its size the relay and a worker wait ``pace`` (as the direct projector does), so what
    arrives meanwhile goes in one flush and one transaction: at a thousand events a second a worker applying each
    poll's few records spent four times the CPU per event of a full batch, and took the API's share of the cores."""

    config = config_for(kafka_broker)
    store = pg_area.ledger.store
    ensure_topic(config)
    relay_all(pg_area, config)
    pace = 0.8
    relayed: list[tuple[float, int]] = []
    applied: list[tuple[float, int]] = []
    url = pg_area.ledger.settings.database_url
    relay_pace, worker_pace = (pace, 0.0) if paced == "relay" else (0.0, pace)
    relay = Relay(store, config, url, 50, 0.02, lambda n: relayed.append((time.monotonic(), n)), pace=relay_pace)
    worker = FeedWorker(store, config, batch_size=50, idle=0.02, on_batch=lambda n: applied.append((time.monotonic(), n)), pace=worker_pace)
    with following(relay, worker):
        assert wait_caught_up(store, 30, 0.02)  # the worker has applied the topic's records so far
        time.sleep(pace)
        relayed.clear()
        applied.clear()
        started = time.monotonic()
        for n in range(12):  # a trickle: one event every 0.1 s for 1.2 s
            pg_area.admit(upn(60 + n), "urn:100005")
            time.sleep(0.1)
        trickle = time.monotonic() - started
        assert wait_caught_up(store, 30)
    assert sum(n for _, n in relayed) == 12 and sum(n for _, n in applied) == 12, (relayed, applied)
    batches = relayed if paced == "relay" else applied
    # the first event goes at once; then one batch per pace at most, not one per event
    assert batches[0][0] - started < pace
    assert len(batches) <= 2 + int(trickle / pace), (trickle, batches)
    assert all(b - a >= pace * 0.95 for (a, _), (b, _) in zip(batches, batches[1:], strict=False))
    if paced == "worker":  # the relay, unpaced, sent the trickle as it came
        assert len(relayed) >= 6, relayed


def relay_records(config: FeedConfig) -> list[tuple[int, bytes, bytes]]:
    """The topic's records as (partition, key, value), in order on each partition."""
    return [(r.partition, r.key, r.value) for r in sorted(topic_records(config), key=lambda r: (r.partition, r.offset))]


def test_the_relay_with_its_encoder_process_publishes_what_it_publishes_in_one_process(any_area: Area, kafka_broker: Any) -> None:
    """``pupil-ledger relay`` reads and encodes the log in a child process, a batch ahead: the same records, on the same
    partitions, in the same order, as the relay reading in its own process (on SQLite and PostgreSQL)."""
    store, settings = any_area.ledger.store, any_area.ledger.settings
    one, two = config_for(kafka_broker), config_for(kafka_broker)
    relay_all(any_area, one)
    relay = Relay(store, two, settings.database_url, batch_size=7, settings=settings)  # many batches: most read ahead
    relay.state.ensure_relay()
    total = 0
    try:
        while done := relay.step():
            total += done
        process = relay.encoder._process  # type: ignore[attr-defined]
        assert process is not None and process.is_alive()
    finally:
        relay.close()
    assert not process.is_alive()  # closed with the relay
    assert total == store.max_sequence()
    assert relay_records(two) == relay_records(one)
    assert FeedState(store).relay_position(two.topic)[0] == store.max_sequence()


def test_an_encoder_process_killed_mid_run_is_replaced_and_no_event_is_missed_or_sent_twice(pg_area: Area, kafka_broker: Any) -> None:
    import os
    import signal

    store, settings = pg_area.ledger.store, pg_area.ledger.settings
    config = config_for(kafka_broker)
    relay = Relay(store, config, settings.database_url, batch_size=5, settings=settings)
    relay.state.ensure_relay()
    try:
        assert relay.step() == 5  # a full batch: the next one is being read ahead
        first = relay.encoder._process  # type: ignore[attr-defined]
        os.kill(first.pid, signal.SIGKILL)
        first.join(10)
        while relay.step():
            pass
        second = relay.encoder._process  # type: ignore[attr-defined]
        assert second is not None and second.pid != first.pid and second.is_alive()
    finally:
        relay.close()
    sequences = [json.loads(value)["sequence"] for _, _, value in relay_records(config)]
    expected = {s for (s,) in store.query("SELECT sequence FROM ledger_index WHERE type NOT LIKE ?", ("access.%",))}
    assert sorted(sequences) == sorted(expected)  # each once


def test_killing_the_relay_process_leaves_no_encoder_process_behind(pg_area: Area, kafka_broker: Any) -> None:
    import os
    import subprocess

    from .processes import CLI, env_for

    config = config_for(kafka_broker)
    store = pg_area.ledger.store
    env = env_for(pg_area.ledger.settings) | {"PUPIL_LEDGER_KAFKA": config.bootstrap, "PUPIL_LEDGER_KAFKA_TOPIC": config.topic}
    relay = subprocess.Popen([*CLI, "relay", "--batch", "5", "--idle", "0.05"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not children:
            assert relay.poll() is None, relay.stderr.read() if relay.stderr else ""
            task = f"/proc/{relay.pid}/task/{relay.pid}/children"
            children = [int(c) for c in Path(task).read_text().split()] if os.path.exists(task) else []
            time.sleep(0.1)
        assert children, "the relay started no encoder process"
        while FeedState(store).relay_position(config.topic)[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert FeedState(store).relay_position(config.topic)[0] > 0
    finally:
        relay.kill()
        relay.wait(10)
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{c}") and "zombie" not in _state(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if os.path.exists(f"/proc/{c}") and "zombie" not in _state(c)], "an encoder outlived its relay"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"


@given(st.one_of(st.binary(max_size=80), st.uuids().map(lambda u: str(u).encode()), st.text(max_size=40).map(str.encode)))
def test_the_encoders_murmur2_is_kafkas(key: bytes) -> None:
    assert murmur2(key) == kafka_murmur2(key)


@pytest.mark.parametrize("key", [b"", b"a", b"ab", b"abc", b"abcd", b"\xff" * 7, b"\x00" * 1000, "é🙂".encode()])
def test_the_encoders_murmur2_is_kafkas_at_every_tail_length(key: bytes) -> None:
    assert murmur2(key) == kafka_murmur2(key)


def test_a_worker_far_behind_doubles_its_batch_up_to_the_catch_up_size_as_the_direct_projector_does(
    any_area: Area, kafka_broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``--batch``: DEFAULT_BATCH, doubled after each full batch up to CATCH_UP_BATCH on PostgreSQL (fewer, larger
    transactions while far behind), back to DEFAULT_BATCH after a short one; SQLite keeps DEFAULT_BATCH, as the direct
    projector does (its one write lock holds up every submission). The views still equal a direct rebuild."""

    import feed.consumer

    monkeypatch.setattr(feed.consumer, "DEFAULT_BATCH", 4)
    monkeypatch.setattr(feed.consumer, "CATCH_UP_BATCH", 16)
    config = config_for(kafka_broker, partitions=1)  # one partition: a poll's size is the worker's to choose
    store = any_area.ledger.store
    ensure_topic(config, partitions=1)
    total = relay_all(any_area, config)
    sizes: list[int] = []
    worker = FeedWorker(store, config, batch_size=None, idle=0.05, pace=0.0, on_batch=sizes.append)
    with following(worker):
        assert wait_caught_up(store)
    assert total > 4 + 8 + 16 + 16, total  # enough records to reach the largest size
    if store.is_postgres:
        assert sizes[:4] == [4, 8, 16, 16], sizes
    else:
        assert set(sizes[:-1]) == {4}, sizes
    assert all(n <= (16 if store.is_postgres else 4) for n in sizes)
    via_kafka = dump(store)
    assert direct_rebuild(any_area) == via_kafka


@pytest.mark.parametrize("size", [0, -1, -(2**63)])
def test_a_relay_or_worker_of_no_batch_is_refused_before_it_touches_anything(pg_area: Area, size: int) -> None:
    """A batch of 0 would publish (or apply) nothing for ever; a negative one is SQLite's LIMIT -1, the whole log."""
    config = FeedConfig("127.0.0.1:9", "unused", 1, "unused")
    with pytest.raises(ValueError, match="at least 1"):
        Relay(pg_area.ledger.store, config, None, batch_size=size)
    with pytest.raises(ValueError, match="at least 1"):
        FeedWorker(pg_area.ledger.store, config, batch_size=size)
