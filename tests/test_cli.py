"""The command line: help texts with examples, key and token revocation, simulation output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.config import Settings
from ledger.core import envelope

from .processes import run_cli

COMMANDS = [
    ["init"],
    ["serve"],
    ["orgs", "add"],
    ["orgs", "list"],
    ["keys", "generate"],
    ["keys", "add"],
    ["keys", "revoke"],
    ["tokens", "issue"],
    ["tokens", "revoke"],
    ["sign"],
    ["submit"],
    ["history"],
    ["simulate"],
    ["demo"],
    ["seal"],
    ["log", "export"],
    ["verify", "checkpoint"],
    ["verify", "proof"],
    ["verify", "inclusion"],
    ["verify", "consistency"],
    ["verify", "audit"],
    ["erase"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str], tmp_path: Path) -> None:
    done = run_cli(Settings(home=tmp_path), *command, "--help")
    assert "Example:" in done.stdout and "pupil-ledger " + " ".join(command) in done.stdout


def test_revocations_and_uninitialised_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    missing = run_cli(settings, "orgs", "list", check=False)
    assert missing.returncode == 2 and "pupil-ledger init" in missing.stderr
    run_cli(settings, "init")
    assert run_cli(settings, "init", check=False).returncode == 1
    run_cli(settings, "orgs", "add", "la:202", "--kind", "la", "--name", "Camden")
    bad = run_cli(settings, "orgs", "add", "la:999", "--kind", "la", check=False)
    assert bad.returncode == 1 and "org_id" in bad.stderr
    key_id = run_cli(settings, "keys", "generate", str(tmp_path / "camden")).stdout.split()[0]
    run_cli(settings, "keys", "add", "la:202", "--public-key-file", str(tmp_path / "camden.pub.pem"))
    run_cli(settings, "keys", "revoke", "la:202", key_id, "--reason", "compromised")
    orgs = json.loads(run_cli(settings, "orgs", "list", "--json").stdout)
    assert [k["revoked_at"] is not None for o in orgs if o["org"] == "la:202" for k in o["keys"]] == [True]
    token = run_cli(settings, "tokens", "issue", "la:202", "--role", "la").stdout.strip()
    run_cli(settings, "tokens", "revoke", token.split("_")[1])
    assert run_cli(settings, "tokens", "revoke", "ffffffff", check=False).returncode == 1
    several = run_cli(settings, "serve", "--workers", "2", check=False)  # the embedded SQLite has one writer
    assert several.returncode == 2 and "needs PostgreSQL" in several.stderr


def test_simulate_writes_signed_envelopes(tmp_path: Path) -> None:
    run_cli(Settings(home=tmp_path), "simulate", str(tmp_path / "sim"), "--pupils", "50", "--la", "202")
    orgs = json.loads((tmp_path / "sim" / "orgs.json").read_text())
    keys = {o["org"]: o["key_id"] for o in orgs}
    lines = (tmp_path / "sim" / "events.jsonl").read_text().splitlines()
    assert len(lines) >= 50
    for line in lines:
        env = envelope.decode(json.loads(line))
        assert env.signatures[0][0] == keys[env.body["submitter"]]
