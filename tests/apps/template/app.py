"""Test app of the release tests. What it serves comes from release.json, written by tests/apps/versions.py.

Routes: `/` the version's page, `/health` "ok" (or 500, or 503 until instance/health.go exists, or an
answer that drips for a minute, as the version asks), `/pid` the worker's PID (to tell old workers from
new), `/count` a counter in SQLite under Flask's instance folder (data that must survive every release).
Each process that imports it notes the import in instance/imports.log, and its exit in instance/exits.log
(an atexit handler).
"""

import atexit
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from flask import Flask, Response

RELEASE = json.loads(Path(__file__).with_name("release.json").read_text())
# 'VERSION PID PPID' in instance/imports.log: which process imported which release (the import trial too).
with open(Path(__file__).with_name("instance") / "imports.log", "a") as imports:
    imports.write(f"{RELEASE['version']} {os.getpid()} {os.getppid()}\n")
if RELEASE["broken"]:
    raise RuntimeError(f"release {RELEASE['version']} is broken on purpose: it raises at import")

app = Flask(__name__)
DRIP_SECONDS, DRIPS = 2, 30  # health_drips: /health's body comes a byte every 2 s, for a minute


@atexit.register
def note_exit() -> None:
    """'VERSION PID' in instance/exits.log: gunicorn's workers must still run an app's atexit handlers."""
    os.makedirs(app.instance_path, exist_ok=True)
    with open(os.path.join(app.instance_path, "exits.log"), "a") as log:
        log.write(f"{RELEASE['version']} {os.getpid()}\n")


@app.get("/")
def index() -> str:
    return RELEASE["page"]


@app.get("/health")
def health() -> Response | tuple[str, int]:
    if RELEASE.get("unhealthy"):
        return "unhealthy on purpose", 500
    if RELEASE.get("health_drips"):
        return dripping()
    if RELEASE.get("health_waits") and not os.path.exists(os.path.join(app.instance_path, "health.go")):
        return "still starting", 503
    return "ok", 200


def dripping() -> Response:
    """200 at once, then the body a byte every DRIP_SECONDS for a minute: every wait of a client for the
    next byte ends with one, yet the answer takes long to end. When it began (time.time()) goes to
    instance/drips.log, one line a request."""
    os.makedirs(app.instance_path, exist_ok=True)
    with open(os.path.join(app.instance_path, "drips.log"), "a") as log:
        log.write(f"{time.time()}\n")

    def drip() -> Iterator[str]:
        for n in range(DRIPS):
            if n:
                time.sleep(DRIP_SECONDS)
            yield "."

    # nginx passes each byte on as it comes, rather than holding the body in its buffers.
    return Response(drip(), mimetype="text/plain", headers={"X-Accel-Buffering": "no"})


@app.get("/pid")
def pid() -> str:
    return str(os.getpid())


@app.get("/count")
def count() -> str:
    """Add one to the counter and return it; workers and threads share it through SQLite's locking."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "counter.db")
    with closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER)")
        db.execute("INSERT OR IGNORE INTO counter VALUES (1, 0)")
        db.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
        (value,) = db.execute("SELECT n FROM counter").fetchone()
        db.execute("COMMIT")
    return str(value)
