"""The release command (the Procfile's release line): the tables, made once."""

from stack import database

with database() as db:
    db.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, note text, release text, pid int)")
    db.execute("CREATE TABLE IF NOT EXISTS ticks (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
