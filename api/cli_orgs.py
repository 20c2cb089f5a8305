"""``pupil-ledger orgs`` and ``keys``: register organisations (by hand or from a GIAS extract) and manage the
public keys they sign with."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from rich.progress import Progress
from rich.table import Table

from api.cli_common import err, fail, open_ledger, out
from ledger.core import envelope
from ledger.core.errors import LedgerError
from ledger.storage.secrets import private_key_pem, public_key_pem
from ledger.tools import admin

orgs_app = typer.Typer(help="Organisations (schools, LAs, trusts, AP settings, providers).", no_args_is_help=True)
keys_app = typer.Typer(help="Organisations' signing keys.", no_args_is_help=True)


@orgs_app.command("add")
def orgs_add(
    org_id: str,
    kind: Annotated[
        str,
        typer.Option(
            help="school, ap_setting, la, trust, provider, unregistered_provider, inspectorate, regions, icb, tribunal, mediation"
        ),
    ],
    la: Annotated[str | None, typer.Option(help="la:NNN")] = None,  # noqa: UP007 - typer needs Optional
    name: Annotated[str | None, typer.Option()] = None,  # noqa: UP007
    gias_type: Annotated[str | None, typer.Option(help="GIAS establishment type code, e.g. 14")] = None,  # noqa: UP007
    trust: Annotated[str | None, typer.Option(help="trust:TRNNNNN")] = None,  # noqa: UP007
) -> None:
    """Register an organisation (an org.registered event signed by the ledger).

    Example: `pupil-ledger orgs add urn:100005 --kind school --la la:202 --name "Camden School"`
    """
    ledger = open_ledger()
    try:
        receipt = admin.add_org(ledger, org_id, kind, name or org_id, la, gias_type=gias_type, trust=trust)
    except LedgerError as exc:
        fail(exc)
    out.print(f"registered {org_id} (sequence {receipt.sequence})")


@orgs_app.command("import-gias")
def orgs_import_gias(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="GIAS-style establishments CSV")]) -> None:
    """Import a GIAS extract (URN, LA, type, phase, status, open/close dates, predecessor, trust) as signed org.* events.

    Example: `pupil-ledger orgs import-gias edubasealldata.csv`
    """
    from ledger.tools.gias import import_gias, read_rows

    ledger = open_ledger()
    try:
        rows = read_rows(file)  # parsed and checked once: every bad row is reported before anything is stored
        with Progress(console=err) as progress:
            task = progress.add_task("importing establishments", total=len(rows))
            receipts = import_gias(ledger, rows, on_progress=lambda n: progress.advance(task, n))
    except LedgerError as exc:
        fail(exc)
    created = sum(1 for r in receipts if r.created)
    out.print(f"{created} org events stored ({len(receipts) - created} already recorded)")


@orgs_app.command("list")
def orgs_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered organisations and their keys.

    Example: `pupil-ledger orgs list --json`
    """
    orgs = open_ledger().list_orgs()
    if as_json:
        print(json.dumps(orgs, indent=1))
        return
    table = Table("org", "kind", "name", "la", "keys")
    for o in orgs:
        keys = ", ".join(k["key_id"] + (" (revoked)" if k["revoked_at"] else "") for k in o["keys"])
        table.add_row(o["org"], o["kind"], o["name"], o["la"] or "", keys)
    out.print(table)


@keys_app.command("generate")
def keys_generate(prefix: Annotated[Path, typer.Argument(help="writes PREFIX.pem (private) and PREFIX.pub.pem")]) -> None:
    """Generate an Ed25519 key pair for an organisation to sign with; prints the key id.

    Example: `pupil-ledger keys generate ./school-100005`
    """
    key = Ed25519PrivateKey.generate()
    private_path, public_path = prefix.with_suffix(".pem"), prefix.with_suffix(".pub.pem")
    private_path.write_bytes(private_key_pem(key))
    private_path.chmod(0o600)
    public_path.write_bytes(public_key_pem(key))
    out.print(f"{envelope.key_id(key.public_key())}  private: {private_path}  public: {public_path}")


@keys_app.command("add")
def keys_add(org_id: str, public_key_file: Annotated[Path, typer.Option(exists=True, dir_okay=False)]) -> None:
    """Add a public key to an organisation; prints the key id.

    Example: `pupil-ledger keys add urn:100005 --public-key-file school-100005.pub.pem`
    """
    public = load_pem_public_key(public_key_file.read_bytes())
    if not isinstance(public, Ed25519PublicKey):
        err.print("[red]error:[/red] not an Ed25519 public key")
        raise typer.Exit(1)
    try:
        admin.add_key(open_ledger(), org_id, public)
    except LedgerError as exc:
        fail(exc)
    print(envelope.key_id(public))


@keys_app.command("revoke")
def keys_revoke(
    org_id: str,
    key_id: str,
    reason: Annotated[str, typer.Option(help="superseded, compromised or retired")] = "retired",
    at: Annotated[datetime | None, typer.Option(help="revocation time (UTC); default now")] = None,  # noqa: UP007
) -> None:
    """Revoke a key: events signed with it and received from then on are rejected.

    Example: `pupil-ledger keys revoke urn:100005 0123456789abcdef --reason compromised`
    """
    when = at.replace(tzinfo=UTC) if at and at.tzinfo is None else at
    try:
        admin.revoke_key(open_ledger(), org_id, key_id, reason, when)
    except LedgerError as exc:
        fail(exc)
    out.print(f"revoked {key_id} of {org_id}")
