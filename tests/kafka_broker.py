"""A real Kafka-protocol broker for the tests: ``noida-db start --only kafka`` (PyPI, test extra) on a free port.

The product talks to any Kafka (production: Apache Kafka, docker-compose.yml); the tests need one that CI
can install from PyPI. It keeps records in memory, so every broker started here is empty.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.processes import free_port


def _binary() -> str:
    """The broker's own executable (the ``noida-db`` script only wraps it in a Python process, whose PID is not the broker's)."""
    try:
        import noida_db
    except ImportError:
        raise RuntimeError("the test broker noida-db is not installed: pip install -e '.[test]'") from None
    return str(Path(noida_db.__file__).with_name("noida-db"))


class Broker:
    """One broker process; ``stop()`` kills it by its PID, ``start()`` starts it again (empty) on the same port."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir, self.port = data_dir, port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"broker-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Broker:
        log = self.log
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    _binary(),
                    "start",
                    "--only",
                    "kafka",
                    "--kafka-port",
                    str(self.port),
                    "--host",
                    "127.0.0.1",
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"the broker exited {self.process.returncode}: {log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the broker did not answer within {timeout} s: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        return self

    def ready(self) -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000).close()
        except (KafkaError, OSError):
            return False
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
