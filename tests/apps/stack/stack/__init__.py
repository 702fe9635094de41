"""stack: web -> Redis queue -> worker -> PostgreSQL, as microblog's "export your posts" goes."""

import os

import psycopg
from flask import Flask, request
from redis import Redis
from rq import Queue

VERSION = "v1"  # the tests change it to make a new release


def database() -> psycopg.Connection:
    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def queue() -> Queue:
    return Queue("stack-tasks", connection=Redis.from_url(os.environ["REDIS_URL"]))


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        return f"stack {VERSION}\n"

    @app.post("/jobs")
    def enqueue() -> str:
        job = queue().enqueue("stack.tasks.record", request.form["note"])
        return f"{job.id}\n"

    @app.get("/rows")
    def rows() -> str:
        with database() as db:
            found = db.execute("SELECT note, release, pid FROM notes ORDER BY id").fetchall()
        return "".join(f"{note} {release} {pid}\n" for note, release, pid in found)

    @app.get("/ticks")
    def ticks() -> str:
        with database() as db:
            return f"{db.execute('SELECT count(*) FROM ticks').fetchone()[0]}\n"

    @app.post("/keys/<name>")
    def set_key(name: str) -> str:
        Redis.from_url(os.environ["REDIS_URL"]).set(name, request.form["value"])
        return "set\n"

    @app.get("/keys/<name>")
    def get_key(name: str) -> str:
        value = Redis.from_url(os.environ["REDIS_URL"]).get(name)
        return f"{value.decode() if value is not None else '-'}\n"

    return app
