"""Command line for the transparency log: ``seal``, ``log export`` and the offline ``verify`` commands."""

from __future__ import annotations

import base64
import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from api.cli_common import open_ledger
from ledger.config import follower_pause
from ledger.core import envelope, jcs, merkle, notes
from ledger.transparency import verify
from ledger.transparency.tlog import Log, LogError, stored_envelopes

log_app = typer.Typer(help="The transparency log: export it as a static C2SP tiled log.", no_args_is_help=True)
verify_app = typer.Typer(
    help="Verify the log offline, trusting nothing but its verifier key: checkpoints, proofs, a whole tiled log.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

VkeyOpt = Annotated[str, typer.Option("--vkey", help="the log's verifier key (C2SP vkey text), or a file holding it")]
WitnessOpt = Annotated[list[str] | None, typer.Option("--witness", help="a witness cosigner vkey (repeatable), or a file holding it")]
QuorumOpt = Annotated[int, typer.Option("--quorum", help="how many of the --witness keys must have cosigned")]


def _text_or_file(value: str) -> str:
    path = Path(value)
    if len(value) < 4096 and path.is_file():
        return path.read_text("utf-8").strip()
    return value.strip()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err)


def _failed(message: str) -> None:
    err.print(f"[red]FAILED[/red]: {message}")
    raise typer.Exit(1)


def seal(
    once: Annotated[bool, typer.Option("--once", help="seal what is there and exit, instead of following the ledger")] = False,
    batch: Annotated[int | None, typer.Option("--batch", help="entries per sealing transaction (default PUPIL_LEDGER_SEAL_BATCH)")] = None,
) -> None:
    """Run the sealer: follow the ledger, append to the Merkle log, sign checkpoints.

    The embedded default seals inside `pupil-ledger serve`; run this as its own process against
    PostgreSQL (one sealing transaction at a time, by an advisory lock). Stop with Ctrl-C.

    Example: `pupil-ledger seal` (with PUPIL_LEDGER_DATABASE_URL=postgresql://... for a separate sealer process)
    """
    from ledger.tools.admin import sealer

    ledger = open_ledger()
    worker = sealer(ledger)
    if batch:
        worker.batch_size = batch
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    total = 0
    try:
        while not stop.is_set():
            result = worker.seal_batch()
            total += result.sealed
            if result.sealed:
                err.print(f"sealed {result.sealed} (tree size {result.tree_size})")
            elif once:
                break
            pause = follower_pause(result.sealed, worker.batch_size, ledger.settings.follower_idle, ledger.settings.follower_pace)
            if pause and not once:
                stop.wait(pause)
    except KeyboardInterrupt:
        pass
    except LogError as exc:
        _failed(str(exc))
    finally:
        ledger.store.close()
    out.print(f"sealed {total} entries")


@log_app.command("export")
def log_export(directory: Annotated[Path, typer.Argument(help="folder to write checkpoint, tile/... and vkey into")]) -> None:
    """Write the log as a static C2SP tiled log (checkpoint, tiles, entry bundles, vkey) for offline audit.

    Example: `pupil-ledger log export ./log-2026-11-28 && pupil-ledger verify audit ./log-2026-11-28 --vkey "$(cat ./log-2026-11-28/vkey)"`
    """
    from ledger.tools.admin import log_vkey

    ledger = open_ledger()
    log = Log(ledger.store)
    size = log.tree_size()
    tiles_total = sum(1 for _ in log.tile_paths(size))
    directory.mkdir(parents=True, exist_ok=True)
    with _progress() as progress:
        task = progress.add_task("exporting tiles", total=tiles_total)
        count = log.export(directory, on_progress=lambda n: progress.advance(task, n))
    (directory / "vkey").write_text(log_vkey(ledger) + "\n", "utf-8")
    ledger.store.close()
    out.print(f"exported {size} entries in {count} tiles to {directory}")


@verify_app.command("checkpoint")
def verify_checkpoint(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], vkey: VkeyOpt, witness: WitnessOpt = None, quorum: QuorumOpt = 0
) -> None:
    """Verify a saved checkpoint note against the log's key (and a quorum of witnesses).

    Example: `pupil-ledger verify checkpoint cp.txt --vkey "$(curl -s http://127.0.0.1:8000/log/vkey)"` after
    `curl -s http://127.0.0.1:8000/log/checkpoint > cp.txt`
    """
    try:
        checkpoint, cosigned = verify.verify_checkpoint(
            file.read_text("utf-8"), _text_or_file(vkey), [_text_or_file(w) for w in witness or []], quorum
        )
    except notes.NoteError as exc:
        _failed(str(exc))
        return
    out.print(f"OK: {checkpoint.origin} size {checkpoint.size} root {checkpoint.root.hex()}")
    for name, when in sorted(cosigned.items()):
        out.print(f"  cosigned by {name} at {when}")


@verify_app.command("proof")
def verify_proof(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a c2sp.org/tlog-proof@v1 file")],
    vkey: VkeyOpt,
    envelope_file: Annotated[
        Path | None, typer.Option("--envelope", exists=True, dir_okay=False, help="the envelope the proof is for")
    ] = None,
    witness: WitnessOpt = None,
    quorum: QuorumOpt = 0,
) -> None:
    """Verify a saved per-event proof (tlog-proof) offline, optionally for a given envelope file.

    Example: `pupil-ledger verify proof event.tlog-proof --envelope envelope.json --vkey "$(cat vkey)"`
    """
    digests: dict[str, Any] = {}
    if envelope_file is not None:
        env = envelope.decode(jcs.parse(envelope_file.read_bytes()))
        digests = {"envelope_digest": env.envelope_digest, "event_digest": env.event_digest}
    try:
        checkpoint, body = verify.verify_tlog_proof(
            file.read_text("utf-8"), _text_or_file(vkey), witnesses=[_text_or_file(w) for w in witness or []], quorum=quorum, **digests
        )
    except (notes.NoteError, merkle.ProofError, verify.AuditFailure) as exc:
        _failed(str(exc))
        return
    out.print(
        f"OK: entry {body['index']} is in {checkpoint.origin} at size {checkpoint.size}"
        + (" and carries this envelope's digests" if digests else "")
    )


@verify_app.command("inclusion")
def verify_inclusion(
    envelope_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an envelope you submitted")],
    vkey: VkeyOpt,
    url: Annotated[str, typer.Option("--url", envvar="PUPIL_LEDGER_URL")] = "http://127.0.0.1:8000",
    save: Annotated[Path | None, typer.Option("--save", help="keep the proof in this file")] = None,
) -> None:
    """Fetch and verify the proof that an envelope you submitted is in the log.

    Example: `pupil-ledger verify inclusion envelope.json --url http://127.0.0.1:8000 --vkey "$(cat vkey)" --save envelope.tlog-proof`
    """
    try:
        env = envelope.decode(jcs.parse(envelope_file.read_bytes()))
    except Exception as exc:  # noqa: BLE001 - any unreadable envelope file is a usage error
        _failed(f"{envelope_file} is not an envelope: {exc}")
        return
    event_id = env.body.get("event_id")
    response = httpx.get(f"{url.rstrip('/')}/events/{event_id}/tlog-proof", timeout=30)
    if response.status_code != 200:
        _failed(f"the ledger gave {response.status_code}: {response.text.strip()}")
    try:
        checkpoint, body = verify.verify_tlog_proof(response.text, _text_or_file(vkey), env.envelope_digest, env.event_digest)
    except (notes.NoteError, merkle.ProofError, verify.AuditFailure) as exc:
        _failed(str(exc))
        return
    if save:
        save.write_text(response.text, "utf-8")
    out.print(f"OK: event {event_id} is entry {body['index']} of {checkpoint.origin} at size {checkpoint.size}")


@verify_app.command("consistency")
def verify_consistency(
    old: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an older saved checkpoint")],
    new: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a newer saved checkpoint")],
    vkey: VkeyOpt,
    url: Annotated[str, typer.Option("--url", envvar="PUPIL_LEDGER_URL")] = "http://127.0.0.1:8000",
    proof_file: Annotated[
        Path | None, typer.Option("--proof", exists=True, dir_okay=False, help="a saved consistencyProof JSON instead of asking --url")
    ] = None,
) -> None:
    """Prove that the log of a newer checkpoint extends the log of an older one (nothing rewritten).

    Example: `pupil-ledger verify consistency monday.txt friday.txt --url http://127.0.0.1:8000 --vkey "$(cat vkey)"`
    """
    key = _text_or_file(vkey)
    try:
        one, _ = notes.open_checkpoint(old.read_text("utf-8"), key)
        two, _ = notes.open_checkpoint(new.read_text("utf-8"), key)
    except notes.NoteError as exc:
        _failed(str(exc))
        return
    if one.size > two.size:
        one, two = two, one
    if one.size == 0:
        out.print("OK: every log extends the empty log")
        return
    if proof_file is not None:
        body = json.loads(proof_file.read_text("utf-8"))
    else:
        response = httpx.get(f"{url.rstrip('/')}/log/proof/consistency", params={"first": one.size, "second": two.size}, timeout=30)
        if response.status_code != 200:
            _failed(f"the ledger gave {response.status_code}: {response.text.strip()}")
        body = response.json()
    try:
        merkle.verify_consistency(one.size, two.size, [base64.b64decode(p) for p in body["proof"]], one.root, two.root)
    except merkle.ProofError as exc:
        _failed(f"size {two.size} is not an extension of size {one.size}: {exc}")
    out.print(f"OK: size {two.size} extends size {one.size} of {one.origin}")


@verify_app.command("audit")
def verify_audit(
    target: Annotated[str | None, typer.Argument(help="the ledger's URL or a folder holding an exported tiled log")] = None,
    vkey: VkeyOpt = "",
    store: Annotated[
        bool,
        typer.Option(
            "--store", help="audit this ledger's own database (PUPIL_LEDGER_HOME), checking every stored envelope against its entry too"
        ),
    ] = False,
    witness: WitnessOpt = None,
    quorum: QuorumOpt = 0,
) -> None:
    """Audit a whole log from its tiles: every entry, every tile level and the root against the signed checkpoint.

    Works on any C2SP tiled log, served or on disk; names the first bad index and what is wrong.

    Example: `pupil-ledger verify audit http://127.0.0.1:8000 --vkey "$(curl -s http://127.0.0.1:8000/log/vkey)"`
    """
    if not vkey:
        err.print("--vkey is required")
        raise typer.Exit(2)
    envelopes = None
    ledger = None
    fetch: verify.Fetch
    if store:
        ledger = open_ledger()
        fetch = Log(ledger.store).fetch
        envelopes = stored_envelopes(ledger.store)
    elif target is None:
        err.print("give a URL or a folder, or --store")
        raise typer.Exit(2)
    elif target.startswith(("http://", "https://")):
        fetch = verify.http_fetcher(target.rstrip("/") + "/log")
    else:
        fetch = verify.dir_fetcher(Path(target))
    try:
        checkpoint_text = fetch("checkpoint").decode("utf-8", "replace")
        size = notes.Checkpoint.parse(notes.Note.parse(checkpoint_text).body).size
    except (FileNotFoundError, notes.NoteError, httpx.HTTPError) as exc:
        _failed(f"cannot read the checkpoint: {exc}")
        return
    try:
        with _progress() as progress:
            task = progress.add_task("auditing entries", total=size)
            report = verify.audit(
                fetch,
                _text_or_file(vkey),
                checkpoint_text,
                envelopes=envelopes,
                witnesses=[_text_or_file(w) for w in witness or []],
                quorum=quorum,
                on_progress=lambda n: progress.advance(task, n),
            )
    except verify.AuditFailure as exc:
        _failed(str(exc))
        return
    finally:
        if ledger is not None:
            ledger.store.close()
    checked = f", {report.envelopes_checked} stored envelopes" if store else ""
    out.print(
        f"OK: {report.checkpoint.origin} size {report.checkpoint.size}: {report.entries} entries{checked} and "
        f"{report.tiles_read} tiles verified; root {report.checkpoint.root.hex()}"
    )
    for name, when in sorted(report.cosigners.items()):
        out.print(f"  cosigned by {name} at {when}")
