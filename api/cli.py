"""The ``pupil-ledger`` command line (design.md 3.5). Every command has --help with an example."""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from api.cli_bench import bench
from api.cli_feed import relay
from api.cli_log import log_app, seal, verify_app
from api.cli_project import project_app
from api.cli_report import report_app
from api.cli_research import export_app, research_app
from api.cli_witness import witness_app
from ledger import dfe
from ledger.config import Settings, tune_garbage_collector
from ledger.core import envelope, jcs
from ledger.core.errors import LedgerError
from ledger.service import Ledger
from ledger.storage.secrets import load_private_key, private_key_pem, public_key_pem
from ledger.tools import admin

app = typer.Typer(help="Pupil Movement Ledger: signed, append-only record of pupil movements.", no_args_is_help=True, rich_markup_mode="markdown")
orgs_app = typer.Typer(help="Organisations (schools, LAs, trusts, AP settings, providers).", no_args_is_help=True)
keys_app = typer.Typer(help="Organisations' signing keys.", no_args_is_help=True)
tokens_app = typer.Typer(help="Bearer tokens for the HTTP API.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
app.add_typer(keys_app, name="keys")
app.add_typer(tokens_app, name="tokens")
app.add_typer(witness_app, name="witness")
app.add_typer(project_app, name="project")
app.add_typer(log_app, name="log")
app.add_typer(verify_app, name="verify")
app.add_typer(report_app, name="report")
app.add_typer(export_app, name="export")
app.add_typer(research_app, name="research")
app.command()(seal)
app.command()(bench)
app.command()(relay)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DEFAULT_URL = "http://127.0.0.1:8000"
UrlOpt = Annotated[str, typer.Option("--url", envvar="PUPIL_LEDGER_URL", help="the ledger's base URL")]
TokenOpt = Annotated[str, typer.Option("--token", envvar="PUPIL_LEDGER_TOKEN", help="bearer token")]


def _ledger() -> Ledger:
    try:
        return admin.open_ledger(Settings.from_env())
    except admin.NotInitialised as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _fail(exc: LedgerError) -> None:
    for p in exc.problems:
        err.print(f"[red]{p.code}[/red] at {p.path}: {p.message}")
    raise typer.Exit(1)


@app.command()
def init() -> None:
    """Create the stores, the ledger's signing key and an admin token in PUPIL_LEDGER_HOME.

    Example: `PUPIL_LEDGER_HOME=./var pupil-ledger init`
    """
    settings = Settings.from_env()
    try:
        result = admin.initialise(settings)
    except LedgerError as exc:
        _fail(exc)
        return
    out.print(f"initialised ledger in {settings.home} ({'postgresql' if settings.database_url else 'sqlite'})")
    out.print(f"admin token: {result.admin_token}")
    out.print(f"log vkey: {result.vkey}")
    result.ledger.store.close()


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, help="API processes sharing the port (PostgreSQL only; each has its own group commit)")] = 1,
    followers: Annotated[bool, typer.Option(envvar="PUPIL_LEDGER_IN_PROCESS_FOLLOWERS",
                                            help="also seal the log and update the projections in this process "
                                                 "(--no-followers when `pupil-ledger seal` and `project run` do it; "
                                                 "witnessing, if configured, stays here)")] = True,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs).

    Example: `pupil-ledger serve --port 8000`

    Example: `pupil-ledger serve --workers 2 --no-followers` (PostgreSQL, with `pupil-ledger seal` and `pupil-ledger project run`)
    """
    import uvicorn

    from api.app import create_app, default_followers
    from api.security import server_options
    from api.workers import serve as serve_workers

    dfe.check()  # the views show the published figures
    ledger = _ledger()
    if workers > 1 and not ledger.store.is_postgres:
        err.print("[red]error:[/red] --workers above 1 needs PostgreSQL (PUPIL_LEDGER_DATABASE_URL): the embedded SQLite has one writer")
        raise typer.Exit(2)
    out.print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if workers == 1:
        uvicorn.run(create_app(ledger, default_followers(ledger, followers)), host=host, port=port, access_log=False, log_level="warning",
                    **server_options(ledger.settings.trusted_proxies))
        return
    ledger.store.close()
    os.environ["PUPIL_LEDGER_IN_PROCESS_FOLLOWERS"] = "1" if followers else "0"  # read by each worker's api.app.app_from_env
    serve_workers(host, port, workers)  # each worker on its own socket: the kernel spreads the connections


@orgs_app.command("add")
def orgs_add(
    org_id: str,
    kind: Annotated[str, typer.Option(help="school, ap_setting, la, trust, provider, unregistered_provider, inspectorate, regions, icb, tribunal, mediation")],
    la: Annotated[str | None, typer.Option(help="la:NNN")] = None,  # noqa: UP007 - typer needs Optional
    name: Annotated[str | None, typer.Option()] = None,  # noqa: UP007
    gias_type: Annotated[str | None, typer.Option(help="GIAS establishment type code, e.g. 14")] = None,  # noqa: UP007
    trust: Annotated[str | None, typer.Option(help="trust:TRNNNNN")] = None,  # noqa: UP007
) -> None:
    """Register an organisation (an org.registered event signed by the ledger).

    Example: `pupil-ledger orgs add urn:100005 --kind school --la la:202 --name "Camden School"`
    """
    ledger = _ledger()
    try:
        receipt = admin.add_org(ledger, org_id, kind, name or org_id, la, gias_type=gias_type, trust=trust)
    except LedgerError as exc:
        _fail(exc)
        return
    out.print(f"registered {org_id} (sequence {receipt.sequence})")


@orgs_app.command("import-gias")
def orgs_import_gias(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="GIAS-style establishments CSV")]) -> None:
    """Import a GIAS extract (URN, LA, type, phase, status, open/close dates, predecessor, trust) as signed org.* events.

    Example: `pupil-ledger orgs import-gias edubasealldata.csv`
    """
    from ledger.tools.gias import import_gias, read_rows

    ledger = _ledger()
    try:
        rows = read_rows(file)  # parsed and checked once: every bad row is reported before anything is stored
        with Progress(console=err) as progress:
            task = progress.add_task("importing establishments", total=len(rows))
            receipts = import_gias(ledger, rows, on_progress=lambda n: progress.advance(task, n))
    except LedgerError as exc:
        _fail(exc)
        return
    created = sum(1 for r in receipts if r.created)
    out.print(f"{created} org events stored ({len(receipts) - created} already recorded)")


@orgs_app.command("list")
def orgs_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered organisations and their keys.

    Example: `pupil-ledger orgs list --json`
    """
    orgs = _ledger().list_orgs()
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
        admin.add_key(_ledger(), org_id, public)
    except LedgerError as exc:
        _fail(exc)
    print(envelope.key_id(public))


@keys_app.command("revoke")
def keys_revoke(
    org_id: str, key_id: str,
    reason: Annotated[str, typer.Option(help="superseded, compromised or retired")] = "retired",
    at: Annotated[datetime | None, typer.Option(help="revocation time (UTC); default now")] = None,  # noqa: UP007
) -> None:
    """Revoke a key: events signed with it and received from then on are rejected.

    Example: `pupil-ledger keys revoke urn:100005 0123456789abcdef --reason compromised`
    """
    when = at.replace(tzinfo=UTC) if at and at.tzinfo is None else at
    try:
        admin.revoke_key(_ledger(), org_id, key_id, reason, when)
    except LedgerError as exc:
        _fail(exc)
    out.print(f"revoked {key_id} of {org_id}")


@tokens_app.command("issue")
def tokens_issue(
    org_id: str,
    role: Annotated[str, typer.Option(help="school, la, trust, ap_setting, inspector, regions, researcher, admin, tribunal, mediation")],
    days: Annotated[int, typer.Option(help="expires after this many days")] = 365,
    scope: Annotated[list[str] | None, typer.Option(help="inspectors, optionally: limit to a school (urn:...) or area (la:...) among those being inspected; repeatable")] = None,  # noqa: UP007
) -> None:
    """Issue a bearer token for an organisation and role; prints it once (only its hash is kept).

    Example: `pupil-ledger tokens issue ofsted --role inspector --days 30` (reads the areas Ofsted is inspecting)
    """
    ledger = _ledger()
    try:
        token = ledger.issue_token(org_id, role, ledger.clock() + timedelta(days=days), scope or ())
    except LedgerError as exc:
        _fail(exc)
        return
    print(token)


@tokens_app.command("revoke")
def tokens_revoke(token: Annotated[str, typer.Argument(help="the token, or its id (the 8 hex characters after plt_)")]) -> None:
    """Revoke a bearer token.

    Example: `pupil-ledger tokens revoke plt_1a2b3c4d`
    """
    if not _ledger().revoke_token(token):
        err.print("[red]error:[/red] no such token")
        raise typer.Exit(1)
    out.print("revoked")


@app.command()
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


@app.command()
def submit(
    envelope_files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="envelope files (.json, or .jsonl with one per line)")],
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = "",
    batch: Annotated[int, typer.Option(help="envelopes per submitBatch call; 1 = submitEvent each")] = 1,
) -> None:
    """Submit signed envelopes over HTTP; prints one receipt per line (JSON).

    Example: `pupil-ledger submit admission.env.json --url http://127.0.0.1:8000 --token plt_...`
    """
    envelopes: list[Any] = []
    for path in envelope_files:
        text = path.read_text("utf-8")
        envelopes.extend(json.loads(line) for line in text.splitlines() if line.strip()) if path.suffix == ".jsonl" else envelopes.append(json.loads(text))
    failed = 0
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60) as client, \
            Progress(console=err, transient=True, disable=len(envelopes) < 20) as progress:
        task = progress.add_task("submitting", total=len(envelopes))
        for start in range(0, len(envelopes), batch):
            chunk = envelopes[start:start + batch]
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


@app.command()
def history(
    upn: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = "",
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


@app.command()
def claims(
    since: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="first day (default: 30 days ago)")] = None,  # noqa: UP007
    until: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="last day (default: today)")] = None,  # noqa: UP007
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The operator's report: organisations by their unusual claims (claim_new_area) and their rejections that depended on
    other organisations' records of the pupil, in a period; most first, then newest first (docs/access.md).

    Example: `pupil-ledger claims --since 2026-09-01 --until 2026-09-30`
    """
    from api.app import claims_period

    ledger = _ledger()
    try:
        report = ledger.claims_report(None, *claims_period(ledger.clock(), since.date() if since else None, until.date() if until else None))
    except LedgerError as exc:
        _fail(exc)
        return
    if as_json:
        print(json.dumps(report, indent=1))
        return
    table = Table("org", "total", "by code", "latest")
    for o in report["organisations"]:
        table.add_row(o["org"], str(o["total"]), ", ".join(f"{code} {n}" for code, n in sorted(o["codes"].items())), o["latest"])
    out.print(table)


@app.command()
def erase(
    upn: str,
    ground: Annotated[str, typer.Option(help="erasure_request, recorded_in_error, retention_expired or court_order")],
    reference: Annotated[str | None, typer.Option(help="case reference recorded with the erasure")] = None,  # noqa: UP007
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Erase one pupil by destroying the pupil's data key (crypto-shredding); the log and its proofs stay valid.

    Example: `pupil-ledger erase H801200001001 --ground erasure_request --reference SAR-2026-17 --yes`
    """
    if not yes and not typer.confirm(f"Erase every event about {upn}? This cannot be undone."):
        raise typer.Exit(1)
    from projections.runner import forget_pupil

    ledger = _ledger()
    try:  # the views forget the pupil in the erasure's own transaction
        result = ledger.erase(upn, ground, reference, forget=lambda pupil: forget_pupil(ledger.store, pupil))
    except LedgerError as exc:
        _fail(exc)
        return
    from feed.relay import announce_erasure

    announce_erasure(ledger.store, result["erasure_event_id"], str(ledger.secrets.pupil_id(upn)))  # the change feed's consumers too
    out.print(f"erased {result['events_erased']} events; erasure recorded as {result['erasure_event_id']}")


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Argument(help="writes orgs.json (with private keys) and events.jsonl")],
    pupils: int = 300, seed: int = 1,
    la: Annotated[str | None, typer.Option(help="3-digit LA code: one local area calibrated on it; default: all of England's LAs, sized like them")] = None,  # noqa: UP007
    workers: Annotated[int, typer.Option(help="processes generating and signing areas in parallel")] = max(1, os.cpu_count() or 1),
) -> None:
    """Generate a national-shaped population (or one local area) as signed envelopes, calibrated on published DfE figures.

    Example: `pupil-ledger simulate ./sim --pupils 100000` (or `--la 202` for one area)
    """
    from ledger.tools.simulate import export

    if pupils < 1:
        err.print("[red]error:[/red] --pupils must be at least 1")
        raise typer.Exit(2)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("generating and signing", total=None)
        orgs, events = export(out_dir, pupils, seed, la, workers=workers if la is None else 1, on_progress=lambda n: progress.advance(task, n))
    out.print(f"{orgs} organisations, {events} events in {out_dir}")


@app.command()
def demo(port: int = 8000, pupils: int = 4000, seed: int = 1, la: str = "801") -> None:
    """Initialise a fresh home, load a simulated local area and serve it: the dashboards, the public reports and the API.

    Example: `PUPIL_LEDGER_HOME=./demo-home pupil-ledger demo --port 8000`
    """
    import uvicorn

    from api.app import create_app, default_followers
    from api.security import server_options
    from ledger.tools.simulate import load_area, simulate_area
    from ledger.tools.simulate_ehcp import add_ehcp_journeys, start_demo_inspection

    dfe.check()  # the simulation and the views read the published figures: stop before creating a home without them
    settings = Settings.from_env()
    if (settings.home / "secrets").exists():
        settings = Settings(home=settings.home / f"demo-{uuid.uuid4().hex[:6]}", database_url=settings.database_url)
    result = admin.initialise(settings)
    ledger = result.ledger
    area = add_ehcp_journeys(simulate_area(pupils=pupils, seed=seed, la_code=la, today=ledger.clock().date()), seed, ledger.clock().date())
    with Progress(console=err) as progress:
        task = progress.add_task("loading simulated area", total=len(area.events))
        load_area(ledger, area, on_progress=lambda n: progress.advance(task, n))
    from ledger.tools.simulate_funding import load_funding

    start_demo_inspection(ledger, area)  # the inspector reads the area's pupils while Ofsted inspects it (docs/access.md)
    load_funding(ledger, area)  # a local inclusion plan, the national tariff, AP budgets and bands (issue 25)
    inspector = ledger.issue_token("ofsted", "inspector")
    la_token = ledger.issue_token(f"la:{la}", "la")
    from api.cli_research import demo_project

    researcher = demo_project(ledger, la)
    base = f"http://127.0.0.1:{port}"
    upn = area.example_upn
    # The simulated year starts last September, so by today most of its placements have ended: the pages open
    # on the day the simulation had the most placements open (any other date can be chosen on every page).
    busiest = busiest_day(area.events)
    day = busiest.isoformat()
    raise_demo_concern(ledger, area, busiest)  # so the Regions Group cases page has a case too
    out.print(f"dashboards:      {base}/dashboards/la/la:{la}?as_of={day}  (sign in with the LA token below)")
    out.print(f"public report:   {base}/reports/la/{la}?as_of={day}   England: {base}/reports/england?as_of={day}")
    out.print(f"start page:      {base}/")
    out.print(f"find a setting:  {base}/find-a-setting?la=la:{la}&need=SEMH&phase=secondary  (JSON: {base}/tailored-list?la=la:{la}&need=SEMH&phase=secondary)")
    out.print(f"ledger home: {settings.home}  ({ledger.store.count_events()} events)")
    out.print(f"LA token:        {la_token}")
    out.print(f"admin token:     {result.admin_token}")
    out.print(f"inspector token: {inspector}")
    out.print(f"API docs:        {base}/docs")
    out.print(f"health:          {base}/healthz")
    out.print(f"pupil history:   curl -H 'Authorization: Bearer {inspector}' '{base}/pupils/{upn}/history?purpose=inspection'")
    out.print(f"who looked:      curl -H 'Authorization: Bearer {result.admin_token}' {base}/access-log")
    out.print(f"publish:         PUPIL_LEDGER_HOME={settings.home} pupil-ledger report publish ./site --as-of {day} --la {la}")
    out.print(f"researcher token: {researcher}")
    out.print(f"research export: PUPIL_LEDGER_TOKEN={researcher} pupil-ledger export research --project demo ./demo-export --url {base}")
    uvicorn.run(create_app(ledger, default_followers(ledger)), host="127.0.0.1", port=port, access_log=False, log_level="warning",
                **server_options(settings.trusted_proxies))


def raise_demo_concern(ledger: Ledger, area: Any, day: date) -> None:
    """A Regions Group concern about the area's LA, citing its removals with unknown destination so far that year
    (counted from the simulated events as docs/metrics.md defines the metric), signed with the simulation's key."""
    from ledger.core.schooltime import academic_year

    year_start = date(int(academic_year(day)[:4]), 9, 1)
    unknown = sum(1 for _, body in area.events if body["type"] == "pupil.deregistered" and body["data"]["destination"] == "unknown"
                  and year_start <= date.fromisoformat(body["occurred_on"]) <= day)
    now = ledger.clock()
    body = admin.event_body("accountability.concern_raised", "dfe:regions", {"org": area.la},
                            {"category": "roll_integrity", "metric": "removals_unknown_destination", "metric_value": unknown,
                             "metric_as_of": day.isoformat(), "summary": "Removals with unknown destination above the area's usual level"},
                            day, now)  # raised as of the day the pages open on (reported now: the ledger flags it late)
    ledger.submit(admin.signed(body, area.orgs["dfe:regions"].key))


def busiest_day(events: list[tuple[str, dict[str, Any]]]) -> date:
    """The date on which the most AP placements of ``events`` (submitter, body) were open (the latest of ties)."""
    starts: dict[str, date] = {}
    ends: dict[str, date] = {}
    for _, body in events:
        if body["type"] == "pupil.ap_placement_started":
            starts[body["event_id"]] = date.fromisoformat(body["occurred_on"])
        elif body["type"] == "pupil.ap_placement_ended":
            ends[body["data"]["placement_event_id"]] = date.fromisoformat(body["occurred_on"])
    if not starts:
        return datetime.now(UTC).date()
    best, most = min(starts.values()), -1
    for day in sorted(set(starts.values()) | set(ends.values())):
        count = sum(1 for k, s in starts.items() if s <= day and (k not in ends or ends[k] > day))
        if count >= most:
            best, most = day, count
    return best


def main() -> None:
    tune_garbage_collector()
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
    except dfe.MissingPublishedData as exc:  # the repository's data/dfe/ (or PUPIL_LEDGER_DFE_DATA) is incomplete
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
