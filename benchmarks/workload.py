"""The simulated national workload a benchmark runs on: built once per size, signed up front (untimed)."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ledger.core import envelope, jcs
from ledger.tools.simulate import Area, Org, simulate_nation

EVENTS_PER_PUPIL = 1.34  # what simulate_nation produces (measured at 20,000 pupils)


@dataclass
class Workload:
    areas: list[Area]

    @cached_property
    def orgs(self) -> list[Org]:
        unique: dict[str, Org] = {}
        for area in self.areas:
            unique.update(area.orgs)
        return list(unique.values())

    @cached_property
    def signed(self) -> list[dict[str, Any]]:
        """Every event's envelope, area after area (each area's events in date order)."""
        return [env for area in self.areas for env in area.signed_events()]

    @cached_property
    def bodies(self) -> list[dict[str, Any]]:
        return [body for area in self.areas for _, body in area.events]

    @property
    def size(self) -> int:
        return sum(len(area.events) for area in self.areas)

    @cached_property
    def upns(self) -> list[str]:
        return sorted({b["subject"]["upn"] for b in self.bodies if "upn" in b["subject"]})

    def sample_upns(self, n: int, seed: int = 7) -> list[str]:
        rng = random.Random(seed)
        return [rng.choice(self.upns) for _ in range(n)]


_WORKLOADS: dict[tuple[int, int], Workload] = {}


def _pupils(events: int) -> int:
    return max(20, round(events / EVENTS_PER_PUPIL))


def workload(events: int, seed: int = 1) -> Workload:
    """A national-shaped population with about ``events`` events (at least a handful of pupils), built once per size."""
    built = _WORKLOADS.get((events, seed))
    if built is None:
        built = _WORKLOADS[(events, seed)] = Workload(list(simulate_nation(_pupils(events), seed)))
    return built


def streamed_areas(events: int, seed: int = 1) -> Iterator[Area]:
    """``workload(events, seed).areas``, one area at a time: the built workload's if a scenario has asked for it, else
    simulated as they are taken, so a ledger of 10 M events loads in a few hundred MB rather than with every area of
    the workload held at once (1.5 GB at 1 M pupils)."""
    built = _WORKLOADS.get((events, seed))
    return iter(built.areas) if built is not None else simulate_nation(_pupils(events), seed)


def share_of(body: dict[str, Any], shares: int) -> int:
    """Which of ``shares`` (clients, processes) an event goes to: by its subject, so each pupil's events stay
    in one share, in order."""
    subject = body["subject"]
    return zlib.crc32(str(subject.get("upn") or subject.get("org")).encode()) % shares


def canonical_text(env: dict[str, Any]) -> str:
    return jcs.canonicalize(env).decode("utf-8")


def payload_body(env: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = jcs.parse(envelope.b64decode_strict(env["payload"]))
    return body
