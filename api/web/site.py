"""The public report as a static site (``pupil-ledger report publish``) and its check (``report verify``).

A site is a folder laid out like the live pages' addresses, so any static web server at its root serves it:
``index.html``, ``reports/england/index.html`` with ``reports/england.csv`` and ``.json``, the same under
``reports/la/NNN`` and ``reports/trust/TRnnnnn``, ``reports/definitions/index.html``, ``assets/``,
``checkpoint.txt`` (the signed note) and ``manifest.json`` (format, options, checkpoint and each file's
SHA-256). Every byte follows from the log at the checkpoint and the options, so publishing twice gives the
same files, and ``verify`` recomputes them all from the log itself (``projections.replay.ReplayedFacts``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from markupsafe import Markup

from projections.disclosure import Rules
from projections.facts import Moment
from projections.replay import ReplayedFacts

from . import catalogue
from .data import Checkpoint, WebData
from .pages import environment, finish_html
from .public import report_view
from .report import Publication

SITE_FORMAT = "pupil-ledger/report-site@v1"
STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class Options:
    as_of: date
    las: tuple[str, ...] | None  # None: every LA
    trusts: tuple[str, ...]
    threshold: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "las": list(self.las) if self.las is not None else None,
            "trusts": list(self.trusts),
            "threshold": self.threshold,
        }


def _page(env: Any, template: str, **values: Any) -> bytes:
    nav = [
        {"href": "/", "text": "Home", "active": template == "start.html"},
        {"href": "/reports/england", "text": "Public reports", "active": template == "report.html"},
        {"href": catalogue.DEFINITIONS_PATH, "text": "Definitions", "active": template == "definitions.html"},
    ]
    html = env.get_template(template).render(
        **{"navigation": nav, "principal": None, "csrf_token": "", "path": "", **values, "static_site": True}
    )
    return finish_html(str(html)).encode("utf-8")


def build(
    data: WebData, cp: Checkpoint, options: Options, db: Any = None, on_progress: Callable[[int], None] | None = None
) -> dict[str, bytes]:
    """Every file of the site (path -> bytes), computed at checkpoint ``cp`` from the views, or from ``db``
    (the log replayed) when given."""
    ctx = data.context(Moment(options.as_of, cp.moment_known_at), db=db)
    pub = Publication(data, ctx, options.as_of, cp, Rules(options.threshold))
    env = environment()
    files: dict[str, bytes] = {}
    las = list(options.las) if options.las is not None else pub.scopes("la")
    wanted = [("national", "england")] + [("la", la) for la in las] + [("trust", t) for t in options.trusts]
    listed = []
    for level, org in wanted:
        report = pub.report(level, org)
        stem = {
            "national": "reports/england",
            "la": f"reports/la/{org.removeprefix('la:')}",
            "trust": f"reports/trust/{org.removeprefix('trust:')}",
        }[level]
        files[f"{stem}.json"] = report.json_bytes()
        files[f"{stem}.csv"] = report.csv_bytes()
        files[f"{stem}/index.html"] = _page(env, "report.html", **report_view(report, "/" + stem, static=True))
        listed.append((level, org, report.name, "/" + stem))
        if on_progress:
            on_progress(1)
    files["index.html"] = _page(
        env,
        "site_index.html",
        title="Pupil movements in SEND and alternative provision",
        reports=listed,
        checkpoint=cp,
        as_of=options.as_of,
    )
    files["reports/definitions/index.html"] = _page(
        env, "definitions.html", title="How each figure is defined", definitions=Markup(catalogue.definitions_html())
    )  # noqa: S704 - our own docs
    files["checkpoint.txt"] = cp.note.encode("utf-8")
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            files[f"assets/{path.relative_to(STATIC).as_posix()}"] = path.read_bytes()
    manifest = {
        "format": SITE_FORMAT,
        "options": options.as_dict(),
        "checkpoint": cp.as_dict(),
        "files": {name: hashlib.sha256(body).hexdigest() for name, body in sorted(files.items())},
    }
    files["manifest.json"] = (json.dumps(manifest, sort_keys=True, indent=1) + "\n").encode("utf-8")
    return files


def write(directory: Path, files: dict[str, bytes]) -> None:
    for name, body in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


def read_manifest(directory: Path) -> tuple[Options, Checkpoint]:
    raw = json.loads((directory / "manifest.json").read_text("utf-8"))
    if raw.get("format") != SITE_FORMAT:
        raise ValueError(f"{directory}/manifest.json is not a {SITE_FORMAT} manifest")
    o = raw["options"]
    options = Options(
        date.fromisoformat(o["as_of"]), tuple(o["las"]) if o["las"] is not None else None, tuple(o["trusts"]), int(o["threshold"])
    )
    return options, Checkpoint(**raw["checkpoint"])


def verify(data: WebData, directory: Path, on_progress: Callable[[int], None] | None = None) -> list[str]:
    """Every difference between the site in ``directory`` and the same site recomputed from the log at its
    checkpoint (empty: it is exactly what the log gives)."""
    options, cp = read_manifest(directory)
    problems = data.verify_checkpoint(cp)
    if problems:
        return problems
    stated = data.checkpoint_at(cp.tree_size)
    if stated is None or (stated.last_sequence, stated.known_at) != (cp.last_sequence, cp.known_at):
        return [f"the log's checkpoint of size {cp.tree_size} does not end at the stated sequence and ledger time"]
    replayed = ReplayedFacts(data.ledger.store, cp.last_sequence)
    expected = build(data, cp, options, db=replayed, on_progress=on_progress)
    found = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    out = []
    for name in sorted(set(expected) | found):
        path = directory / name
        if name not in expected:
            out.append(f"{name}: not part of the report")
        elif name not in found:
            out.append(f"{name}: missing")
        elif path.read_bytes() != expected[name]:
            out.append(f"{name}: differs from the figures recomputed from the log at tree size {cp.tree_size}")
    return out


def default_options(as_of: date, las: Sequence[str], trusts: Sequence[str], rules: Rules | None = None) -> Options:
    """The site's options: ``las`` and ``trusts`` as identifiers (``801`` or ``la:801``), the threshold of the
    disclosure ``rules`` (by default the rules' own)."""
    norm_la = tuple(la if la.startswith("la:") else f"la:{la}" for la in las) or None
    norm_trust = tuple(t if t.startswith("trust:") else f"trust:{t}" for t in trusts)
    return Options(as_of, norm_la, norm_trust, (rules or Rules()).threshold)
