"""The app's Procfile (app.src/Procfile), read in this one place: when app.processes is unset, its entries
are the app's processes, but `web` (the kit's gunicorn serves the app) and `release` (the release command,
when deploy.release_command is unset).

A line is `NAME: COMMAND` (Heroku's format); blank lines and lines starting with `#` are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

NAME = "Procfile"
# A process's name: it goes into supervisor's program name, a file name and a log's name.
PROCESS_NAME = r"[a-z0-9][a-z0-9-]{0,30}"
WEB, RELEASE = "web", "release"


class ProcfileError(ValueError):
    """A Procfile the kit cannot read; one line naming the line and the fix."""


@dataclass(frozen=True)
class Procfile:
    """What a Procfile says, as the kit takes it."""

    processes: dict[str, str] = field(default_factory=dict)  # name -> command, without web and release
    release: str | None = None  # its release line's command
    web: bool = False  # it has a web line (which the kit's gunicorn replaces)

    def notes(self) -> tuple[str, ...]:
        """What to tell people about how the kit took it."""
        if not self.web:
            return ()
        return ("the Procfile's web line is ignored: the kit's gunicorn serves the app (app.module)",)


def read(src: Path) -> Procfile | None:
    """The Procfile of the app's directory, or None when it has none; ProcfileError for a line the kit
    cannot take (it names the line)."""
    path = src / NAME
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProcfileError(f"{path}: cannot be read ({error}): make it a UTF-8 text file") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        name, colon, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not colon or not command:
            raise ProcfileError(f"{where}: no `name: command` line: write it so, or remove it")
        if not re.fullmatch(PROCESS_NAME, name, re.ASCII):
            raise ProcfileError(
                f"{where}: {name!r} is no process name (lowercase letters, digits and -): rename it"
            )
        if name in found:
            raise ProcfileError(f"{where}: a second {name!r} line: keep one")
        found[name] = command
    web, release = found.pop(WEB, None), found.pop(RELEASE, None)
    return Procfile(found, release, web is not None)
