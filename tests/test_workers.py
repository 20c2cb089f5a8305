"""``serve --workers N`` (PostgreSQL): every worker takes its share of the connections, and the server stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from api.workers import listening_sockets
from ledger.config import Settings

from .processes import Server, run_cli

CONNECTIONS = 16  # all on one of two workers by chance: 2 in 2^16


def _children(pid: int) -> list[int]:
    """The process's direct children, as the kernel lists them per thread."""
    return [int(child) for task in Path(f"/proc/{pid}/task").glob("*/children") for child in task.read_text().split()]


def _api_workers(pid: int) -> list[int]:
    """The server's API worker processes (not multiprocessing's helpers)."""
    return [
        c
        for c in _children(pid)
        if "multiprocessing.spawn" in Path(f"/proc/{c}/cmdline").read_text().replace("\0", " ") and any(_sockets(c))
    ]


def _sockets(pid: int) -> set[str]:
    """The inodes of the process's sockets."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _accepted(port: int) -> set[str]:
    """The inodes of the established connections whose local end is ``port`` (those a server accepted)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            found.add(fields[9])
    return found


def test_each_worker_accepts_its_share_of_the_connections_is_restarted_and_all_stop_on_sigterm(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=pg_url)
    run_cli(settings, "init")
    server = Server(settings, args=("--workers", "2")).start()
    try:
        assert server.process is not None
        deadline = time.monotonic() + 30
        while len(workers := _api_workers(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2, workers
        # a burst, as clients starting together make: all connected before any request is sent
        clients = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(CONNECTIONS)]
        try:
            for c in clients:
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            assert all(c.recv(65536).startswith(b"HTTP/1.1 200") for c in clients)
            accepted = _accepted(server.port)
            shares = {w: len(_sockets(w) & accepted) for w in workers}
            assert sum(shares.values()) == CONNECTIONS and all(n > 0 for n in shares.values()), shares
        finally:
            for c in clients:
                c.close()
        os.kill(workers[0], signal.SIGKILL)  # a worker dies: another takes its socket
        deadline = time.monotonic() + 30
        while (workers[0] in (now := _api_workers(server.process.pid)) or len(now) < 2) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert workers[0] not in now and len(now) == 2, now
        for _ in range(CONNECTIONS):  # every socket answers again, the dead worker's included
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as c:
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                assert c.recv(65536).startswith(b"HTTP/1.1 200")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert not [w for w in now if Path(f"/proc/{w}").exists()], "a worker outlived the server"
    finally:
        server.stop()


def test_a_port_in_use_fails_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            listening_sockets("127.0.0.1", taken.getsockname()[1], 2)


def test_port_zero_gives_every_worker_the_same_port() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        assert len({s.fileno() for s in sockets}) == 3 and len({s.getsockname()[1] for s in sockets}) == 1
    finally:
        for s in sockets:
            s.close()
