"""``serve --workers N``: N API processes, each accepting connections on its own listening socket.

uvicorn's own workers share one socket, and whichever worker is awake when connections arrive accepts all
that are waiting (its event loop takes up to a hundred at once): under 32 keep-alive clients one of two
workers served nine requests in ten, so the second process's group commit and GIL sat idle. Here each worker
has its own socket bound to the same address with ``SO_REUSEPORT``, and the kernel spreads new connections
over them by a hash of their addresses. The parent binds every socket before any worker starts (a port in use
fails at once, as before), keeps them, and starts a worker that died again on its own socket (connections
the kernel queued on it meanwhile wait there); SIGINT or SIGTERM stops every worker gracefully. Where the
platform has no ``SO_REUSEPORT`` the workers share one socket, as uvicorn's do.

Each worker builds its own app, ledger and database pool with the composition root
(``api.bootstrap.app_from_settings``) from the ``Settings`` the parent read at start, passed to it as a
process argument (nothing goes through the environment).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from ledger.config import Settings

log = logging.getLogger("pupil_ledger.workers")
RESTART_PAUSE_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 30.0


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets listening on (host, port); with ``port`` 0, all on the one the first was given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    shared = not hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        for _ in range(1 if shared else count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if not shared:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(2048)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets * count if shared else sockets


def _work(sock: socket.socket, host: str, port: int, settings: Settings) -> None:
    """A worker: one uvicorn server on ``sock`` (it stops gracefully on SIGINT or SIGTERM)."""
    import uvicorn

    from api.bootstrap import app_from_settings
    from api.security import server_options

    config = uvicorn.Config(
        app_from_settings(settings), host=host, port=port, access_log=False, log_level="warning", **server_options(settings.trusted_proxies)
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve(host: str, port: int, workers: int, settings: Settings) -> None:
    """Run ``workers`` API processes on (host, port), each with ``settings``, until SIGINT or SIGTERM."""
    sockets = listening_sockets(host, port, workers)
    port = sockets[0].getsockname()[1]
    context = multiprocessing.get_context("spawn")  # never fork: a fresh interpreter per worker, as uvicorn's
    stopping = threading.Event()

    def start(index: int) -> BaseProcess:
        process = context.Process(target=_work, args=(sockets[index], host, port, settings), name=f"api-worker-{index}")
        process.start()
        return process

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.set()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    processes = [start(i) for i in range(workers)]
    try:
        while not stopping.wait(0.5):
            for i, process in enumerate(processes):
                if not process.is_alive() and not stopping.is_set():
                    log.warning("API worker %s exited with %s; starting it again", process.pid, process.exitcode)
                    time.sleep(RESTART_PAUSE_SECONDS)
                    processes[i] = start(i)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then the app's shutdown
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sock in set(sockets):
            sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
