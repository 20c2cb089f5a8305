"""A research release's files, built from the log cut at a signed checkpoint: the pupil rows, read by one or more
processes, anonymised, then written as the reproducible package with its signed manifest (docs/research.md).
Nothing is checked, kept or recorded here: ``api/research_release.py`` is the use case that does that around
``build``."""

from __future__ import annotations

import multiprocessing
import os
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ledger.config import Settings
from ledger.core.codes import code_list
from ledger.core.schooltime import academic_year
from ledger.research.projects import Project
from ledger.research.releases import PSEUDONYM_LENGTH, project_key, pseudonym
from ledger.storage.secrets import LedgerSecrets
from ledger.storage.store import Store, persistence_env

from . import package
from .anonymise import Coded, anonymise
from .reader import Cut, organisations_la, pupils
from .rows import Row, end_value, in_period, month, pupil_rows
from .tables import control, csv_text, grid
from .variables import PSEUDONYM, hierarchy, minimum_level, region_of_la

SOFTWARE = "pupil-ledger research release v1"
PARALLEL_FROM = 50_000  # log sequences from which the log is read by several processes


@dataclass(frozen=True)
class Spec:
    """What a release asks of its project: the unit and the variables (a subset of those approved)."""

    unit: str
    variables: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "variables": list(self.variables)}


class _Columns:
    """The extract's columns as dictionary codes (4 bytes a cell), so a million pupils' rows fit in memory; the
    pseudonyms, one per pupil and each used by that pupil's rows only, are kept once each as their 32 ASCII bytes."""

    def __init__(self, names: Sequence[str]):
        self.names = [PSEUDONYM, *names]
        self.pseudonyms = bytearray()
        self.pupil_of_row = array("I")
        self.codes: list[dict[str, int]] = [{} for _ in names]
        self.cells = [array("I") for _ in names]

    def add(self, pseudonym: str, rows: Iterable[Sequence[str]]) -> None:
        """One pupil's rows (each a value per variable)."""
        encoded = pseudonym.encode("ascii")
        assert len(encoded) == PSEUDONYM_LENGTH
        pupil = len(self.pseudonyms) // PSEUDONYM_LENGTH
        self.pseudonyms += encoded
        for values in rows:
            self.pupil_of_row.append(pupil)
            for codes, cells, value in zip(self.codes, self.cells, values, strict=True):
                code = codes.get(value)
                if code is None:
                    code = codes[value] = len(codes)
                cells.append(code)

    def table(self) -> pa.Table:
        """Dictionary-encoded columns (the strings are made once, for the rows released: ``anonymise`` works on codes)."""
        pupils = len(self.pseudonyms) // PSEUDONYM_LENGTH
        offsets = pa.array(range(0, PSEUDONYM_LENGTH * (pupils + 1), PSEUDONYM_LENGTH), pa.int32()).buffers()[1]
        names = pa.StringArray.from_buffers(pupils, offsets, pa.py_buffer(self.pseudonyms))
        columns = [pa.DictionaryArray.from_arrays(_uint32(self.pupil_of_row), names)]
        for codes, cells in zip(self.codes, self.cells, strict=True):
            columns.append(pa.DictionaryArray.from_arrays(_uint32(cells), pa.array(list(codes), pa.string())))
        return pa.table(columns, names=self.names)


def _uint32(cells: array[int]) -> pa.Array:
    """The codes as an Arrow array over the same memory (no copy)."""
    return pa.Array.from_buffers(pa.uint32(), len(cells), [None, pa.py_buffer(cells)])


@dataclass
class _Tally:
    """Distinct pupils per cell of a two-way table, and per row, column and overall (the margins)."""

    cells: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    margins: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def merge(self, cells: Mapping[tuple[str, str], int], margins: Mapping[tuple[str, str], int]) -> None:
        for key, n in cells.items():
            self.cells[key] += n
        for key, n in margins.items():
            self.margins[key] += n

    def add_pupil(self, pairs: Iterable[tuple[str, str]]) -> None:
        seen = set(pairs)
        if not seen:
            return
        for pair in seen:
            self.cells[pair] += 1
        for r in {r for r, _ in seen}:
            self.margins[(r, "Total")] += 1
        for c in {c for _, c in seen}:
            self.margins[("Total", c)] += 1
        self.margins[("Total", "Total")] += 1


@dataclass
class Built:
    files: dict[str, bytes]
    manifest: dict[str, Any]
    manifest_digest: str
    pseudonyms: pa.Array  # the released pupils' pseudonyms, sorted (``strings`` reads them a slice at a time)
    seconds: dict[str, float]


def strings(values: pa.Array, step: int = 1 << 16) -> Iterator[str]:
    """An Arrow string array's values as Python strings, a slice at a time (a million at once would be ~100 MB)."""
    for start in range(0, len(values), step):
        yield from values.slice(start, step).to_pylist()


def _value(row: Row, name: str) -> str:
    if name == "kind":
        return row.kind
    if name == "start":
        return month(row.start)
    if name == "end":
        return end_value(row)
    if name == "establishment":
        return row.where
    return row.values.get(name, "z")


def _in_population(row: Row, population: Mapping[str, Sequence[str]], la_of: Callable[[str], str]) -> bool:
    if "las" in population and la_of(row.where) not in population["las"]:
        return False
    if "kinds" in population and row.kind not in population["kinds"]:
        return False
    if "year_groups" in population and row.values.get("year_group") not in population["year_groups"]:
        return False
    return "sen_status" not in population or row.values.get("sen_status") in population["sen_status"]


@dataclass(frozen=True)
class _Part:
    """What one reader (a process, or this one) extracts: the pupils whose stream ids are in [low, high)."""

    settings: Settings
    project: Project
    spec: Spec
    cut: Cut
    la_map: dict[str, str | None]
    key: bytes
    low: int
    high: int | None


def _extract(
    part: _Part, store: Store | None = None
) -> tuple[bytes, dict[tuple[str, str], int], dict[tuple[str, str], int], dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """The part's rows (an Arrow IPC stream) and its tallies; opens its own connection unless given ``store``."""
    own = store is None
    if store is None:
        store = _open_store(part.settings)
    try:
        project, spec = part.project, part.spec
        to_la = hierarchy("establishment", part.la_map).steps[0]
        area_level = "region" if project.establishment_level == "region" else "la"
        columns = _Columns(spec.variables)
        by_kind_year, by_area_kind = _Tally(), _Tally()
        first, last = project.period
        for stream, records in pupils(store, part.cut, low=part.low, high=part.high):
            rows = [
                r for r in pupil_rows(records, project.unit) if in_period(r, first, last) and _in_population(r, project.population, to_la)
            ]
            if not rows:
                continue
            columns.add(pseudonym(part.key, stream), ([_value(row, v) for v in spec.variables] for row in rows))
            by_kind_year.add_pupil((r.kind, academic_year(r.start)) for r in rows)
            by_area_kind.add_pupil((_area(to_la(r.where), area_level), r.kind) for r in rows)
        table = columns.table()
        del columns

        def ipc(sink: Any) -> None:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)

        return (
            package.written(ipc),
            dict(by_kind_year.cells),
            dict(by_kind_year.margins),
            dict(by_area_kind.cells),
            dict(by_area_kind.margins),
        )
    finally:
        if own:
            store.close()


def _open_store(settings: Settings) -> Store:
    """The ledger's store alone, opened as the operator's tools open it (a reader process needs nothing else)."""
    secrets = LedgerSecrets.load(settings.secrets_dir)
    return Store.open(persistence_env(settings.database_url, str(settings.sqlite_path), secrets.cipher_key, False, secrets.master_key))


def _read_parts(store: Store, parts: list[_Part]) -> tuple[pa.Table, _Tally, _Tally]:
    """Run the parts (in worker processes when more than one) and join what they found; the order does not matter: rows
    are sorted before release, and tallies add up."""
    if len(parts) == 1:
        results = [_extract(parts[0], store)]
    else:
        with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_extract, parts))
    tables = [pa.ipc.open_stream(data).read_all() for data, *_ in results]
    by_kind_year, by_area_kind = _Tally(), _Tally()
    for _, kind_year, kind_year_margins, area_kind, area_kind_margins in results:
        by_kind_year.merge(kind_year, kind_year_margins)
        by_area_kind.merge(area_kind, area_kind_margins)
    return pa.concat_tables(tables), by_kind_year, by_area_kind


def readers_for(cut: Cut) -> int:
    """Reader processes: one for small logs (a process costs a second to start), else one per core, at most 4."""
    return 1 if cut.last_sequence < PARALLEL_FROM else max(1, min(4, os.cpu_count() or 1))


def build(
    store: Store, secrets: LedgerSecrets, settings: Settings, project: Project, spec: Spec, cut: Cut, readers: int | None = None
) -> Built:
    """Every file of the release of ``spec`` for ``project`` cut at ``cut`` (nothing is stored or recorded here), its
    pseudonyms keyed by ``secrets`` and its manifest signed with the ledger's key. ``readers``: processes reading the log
    (each opens the store ``settings`` name), each a slice of the pupils' stream ids (default ``readers_for(cut)``); the
    files do not depend on it."""
    clock = time.perf_counter()
    seconds: dict[str, float] = {}
    la_map = organisations_la(store)
    hierarchies = {name: hierarchy(name, la_map) for name in spec.variables}
    key = project_key(secrets.pseudonym_key, project.project_id)
    count = readers or readers_for(cut)
    bounds = [(i << 128) // count for i in range(count)] + [None]
    parts = [
        _Part(settings, project, spec, cut, la_map, key, int(low), high)
        for low, high in zip(bounds, bounds[1:], strict=False)
        if low is not None
    ]
    table, by_kind_year, by_area_kind = _read_parts(store, parts)
    area_level = "region" if project.establishment_level == "region" else "la"
    first, last = project.period
    seconds["read"] = time.perf_counter() - clock
    clock = time.perf_counter()
    qis = [v for v in project.quasi_identifiers if v in spec.variables]
    sensitive = [v for v in project.sensitive if v in spec.variables]
    minimum = {v: minimum_level(v, project.establishment_level, project.date_detail) for v in spec.variables}
    coded = Coded.of(table)
    del table  # its codes are all that is needed now (anonymise's ``Coded``)
    outcome = anonymise(coded, hierarchies, minimum, qis, sensitive, project.k, project.l, project.max_suppressed)
    del coded
    pa.default_memory_pool().release_unused()  # the codes' working copies go back to the system, not only to the pool
    seconds["anonymise"] = time.perf_counter() - clock
    clock = time.perf_counter()
    released = outcome.table
    anonymity, levels, grouped, suppressed_rows = outcome.anonymity, outcome.levels, outcome.grouped, outcome.suppressed_rows
    descriptions = _descriptions()
    descriptions[PSEUDONYM] = (
        f"The pupil's pseudonym in project {project.project_id}: the same pupil has the same pseudonym in every release of "
        "this project, and an unrelated one in any other project"
    )
    schema = [
        package.field_descriptor(
            n, descriptions.get(n, ""), [] if n == PSEUDONYM else sorted(pc.unique(released[n]).to_pylist()), levels.get(n, "")
        )
        for n in released.column_names
    ]
    files: dict[str, bytes] = {
        package.ROWS_PARQUET: package.parquet_bytes(released, descriptions),
        package.ROWS_CSV: package.csv_bytes(released),
    }
    tables: dict[str, tuple[str, str, str]] = {}
    suppressed_cells: dict[str, int] = {}
    if {"kind", "start"} <= set(spec.variables):
        _add_table(
            files,
            tables,
            suppressed_cells,
            "tables/pupils_by_kind_and_year.csv",
            by_kind_year,
            "kind",
            "academic_year",
            "Distinct pupils by kind of row and academic year it started",
            project.k,
        )
    if {"kind", "establishment"} <= set(spec.variables):
        _add_table(
            files,
            tables,
            suppressed_cells,
            f"tables/pupils_by_{area_level}_and_kind.csv",
            by_area_kind,
            area_level,
            "kind",
            f"Distinct pupils by {area_level} and kind of row",
            project.k,
        )
    title = f"Pupil Movement Ledger research extract: project {project.project_id}"
    row_unit = {"episode": "pupil episode", "event": "pupil event"}[spec.unit]
    files[package.DATAPACKAGE] = package.datapackage(
        f"pupil-ledger-{project.project_id}", title, project.purpose, row_unit, schema, files, tables
    )
    members = pc.unique(released[PSEUDONYM]) if released.num_rows else pa.array([], pa.string())
    members = members.take(pc.array_sort_indices(members))
    pupils_released, rows_released = len(members), released.num_rows
    del released, outcome  # the rows are in the files now; what the manifest needs of the outcome is in it
    pa.default_memory_pool().release_unused()
    manifest: dict[str, Any] = {
        "format": SOFTWARE,
        "project": {
            "project": project.project_id,
            "researcher": project.researcher,
            "purpose": project.purpose,
            "approved_event_id": project.approved_event_id,
            "population": {k: list(v) for k, v in project.population.items()},
            "period": {"from": first.isoformat(), "to": last.isoformat()},
            "establishment_level": project.establishment_level,
            "date_detail": project.date_detail,
        },
        "spec": spec.as_dict(),
        "checkpoint": cut.as_dict(),
        "rows": rows_released,
        "pupils": pupils_released,
        "suppressed_rows": suppressed_rows,
        "anonymity": {
            "k": anonymity.k,
            "k_rows": anonymity.k_rows,
            "l": anonymity.l if sensitive else None,
            "k_required": project.k,
            "l_required": project.l,
            "max_suppressed": project.max_suppressed,
            "quasi_identifiers": qis,
            "sensitive": sensitive,
            "levels": levels,
            "grouped_as_other": grouped,
        },
        "tables": {path: {"threshold": project.k, "suppressed_cells": suppressed_cells[path]} for path in sorted(tables)},
    }
    files[package.DICTIONARY] = package.dictionary_page(title, {**manifest, "checkpoint": cut.as_dict()}, schema)
    manifest["files"] = package.manifest_files(files)
    canonical, signed, digest = package.sign_manifest(manifest, secrets.signing_key)
    files[package.MANIFEST], files[package.SIGNED_MANIFEST] = canonical, signed
    seconds["write"] = time.perf_counter() - clock
    return Built(files, manifest, digest, members, seconds)


def _area(la: str, level: str) -> str:
    return region_of_la(la) if level == "region" and la.startswith("la:") else la


def _add_table(
    files: dict[str, bytes],
    tables: dict[str, tuple[str, str, str]],
    suppressed: dict[str, int],
    path: str,
    tally: _Tally,
    row_name: str,
    column_name: str,
    title: str,
    threshold: int,
) -> None:
    table = grid(tally.cells, totals=tally.margins)
    published = control(table, threshold)
    files[path] = csv_text(table, published, row_name, column_name).encode("utf-8")
    tables[path] = (row_name, column_name, title)
    suppressed[path] = sum(1 for v in published.values() if v == "c")


def _descriptions() -> dict[str, str]:
    return {code: label for version in code_list("research_variables").versions for code, label in version.codes.items()}
