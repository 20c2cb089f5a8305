"""``pupil-ledger witness``: run a C2SP tlog-witness that cosigns the ledger's (or any trusted log's) checkpoints."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from ledger.core.notes import NoteError
from ledger.storage.secrets import load_private_key, private_key_pem
from ledger.transparency.witness import Witness, WitnessState, witness_vkey

witness_app = typer.Typer(help="A transparency-log witness (c2sp.org/tlog-witness) that cosigns checkpoints.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

NameOpt = Annotated[str, typer.Option("--name", help="the witness's key name, a schema-less URL, e.g. witness.example.org/w1")]


@witness_app.command("init")
def init(
    name: NameOpt,
    key_file: Annotated[Path, typer.Option("--key-file", help="where to write the new Ed25519 private key (PEM, mode 0600)")] = Path(
        "witness.pem"
    ),
) -> None:
    """Create a witness key and print the witness's verifier key (vkey, type 04) to give to logs and verifiers.

    Example: `pupil-ledger witness init --name inspectorate.example/witness --key-file witness.pem`
    """
    key = Ed25519PrivateKey.generate()
    try:
        vkey = witness_vkey(name, key)
    except NoteError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        err.print(f"[red]error:[/red] {key_file} exists; a witness key is never overwritten")
        raise typer.Exit(1) from None
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(key))
    out.print(f"witness key written to {key_file}")
    out.print(f"witness vkey: {vkey}")


@witness_app.command("serve")
def serve(
    name: NameOpt,
    key_file: Annotated[Path, typer.Option("--key-file", help="the witness's Ed25519 private key (PEM)")],
    log_vkey: Annotated[list[str], typer.Option("--log-vkey", help="a trusted log's vkey (its name is the log's origin); repeatable")],
    db: Annotated[Path, typer.Option("--db", help="SQLite file keeping the latest cosigned checkpoint per log")],
    host: str = "127.0.0.1",
    port: int = 8100,
) -> None:
    """Serve `POST /add-checkpoint` (c2sp.org/tlog-witness) and the witness vkey at `GET /`.

    Example: `pupil-ledger witness serve --name inspectorate.example/witness --key-file witness.pem --log-vkey "$(curl -s http://127.0.0.1:8000/log/vkey)" --db witness.sqlite3 --port 8100`
    """
    import uvicorn

    from api.witness_app import create_witness_app

    try:
        witness = Witness(name, load_private_key(key_file), log_vkey, WitnessState(db))
    except (OSError, ValueError, sqlite3.Error) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out.print(f"witness {witness.name} on http://{host}:{port}  vkey: {witness.vkey}")
    out.print(f"trusted logs: {', '.join(sorted(witness.logs))}")
    uvicorn.run(create_witness_app(witness), host=host, port=port, access_log=False, log_level="warning")
