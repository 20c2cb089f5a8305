"""The change feed on a real Kafka-protocol broker: relay -> topic -> consumer group -> views == a direct rebuild."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import fastjsonschema
import pytest
from kafka import KafkaConsumer, KafkaProducer

from feed.consumer import FeedWorker
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
    consumer = KafkaConsumer(config.topic, bootstrap_servers=config.servers, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1500)
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


def direct_rebuild(area: Area) -> dict[str, Any]:
    Projector(area.ledger.store).rebuild()
    return dump(area.ledger.store)


def test_relay_publishes_every_pupil_and_org_event_once_keyed_by_pseudonym_without_the_upn(pg_area: Area, kafka_broker: Any) -> None:
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
    text = b"".join(r.value for r in records)
    assert not any(upn(n).encode() in text for n in range(1, 13))  # no UPN anywhere on the topic
    # published position and mark are durable: a new relay resumes after them and sends nothing again
    assert FeedState(store).relay_position(config.topic)[0] == store.max_sequence()
    assert relay_all(pg_area, config) == 0 and len(topic_records(config)) == len(records)


def test_consumers_build_the_same_views_as_a_direct_rebuild_and_redelivery_counts_nothing_twice(pg_area: Area, kafka_broker: Any) -> None:
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
