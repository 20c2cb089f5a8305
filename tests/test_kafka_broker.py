"""The test broker (tests/kafka_broker.py) speaks enough Kafka for the change-feed tests: an idempotent producer, groups, offsets."""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def test_broker_round_trip_with_idempotent_producer_and_group_offsets(kafka_broker: Any) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    admin.create_topics([NewTopic("broker-check", 2, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=True, acks="all")
    for i in range(10):
        producer.send("broker-check", key=f"k{i % 3}".encode(), value=str(i).encode())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        "broker-check",
        bootstrap_servers=kafka_broker.bootstrap,
        group_id="broker-check",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    seen: list[int] = []
    for _ in range(40):
        for records in consumer.poll(timeout_ms=250).values():
            seen += [int(r.value) for r in records]
        if len(seen) >= 10:
            break
    consumer.commit()
    parts = [TopicPartition("broker-check", p) for p in (0, 1)]
    assert sorted(seen) == list(range(10))
    assert sum(consumer.end_offsets(parts).values()) == 10
    assert {tp: consumer.committed(tp) for tp in parts} == consumer.end_offsets(parts)
    consumer.close()
