"""Test app of the processes tests (tests/integration/test_processes.py): a web page naming its version
(version.txt, written by the test when it makes a version) and a health route; worker.py is its process."""

from pathlib import Path

from flask import Flask

VERSION = Path(__file__).with_name("version.txt").read_text().split()[0]

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"version {VERSION}"


@app.get("/health")
def health() -> str:
    return "ok"
