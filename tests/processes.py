"""Helpers to run the real command line and a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ledger.config import Settings

CLI = [sys.executable, "-m", "api.cli"]


def env_for(settings: Settings) -> dict[str, str]:
    env = dict(os.environ, PUPIL_LEDGER_HOME=str(settings.home))
    env.pop("PUPIL_LEDGER_DATABASE_URL", None)
    if settings.database_url:
        env["PUPIL_LEDGER_DATABASE_URL"] = settings.database_url
    return env


def run_cli(settings: Settings, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], env=env_for(settings), capture_output=True, text=True, timeout=120, cwd=cwd)
    if check and done.returncode != 0:
        raise AssertionError(f"pupil-ledger {' '.join(args)} exited {done.returncode}: {done.stdout}\n{done.stderr}")
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``pupil-ledger serve`` in its own process."""

    def __init__(self, settings: Settings, port: int | None = None, args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.settings = settings
        self.args = args  # more ``serve`` options
        self.env = env or {}  # more environment (settings)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        log = self.settings.home.parent / f"serve-{self.port}.log"
        with log.open("wb") as stderr:  # a file, not an unread pipe: a server logging a lot must never block on it
            self.process = subprocess.Popen(
                [*CLI, "serve", "--port", str(self.port), *self.args],
                env={**env_for(self.settings), **self.env},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("server did not become healthy in 30 s")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
