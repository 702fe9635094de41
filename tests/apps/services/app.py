"""A Flask app using the services the kit wires in: PostgreSQL at DATABASE_URL (pg8000, over the Unix
socket as the app's own user: peer authentication) and Redis at REDIS_URL (redis-py, a Unix socket).

    GET /                  its name
    GET /env               DATABASE_URL and REDIS_URL as the app got them
    GET /put/KEY/VALUE     the value written to both
    GET /get/KEY           what both hold: "pg=VALUE redis=VALUE" (None when absent)
"""

import os
import pwd
from urllib.parse import parse_qs, urlsplit

import pg8000.native
import redis
from flask import Flask

app = Flask(__name__)
NAME = os.environ.get("SERVICES_APP_NAME", "services")


def database() -> pg8000.native.Connection:
    """DATABASE_URL (postgresql:///NAME?host=DIR): the database NAME on the socket in DIR, as this
    process's user."""
    url = urlsplit(os.environ["DATABASE_URL"])
    socket_dir = parse_qs(url.query).get("host", ["/run/postgresql"])[0]
    return pg8000.native.Connection(
        user=pwd.getpwuid(os.getuid()).pw_name,
        database=url.path.lstrip("/"),
        unix_sock=f"{socket_dir}/.s.PGSQL.5432",
    )


def cache() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


@app.get("/")
def index() -> str:
    return f"services app {NAME}\n"


@app.get("/env")
def env() -> str:
    return f"DATABASE_URL={os.environ.get('DATABASE_URL')} REDIS_URL={os.environ.get('REDIS_URL')}\n"


@app.get("/put/<key>/<value>")
def put(key: str, value: str) -> str:
    db = database()
    try:
        db.run("CREATE TABLE IF NOT EXISTS kv (key text PRIMARY KEY, value text)")
        db.run(
            "INSERT INTO kv VALUES (:key, :value) ON CONFLICT (key) DO UPDATE SET value = :value",
            key=key,
            value=value,
        )
    finally:
        db.close()
    cache().set(key, value)
    return "ok\n"


@app.get("/get/<key>")
def get(key: str) -> str:
    db = database()
    try:
        db.run("CREATE TABLE IF NOT EXISTS kv (key text PRIMARY KEY, value text)")
        rows = db.run("SELECT value FROM kv WHERE key = :key", key=key)
    finally:
        db.close()
    return f"pg={rows[0][0] if rows else None} redis={cache().get(key)}\n"
