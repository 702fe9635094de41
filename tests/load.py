"""Steady HTTP load for zero-downtime tests: N clients request a URL without pause until stopped.

    with Load("http://198.18.1.11/", clients=20) as load:
        ...switch releases...
    assert load.failed == []

Every request opens a new connection (as separate visitors do), so a closed port or a dropped
connection shows up as a failure. Connections end with a reset once the answer is read, so thousands
of them leave no TIME_WAIT sockets behind to exhaust the client's ephemeral ports. Loops are bounded by
`max_seconds` so a forgotten load stops.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s


@dataclass
class Response:
    started: float
    ended: float
    status: int | None  # None: the request failed before a status line
    body: str


@dataclass
class Load:
    url: str
    clients: int = 20
    max_seconds: float = 120
    timeout: float = 10
    responses: list[Response] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        parts = urlsplit(self.url)
        host, port, path = parts.hostname, parts.port or 80, parts.path or "/"
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, args=(host, port, path, deadline), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _client(self, host: str, port: int, path: str, deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            status, body = None, ""
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            try:
                conn.connect()
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
                conn.request("GET", path)
                reply = conn.getresponse()
                status, body = reply.status, reply.read().decode(errors="replace")
            except (OSError, http.client.HTTPException) as error:
                body = f"{type(error).__name__}: {error}"
            finally:
                conn.close()
            with self._lock:
                self.responses.append(Response(started, time.monotonic(), status, body))

    def wait_for(self, predicate, timeout: float = 30) -> Response:
        """Wait until a response that started after now satisfies predicate(response); return it."""
        since, deadline = time.monotonic(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for response in self.responses:
                    if response.started >= since and predicate(response):
                        return response
            time.sleep(0.05)
        raise TimeoutError(f"no response matched within {timeout} s; last: {self.responses[-1:]}")

    @property
    def failed(self) -> list[Response]:
        with self._lock:
            return [r for r in self.responses if r.status != 200]

    def bodies_after(self, moment: float) -> set[str]:
        """Distinct bodies of the responses to requests sent after `moment` (time.monotonic())."""
        with self._lock:
            return {r.body for r in self.responses if r.started >= moment}
