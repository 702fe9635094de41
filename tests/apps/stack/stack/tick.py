"""The scheduled job: one row in ticks each run."""

from stack import database

with database() as db:
    db.execute("INSERT INTO ticks DEFAULT VALUES")
