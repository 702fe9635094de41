"""What a run prints: a line per step as it is reported, and one recap line per host at the very end.

They go to stdout, or to stderr when a task prints a machine-readable document on stdout (--json) or
leaves it to a command's output (exec). The exit code: 0 when every host succeeded, 75 when the only
failures are locks held by other runs (try again later), the command's exit code when the only failures
are commands of the user's that exited non-zero (exec: the first host's), 1 otherwise.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.lock import LOCKED_EXIT

if TYPE_CHECKING:
    from tasks.remote import Marker


@dataclass
class Tally:
    ok: int = 0
    changed: int = 0
    failed: int = 0


# One tally per host for the whole `fab` run: Fabric calls the task once per host, the recap comes last.
_tallies: dict[str, Tally] = {}
_locked: set[str] = set()  # hosts whose run failed on another run's lock
_exited: dict[str, int] = {}  # hosts whose run failed by a user's command exiting non-zero: its code
_stream = "stdout"


def to_stderr() -> None:
    """Print step and recap lines on stderr, leaving stdout to the task's document."""
    global _stream
    _stream = "stderr"


def _out():
    return getattr(sys, _stream)


def step_line(host: str, step: str, status: str, message: str = "") -> str:
    line = f"{host}  {step}  {status}"
    return f"{line}: {message}" if message else line


def recap_line(host: str, tally: Tally) -> str:
    return f"{host}  ok={tally.ok} changed={tally.changed} failed={tally.failed}"


def report(host: str, step: str, status: str, message: str = "") -> None:
    """Count a step's outcome (ok, changed or failed) for the recap and print it."""
    tally = _tallies.setdefault(host, Tally())
    setattr(tally, status, getattr(tally, status) + 1)
    print(step_line(host, step, status, message), file=_out(), flush=True)


def locked(host: str, message: str) -> None:
    """The run could not take the server's lock: a failure with its own exit code."""
    _locked.add(host)
    report(host, "lock", "failed", message)


def report_failure(host: str, marker: Marker) -> None:
    """A `::fail STEP message` line as the step's failure; a held lock fails the run with exit code 75."""
    if marker.step == "lock":
        locked(host, marker.text)
    else:
        report(host, marker.step, "failed", marker.text)


def exited(host: str, step: str, code: int) -> None:
    """A command of the user's (exec) ended with `code`: the step is ok at 0, else failed, and the run
    exits with that code when nothing else failed."""
    if code == 0:
        report(host, step, "ok")
    else:
        _exited.setdefault(host, code if 0 < code < 256 else 1)  # what an exit code can be
        report(host, step, "failed", f"the command exited {code}")


def note(host: str, message: str) -> None:
    """A line about a host that is no step outcome (e.g. "nothing to change")."""
    print(f"{host}  {message}", file=_out(), flush=True)


def failed_hosts() -> list[str]:
    return [host for host, tally in _tallies.items() if tally.failed]


def exit_code(failed: list[str]) -> int:
    """The run's exit code, some hosts having failed: see the top of this module."""
    if set(failed) <= _locked:
        return LOCKED_EXIT
    if set(failed) <= set(_exited):
        return _exited[failed[0]]
    return 1


def _finish() -> None:
    if not _tallies:
        return
    print(file=_out())
    for host, tally in _tallies.items():
        print(recap_line(host, tally), file=_out())
    sys.stdout.flush()
    sys.stderr.flush()
    # Tasks do not raise on a failed host, so the next hosts still run; the exit code comes from here.
    failed = failed_hosts()
    if failed:
        os._exit(exit_code(failed))


atexit.register(_finish)
