"""The health check: GET URL with a Host header, until it answers 200 or TIMEOUT.

It retries (every 0.25 s) only while waiting can change the answer: no answer yet, or nginx answering
502, 503 or 504 while gunicorn starts. Any other answer (404: no such route, 500: the app fails) is
final at once.

    health.py URL HOST TIMEOUT [--json]

Prints the final status ("200", "500", "no answer (reason)") and exits 0 on 200 only; with --json, a
report for the probe: the line {"health": STATUS}, exit 0. Runs with the server's python3, so curl is
not needed.
"""

import json
import sys
import time
import urllib.error
import urllib.request

# nginx's answers while gunicorn is not (yet) there: waiting may help.
RETRY = ("502", "503", "504")


def status_of(opener, url, host):
    try:
        with opener.open(urllib.request.Request(url, headers={"Host": host}), timeout=5) as answer:
            return str(answer.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except Exception as error:
        return "no answer (%s)" % (getattr(error, "reason", None) or error)


def main(url, host, timeout, as_json=False):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + float(timeout)
    while True:
        status = status_of(opener, url, host)
        waiting_helps = status in RETRY or status.startswith("no answer")
        if not waiting_helps or time.monotonic() >= deadline:
            if as_json:
                print(json.dumps({"health": status}))
                return 0
            print(status)
            return 0 if status == "200" else 1
        time.sleep(0.25)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4], as_json="--json" in sys.argv[4:]))
