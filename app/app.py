"""The sample Flask app: an index page and a health route for the deploy's health check."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "flask index page"


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
