"""tasks/runtime/health.py, the health request made on servers, as a program against a local HTTP server:
the status it prints, its exit code under each rule (`2xx`: app.health_path is set; `answered`: GET /
with no health path), the Host header it sends, its retries until TIMEOUT, its one deadline however
slowly the app answers; and `report`, the one try the probe makes in its own interpreter."""

import runpy
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.runtime import HERE
from tasks.runtime import health as runtime_health
from tasks.runtime import probe as runtime_probe

HEALTH = HERE / "health.py"
LATER_FAILURES = 2  # /later answers 503 this many times, then 200
SLOW = 0.3  # seconds /slow takes to answer
SHORT = 1  # seconds: a request that gives up soon (a closed port's refusals are retried until then)
DRIP = 0.5  # seconds between the bytes of a dripping answer: well within any one wait of an older health.py


class App(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1"):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (path, Host header)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def hits(self, path: str) -> list[str | None]:
        """The Host headers of the requests for `path`, in order."""
        with self.lock:
            return [host for seen, host in self.requests if seen == path]


class Handler(BaseHTTPRequestHandler):
    server: App

    def do_GET(self):
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Host")))
            earlier = sum(1 for path, _ in self.server.requests if path == self.path) - 1
        headers = {}
        if self.path == "/ok":
            status = 200
        elif self.path == "/empty":
            status = 204
        elif self.path == "/login-first":
            status, headers = 302, {"Location": "/ok"}
        elif self.path == "/sick":
            status = 500
        elif self.path == "/later":
            status = 503 if earlier < LATER_FAILURES else 200
        elif self.path == "/slow":
            time.sleep(SLOW)
            status = 200
        else:
            status = 404
        body = f"{status}\n".encode()
        body = b"" if status == 204 else body
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # keep the test output clean
        pass


@pytest.fixture(params=["127.0.0.1"])
def app(request):
    server = App(request.param)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dripping:
    """A server on 127.0.0.1 whose every answer starts as a healthy one ("200 OK" and its headers), then
    comes a byte every DRIP seconds, DRIPS times (longer than any deadline here), and only then ends."""

    DRIPS = 20

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/health"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # shut down: the test is over
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(1 << 16)  # the request
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                for _ in range(self.DRIPS):
                    if self.stop.wait(DRIP):
                        return
                    conn.sendall(b".")
            except OSError:  # the request hung up, as it should
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(), which close() alone would not
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def dripping() -> Iterator[Dripping]:
    server = Dripping()
    try:
        yield server
    finally:
        server.close()


TWO_XX = "app.health_path must answer 2xx"
ANSWERED = "no app.health_path: any answer below 500 passes"


def health(
    url: str, host: str, timeout: float, rule: str = "2xx", *extra: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-I", str(HEALTH), url, host, str(timeout), rule, *extra],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip


def test_a_200_prints_200_and_exits_0_with_the_host_header_given(app):
    done = health(f"{app.base}/ok", "app.example.org", SHORT)
    assert (done.stdout, done.returncode) == ("200\n", 0), done.stderr
    assert app.hits("/ok") == ["app.example.org"]


def test_a_500_prints_500_and_exits_1_after_one_try(app):
    done = health(f"{app.base}/sick", "app.example.org", SHORT)
    assert (done.stdout, done.returncode) == (f"500 ({TWO_XX})\n", 1), done.stderr
    assert app.hits("/sick") == ["app.example.org"]


def test_a_server_that_answers_503_at_first_is_retried_until_it_answers_200(app):
    done = health(f"{app.base}/later", "app.example.org", 4)
    assert (done.stdout, done.returncode) == ("200\n", 0), done.stderr
    assert app.hits("/later") == ["app.example.org"] * (LATER_FAILURES + 1)  # stops at the first 200


def test_an_answer_that_waiting_cannot_change_is_final_at_once(app):
    # 500 (the app fails) and 404 (no such route) stay what they are: no need to wait out the timeout.
    for path, status in (("/sick", "500"), ("/missing", "404")):
        done = health(f"{app.base}{path}", "app.example.org", 30)
        assert (done.stdout, done.returncode) == (f"{status} ({TWO_XX})\n", 1), done.stderr
        assert len(app.hits(path)) == 1


def test_a_closed_port_prints_no_answer_with_the_reason_and_exits_1(closed_port):
    done = health(f"http://127.0.0.1:{closed_port}/ok", "app.example.org", SHORT)
    assert done.returncode == 1, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("no answer (") and line.endswith(f") ({TWO_XX})")
    assert "refused" in line.lower()


def test_an_answer_that_never_ends_fails_within_timeout_however_often_a_byte_comes(dripping):
    # Every wait for the next byte ends with one, and the head says 200, yet the answer is not over by
    # the deadline: the request ends there, and fails (the deploy's gate with it, in time).
    started = time.monotonic()
    done = health(dripping.url, "app.example.org", SHORT)
    took = time.monotonic() - started
    expected = f"no whole answer within {SHORT} s ({TWO_XX})\n"
    assert (done.stdout, done.returncode) == (expected, 1), done.stderr
    assert took < SHORT + 1, f"{took:.1f} s"  # the deadline, and python3's start


def report(url: str, host: str, rule: str = "2xx") -> dict:
    """health.report as the probe runs it: runtime/probe.py's `health`, given health.py's source."""
    return runtime_probe.health(HEALTH.read_text(), url, host, rule)


def test_the_report_of_a_healthy_status(app):
    found = report(f"{app.base}/ok", "app.example.org")
    assert 0 <= found.pop("health_ms") < 5000  # how long the request took
    assert found == {"health": "200", "healthy": True}
    assert app.hits("/ok") == ["app.example.org"]


def test_the_report_says_how_long_the_request_took_in_ms_and_tries_once(app):
    assert SLOW * 1000 <= report(f"{app.base}/slow", "app.example.org")["health_ms"] < SLOW * 1000 + 2000
    assert report(f"{app.base}/later", "app.example.org")["health"] == "503"  # no retry: one try
    assert len(app.hits("/later")) == 1


def test_the_report_s_one_try_ends_within_its_limit_however_often_a_byte_comes(dripping):
    # What `fab status` shows, within the limit: it never waits on an answer that does not end.
    limit = runtime_health.TRY_LIMIT
    found = report(dripping.url, "app.example.org")
    assert (found["health"], found["healthy"]) == (f"no whole answer within {limit} s", False)
    assert limit * 1000 <= found["health_ms"] < (limit + 1) * 1000


def test_the_report_of_an_unhealthy_status_under_its_rule(app, closed_port):
    sick = report(f"{app.base}/sick", "app.example.org", "answered")
    assert (sick["health"], sick["healthy"]) == ("500", False)
    # The control side reads `healthy`: a 404 is healthy with no health path, not with one.
    for rule, healthy in (("answered", True), ("2xx", False)):
        missing = report(f"{app.base}/missing", "app.example.org", rule)
        assert (missing["health"], missing["healthy"]) == ("404", healthy)
    gone = report(f"http://127.0.0.1:{closed_port}/ok", "app.example.org", "answered")
    assert gone["health"].startswith("no answer (") and gone["healthy"] is False


# ---- no app.health_path: GET / passes when the app answered (any status below 500) -------------------------


@pytest.mark.parametrize("path, status", [("/ok", "200"), ("/login-first", "302"), ("/missing", "404")])
def test_with_no_health_path_any_answer_below_500_passes_at_once(app, path, status):
    done = health(f"{app.base}{path}", "app.example.org", 30, "answered")
    assert (done.stdout, done.returncode) == (f"{status}\n", 0), done.stderr
    assert app.hits(path) == ["app.example.org"]


def test_a_redirect_is_the_answer_not_followed(app):
    done = health(f"{app.base}/login-first", "app.example.org", SHORT, "2xx")
    assert (done.stdout, done.returncode) == (f"302 ({TWO_XX})\n", 1), done.stderr
    assert app.hits("/ok") == []


def test_with_no_health_path_a_500_fails_at_once_naming_the_rule(app):
    done = health(f"{app.base}/sick", "app.example.org", 30, "answered")
    assert (done.stdout, done.returncode) == (f"500 ({ANSWERED})\n", 1), done.stderr
    assert len(app.hits("/sick")) == 1


def test_with_no_health_path_a_503_is_retried_until_the_app_answers(app):
    done = health(f"{app.base}/later", "app.example.org", 4, "answered")
    assert (done.stdout, done.returncode) == ("200\n", 0), done.stderr
    assert len(app.hits("/later")) == LATER_FAILURES + 1


def test_with_no_health_path_no_answer_fails_naming_the_rule(closed_port):
    done = health(f"http://127.0.0.1:{closed_port}/", "app.example.org", SHORT, "answered")
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("no answer (") and done.stdout.endswith(f") ({ANSWERED})\n")


# ---- app.health_path set: it must answer 2xx --------------------------------------------------------------


def test_with_a_health_path_any_2xx_passes(app):
    done = health(f"{app.base}/empty", "app.example.org", SHORT, "2xx")
    assert (done.stdout, done.returncode) == ("204\n", 0), done.stderr


def test_with_a_health_path_a_404_fails_at_once_naming_the_rule(app):
    done = health(f"{app.base}/missing", "app.example.org", 30, "2xx")
    assert (done.stdout, done.returncode) == (f"404 ({TWO_XX})\n", 1), done.stderr
    assert len(app.hits("/missing")) == 1


def test_an_unknown_rule_is_an_error_that_asks_nothing(app):
    done = health(f"{app.base}/ok", "app.example.org", SHORT, "200")
    assert done.returncode == 2 and "no such rule '200'" in done.stderr
    assert app.hits("/ok") == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:80/",
        "http://127.0.0.1/healthz",
        "http://127.0.0.1:8080/up?full=1",
        "http://localhost:81/a/b",
        "http://[::1]:8080/up",
        "http://[::1]/",
        "http://127.0.0.1:80",
    ],
)
def test_the_url_splits_as_urllib_splits_it(url):
    split_url = runpy.run_path(str(HEALTH), run_name="health")["split_url"]
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    assert split_url(url) == (parts.hostname, parts.port or 80, target)


@pytest.mark.parametrize("app", ["::1"], indirect=True)
def test_an_ipv6_address_is_asked_over_ipv6(app):
    done = health(f"http://[::1]:{app.server_address[1]}/ok", "app.example.org", SHORT)
    assert (done.returncode, done.stdout) == (0, "200\n")
    assert app.hits("/ok") == ["app.example.org"]
