"""How a subject's events are stored: the mapper that encrypts a pupil's events with the pupil's own key (others
with the store key), writes the subject's own events fast, and the compressor that still reads old zlib rows."""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Compressor, Mapper, StoredEvent
from eventsourcing.utils import get_topic

from ledger.storage.aggregate import Subject
from ledger.storage.keys import ErasedMeanwhile, PupilKey, PupilKeys, SubjectErased
from ledger.storage.secrets import is_pupil_stream
from ledger.storage.sql import as_uuid


class SubjectMapper(Mapper[uuid.UUID]):
    """Encrypts a pupil's events with the pupil's own key (AES-GCM, bound to the row by associated data)."""

    keys: PupilKeys

    def _plain(self) -> Mapper[uuid.UUID]:
        return Mapper(self.transcoder, self.compressor, None)

    @staticmethod
    def _aad(aggregate_id: uuid.UUID, version: int, topic: str) -> bytes:
        return aggregate_id.bytes + version.to_bytes(8, "big") + topic.encode("utf-8")

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        aggregate_id = domain_event.originator_id
        if not is_pupil_stream(aggregate_id):
            return super().to_stored_event(domain_event)
        key = self.keys.data_key(aggregate_id)
        if key is None:
            raise ErasedMeanwhile(f"pupil stream {aggregate_id} has no key")
        plain = self._plain_stored(domain_event)
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(key).encrypt(nonce, plain.state, self._aad(aggregate_id, plain.originator_version, plain.topic))
        return StoredEvent(plain.originator_id, plain.originator_version, plain.topic, sealed)

    def _plain_stored(self, domain_event: Any) -> StoredEvent:
        """The library's ``Mapper.to_stored_event`` with no cipher. A subject's own events (strings, a list of
        string dicts, datetimes) are written by orjson, datetimes in the library's own form: the same JSON the
        library's transcoder reads back (tested), for about 2 µs of the 7 its encoder takes."""
        if type(domain_event) not in _SUBJECT_EVENTS:
            return self._plain().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        originator_id, originator_version = state.pop("originator_id"), state.pop("originator_version")
        try:
            data = orjson.dumps(state, default=_library_datetime, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except TypeError:  # something else in the state after all: the library's way
            return self._plain().to_stored_event(domain_event)
        if self.compressor:
            data = self.compressor.compress(data)
        return StoredEvent(originator_id, originator_version, get_topic(type(domain_event)), data)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        aggregate_id = as_uuid(stored_event.originator_id)
        if not is_pupil_stream(aggregate_id):
            return super().to_domain_event(stored_event)
        plain = self._decrypted(aggregate_id, stored_event)
        return self._plain().to_domain_event(StoredEvent(aggregate_id, stored_event.originator_version, stored_event.topic, plain))

    def _decrypted(self, aggregate_id: uuid.UUID, stored_event: StoredEvent, fetched: Mapping[uuid.UUID, PupilKey] | None = None) -> bytes:
        """A pupil's stored event decrypted with the pupil's key (SubjectErased: the key is gone); ``fetched``: the
        keys just fetched for a batch of events (``PupilKeys.prefetch``), where a pupil without one has none."""
        if fetched is None:
            key = self.keys.data_key(aggregate_id)
        else:
            found = fetched.get(aggregate_id)
            key = found.key if found is not None else None
        if key is None:
            raise SubjectErased(aggregate_id)
        state = bytes(stored_event.state)
        try:
            return AESGCM(key).decrypt(state[:12], state[12:], self._aad(aggregate_id, stored_event.originator_version, stored_event.topic))
        except InvalidTag:
            raise SubjectErased(aggregate_id) from None  # a stale key for a stream erased and re-created elsewhere

    def entry_of(
        self, stored_event: StoredEvent, fetched: Mapping[uuid.UUID, PupilKey] | None = None
    ) -> tuple[str, datetime, list[dict[str, str]]]:
        """A subject event's envelope, receipt time and flags, as ``to_domain_event`` gives them, without the event.

        Whoever reads the whole log (the projectors, the relay, a replay) wants only these three. The library's way
        decodes the state with its JSON decoder and an object hook called on every object, then builds the event
        object: two thirds of decoding a stored event. Here the state is read by orjson and the one datetime is
        read as the library's ``DatetimeAsISO`` reads it. Anything unexpected (another topic, another shape,
        JSON orjson declines) goes the library's way, so the answer is always the library's. ``fetched``: the pupils'
        keys fetched for the batch this event is read in (saves a look in the key cache per event)."""
        if stored_event.topic in _SUBJECT_TOPICS:
            aggregate_id = as_uuid(stored_event.originator_id)
            if is_pupil_stream(aggregate_id):
                data = self._decrypted(aggregate_id, stored_event, fetched)
            else:
                data = self.cipher.decrypt(bytes(stored_event.state)) if self.cipher else bytes(stored_event.state)
            if self.compressor:
                data = self.compressor.decompress(data)
            try:
                state = orjson.loads(data)
                received, envelope = state["received_at"], state["envelope"]
                # The library's hook changes only objects with a "_type_" key: here the event's timestamp and receipt
                # time, and nothing else when the bytes '"_type_"' occur only twice (a quote inside a JSON string is
                # escaped, so those bytes are a key, or a string that is exactly _type_)
                if (
                    data.count(b'"_type_"') == 2
                    and "_type_" in state["timestamp"]
                    and received["_type_"] == "datetime_iso"
                    and len(received) == 2
                    and type(envelope) is str
                ):
                    return envelope, datetime.fromisoformat(received["_data_"]), state["flags"]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):  # the library says what is wrong, its way
                pass
        event = self.to_domain_event(stored_event)
        return event.envelope, event.received_at, event.flags


_SUBJECT_EVENTS = (Subject.Created, Subject.Recorded)
_SUBJECT_TOPICS = frozenset(get_topic(t) for t in _SUBJECT_EVENTS)


def _library_datetime(value: Any) -> dict[str, str]:
    """A datetime as eventsourcing's ``DatetimeAsISO`` transcoding writes it (anything else: TypeError)."""
    if type(value) is not datetime:
        raise TypeError(f"not a datetime: {type(value)}")
    return {"_type_": "datetime_iso", "_data_": value.isoformat()}


class InflatingCompressor(Compressor):
    """New events are stored as they are; events stored zlib-compressed (before 2026-11-28) are still read.

    Compressing saved about a third of each ~1 KB stored event (two thirds of it is the base64 payload), for
    15 µs of CPU per event: 6% of ``submitBatch``'s time, against disk that is cheap. A stored event's state
    is JSON, which starts with ``{``; a zlib stream starts with 0x78, so the two cannot be mistaken.
    """

    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data) if data[:1] == b"\x78" else data
