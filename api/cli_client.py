"""The commands of an organisation's side: ``sign`` an event offline, ``submit`` envelopes to a running ledger
and read a pupil's ``history`` from it over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import Progress

from api.cli_common import err
from ledger.core import envelope, jcs
from ledger.storage.secrets import load_private_key

DEFAULT_URL = "http://127.0.0.1:8000"
UrlOpt = Annotated[str, typer.Option("--url", envvar="PUPIL_LEDGER_URL", help="the ledger's base URL")]
TokenOpt = Annotated[str, typer.Option("--token", envvar="PUPIL_LEDGER_TOKEN", help="bearer token")]


def sign(
    event_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="event body JSON (design.md 3.1)")],
    private_key_file: Annotated[Path, typer.Option(exists=True, dir_okay=False)],
    key_id: Annotated[str | None, typer.Option(help="defaults to the key's own id")] = None,  # noqa: UP007
) -> None:
    """Canonicalise (RFC 8785) and sign an event into a DSSE envelope on stdout.

    Example: `pupil-ledger sign admission.json --private-key-file school.pem --key-id 0123456789abcdef > admission.env.json`
    """
    try:
        body = jcs.parse(event_file.read_bytes())
    except jcs.NotJSON as exc:
        err.print(f"[red]error:[/red] {event_file}: {exc}")
        raise typer.Exit(1) from None
    print(json.dumps(envelope.sign(body, load_private_key(private_key_file), key_id)))


def _post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    return client.post(path, content=json.dumps(body).encode("utf-8"), headers={"content-type": "application/json"})


def submit(
    envelope_files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="envelope files (.json, or .jsonl with one per line)")
    ],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    batch: Annotated[int, typer.Option(help="envelopes per submitBatch call; 1 = submitEvent each")] = 1,
) -> None:
    """Submit signed envelopes over HTTP; prints one receipt per line (JSON).

    Example: `pupil-ledger submit admission.env.json --url http://127.0.0.1:8000 --token plt_...`
    """
    envelopes: list[Any] = []
    for path in envelope_files:
        text = path.read_text("utf-8")
        envelopes.extend(json.loads(line) for line in text.splitlines() if line.strip()) if path.suffix == ".jsonl" else envelopes.append(
            json.loads(text)
        )
    failed = 0
    with (
        httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60) as client,
        Progress(console=err, transient=True, disable=len(envelopes) < 20) as progress,
    ):
        task = progress.add_task("submitting", total=len(envelopes))
        for start in range(0, len(envelopes), batch):
            chunk = envelopes[start : start + batch]
            response = _post(client, "/events", chunk[0]) if batch == 1 else _post(client, "/batches", {"envelopes": chunk})
            if response.status_code >= 300:
                failed += len(chunk)
                err.print(f"[red]{response.status_code}[/red] {response.text}")
            else:
                receipts = [response.json()] if batch == 1 else response.json()["receipts"]
                for r in receipts:
                    print(json.dumps({k: r[k] for k in ("event_id", "sequence", "status", "received_at", "flags")}))
            progress.advance(task, len(chunk))
    if failed:
        raise typer.Exit(1)


def history(
    upn: str,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    as_of: Annotated[str | None, typer.Option(help="effective date YYYY-MM-DD")] = None,  # noqa: UP007
    known_at: Annotated[str | None, typer.Option(help="ledger time, e.g. 2026-09-04T10:00:00Z")] = None,  # noqa: UP007
    purpose: Annotated[str | None, typer.Option(help="why you read it (docs/access.md); inspectors and the operator must say")] = None,  # noqa: UP007
) -> None:
    """A pupil's history as of a date, as known at a time (from a running ledger); the read is recorded.

    Example: `pupil-ledger history H801200001001 --as-of 2026-10-01 --token plt_...`
    """
    params = {k: v for k, v in {"as_of": as_of, "known_at": known_at, "purpose": purpose}.items() if v}
    response = httpx.get(f"{url}/pupils/{upn}/history", params=params, headers={"authorization": f"Bearer {token}"}, timeout=60)
    if response.status_code != 200:
        err.print(f"[red]{response.status_code}[/red] {response.text}")
        raise typer.Exit(1)
    print(json.dumps(response.json(), indent=1))
