"""Reads the log as it stood at a signed checkpoint, one pupil at a time (decrypted with the pupil's own key).

Pupils are read in stream order by keyset pages, so memory holds one page and not the log; erased pupils have
no key and are skipped (they never appear in a release). Only events up to the checkpoint's last leaf are read,
so the same checkpoint gives the same rows whatever was appended since.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.core.errors import Category, LedgerError
from ledger.core.orgs import fold_org
from ledger.core.rules import Record
from ledger.storage.secrets import is_pupil_stream
from ledger.storage.store import InflatingCompressor, Store, SubjectMapper, record_of
from ledger.transparency.tlog import Log

PAGE = 2000


@dataclass(frozen=True)
class Cut:
    """A signed checkpoint and the last ledger sequence it covers."""

    origin: str
    tree_size: int
    root: str  # base64, as in the checkpoint
    last_sequence: int

    def as_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "tree_size": self.tree_size, "root": self.root}


def checkpoint_cut(store: Store, tree_size: int | None = None) -> Cut:
    """The latest signed checkpoint, or the one of ``tree_size`` (it must have been signed)."""
    log = Log(store)
    found = log.checkpoint(tree_size)
    if found is None:
        if tree_size is None:
            raise LedgerError.one(
                "no_checkpoint", "$.tree_size", "the log has no signed checkpoint yet: seal it first (pupil-ledger seal)", Category.CONFLICT
            )
        raise LedgerError.one("unknown_checkpoint", "$.tree_size", f"no checkpoint of tree size {tree_size} was signed", Category.NOT_FOUND)
    size, note = found
    origin, _size, root = note.split("\n")[:3]
    last_sequence = log.sequence_of_leaf(size - 1)
    assert last_sequence is not None  # a signed checkpoint's leaves are in the log
    return Cut(origin, size, root, last_sequence)


def organisations_la(store: Store) -> dict[str, str | None]:
    """Every registered organisation's LA (an LA's own id for itself), from the organisations' records."""
    out: dict[str, str | None] = {}
    for subject in store.subjects(store.org_streams()).values():
        org = subject.records[0].subject
        state = fold_org(org, subject.records)
        out[org] = org if org.startswith("la:") else state.la
    return out


def _record(cipher: AESGCM, stream: uuid.UUID, version: int, topic: str, state: bytes) -> Record:
    """One stored pupil event, decrypted with the pupil's key (as ``SubjectMapper.to_domain_event`` does, bound to its row
    by the same associated data) and read straight from its JSON: the library's generic decoding took half the time."""
    plain = cipher.decrypt(state[:12], state[12:], SubjectMapper._aad(stream, version, topic))
    fields = orjson.loads(InflatingCompressor().decompress(plain))
    return record_of(fields["envelope"], datetime.fromisoformat(fields["received_at"]["_data_"]))


def pupils(store: Store, cut: Cut, page: int = PAGE, low: int = 0, high: int | None = None) -> Iterator[tuple[uuid.UUID, list[Record]]]:
    """Every pupil with events at the checkpoint whose stream id (as a 128-bit number) is in [low, high): (stream id,
    records in stream order). Erased pupils are not there."""
    after = (uuid.UUID(int=low), -1)  # the first stream of the range is read from its first version
    below = uuid.UUID(int=high) if high is not None else None
    current: uuid.UUID | None = None
    records: list[Record] = []
    while True:
        rows = store.events_in_stream_order(after, below, cut.last_sequence, page)
        if not rows:
            break
        streams = [r[0] for r in rows]
        wanted = sorted({s for s in streams if is_pupil_stream(s)})
        ciphers = {stream: AESGCM(key.key) for stream, key in (store.app.pupil_keys.prefetch(wanted) if wanted else {}).items()}
        for stream, stored_version, topic, state in rows:
            if stream != current:
                if current is not None and records:
                    yield current, records
                current, records = stream, []
            cipher = ciphers.get(stream)
            if cipher is None:  # not a pupil, or erased (no key)
                continue
            try:
                records.append(_record(cipher, stream, stored_version, topic, state))
            except InvalidTag:  # erased and recorded afresh meanwhile: a stale key; the pupil is left out
                ciphers.pop(stream, None)
                records = []
        after = rows[-1][0], rows[-1][1]
    if current is not None and records:
        yield current, records


def root_bytes(cut: Cut) -> bytes:
    return base64.b64decode(cut.root)
