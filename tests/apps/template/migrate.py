"""Release command of the test app (`python3 migrate.py`): one row per run in instance/migrations.db.

Standard library only, so it runs with the server's python3 as well as with the release's venv. It runs in
the new release's directory, where instance/ is the shared folder linked in. The row says which version
ran it, where, as whom and with which app.env value, so the tests can count runs per deploy.
"""

import json
import os
import pwd
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path

RELEASE = json.loads(Path(__file__).with_name("release.json").read_text())

if RELEASE["migration_fails"]:
    sys.exit(f"migration of {RELEASE['version']} failed: table visits is locked")
if not os.path.isdir("instance"):
    sys.exit(f"no instance/ folder in {os.getcwd()}: the shared folder is not linked into the release")

with closing(sqlite3.connect("instance/migrations.db", timeout=10)) as db, db:
    db.execute("CREATE TABLE IF NOT EXISTS runs (version TEXT, cwd TEXT, user TEXT, env TEXT, at REAL)")
    db.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
        (
            RELEASE["version"],
            os.getcwd(),
            pwd.getpwuid(os.geteuid()).pw_name,
            os.environ.get("RELEASE_TEST_ENV", ""),
            time.time(),
        ),
    )
