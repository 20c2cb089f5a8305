"""The mean and median of values each held by several items (a length in days and the placements of that length), as
``statistics.mean`` and ``statistics.median`` give them for the values repeated, without repeating them.

A read at national scale counts tens of thousands of placements but a few hundred distinct lengths, so the database
sends each length once with its count (``read_model_queries``) and these give the fold's answers from them."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction


def mean(counts: Iterable[tuple[int, int]]) -> int | float | None:
    """``statistics.mean`` of each value repeated its count of times (an int when it is whole, as there); None if none.
    Counts of 0 or less hold nothing."""
    total = n = 0
    for value, count in counts:
        if count > 0:
            total += value * count
            n += count
    if not n:
        return None
    exact = Fraction(total, n)
    return int(exact) if exact.denominator == 1 else float(exact)


def median(counts: Iterable[tuple[int, int]]) -> int | float | None:
    """``statistics.median`` of each value repeated its count of times: the middle value, or the mean of the two
    middle ones (a float, as there); None if none. Counts of 0 or less hold nothing."""
    ordered = sorted((value, count) for value, count in counts if count > 0)
    n = sum(count for _, count in ordered)
    if not n:
        return None

    def at(position: int) -> int:
        for value, count in ordered:
            if position < count:
                return value
            position -= count
        raise IndexError(position)

    if n % 2:
        return at(n // 2)
    return (at(n // 2 - 1) + at(n // 2)) / 2
