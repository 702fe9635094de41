"""The deploy history on the server: one appended line per deploy, rollback or restart.

A tab-separated file under the app's directory (`history.log`): time (server clock, UTC), local user,
release id, action, result, detail. Lines are only ever appended.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass

FILE = "history.log"
FIELDS = ("time", "user", "release", "action", "result", "detail")


@dataclass(frozen=True)
class Entry:
    time: str
    user: str
    release: str
    action: str
    result: str
    detail: str = ""


def append_function(app_dir: str) -> str:
    """Shell defining `history_append USER RELEASE ACTION RESULT DETAIL`: appends one entry, stamped with
    the server's UTC time. Fields come as arguments (never parsed by the shell); tabs and newlines in
    them become spaces and an empty field becomes "-", so every line keeps its six columns."""
    path = shlex.quote(f"{app_dir}/{FILE}")
    return f"""history_append() {{
    local line field
    line=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for field in "$@"; do
        field=$(printf '%s' "$field" | tr -s '\\t\\r\\n' ' ' | sed 's/^ *//; s/ *$//')
        line="$line"$'\\t'"${{field:--}}"
    done
    printf '%s\\n' "$line" >> {path}
}}"""


def parse(text: str) -> list[Entry]:
    """The entries of a history file, oldest first; malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        parts = line.split("\t")
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
