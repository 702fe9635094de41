"""The pages: / (no database needed), /entries (read and add)."""

import flask_mail  # noqa: F401  (the sdist-only dependency: importable means installed)
from flask import Blueprint, request

from flaskr import VERSION
from flaskr.db import get_db

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    return f"flaskr {VERSION}\n"


@bp.get("/entries")
def entries() -> str:
    rows = get_db().execute("SELECT body FROM entry ORDER BY id").fetchall()
    return "".join(f"{body}\n" for (body,) in rows)


@bp.post("/entries")
def add() -> tuple[str, int]:
    db = get_db()
    db.execute("INSERT INTO entry (body) VALUES (?)", (request.form["body"],))
    db.commit()
    return "added\n", 201
