"""The ledger's side of witnessing: asking the configured witnesses to cosign its checkpoints.

:class:`Witnessing` is the ledger's follower: it submits the latest signed checkpoint to each
configured witness (``PUPIL_LEDGER_WITNESSES``, :func:`parse_witnesses`) with a consistency proof
from the size that witness last cosigned (learnt from a 409 reply, starting from 0) and stores the
verified cosignature lines in ``log_cosignatures``. The witness itself is
:mod:`ledger.transparency.witness`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from ledger.core import notes
from ledger.storage.store import Store
from ledger.transparency.tlog import TreeReader
from ledger.transparency.witness import SIZE_CONTENT_TYPE, Submission

log = logging.getLogger("pupil_ledger.witness")


@dataclass(frozen=True)
class WitnessConfig:
    url: str
    verifier: notes.Verifier

    @property
    def name(self) -> str:
        return self.verifier.name


def parse_witnesses(spec: str) -> list[WitnessConfig]:
    """``PUPIL_LEDGER_WITNESSES``: comma-separated ``URL=VKEY`` pairs (the URL is the submission prefix)."""
    configs = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        url, sep, key = item.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise ValueError(f"a witness is URL=VKEY with an http(s) URL, not {item[:80]!r}")
        verifier = notes.Verifier.parse(key)
        if verifier.alg != notes.COSIGNATURE_ALG:
            raise ValueError(f"the witness key {verifier.name} is not a cosignature key (type 04)")
        configs.append(WitnessConfig(url.strip().rstrip("/"), verifier))
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError("two witnesses have the same name")
    return configs


@dataclass
class _Peer:
    config: WitnessConfig
    known_size: int | None = None  # the size the witness last cosigned, as far as we know
    failures: int = 0
    retry_at: float = 0.0


class Witnessing:
    """Follower: gets the latest signed checkpoint cosigned by each configured witness."""

    name = "witnessing"

    def __init__(
        self,
        store: Store,
        witnesses: Sequence[WitnessConfig],
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_backoff: float = 60.0,
    ):
        self.store = store
        self.tree = TreeReader(store)
        self.peers = [_Peer(w) for w in witnesses]
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)))
        self.clock = clock
        self.max_backoff = max_backoff

    def close(self) -> None:
        self.client.close()

    def step(self) -> int:
        rows = self.store.query("SELECT tree_size, note FROM log_checkpoints ORDER BY tree_size DESC LIMIT 1")
        if not rows:
            return 0
        size, note = int(rows[0][0]), str(rows[0][1])
        have = {str(r[0]) for r in self.store.query("SELECT witness FROM log_cosignatures WHERE tree_size = ?", (size,))}
        stored = 0
        for peer in self.peers:
            if peer.config.name in have or self.clock() < peer.retry_at:
                continue
            try:
                line = self._cosign(peer, size, note)
            except (httpx.HTTPError, WitnessRefused) as exc:
                peer.failures += 1
                peer.retry_at = self.clock() + min(self.max_backoff, 0.5 * 2**peer.failures)
                log.warning("witness %s did not cosign size %d: %s", peer.config.name, size, exc)
                continue
            peer.failures = 0
            self.store.execute(
                "INSERT INTO log_cosignatures (tree_size, witness, line) VALUES (?, ?, ?) ON CONFLICT (tree_size, witness) DO NOTHING",
                (size, peer.config.name, line),
            )
            stored += 1
        return stored

    def _known_size(self, peer: _Peer) -> int:
        if peer.known_size is None:  # after a restart: the largest size it cosigned for us; a 409 corrects it
            rows = self.store.query("SELECT MAX(tree_size) FROM log_cosignatures WHERE witness = ?", (peer.config.name,))
            peer.known_size = int(rows[0][0]) if rows and rows[0][0] is not None else 0
        return peer.known_size

    def _cosign(self, peer: _Peer, size: int, note: str) -> str:
        for _ in range(3):
            old = self._known_size(peer)
            if old > size:
                raise WitnessRefused(f"the witness cosigned size {old}, larger than the log's latest checkpoint {size}")
            proof = self.tree.consistency_proof(old, size) if 0 < old < size else []
            body = Submission(old, tuple(proof), note).text().encode("utf-8")
            response = self.client.post(
                f"{peer.config.url}/add-checkpoint", content=body, headers={"Content-Type": "text/plain; charset=utf-8"}
            )
            if response.status_code == 409 and response.headers.get("content-type", "").startswith(SIZE_CONTENT_TYPE):
                text = response.text.strip()
                if not text.isdigit():
                    raise WitnessRefused(f"409 with a malformed size body {text[:40]!r}")
                if int(text) == old:
                    raise WitnessRefused(f"409 at the same size {old}: the witness holds another root (a fork?)")
                peer.known_size = int(text)
                continue
            if response.status_code != 200:
                raise WitnessRefused(f"HTTP {response.status_code}: {response.text.strip()[:200]}")
            line = self._verified_line(peer, note, response.text)
            peer.known_size = size
            return line
        raise WitnessRefused("the witness's size kept changing (another client is submitting)")

    @staticmethod
    def _verified_line(peer: _Peer, note: str, reply: str) -> str:
        """The reply's cosignature line by this witness's key, verified on the checkpoint; others are ignored."""
        try:
            cosigned = notes.Note.parse(note + reply)
        except notes.NoteError as exc:
            raise WitnessRefused(f"malformed cosignature reply: {exc}") from None
        for sig in cosigned.signatures:
            if notes.cosigners(notes.Note(cosigned.body, (sig,)), [peer.config.verifier]):
                return sig.line()
        raise WitnessRefused("the reply has no valid cosignature by the configured witness key")


class WitnessRefused(RuntimeError):
    """A witness did not give a usable cosignature (its status and message are in the text)."""
