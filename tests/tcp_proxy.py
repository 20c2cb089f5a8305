"""A TCP proxy between a server and its database that a test can break, as networks and hosts break.

``blackhole()``: nothing is forwarded either way and new connections are not accepted (they wait in the listen
queue): every connection hangs, as to a dead host. Bytes already sent wait in the kernel's buffers, as a
dead host's would in the network, and flow again on ``restore()``. ``cut()``: every connection is reset and the
port refuses new ones, as after a crash or a firewall rule. ``restore()``: forward again, on the same port.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._listener = self._listen(0)
        self.port = int(self._listener.getsockname()[1])
        self._pairs: dict[socket.socket, socket.socket] = {}  # each end -> the other
        self._state = "forwarding"
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._waker_r, self._waker_w = socket.socketpair()
        self._selector.register(self._waker_r, selectors.EVENT_READ)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        return sock

    def _wake(self) -> None:
        self._waker_w.send(b"x")

    def blackhole(self) -> None:
        with self._lock:
            if self._state != "forwarding":
                raise RuntimeError(f"blackhole from {self._state}: restore first")
            self._state = "blackhole"
            for sock in [*self._pairs, self._listener]:
                if sock is not None:
                    self._selector.unregister(sock)
        self._wake()

    def cut(self) -> None:
        with self._lock:
            if self._state != "blackhole":
                for sock in [*self._pairs, self._listener]:
                    if sock is not None:
                        self._selector.unregister(sock)
            self._state = "cut"
            for sock in list(self._pairs):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
                sock.close()
            self._pairs.clear()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._wake()

    def restore(self) -> None:
        with self._lock:
            if self._state == "forwarding":
                return
            if self._listener is None:
                self._listener = self._listen(self.port)
            self._selector.register(self._listener, selectors.EVENT_READ)
            for sock in self._pairs:
                self._selector.register(sock, selectors.EVENT_READ)
            self._state = "forwarding"
        self._wake()

    def close(self) -> None:
        self.cut()
        self._stopping = True
        self._wake()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with self._lock:
                    if sock is self._waker_r:
                        sock.recv(4096)
                    elif sock is self._listener and self._state == "forwarding":
                        self._accept()
                    elif sock in self._pairs and self._state == "forwarding":
                        self._forward(sock)

    def _accept(self) -> None:
        assert self._listener is not None
        client, _ = self._listener.accept()
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        for end, other in ((client, server), (server, client)):
            end.setblocking(True)
            self._pairs[end] = other
            self._selector.register(end, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        other = self._pairs[sock]
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        for end in (sock, other):  # one side closed: close the other too
            self._pairs.pop(end, None)
            self._selector.unregister(end)
            end.close()
