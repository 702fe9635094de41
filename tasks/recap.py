"""What a run prints: a line per step as it is reported, and one recap line per host at the very end.

They go to stdout, or to stderr when a task prints a machine-readable document on stdout (--json) or
leaves it to a command's output (exec). The exit code: 0 when every host succeeded, 75 when the only
failures are locks held by other runs (try again later), the command's exit code when the only failures
are commands of the user's that exited non-zero (exec: the first host's), 1 otherwise; a check run
(--check) that fails nowhere exits 3 when some step would change something.

Fabric's calls of a task for several hosts run at once (tasks/cli.py's Executor, threads): every change
to this module's state is made under one lock, and every line is written whole, in one write, flushed,
so that the lines of hosts never mix within a line. The recap lists the hosts in the order they were
given, the failed ones last, each failed one with why (its first failure).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.lock import LOCKED_EXIT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from tasks.remote import Marker


# What replaces a value of app.env wherever the kit prints one (an app's error line, a check run's diff).
MASK = "****"
MASKED_FROM = 4  # shorter values ("1", "on") would mask half of every line, and tell little

# A check run's word for `changed` (tasks/check.py): counted as changed, said as it is.
WOULD_CHANGE = "would change"
EXIT_WOULD_CHANGE = 3  # a check run that found something to change, and no failure


@dataclass
class Tally:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    checking: bool = False  # a check run: its changes are what would change


# One tally per host for the whole `fab` run: Fabric calls the task once per host, the recap comes last.
_tallies: dict[str, Tally] = {}
_locked: set[str] = set()  # hosts whose run failed on another run's lock
_exited: dict[str, int] = {}  # hosts whose run failed by a user's command exiting non-zero: its code
_failures: dict[str, list[tuple[str, str]]] = {}  # each host's failed steps: (step, message)
_at_end: list[Callable[[], None]] = []  # what prints a task's one document for all hosts (see at_end)
_seconds: dict[str, float] = {}  # each host's runs, timed on the control machine (see timed)
_stream = "stdout"
_order: list[str] = []  # the hosts in the order they were given (see order)
_not_started: dict[str, str] = {}  # hosts a rollout stopped before: why (see not_started)
_releases: dict[str, str | None] = {}  # each host's live release as this run left it (see release)
_hidden: set[str] = set()  # values that no line shows: app.env's (see hide)
_lock = threading.RLock()  # guards all of the above, and each line written


def to_stderr() -> None:
    """Print step and recap lines on stderr, leaving stdout to the task's document."""
    global _stream
    _stream = "stderr"


def _out():
    return getattr(sys, _stream)


def masked(text: str, values: Iterable[str]) -> str:
    """text with every (long enough) value replaced by MASK, the longest first."""
    for value in sorted((v for v in values if len(v) >= MASKED_FROM), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def plain(text: str) -> str:
    """Text as a terminal may show it: no control characters (what a server sends could hold escapes)."""
    return "".join(ch if ch.isprintable() else " " if ch.isspace() else "?" for ch in text)


def hide(values: Iterable[str]) -> None:
    """No line of this run shows these values (app.env's): an app's error lines quote its settings."""
    with _lock:
        _hidden.update(values)


def concealed(text: str) -> str:
    """text with the hidden values masked (a JSON document the run prints: it escapes control characters)."""
    with _lock:
        return masked(text, _hidden)


def shown(text: str) -> str:
    """A line as it is printed: the hidden values masked, no control characters."""
    return plain(concealed(text))


def say(text: str) -> None:
    """Print a line now, as `shown`. A reader that went away (`fab deploy | head`) must not stop the run
    midway on the server: what it no longer reads is dropped."""
    with _lock:  # one write of the whole line, flushed, before any other thread's
        try:
            out = _out()
            out.write(f"{shown(text)}\n")
            out.flush()
        except BrokenPipeError:
            setattr(sys, _stream, open(os.devnull, "w"))  # noqa: SIM115 - for the rest of the process


def duration(seconds: float) -> str:
    """A time as the lines say it: `3.1 s`, `2 min 5.3 s`."""
    tenths = round(seconds, 1)
    if tenths < 60:
        return f"{tenths:.1f} s"
    minutes, rest = divmod(tenths, 60)
    return f"{int(minutes)} min {rest:.1f} s"


def step_line(
    host: str, step: str, status: str, message: str = "", seconds: float | None = None, width: int = 0
) -> str:
    """`HOST  STEP  STATUS`, then `: MESSAGE` or the step's time; `width`: that of the `STEP  STATUS`
    column, so that the times of a run's lines line up."""
    line = f"{host}  {step}  {status}"
    if message:
        return f"{line}: {message}"
    if seconds is None:
        return line
    return f"{host}  {f'{step}  {status}':<{width}}  {duration(seconds):>7}"


def recap_line(host: str, tally: Tally, seconds: float | None = None, why: str = "") -> str:
    """`HOST  ok=N changed=N failed=N`, then `  in T s`: the host's run on the control machine; then, for
    a failed host, `  (STEP: MESSAGE)`: its first failure."""
    changed = WOULD_CHANGE if tally.checking else "changed"
    line = f"{host}  ok={tally.ok} {changed}={tally.changed} failed={tally.failed}"
    line = line if seconds is None else f"{line}  in {duration(seconds)}"
    return f"{line}  ({why})" if why else line


def report(
    host: str, step: str, status: str, message: str = "", *, seconds: float | None = None, width: int = 0
) -> None:
    """Count a step's outcome (ok, changed or failed) for the recap and print it (with its time on the
    server, when given: see `step_line`)."""
    with _lock:
        tally = _tallies.setdefault(host, Tally())
        counted = "changed" if status == WOULD_CHANGE else status
        setattr(tally, counted, getattr(tally, counted) + 1)
        if status == "failed":
            _failures.setdefault(host, []).append((step, message))
        say(step_line(host, step, status, message, seconds, width))


def timed(host: str, seconds: float) -> None:
    """A run on the host took `seconds` (on the control machine): its recap line ends with their sum."""
    with _lock:
        _seconds[host] = _seconds.get(host, 0.0) + seconds


def checking(host: str) -> None:
    """This host's run is a check run: its recap says `would change`, and changes set the exit code."""
    with _lock:
        _tallies.setdefault(host, Tally()).checking = True


def locked(host: str, message: str) -> None:
    """The run could not take the server's lock: a failure with its own exit code."""
    with _lock:
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
        return
    with _lock:
        _exited.setdefault(host, code if 0 < code < 256 else 1)  # what an exit code can be
        report(host, step, "failed", f"the command exited {code}")


def note(host: str, message: str) -> None:
    """A line about a host that is no step outcome (e.g. "nothing to change")."""
    say(f"{host}  {message}")


def failures(host: str) -> list[tuple[str, str]]:
    """The steps that failed on a host so far in this run, in order: (step, message)."""
    with _lock:
        return list(_failures.get(host, ()))


def at_end(show: Callable[[], None]) -> None:
    """Have `show` print a task's one document for all hosts (status: a table, or JSON) once, after the
    last host and before the recap lines: Fabric calls a task once per host, so it collects, then shows."""
    with _lock:
        if show not in _at_end:
            _at_end.append(show)


def order(hosts: list[str]) -> None:
    """The hosts as given (-H, deploy.hosts or a group): the recap and the documents keep this order."""
    with _lock:
        _order.extend(host for host in hosts if host not in _order)


def position(host: str) -> int:
    """Where a host comes in the order given (hosts not given: after them, in the order they came)."""
    with _lock:
        if host not in _order:
            _order.append(host)
        return _order.index(host)


def not_started(host: str, why: str) -> None:
    """A host a rollout stopped before: its recap line says so (it is no failure of its own)."""
    with _lock:
        _not_started[host] = why


def release(host: str, release_id: str | None) -> None:
    """The host's live release as this run leaves it (as it found it, or the one it switched to)."""
    with _lock:
        _releases[host] = release_id


def releases() -> dict[str, str | None]:
    with _lock:
        return dict(_releases)


def failed_hosts() -> list[str]:
    with _lock:
        return [host for host, tally in _tallies.items() if tally.failed]


def ordered() -> list[str]:
    """The hosts of the recap: in the order given, those that failed last."""
    with _lock:
        hosts = sorted(_tallies, key=position)
        return [h for h in hosts if not _tallies[h].failed] + [h for h in hosts if _tallies[h].failed]


def _why(host: str) -> str:
    """A failed host's first failure, for its recap line: `STEP: MESSAGE`."""
    failed = _failures.get(host)
    if not failed:
        return ""
    step, message = failed[0]
    return f"{step}: {message}" if message else f"{step} failed"


def exit_code(failed: list[str]) -> int:
    """The run's exit code, some hosts having failed: see the top of this module."""
    if set(failed) <= _locked:
        return LOCKED_EXIT
    if set(failed) <= set(_exited):
        return _exited[failed[0]]
    return 1


def _finish() -> None:
    with _lock:  # a thread still running (Ctrl-C) prints no line into the recap
        printed = print_recap()
        sys.stdout.flush()
        sys.stderr.flush()
        if not printed:
            return
        # Tasks do not raise on a failed host, so the next hosts still run; the exit code comes from here.
        failed = failed_hosts()
        if failed:
            os._exit(exit_code(failed))
        if any(tally.checking and tally.changed for tally in _tallies.values()):
            os._exit(EXIT_WOULD_CHANGE)


def print_recap() -> bool:
    """The tasks' documents (see at_end), then a recap line per host: in the order given, the hosts a
    rollout stopped before next, the failed ones last, each with why. False when no host was acted on."""
    with _lock:
        for show in _at_end:
            show()
        if not _tallies and not _not_started:
            return False
        say("")
        hosts = ordered()
        done = [h for h in hosts if not _tallies[h].failed]
        for host in done:
            say(recap_line(host, _tallies[host], _seconds.get(host)))
        for host in sorted(set(_not_started) - set(_tallies), key=position):
            say(f"{host}  not started: {_not_started[host]}")
        for host in hosts[len(done) :]:
            say(recap_line(host, _tallies[host], _seconds.get(host), _why(host)))
        return True


atexit.register(_finish)
