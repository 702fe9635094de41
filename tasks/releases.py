"""The releases on a server: list them, roll back to one, show the deploy history."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from json import dumps, loads

from fabric import Connection

from tasks import history as deploy_history
from tasks import probe, recap, runtime, settings
from tasks.cli import CHECK, host_task
from tasks.converge import converge, read_only
from tasks.facts import Facts
from tasks.layout import Layout, app_paths
from tasks.remote import host_name
from tasks.shell import Script, line
from tasks.steps import rollback as rollback_step
from tasks.steps.push import Releases


@dataclass(frozen=True)
class ReleaseRow:
    """A release as `fab releases` lists it: a line of its table, an object of its JSON (these keys, in this
    order); made from what the probe found (facts.ReleaseDir)."""

    id: str
    time: str  # UTC, ISO 8601
    user: str  # who deployed it (local user name on the control machine)
    host: str  # the control machine
    venv: str
    current: bool
    previous: bool  # live before the last switch: where `rollback` goes
    failed: str  # why it failed its deploy ("" if it did not)


def listing(facts: Facts, paths: Layout) -> list[ReleaseRow]:
    """The releases the probe found, oldest first."""
    current, previous = facts.link_name(paths.current), facts.link_name(paths.previous)
    releases = []
    for found in facts.of(Releases).releases:
        record = found.record
        stamp = found.id[:16]  # a release made before release.json existed: its id holds the time
        time = (
            record.get("time")
            or f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"
        )
        releases.append(
            ReleaseRow(
                found.id, time, record.get("user", ""), record.get("host", ""), record.get("venv", ""),
                current == found.id, previous == found.id, found.failed,
            )
        )  # fmt: skip
    return releases


def render(releases: list[ReleaseRow], as_json: bool = False) -> str:
    """A table for people, or one line of JSON (a list, oldest first) for scripts."""
    if as_json:
        return dumps([asdict(r) for r in releases])
    if not releases:
        return "no releases yet"
    rows = [("", "id", "time", "user", "")]
    for r in releases:
        mark = "*" if r.current else ("<" if r.previous else "")
        note = "current" if r.current else ("previous: rollback target" if r.previous else "")
        note = f"failed: {r.failed}" if r.failed and not r.current else note
        rows.append((mark, r.id, r.time, f"{r.user}@{r.host}" if r.host else r.user or "?", note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        ("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]).rstrip()
        for row in rows
    )


@host_task(
    help={
        "to": "the id of the release to go back to (see `fab releases`); default: the previous one",
        **CHECK,
    },
    rolling=True,
)
def rollback(c: Connection, to: str = "", check: bool = False) -> None:
    """Back to the previous release (or --to=ID): a symlink switch and a graceful reload, health-gated."""
    converge(c, (rollback_step.step(to),), action="rollback", health_gate=True, check=check)


@host_task(
    help={
        "json": "print one JSON document: an object keyed by host, each a list (id, time, user, host, venv,"
        " current, previous, failed)"
    }
)
def releases(c: Connection, json: bool = False) -> None:
    """List the releases on the server: id, when, who deployed it, which is current and previous."""
    if json:
        recap.to_stderr()
        RELEASES.expect(host_name(c))
    found = probe.look(c, "releases")
    if found is not None:
        _print(RELEASES, host_name(c), render(listing(found.facts, found.paths), as_json=json), json)


@host_task(
    help={
        "json": "print one JSON document: an object keyed by host, each a list of entries (time, user,"
        " release, action, result, detail)"
    }
)
def history(c: Connection, json: bool = False) -> None:
    """Show the deploy history: every deploy, rollback and restart, with who, when and the result."""
    if json:
        recap.to_stderr()
        HISTORY.expect(host_name(c))
    s = settings.load(c)
    show = Script(
        "history", {"HISTORY_FILE": app_paths(s).history_file}, runtime.SHOW, [line("show_history")]
    )
    stdout = read_only(c, "history", show)
    if stdout is not None:
        _print(HISTORY, host_name(c), deploy_history.render(deploy_history.parse(stdout), as_json=json), json)


class Documents:
    """The --json output of releases and history: one document for all hosts, an object keyed by host
    (in the order the hosts were given), each host's value its list, or null when it could not be read
    (its recap line says why); printed once on stdout after the last host (recap.at_end)."""

    def __init__(self) -> None:
        self.lists: dict[str, list | None] = {}
        self.lock = threading.Lock()

    def expect(self, host: str) -> None:
        with self.lock:
            self.lists.setdefault(host, None)
        recap.at_end(self.show)

    def add(self, host: str, entries: list) -> None:
        with self.lock:
            self.lists[host] = entries

    def document(self) -> str:
        with self.lock:
            hosts = sorted(self.lists, key=recap.position)
            return dumps({host: self.lists[host] for host in hosts})

    def show(self) -> None:
        print(recap.concealed(self.document()), flush=True)


RELEASES, HISTORY = Documents(), Documents()  # each task's document of this run


def _print(documents: Documents, host: str, text: str, as_json: bool) -> None:
    """A host's list into the run's one JSON document (see Documents); a table with each line led by the
    host."""
    if as_json:
        documents.add(host, loads(text))
    else:
        for line_ in text.splitlines():
            recap.note(host, line_)
