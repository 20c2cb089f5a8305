"""docker-compose.yml is a valid Compose file whose every command exists in the CLI with the environment it is given.

CI has no container engine; the same topology runs as processes in tests/test_kafka_topology.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .processes import CLI

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "compose-spec" / "compose-spec.json").read_text("utf-8"))
SOURCES = [p for d in ("ledger", "api", "feed", "projections") for p in (ROOT / d).rglob("*.py")]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return loaded


def invocations(command: list[str]) -> list[list[str]]:
    """The ``pupil-ledger`` command lines a service runs: the command itself, or each one in its ``sh -c`` script."""
    if command[:2] != ["sh", "-c"]:
        return [command]
    script = re.sub(r"\$\((?:[^()]|\([^()]*\))*\)", "SUBSTITUTED", command[2])  # $(...) yields one word
    words = shlex.split(script.replace(";", " ; ").replace("||", " || ").replace("|", " | ").replace(">", " > "))
    out, current = [], None
    for word in words:
        if word == "pupil-ledger":
            current = ["pupil-ledger"]
            out.append(current)
        elif word in (";", "||", "|", "&&", ">"):
            current = None
        elif current is not None:
            current.append(word)
    return out


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    jsonschema.validate(compose(), SCHEMA)
    broken = compose()
    broken["services"]["relay"]["depends_on"]["kafka"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_topology_is_all_there_with_health_checks_and_start_order() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert {"postgres", "kafka", "init", "api-1", "api-2", "sealer", "relay", "projections-1", "projections-2", "witness"} <= set(services)
    for name in ("postgres", "kafka", "api-1", "api-2"):
        assert "healthcheck" in services[name], name
    for name in ("relay", "projections-1", "projections-2"):
        assert services[name]["depends_on"]["kafka"] == {"condition": "service_healthy"}
    for name in ("sealer", "relay", "projections-1", "projections-2"):
        assert services[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}


def test_every_command_exists_in_the_cli_with_the_environment_it_is_given() -> None:
    services = compose()["services"]
    checked = 0
    for name, service in services.items():
        if service.get("image") != "pupil-ledger":
            continue
        environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        for variable in environment:  # every setting given is one the product reads
            assert any(variable in p.read_text("utf-8") for p in SOURCES), f"{name}: {variable} is read nowhere"
        for line in invocations(service["command"]):
            env = {**os.environ, **environment, "PUPIL_LEDGER_HOME": "/nonexistent"}
            done = subprocess.run([*CLI, *line[1:], "--help"], env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, f"{name}: {' '.join(line)}: {done.stderr[-800:]}"
            checked += 1
            if line[1:3] == ["relay"] or "--source" in line:
                assert environment.get("PUPIL_LEDGER_KAFKA"), f"{name} needs PUPIL_LEDGER_KAFKA"
                assert environment.get("PUPIL_LEDGER_DATABASE_URL", "").startswith("postgresql://"), name
    assert checked == 9  # init, api-1, api-2, sealer, relay, projections-1, projections-2, witness-init, witness
    wrong = subprocess.run(
        [*CLI, "project", "run", "--source", "kafka", "--no-such-option", "--help"], capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode == 2  # the check above can fail


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["relay"], {}, "set PUPIL_LEDGER_KAFKA"),
        (["project", "run", "--source", "kafka"], {}, "set PUPIL_LEDGER_KAFKA"),
        (
            ["project", "run", "--source", "kafka"],
            {"PUPIL_LEDGER_KAFKA": "127.0.0.1:9", "PUPIL_LEDGER_KAFKA_PARTITIONS": "0"},
            "at least 1",
        ),
        (["project", "run", "--source", "kafka", "pupils"], {"PUPIL_LEDGER_KAFKA": "127.0.0.1:9"}, "every view"),
        (["project", "run", "--source", "carrier-pigeon"], {}, "--source is log or kafka"),
        # a batch of 0 would publish nothing for ever, a negative one (SQLite's LIMIT -1) the whole log at once; a
        # negative pause would spin a core: refused before anything is opened, with a ledger or without
        (["relay", "--batch", "0"], {"PUPIL_LEDGER_KAFKA": "127.0.0.1:9"}, "--batch"),
        (["relay", "--batch", "-1"], {"PUPIL_LEDGER_KAFKA": "127.0.0.1:9"}, "--batch"),
        (["relay", "--idle", "-1"], {"PUPIL_LEDGER_KAFKA": "127.0.0.1:9"}, "--idle"),
        (["project", "run", "--source", "kafka", "--batch", "-9223372036854775808"], {"PUPIL_LEDGER_KAFKA": "127.0.0.1:9"}, "--batch"),
        (["project", "run", "--source", "kafka", "--idle", "-0.5"], {"PUPIL_LEDGER_KAFKA": "127.0.0.1:9"}, "--idle"),
        (["project", "run", "--idle", "-1"], {}, "--idle"),
    ],
)
def test_careless_feed_configuration_is_refused_with_a_reason(args: list[str], env: dict[str, str], says: str, tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PUPIL_LEDGER_KAFKA")}
    done = subprocess.run(
        [*CLI, *args], env={**environment, "PUPIL_LEDGER_HOME": str(tmp_path / "home"), **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and says in " ".join(done.stderr.split()), done.stderr
