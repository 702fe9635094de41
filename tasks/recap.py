"""What a run prints: a line per step as it is reported, and one recap line per host at the very end."""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass


@dataclass
class Tally:
    ok: int = 0
    changed: int = 0
    failed: int = 0


# One tally per host for the whole `fab` run: Fabric calls the task once per host, the recap comes last.
_tallies: dict[str, Tally] = {}


def step_line(host: str, step: str, status: str, message: str = "") -> str:
    line = f"{host}  {step}  {status}"
    return f"{line}: {message}" if message else line


def recap_line(host: str, tally: Tally) -> str:
    return f"{host}  ok={tally.ok} changed={tally.changed} failed={tally.failed}"


def report(host: str, step: str, status: str, message: str = "") -> None:
    """Count a step's outcome (ok, changed or failed) for the recap and print it."""
    tally = _tallies.setdefault(host, Tally())
    setattr(tally, status, getattr(tally, status) + 1)
    print(step_line(host, step, status, message), flush=True)


def note(host: str, message: str) -> None:
    """A line about a host that is no step outcome (e.g. "nothing to change")."""
    print(f"{host}  {message}", flush=True)


def failed_hosts() -> list[str]:
    return [host for host, tally in _tallies.items() if tally.failed]


def _finish() -> None:
    if not _tallies:
        return
    print()
    for host, tally in _tallies.items():
        print(recap_line(host, tally))
    sys.stdout.flush()
    sys.stderr.flush()
    # Tasks do not raise on a failed host, so the next hosts still run; the exit code comes from here.
    if failed_hosts():
        os._exit(1)


atexit.register(_finish)
