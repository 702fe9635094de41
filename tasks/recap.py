"""What a run prints: a line per step as it is reported, and one recap line per host at the very end.

A `fab` command is one `Run`: its hosts, each a `HostRun` holding its steps' results as they were reported
(ok, changed, failed or would change, and why), its time, its live release, why a rollout did not start
it. Its tallies, its recap lines, its failed hosts and its exit code are derived from those results.

The lines go to stdout, or to stderr when a task prints a machine-readable document on stdout (--json) or
leaves it to a command's output (exec). The exit code: 0 when every host succeeded, 75 when the only
failures are locks held by other runs (try again later), the command's exit code when the only failures
are commands of the user's that exited non-zero (exec: the first host's), 1 otherwise; a check run
(--check) that fails nowhere exits 3 when some step would change something.

Fabric calls a task once per host, handing it a Connection and nothing else, and tasks/cli.py's Executor
runs those calls at once, in threads: the run is this process's one `current`, and the functions of this
module are calls on it. Every change to a run is made under its lock, and every line is written whole, in
one write, flushed, so that the lines of hosts never mix within a line. The recap lists the hosts in the
order they were given, the failed ones last, each failed one with why (its first failure).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
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
STATUSES = ("ok", "changed", "failed", WOULD_CHANGE)  # a step's outcomes


def masked(text: str, values: Iterable[str]) -> str:
    """text with every (long enough) value replaced by MASK, the longest first."""
    for value in sorted((v for v in values if len(v) >= MASKED_FROM), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def plain(text: str) -> str:
    """Text as a terminal may show it: no control characters (what a server sends could hold escapes)."""
    return "".join(ch if ch.isprintable() else " " if ch.isspace() else "?" for ch in text)


def duration(seconds: float) -> str:
    """A time as the lines say it: `3.1 s`, `2 min 5.3 s`."""
    tenths = round(seconds, 1)
    if tenths < 60:
        return f"{tenths:.1f} s"
    minutes, rest = divmod(tenths, 60)
    return f"{int(minutes)} min {rest:.1f} s"


@dataclass
class Tally:
    """A host's counts, as its recap line says them."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    checking: bool = False  # a check run: its changes are what would change


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


@dataclass(frozen=True)
class StepResult:
    """A step's outcome on a host, as it was reported: its status (one of STATUSES) and its message."""

    step: str
    status: str
    message: str = ""
    locked: bool = False  # a failure to take the server's lock: another run holds it
    command_exit: int | None = None  # a failure of a command of the user's (exec): its exit code

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"{self.step}: {self.status!r} is no step outcome ({', '.join(STATUSES)})")


@dataclass
class HostRun:
    """A host's part of a run: its steps' results, in the order reported, and what else its recap says."""

    name: str
    results: list[StepResult] = field(default_factory=list)
    checking: bool = False  # a check run: its changes are what would change (see Run.checking)
    seconds: float | None = None  # its runs' time on the control machine (see Run.timed)
    release: str | None = None  # its live release as this run left it (see Run.release)
    not_started: str | None = None  # why a rollout stopped before it (see Run.not_started)

    @property
    def acted(self) -> bool:
        """Whether the run acted on the host: it has a recap line with counts."""
        return bool(self.results) or self.checking

    @property
    def failures(self) -> list[StepResult]:
        return [result for result in self.results if result.status == "failed"]

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def locked(self) -> bool:
        """Whether a step failed on another run's lock."""
        return any(result.locked for result in self.results)

    @property
    def command_exit(self) -> int | None:
        """The exit code of the first command of the user's that failed, if one did."""
        return next((r.command_exit for r in self.results if r.command_exit is not None), None)

    @property
    def tally(self) -> Tally:
        """Its counts, a step's result counted once: `would change` as changed."""
        counts = Counter(
            "changed" if result.status == WOULD_CHANGE else result.status for result in self.results
        )
        return Tally(counts["ok"], counts["changed"], counts["failed"], self.checking)

    @property
    def why(self) -> str:
        """Its first failure, for its recap line: `STEP: MESSAGE`; "" when none failed."""
        first = next(iter(self.failures), None)
        if first is None:
            return ""
        return f"{first.step}: {first.message}" if first.message else f"{first.step} failed"

    def recap_line(self) -> str:
        return recap_line(self.name, self.tally, self.seconds, self.why)


class Run:
    """What one `fab` command does: its hosts, where its lines go, the values no line shows, what it prints
    at the end; and, derived from its hosts' step results, its recap and its exit code."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostRun] = {}  # the hosts acted on in the order they first acted (_acting)
        self.given: list[str] = []  # the hosts in the order they were given (see order)
        self.stream = "stdout"  # where the lines go (see to_stderr)
        self.hidden: set[str] = set()  # values that no line shows: app.env's (see hide)
        self.documents: list[Callable[[], None]] = []  # what prints a task's one document (see at_end)
        self.lock = threading.RLock()  # guards all of the above, and each line written

    # Lines ---------------------------------------------------------------------------------------------

    def to_stderr(self) -> None:
        """Print step and recap lines on stderr, leaving stdout to the task's document."""
        with self.lock:
            self.stream = "stderr"

    def hide(self, values: Iterable[str]) -> None:
        """No line of this run shows these values (app.env's): an app's error lines quote its settings."""
        with self.lock:
            self.hidden.update(values)

    def concealed(self, text: str) -> str:
        """text with the hidden values masked (a JSON document the run prints: it escapes control
        characters)."""
        with self.lock:
            return masked(text, self.hidden)

    def shown(self, text: str) -> str:
        """A line as it is printed: the hidden values masked, no control characters."""
        return plain(self.concealed(text))

    def say(self, text: str) -> None:
        """Print a line now, as `shown`. A reader that went away (`fab deploy | head`) must not stop the run
        midway on the server: what it no longer reads is dropped."""
        with self.lock:  # one write of the whole line, flushed, before any other thread's
            try:
                out = getattr(sys, self.stream)
                out.write(f"{self.shown(text)}\n")
                out.flush()
            except BrokenPipeError:
                setattr(sys, self.stream, open(os.devnull, "w"))  # noqa: SIM115 - for the rest of the process

    def note(self, host: str, message: str) -> None:
        """A line about a host that is no step outcome (e.g. "nothing to change")."""
        self.say(f"{host}  {message}")

    # What the hosts did --------------------------------------------------------------------------------

    def _host(self, name: str) -> HostRun:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = HostRun(name)
        return host

    def _acting(self, name: str) -> HostRun:
        """The host, about to act: the first time, it moves after the hosts that acted before it, so that
        `hosts` keeps those acted on in the order they first acted (the recap's for hosts not given, and
        whose command's exit code is the run's)."""
        host = self._host(name)
        if not host.acted:
            self.hosts[name] = self.hosts.pop(name)
        return host

    def _record(self, host: str, result: StepResult, seconds: float | None = None, width: int = 0) -> None:
        """Keep a step's result for the host's recap and print its line (see `step_line`)."""
        with self.lock:
            self._acting(host).results.append(result)
            self.say(step_line(host, result.step, result.status, result.message, seconds, width))

    def report(
        self,
        host: str,
        step: str,
        status: str,
        message: str = "",
        *,
        seconds: float | None = None,
        width: int = 0,
    ) -> None:
        """A step's outcome (ok, changed, failed or would change), printed with its time on the server when
        given."""
        self._record(host, StepResult(step, status, message), seconds, width)

    def locked(self, host: str, message: str) -> None:
        """The run could not take the server's lock: a failure with its own exit code."""
        self._record(host, StepResult("lock", "failed", message, locked=True))

    def exited(self, host: str, step: str, code: int) -> None:
        """A command of the user's (exec) ended with `code`: the step is ok at 0, else failed, and the run
        exits with that code when nothing else failed."""
        if code == 0:
            self.report(host, step, "ok")
            return
        kept = code if 0 < code < 256 else 1  # what an exit code can be
        self._record(host, StepResult(step, "failed", f"the command exited {code}", command_exit=kept))

    def checking(self, host: str) -> None:
        """This host's run is a check run: its recap says `would change`, and changes set the exit code."""
        with self.lock:
            self._acting(host).checking = True

    def timed(self, host: str, seconds: float) -> None:
        """A run on the host took `seconds` (on the control machine): its recap line ends with their sum."""
        with self.lock:
            timed = self._host(host)
            timed.seconds = (timed.seconds or 0.0) + seconds

    def release(self, host: str, release_id: str | None) -> None:
        """The host's live release as this run leaves it (as it found it, or the one it switched to)."""
        with self.lock:
            self._host(host).release = release_id

    def not_started(self, host: str, why: str) -> None:
        """A host a rollout stopped before: its recap line says so (it is no failure of its own)."""
        with self.lock:
            self._host(host).not_started = why

    def failures(self, host: str) -> list[tuple[str, str]]:
        """The steps that failed on a host so far, in order: (step, message)."""
        with self.lock:
            known = self.hosts.get(host)
            return [(result.step, result.message) for result in known.failures] if known else []

    def releases(self) -> dict[str, str | None]:
        """Each host's live release as this run left it (None: none known)."""
        with self.lock:
            return {name: host.release for name, host in self.hosts.items()}

    def failed_hosts(self) -> list[str]:
        """The hosts a step failed on, in the order they first acted."""
        with self.lock:
            return [name for name, host in self.hosts.items() if host.failed]

    # Order, documents, recap, exit code ----------------------------------------------------------------

    def order(self, hosts: list[str]) -> None:
        """The hosts as given (-H, deploy.hosts or a group): the recap and the documents keep this order."""
        with self.lock:
            self.given.extend(host for host in hosts if host not in self.given)

    def position(self, host: str) -> int:
        """Where a host comes in the order given (hosts not given: after them, in the order they came)."""
        with self.lock:
            if host not in self.given:
                self.given.append(host)
            return self.given.index(host)

    def at_end(self, show: Callable[[], None]) -> None:
        """Have `show` print a task's one document for all hosts (status: a table, or JSON) once, after the
        last host and before the recap lines: Fabric calls a task once per host, so it collects, then
        shows."""
        with self.lock:
            if show not in self.documents:
                self.documents.append(show)

    def ordered(self) -> list[str]:
        """The hosts of the recap: those acted on, in the order given, those that failed last."""
        with self.lock:
            hosts = sorted((name for name, host in self.hosts.items() if host.acted), key=self.position)
            failed = [name for name in hosts if self.hosts[name].failed]
            return [name for name in hosts if name not in failed] + failed

    def print_recap(self) -> bool:
        """The tasks' documents (see at_end), then a recap line per host: in the order given, the hosts a
        rollout stopped before next, the failed ones last, each with why. False when no host was acted
        on."""
        with self.lock:
            for show in self.documents:
                show()
            hosts = [self.hosts[name] for name in self.ordered()]
            waiting = [h for h in self.hosts.values() if h.not_started is not None and not h.acted]
            if not hosts and not waiting:
                return False
            self.say("")
            for host in (h for h in hosts if not h.failed):
                self.say(host.recap_line())
            for host in sorted(waiting, key=lambda h: self.position(h.name)):
                self.say(f"{host.name}  not started: {host.not_started}")
            for host in (h for h in hosts if h.failed):
                self.say(host.recap_line())
            return True

    def exit_code(self) -> int:
        """The code the run exits with, from its hosts' step results: see the top of this module."""
        with self.lock:
            failed = [self.hosts[name] for name in self.failed_hosts()]
            if not failed:
                would_change = any(host.checking and host.tally.changed for host in self.hosts.values())
                return EXIT_WOULD_CHANGE if would_change else 0
            if all(host.locked for host in failed):
                return LOCKED_EXIT
            codes = [host.command_exit for host in failed]
            if None not in codes:
                return codes[0]
            return 1


# The run of this process: Fabric hands a task a Connection, nothing else (see the top of this module).
current = Run()


def to_stderr() -> None:
    """Print step and recap lines on stderr, leaving stdout to the task's document."""
    current.to_stderr()


def hide(values: Iterable[str]) -> None:
    """No line of this run shows these values (app.env's): an app's error lines quote its settings."""
    current.hide(values)


def concealed(text: str) -> str:
    """text with the hidden values masked (a JSON document the run prints: it escapes control characters)."""
    return current.concealed(text)


def shown(text: str) -> str:
    """A line as it is printed: the hidden values masked, no control characters."""
    return current.shown(text)


def say(text: str) -> None:
    """Print a line now, whole, as `shown` (see Run.say)."""
    current.say(text)


def report(
    host: str, step: str, status: str, message: str = "", *, seconds: float | None = None, width: int = 0
) -> None:
    """Keep a step's outcome (ok, changed, failed or would change) for the recap and print it (with its
    time on the server, when given: see `step_line`)."""
    current.report(host, step, status, message, seconds=seconds, width=width)


def timed(host: str, seconds: float) -> None:
    """A run on the host took `seconds` (on the control machine): its recap line ends with their sum."""
    current.timed(host, seconds)


def checking(host: str) -> None:
    """This host's run is a check run: its recap says `would change`, and changes set the exit code."""
    current.checking(host)


def locked(host: str, message: str) -> None:
    """The run could not take the server's lock: a failure with its own exit code."""
    current.locked(host, message)


def report_failure(host: str, marker: Marker) -> None:
    """A `::fail STEP message` line as the step's failure; a held lock fails the run with exit code 75."""
    if marker.step == "lock":
        locked(host, marker.text)
    else:
        report(host, marker.step, "failed", marker.text)


def exited(host: str, step: str, code: int) -> None:
    """A command of the user's (exec) ended with `code`: the step is ok at 0, else failed, and the run
    exits with that code when nothing else failed."""
    current.exited(host, step, code)


def note(host: str, message: str) -> None:
    """A line about a host that is no step outcome (e.g. "nothing to change")."""
    current.note(host, message)


def failures(host: str) -> list[tuple[str, str]]:
    """The steps that failed on a host so far in this run, in order: (step, message)."""
    return current.failures(host)


def at_end(show: Callable[[], None]) -> None:
    """Have `show` print a task's one document for all hosts once, after the last host and before the
    recap lines (see Run.at_end)."""
    current.at_end(show)


def order(hosts: list[str]) -> None:
    """The hosts as given (-H, deploy.hosts or a group): the recap and the documents keep this order."""
    current.order(hosts)


def position(host: str) -> int:
    """Where a host comes in the order given (hosts not given: after them, in the order they came)."""
    return current.position(host)


def not_started(host: str, why: str) -> None:
    """A host a rollout stopped before: its recap line says so (it is no failure of its own)."""
    current.not_started(host, why)


def release(host: str, release_id: str | None) -> None:
    """The host's live release as this run leaves it (as it found it, or the one it switched to)."""
    current.release(host, release_id)


def releases() -> dict[str, str | None]:
    """Each host's live release as this run left it (None: none known)."""
    return current.releases()


def failed_hosts() -> list[str]:
    """The hosts a step failed on."""
    return current.failed_hosts()


def ordered() -> list[str]:
    """The hosts of the recap: in the order given, those that failed last."""
    return current.ordered()


def exit_code() -> int:
    """The code this run exits with: see the top of this module."""
    return current.exit_code()


def print_recap() -> bool:
    """The tasks' documents, then a recap line per host (see Run.print_recap). False when no host was acted
    on."""
    return current.print_recap()


def _finish() -> None:
    run = current
    with run.lock:  # a thread still running (Ctrl-C) prints no line into the recap
        printed = run.print_recap()
        sys.stdout.flush()
        sys.stderr.flush()
        # Tasks do not raise on a failed host, so the next hosts still run; the exit code comes from here.
        code = run.exit_code() if printed else 0
        if code:
            os._exit(code)


atexit.register(_finish)
