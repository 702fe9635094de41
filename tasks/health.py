"""The health check: a request through nginx, made on the server, retried until a deadline.

The gate built on it (switch back on failure) is in tasks/switch.py.
"""

from __future__ import annotations

import shlex

from tasks.settings import Settings

# Runs with the server's python3 (always there: the app needs it), so curl is not required.
_CHECK = """
import sys, time, urllib.error, urllib.request
url, host, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + timeout
while True:
    try:
        with opener.open(urllib.request.Request(url, headers={"Host": host}), timeout=5) as answer:
            status = str(answer.status)
    except urllib.error.HTTPError as error:
        status = str(error.code)
    except Exception as error:
        status = "no answer (%s)" % (getattr(error, "reason", None) or error)
    if status == "200" or time.monotonic() >= deadline:
        print(status)
        sys.exit(status != "200")
    time.sleep(0.25)
"""


def url(s: Settings) -> str:
    return f"http://127.0.0.1:80{s.health_path}"


def check_command(s: Settings, timeout: float) -> str:
    """Shell command printing the final status (200 on success) and exiting non-zero on failure."""
    q = shlex.quote
    return f"python3 -c {q(_CHECK)} {q(url(s))} {q(s.health_host)} {timeout:g}"


def app_errors(s: Settings) -> str:
    """Shell expansion: the app's last error lines for a failure message, without gunicorn's [INFO] lines."""
    lines = f"grep -v '\\[INFO\\]' {shlex.quote(s.error_log)} 2>/dev/null | tail -n 5"
    return f"last lines of {s.error_log}: $({lines} | tr '\\n' '|' | grep . || echo none)"
