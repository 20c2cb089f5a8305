"""A real ``pupil-ledger serve`` process and a light HTTP/1.1 load generator (keep-alive, asyncio).

The generator writes requests by hand so the client costs little CPU beside the server on a small
machine; each connection sends its requests one after another and times each one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ledger.config import Settings

from .harness import rss_mb


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process_tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            pids.extend(_process_tree(int(child)))
    return pids


class Server:
    """``pupil-ledger serve`` in its own process, on a free port; ``companions``: other ``pupil-ledger`` commands
    run beside it for as long as it runs (``seal``, ``project run``: the followers of docker-compose.yml)."""

    def __init__(self, settings: Settings, args: Sequence[str] = (), companions: Sequence[Sequence[str]] = ()):
        self.settings = settings
        self.args = list(args)  # more ``serve`` options
        self.companions = [list(c) for c in companions]
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.others: list[subprocess.Popen[bytes]] = []
        self.log = settings.home.parent / f"serve-{self.port}.log"

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def __enter__(self) -> Server:
        try:
            return self._start()
        except BaseException:
            self.__exit__()  # a failed start must not leave the server or its companions running
            raise

    def _start(self) -> Server:
        env = dict(os.environ, PUPIL_LEDGER_HOME=str(self.settings.home))
        env.pop("PUPIL_LEDGER_DATABASE_URL", None)
        if self.settings.database_url:
            env["PUPIL_LEDGER_DATABASE_URL"] = self.settings.database_url
        root = Path(__file__).resolve().parents[1]
        with self.log.open("wb") as log:  # a file, not a pipe: a chatty server must never block on a full pipe
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port), *self.args],
                env=env,
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            self.others = [
                subprocess.Popen([sys.executable, "-m", "api.cli", *command], env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=log)
                for command in self.companions
            ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None or any(other.poll() is not None for other in self.others):
                raise RuntimeError(f"server or companion exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not become healthy in 60 s")

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) RSS of the server, or of its largest process when it runs several (``--workers``)."""
        assert self.process is not None
        return max((rss_mb(pid) for pid in _process_tree(self.process.pid)), key=lambda rss: rss[1])

    def sealed_size(self) -> int:
        """The size of the log's latest signed checkpoint (0 before the first, or when the server does not answer)."""
        try:
            response = httpx.get(f"{self.url}/log/checkpoint", timeout=10)
        except httpx.HTTPError:
            return 0
        return int(response.text.splitlines()[1]) if response.status_code == 200 else 0

    def seconds_until_sealed(self, size: int, since: float, timeout: float = 60.0) -> float | None:
        """Seconds from ``since`` (a ``time.monotonic()`` reading) until the log's signed checkpoint covers
        ``size`` entries (None: not within ``timeout``)."""
        while time.monotonic() - since < timeout:
            if self.sealed_size() >= size:
                return time.monotonic() - since
            time.sleep(0.02)
        return None

    def __exit__(self, *exc: object) -> None:
        for process in [p for p in (self.process, *self.others) if p is not None]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [p for p in (self.process, *self.others) if p is not None]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@dataclass
class Load:
    """Outcome of a load run: wall time, per-request latencies, status counts."""

    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str = ""


Request = tuple[str, str, bytes, str]  # method, path, body, bearer token


REQUEST_TIMEOUT = 60.0


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes, bool]:
    """Send one request, read its response: (status, body, whether the server closes the connection)."""
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length, closing = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        closing = closing or (name.lower() == "connection" and value.strip().lower() == "close")
    return status, await reader.readexactly(length), closing


async def _connection(port: int, requests: list[Request], load: Load) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for method, path, body, token in requests:
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            if body:
                head += "Content-Type: application/json\r\n"
            if token:
                head += f"Authorization: Bearer {token}\r\n"
            started = time.perf_counter()
            try:
                status, payload, closing = await asyncio.wait_for(
                    _exchange(reader, writer, head.encode("ascii") + b"\r\n" + body), REQUEST_TIMEOUT
                )
            except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
                status, payload, closing = 0, f"request failed: {exc!r}".encode(), True
            load.latencies_ms.append((time.perf_counter() - started) * 1000)
            load.statuses[status] = load.statuses.get(status, 0) + 1
            if status >= 300 or status == 0:
                load.first_error = load.first_error or f"{status} {payload[:300].decode('utf-8', 'replace')}"
            if closing:  # the server closed this connection (after a 500, or it timed out): open another one
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def drive(port: int, per_connection: list[list[Request]]) -> Load:
    """Run each list of requests on its own keep-alive connection, all connections at once."""
    load = Load()

    async def main() -> None:
        await asyncio.gather(*(_connection(port, requests, load) for requests in per_connection))

    started = time.perf_counter()
    asyncio.run(main())
    load.seconds = time.perf_counter() - started
    return load


def post(path: str, document: Any, token: str) -> Request:
    return ("POST", path, json.dumps(document, separators=(",", ":")).encode("utf-8"), token)


def get(path: str, token: str = "") -> Request:
    return ("GET", path, b"", token)
