"""C2SP tlog-tiles addressing and encodings (pure), and the log's entry format (design.md 3.3).

A tile at level L holds up to 256 consecutive hashes of tree level 8L; tile N at level L covers
the level-8L hashes [256N, 256N + W). Partial tiles (W < 256) are addressed ``.p/W``. The index N
is written in groups of three digits, every group but the last prefixed by ``x``:
``tile/0/x001/x234/067.p/8``. Entry bundles hold the entries of level-0 tile N, each as a
big-endian uint16 length followed by its bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY = 0xFFFF


class TilePathError(ValueError):
    pass


def encode_index(n: int) -> str:
    digits = f"{n:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    return f"tile/{level}/{encode_index(index)}" + (f".p/{width}" if width < TILE_WIDTH else "")


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    return f"tile/entries/{encode_index(index)}" + (f".p/{width}" if width < TILE_WIDTH else "")


_TILE = re.compile(r"^tile/(?P<level>entries|[0-9]|[1-5][0-9]|6[0-3])/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})(?:\.p/(?P<width>[0-9]{1,3}))?")


@dataclass(frozen=True)
class TileRef:
    level: int  # -1 for an entry bundle
    index: int
    width: int

    @property
    def is_entries(self) -> bool:
        return self.level < 0


def parse_tile_path(path: str) -> TileRef:
    match = _TILE.fullmatch(path)  # not match with $: $ also matches before a final newline
    if not match:
        raise TilePathError(f"{path!r} is not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])")
    groups = match["index"].split("/")
    index = int("".join(g.lstrip("x") for g in groups))
    if encode_index(index) != match["index"]:
        raise TilePathError(f"{path!r}: the tile index is not in canonical form")
    width = int(match["width"]) if match["width"] is not None else TILE_WIDTH
    if match["width"] is not None and (not 1 <= width < TILE_WIDTH or match["width"] != str(width)):
        raise TilePathError(f"{path!r}: a partial tile width is 1..255")
    level = -1 if match["level"] == "entries" else int(match["level"])
    return TileRef(level, index, width)


def tile_width_at(level: int, index: int, tree_size: int) -> int:
    """How many hashes tile ``index`` at ``level`` has in a tree of ``tree_size`` (0 if none)."""
    hashes_at_level = tree_size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, hashes_at_level - index * TILE_WIDTH))


def tiles_at(level: int, tree_size: int) -> Iterator[tuple[int, int]]:
    """(index, width) of every tile a tree of ``tree_size`` has at ``level`` (the last may be partial)."""
    hashes = tree_size >> (TILE_HEIGHT * level)
    for index in range((hashes + TILE_WIDTH - 1) // TILE_WIDTH):
        yield index, tile_width_at(level, index, tree_size)


def levels(tree_size: int) -> range:
    """The tile levels a tree of ``tree_size`` has (level L holds tree level 8L)."""
    return range(next(L for L in range(64) if not tree_size >> (TILE_HEIGHT * L)))


def encode_bundle(entries: list[bytes]) -> bytes:
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY:
            raise ValueError("an entry longer than 65535 bytes cannot be bundled")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_bundle(data: bytes) -> list[bytes]:
    entries: list[bytes] = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise ValueError(f"the entry bundle is truncated at byte {i}")
        n = int.from_bytes(data[i : i + 2], "big")
        if i + 2 + n > len(data):
            raise ValueError(f"entry {len(entries)} of the bundle is truncated")
        entries.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    return entries


# -- the ledger's log entries ------------------------------------------------------------------


def log_entry(index: int, received_at: str, event_digest: str, envelope_digest: str) -> bytes:
    """JCS bytes of {"index", "received_at", "event_digest", "envelope_digest"} (design.md 3.3).

    Written directly (keys in JCS order; the values are ASCII hex, an integer and a timestamp, which
    need no escaping); ``tests/test_tlog.py`` checks it equals the general RFC 8785 serialiser.
    """
    return (
        f'{{"envelope_digest":"{envelope_digest}","event_digest":"{event_digest}","index":{index},"received_at":"{received_at}"}}'
    ).encode("ascii")
