"""The health request: GET URL with a Host header, until it passes RULE or TIMEOUT.

RULE says what passes: `2xx` (app.health_path is set: that path must answer 2xx) or `answered` (no
health path: GET / passes when the app answered at all, with any status below 500: a 302 to its login
page or a 404 too). Redirects are not followed: the answer to URL is what counts.

It retries (every 0.25 s) only while waiting can change the answer: no answer yet, or nginx answering
502, 503 or 504 while gunicorn starts. Any other answer that does not pass (a 500: the app fails; a 404
under `2xx`: no such route) is final at once. All of it ends within TIMEOUT seconds, however slowly the
app answers: an answer that has not ended by then (a route sending a byte now and then) fails.

    health.py URL HOST TIMEOUT RULE

Prints the final status ("200", "500", "no answer (reason)", "no whole answer within 30 s"), followed by
the rule in parentheses when it fails, and exits 0 when it passes, 1 when not. The probe runs `report`
instead, one try within TRY_LIMIT seconds (so `status` answers within them), in its own interpreter:
{"health": STATUS, "healthy": true|false, "health_ms": MS}, MS being how long the request took, in
milliseconds (what `status` shows). Runs with the server's python3, so curl is not needed,
and speaks HTTP/1.1 over a socket itself: urllib would triple the time it takes to start (every probe
of a deploy or `status` runs it). For the same reason it takes sockets from _socket, the socket
module's C half (socket.py's enums cost more to import than the request takes), and splits the URL the
kit made itself (urllib.parse imports re).
"""

import _socket
import sys
import time

# nginx's answers while gunicorn is not (yet) there: waiting may help.
RETRY = ("502", "503", "504")
RETRY_PAUSE = 0.25  # seconds between tries
TRY_LIMIT = 5  # seconds the probe's one try may take
# Each rule: which statuses pass, and how a failure message words it.
RULES = {
    "2xx": (lambda code: 200 <= code < 300, "app.health_path must answer 2xx"),
    "answered": (lambda code: 100 <= code < 500, "no app.health_path: any answer below 500 passes"),
}


def split_url(url):
    """(host, port, target) of an http:// URL such as tasks/layout.py's health_url makes: the host
    (an IPv6 address without its brackets), the port (80 when it has none), the path and query."""
    authority, slash, target = url.partition("://")[2].partition("/")
    target = (slash + target).partition("#")[0] or "/"
    host, colon, port = authority.rpartition(":")
    if not colon or (host.startswith("[") and not host.endswith("]")):  # no port (an IPv6 address's colon)
        host, port = authority, ""
    return host.strip("[]"), int(port or 80), target


def time_left(deadline):
    """The seconds until deadline (a time.monotonic() time), as a socket's timeout; a timeout once it
    has passed (a socket given 0 would not wait at all, rather than time out)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _socket.timeout("timed out")
    return left


def connect(host, port, deadline):
    """A TCP connection to host:port (its first address that answers by deadline), as
    socket.create_connection."""
    error = OSError(f"no address for {host}")
    # An ASCII name as bytes: getaddrinfo passes a str through the idna codec, and importing it (re,
    # unicodedata) takes longer than the whole request.
    name = host.encode() if host.isascii() else host
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        conn = _socket.socket(family, kind, proto)
        try:
            conn.settimeout(time_left(deadline))
            conn.connect(address)
            return conn
        except OSError as failed:
            conn.close()
            error = failed
    raise error


def status_of(url, host, deadline, seconds):
    """The status of GET url with this Host header (a redirect is the answer: it is not followed), from
    the whole answer read by deadline (a time.monotonic() time, `seconds` after the request began): when
    the deadline comes first, "no answer within SECONDS s", or "no whole answer ..." once some came."""
    hostname, port, target = split_url(url)
    headers = f"Host: {host}\r\nUser-Agent: flaskdeploy-health\r\nConnection: close\r\n"
    request = f"GET {target} HTTP/1.1\r\n{headers}\r\n"
    answer = b""
    try:
        conn = connect(hostname, port, deadline)
        try:
            conn.sendall(request.encode("latin-1"))
            while len(answer) < 1 << 16:  # the whole answer (a short page), then the connection closes
                # Each wait only as long as the deadline leaves: a byte now and then must not keep the
                # request (and the deploy or `status` waiting on it) going past it.
                conn.settimeout(time_left(deadline))
                chunk = conn.recv(1 << 14)
                if not chunk:
                    break
                answer += chunk
        finally:
            conn.close()
    except _socket.timeout:
        return f"no {'whole ' if answer else ''}answer within {seconds:g} s"
    except OSError as error:
        if not answer:
            return f"no answer ({error})"
    words = answer.split(b"\r\n", 1)[0].split()
    if len(words) >= 2 and words[0].startswith(b"HTTP/") and words[1].isdigit():
        return words[1].decode()
    return "no answer (not an HTTP answer)" if answer else "no answer (the connection closed)"


def passes(status, rule):
    return status.isdigit() and RULES[rule][0](int(status))


def poll(url, host, timeout, rule):
    """(status, passed): GET until it passes the rule, or until waiting cannot change the answer; all of
    it within TIMEOUT seconds."""
    timeout = float(timeout)
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(url, host, deadline, timeout)
        passed = passes(status, rule)
        waiting_helps = status in RETRY or status.startswith("no answer")
        if passed or not waiting_helps or time.monotonic() + RETRY_PAUSE >= deadline:
            return status, passed
        time.sleep(RETRY_PAUSE)


def report(url, host, rule):
    """One try within TRY_LIMIT seconds, as the probe reports it (runtime/probe.py runs this in its own
    interpreter)."""
    started = time.monotonic()
    status = status_of(url, host, started + TRY_LIMIT, TRY_LIMIT)
    elapsed_ms = round((time.monotonic() - started) * 1000)
    return {"health": status, "healthy": passes(status, rule), "health_ms": elapsed_ms}


def main(url, host, timeout, rule):
    if rule not in RULES:
        print(f"health.py: no such rule {rule!r} (one of: {', '.join(RULES)})", file=sys.stderr)
        return 2
    status, passed = poll(url, host, timeout, rule)
    print(status if passed else f"{status} ({RULES[rule][1]})")
    return 0 if passed else 1


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: health.py URL HOST TIMEOUT RULE")
    sys.exit(main(*sys.argv[1:5]))
