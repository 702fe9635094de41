"""The deploy history on the server: one appended entry per deploy, push, rollback and restart.

A file under the app's directory (`history.log`), one JSON object a line (written by
runtime/history.py): time (server clock, UTC), local user, release id, action, result, detail. Lines
are only ever appended.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Entry:
    time: str
    user: str
    release: str
    action: str
    result: str
    detail: str = ""


FIELDS = tuple(f.name for f in fields(Entry))


def parse(text: str) -> list[Entry]:
    """The entries of a history file, oldest first; malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
            entries.append(Entry(**{name: str(record[name]) for name in FIELDS}))
        except (ValueError, TypeError, KeyError):
            parts = line.split("\t")  # written by flaskdeploy before the history was JSON
            if len(parts) == len(FIELDS):
                entries.append(Entry(*parts))
    return entries


def render(entries: list[Entry], as_json: bool = False) -> str:
    if as_json:
        return json.dumps([asdict(e) for e in entries])
    if not entries:
        return "no deploys recorded yet"
    rows = [FIELDS, *((e.time, e.user, e.release, e.action, e.result, e.detail) for e in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(FIELDS) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )
