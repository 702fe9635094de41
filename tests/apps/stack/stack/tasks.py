"""What the worker runs: a note written to PostgreSQL with the release and process that wrote it."""

import os

from stack import database


def record(note: str) -> None:
    with database() as db:
        db.execute(
            "INSERT INTO notes (note, release, pid) VALUES (%s, %s, %s)",
            (note, os.path.basename(os.getcwd()), os.getpid()),
        )
