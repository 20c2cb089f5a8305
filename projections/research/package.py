"""The files of a release, byte for byte reproducible: Parquet and CSV of the rows (sorted), the aggregate tables,
a Frictionless data package (``datapackage.json``: Table Schema with types, code lists and descriptions), a human
data dictionary page, and the manifest that lists them all with their digests, signed by the ledger (DSSE).

Nothing in a file depends on when it was made: no timestamps, pinned Parquet writer options (the writer's own
version string is in the file, so the pyarrow version is pinned in pyproject.toml), JSON with sorted keys.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ledger.core import envelope, jcs
from ledger.core.codes import code_list

from .variables import NOT_APPLICABLE, NOT_KNOWN, OPEN, OTHER, PSEUDONYM, SUPPRESSED

MANIFEST_PAYLOAD_TYPE = "application/vnd.pupil-ledger.research-manifest+json"
ROWS_PARQUET, ROWS_CSV = "rows.parquet", "rows.csv"
DATAPACKAGE, DICTIONARY, MANIFEST, SIGNED_MANIFEST = "datapackage.json", "data-dictionary.html", "manifest.json", "manifest.dsse.json"
SYMBOL_LABELS = {
    SUPPRESSED: "suppressed (generalised away for anonymity)",
    NOT_APPLICABLE: "not applicable to this row",
    NOT_KNOWN: "not known",
    OPEN: "not ended by the checkpoint",
    OTHER: "a category too rare to release (fewer than k pupils)",
}
# Variables whose values come from one of the catalogue's code lists, whatever the row
CODE_LISTS = {
    "kind": ("research_kinds",),
    "sen_status": ("sen_status",),
    "enrolment_status": ("enrolment_status",),
    "setting_type": ("ap_setting_types",),
    "tier": ("ap_tiers",),
    "exclusion_kind": ("exclusion_kinds",),
    "reason": ("ap_placement_reasons", "exclusion_reasons", "deregistration_grounds"),
    "outcome": (
        "ap_end_outcomes",
        "managed_move_outcomes",
        "cme_resolutions",
        "destinations",
        "post16_destinations",
        "exclusion_review_outcomes",
        "ap_placement_review_outcomes",
    ),
    "year_group": ("year_groups",),
}
PARQUET_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_version": "1.0",
    "row_group_size": 1 << 20,
    "write_page_index": False,
    "store_schema": True,
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def written(write: Callable[[io.BytesIO], object]) -> bytes:
    """What ``write`` writes to a file, as bytes. Written into a ``BytesIO``, whose value is handed over without a
    copy: an Arrow buffer's ``to_pybytes`` copies, so a file cost twice its size in memory (a 150 MB CSV, 300 MB),
    and Arrow's memory pool kept its half after it was freed."""
    sink = io.BytesIO()
    write(sink)
    return sink.getvalue()


def parquet_bytes(table: pa.Table, descriptions: Mapping[str, str]) -> bytes:
    fields = [
        pa.field(name, pa.string(), nullable=False, metadata={"description": descriptions.get(name, "")}) for name in table.column_names
    ]
    typed = pa.table(table.columns, schema=pa.schema(fields))
    return written(lambda sink: pq.write_table(typed, sink, **PARQUET_OPTIONS))


def csv_bytes(table: pa.Table) -> bytes:
    options = pacsv.WriteOptions(include_header=True, delimiter=",", quoting_style="needed")
    return written(lambda sink: pacsv.write_csv(table, sink, options))


def _labels(variable: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for name in CODE_LISTS.get(variable, ()):
        for version in code_list(name).versions:
            for code, label in version.codes.items():
                labels.setdefault(code, label)
    return labels


def field_descriptor(name: str, description: str, values: Sequence[str], level: str) -> dict[str, Any]:
    """A Table Schema field: every value is a string; ``enum`` the values this release holds; labels from the code lists."""
    labels = {**_labels(name), **SYMBOL_LABELS}
    if name == PSEUDONYM:
        return {"name": name, "type": "string", "description": description, "constraints": {"required": True, "pattern": "[0-9a-f]{32}"}}
    out: dict[str, Any] = {
        "name": name,
        "type": "string",
        "description": description,
        "constraints": {"required": True, "enum": list(values)},
    }
    out["x-level"] = level
    out["categories"] = [{"value": v, "label": labels[v]} for v in values if v in labels]
    if name in CODE_LISTS:
        out["x-code-lists"] = list(CODE_LISTS[name])
    return out


def datapackage(
    name: str,
    title: str,
    description: str,
    row_unit: str,
    rows_schema: list[dict[str, Any]],
    files: Mapping[str, bytes],
    tables: Mapping[str, tuple[str, str, str]],
) -> bytes:
    """``datapackage.json``: the rows (CSV, with the Parquet copy named beside it) and each aggregate table."""

    def resource(path: str, resource_name: str, schema: dict[str, Any], res_title: str) -> dict[str, Any]:
        return {
            "name": resource_name,
            "path": path,
            "profile": "tabular-data-resource",
            "format": "csv",
            "mediatype": "text/csv",
            "encoding": "utf-8",
            "title": res_title,
            "bytes": len(files[path]),
            "hash": f"sha256:{sha256(files[path])}",
            "schema": schema,
        }

    resources = [resource(ROWS_CSV, "rows", {"fields": rows_schema, "missingValues": []}, "The extract: one row per " + row_unit)]
    resources[0]["x-parquet"] = {"path": ROWS_PARQUET, "bytes": len(files[ROWS_PARQUET]), "hash": f"sha256:{sha256(files[ROWS_PARQUET])}"}
    for path, (row_name, column_name, table_title) in sorted(tables.items()):
        fields = [
            {"name": row_name, "type": "string"},
            {"name": column_name, "type": "string"},
            {
                "name": "pupils",
                "type": "string",
                "description": "distinct pupils, or c where suppressed (fewer than the threshold, or secondary suppression)",
            },
        ]
        resources.append(
            resource(
                path, path.rsplit("/", 1)[-1].removesuffix(".csv").replace("_", "-"), {"fields": fields, "missingValues": []}, table_title
            )
        )
    document = {"profile": "tabular-data-package", "name": name, "title": title, "description": description, "resources": resources}
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def dictionary_page(title: str, manifest: Mapping[str, Any], rows_schema: Sequence[Mapping[str, Any]]) -> bytes:
    """The data dictionary as a plain HTML page (no scripts, no external assets)."""
    e = html.escape
    anonymity = manifest["anonymity"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:Arial,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #b1b4b6;padding:.25rem .5rem;text-align:left;vertical-align:top}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Project <strong>{e(manifest['project']['project'])}</strong> of {e(manifest['project']['researcher'])}: "
        f"{e(manifest['project']['purpose'])}</p>",
        f"<p>Cut from the log checkpoint {e(manifest['checkpoint']['origin'])}, tree size {manifest['checkpoint']['tree_size']}, root "
        f"<code>{e(manifest['checkpoint']['root'])}</code>.</p>",
        f"<p>{manifest['rows']} rows of {manifest['pupils']} pupils; {manifest['suppressed_rows']} rows suppressed. "
        f"k-anonymity {anonymity['k']} (distinct pupils in the smallest class of the quasi-identifiers "
        f"{e(', '.join(anonymity['quasi_identifiers']))}), l-diversity {anonymity['l']} on "
        f"{e(', '.join(anonymity['sensitive']) or 'no sensitive attribute')}.</p>",
        "<h2>Symbols</h2>",
        "<dl>",
        *[f"<dt><code>{e(s)}</code></dt><dd>{e(label)}</dd>" for s, label in SYMBOL_LABELS.items()],
        "</dl>",
        "<h2>Variables</h2>",
        "<table>",
        "<thead><tr><th>Variable</th><th>Level released</th><th>Description</th><th>Values</th></tr></thead>",
        "<tbody>",
    ]
    for f in rows_schema:
        labels = {c["value"]: c["label"] for c in f.get("categories", [])}
        values = (
            "pseudonymous id (32 hex characters)"
            if f["name"] == PSEUDONYM
            else ", ".join(f"<code>{e(v)}</code>" + (f" ({e(labels[v])})" if v in labels else "") for v in f["constraints"]["enum"][:200])
        )
        parts.append(
            f"<tr><td><code>{e(f['name'])}</code></td><td>{e(f.get('x-level', ''))}</td><td>{e(f['description'])}</td>"
            f"<td>{values}</td></tr>"
        )
    parts += ["</tbody>", "</table>", "</body>", "</html>", ""]
    return "\n".join(parts).encode("utf-8")


def manifest_files(files: Mapping[str, bytes]) -> list[dict[str, Any]]:
    return [{"name": name, "bytes": len(content), "sha256": sha256(content)} for name, content in sorted(files.items())]


def sign_manifest(manifest: Mapping[str, Any], signing_key: Any) -> tuple[bytes, bytes, str]:
    """(manifest JCS bytes, its DSSE envelope signed by the ledger's key, the manifest digest)."""
    canonical = jcs.canonicalize(dict(manifest))
    signed = envelope.sign(dict(manifest), signing_key, payload_type=MANIFEST_PAYLOAD_TYPE)
    return canonical + b"\n", (json.dumps(signed, sort_keys=True) + "\n").encode("utf-8"), sha256(canonical)
