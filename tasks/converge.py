"""Converge a host: settings -> probe -> plan -> apply -> recap, over one SSH connection.

One probe (one remote command: the lock, the facts, the health) and pure plans; when a step has work,
one apply script (one more remote command, its files as a tar on stdin). A no-op run is the probe alone.
The probe takes the server's lock; the apply command keeps it and drops it when it ends.
"""

from __future__ import annotations

import getpass
import io
import socket
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabric import Connection

from tasks import check as checks
from tasks import lock, probe, recap, remote, runtime, settings
from tasks.facts import Facts
from tasks.layout import layout
from tasks.platform import UnsupportedPlatform, by_id
from tasks.remote import host_name
from tasks.settings import Settings
from tasks.shell import Script, line
from tasks.steps import APPLY, guards, runtime_values
from tasks.steps.model import Refused, Situation, Step, StepPlan

# Runs whose apply command is recorded in the server's history (runtime/history.py).
RECORDED = ("deploy", "push", "rollback", "restart")


def plan(situation: Situation, steps: Sequence[Step]) -> list[StepPlan]:
    """Every step's plan, in order; each planner sees the plans of the steps before it."""
    plans: list[StepPlan] = []
    for step in steps:
        plans.append(step.plan_for(replace(situation, earlier=tuple(plans))))
    return plans


def in_order(plans: Sequence[StepPlan], health_gate: bool) -> list[StepPlan | None]:
    """The plans in the order their steps run and are reported, None standing for the health gate: the
    steps that run after it (StepPlan.after_gate) follow it."""
    if not health_gate:
        return list(plans)
    return [*(p for p in plans if not p.after_gate), None, *(p for p in plans if p.after_gate)]


def apply_script(situation: Situation, plans: Sequence[StepPlan], action: str, health_gate: bool) -> Script:
    """One script running the acting steps in order, each reported; then the health gate and the steps
    that follow it, and only after all of it succeeded, the steps' cleanup (pruning) and the history
    entry."""
    paths = situation.layout
    values = {
        **runtime.globals_for(situation.settings, paths, situation.platform),
        **runtime_values(situation.settings, paths, situation.platform),
        **lock.values(paths.lock_root, paths.app, holder(situation.user, situation.control_host), action),
        "ACTION": action if action in RECORDED else "",
        "WHO": situation.user,
    }
    lines, installing = [line("begin_apply")], False
    for p in in_order(plans, health_gate):
        if p is None:  # the health gate, once the packages provision installs in the background are in
            lines += [line("await_packages")] if installing else []
            lines += [line("begin_step", "health"), line("gate"), line("end_step")]
            installing = False
        elif p.acts:
            if installing and not p.beside_packages:
                lines.append(line("await_packages"))
                installing = False
            lines += [line("begin_step", p.name), *p.commands, line("end_step")]
            installing = installing or p.installs_beside
    if installing:
        lines.append(line("await_packages"))
    lines += [command for p in plans if p.acts for command in p.cleanup]
    lines.append(line("finish_run"))
    return Script(f"apply script of a {action}", values, APPLY, lines)


def pack(files: Mapping[str, bytes | Path]) -> bytes:
    """A tar of the files the steps ship, owned by root, executable only where the source is."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in sorted(files.items()):
            data = content.read_bytes() if isinstance(content, Path) else content
            executable = isinstance(content, Path) and content.stat().st_mode & 0o100
            info = tarfile.TarInfo(name)
            mtime = content.stat().st_mtime if isinstance(content, Path) else time.time()
            info.size, info.mode, info.mtime = len(data), 0o755 if executable else 0o644, int(mtime)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def holder(user: str, control_host: str) -> str:
    """Who runs this, as the lock and the history name them: local user @ control machine."""
    return f"{user}@{control_host}"


class Progress:
    """The apply script's output as it comes (a sink for remote.execute), reported line by line: each
    acting step's line as its marker arrives, with its time on the server; before it, in pipeline order,
    the lines of the steps the plan left alone (`ok`, no time); after it, its notes. The first failure
    ends the report; `finish`, once the script ended, reports the steps left."""

    def __init__(self, host: str, names: Sequence[str], acting: set[str]) -> None:
        self.host, self.names, self.acting = host, list(names), set(acting)
        self.width = max((len(name) for name in self.names), default=0) + len("  changed")  # STEP  STATUS
        self.done = 0  # how many of `names` have their line
        self.notes: dict[str, list[str]] = {}  # the notes of steps whose line is yet to come
        self.changed = 0
        self.failed = False
        self.rest = b""  # the start of a line whose end is yet to come

    def __call__(self, chunk: bytes) -> None:
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        for text in lines:
            self.line(text.decode(errors="replace"))

    def line(self, text: str) -> None:
        marker = remote.parse_marker(text)
        if marker is None or self.failed:
            return
        if marker.kind != "note":
            self.reached(marker)
        elif marker.step in self.names[: self.done]:  # a note after its step's line (cleanup)
            recap.note(self.host, f"{marker.step}: {marker.text}")
        else:
            self.notes.setdefault(marker.step, []).append(marker.text)

    def reached(self, marker: remote.Marker) -> None:
        """A `::step` or `::fail` line: the steps before the next acting one are ok, then its outcome."""
        while self.done < len(self.names) and self.names[self.done] not in self.acting:
            recap.report(self.host, self.names[self.done], "ok")
            self.done += 1
        if marker.kind == "fail":  # its step's, or one before any step (the lock) or after all (cleanup)
            recap.report_failure(self.host, marker)
            self.failed = True
        elif self.done < len(self.names) and marker.step == self.names[self.done]:
            name = self.names[self.done]
            recap.report(self.host, name, marker.text, seconds=marker.seconds, width=self.width)
            self.changed += marker.text == "changed"
            self.done += 1
            for text in self.notes.pop(name, ()):
                recap.note(self.host, f"{name}: {text}")

    def finish(self, result: remote.Result) -> bool:
        """The script ended: its last line if it had no newline, then the steps left (ok, or the first
        acting one stopped); False when a step failed."""
        if self.rest:
            self.line(self.rest.decode(errors="replace"))
            self.rest = b""
        if self.failed:
            return False
        for name in self.names[self.done :]:
            if name in self.acting:  # the script ended without a word on it
                reason = result.last_error(otherwise=f"the apply script exited {result.code}")
                recap.report(self.host, name, "failed", f"stopped: {reason}")
                self.failed = True
                return False
            recap.report(self.host, name, "ok")
            self.done += 1
        if not self.changed:
            recap.note(self.host, "nothing changed")
        return True


def read_only(c: Connection, step: str, script: Script) -> str | None:
    """Run a read-only script (no lock, no history); report it as `step`; its stdout, None on failure."""
    host = host_name(c)
    result = probe.send(c, host, script)
    if result is None:
        return None
    if result.code != 0:
        recap.report(host, step, "failed", result.last_error())
        return None
    recap.report(host, step, "ok")
    return result.stdout


def converge(
    c: Connection, steps: Sequence[Step], *, action: str, health_gate: bool = False, check: bool = False
) -> bool:
    """Bring c's host to the state `steps` describe; report each step and count it for the recap.

    `action` names the run for the server's lock (taken in the probe, dropped when the apply command
    ends, or when the connection closes) and, for deploy, push, rollback and restart, in its history.
    With `check`, only say what would change (tasks/check.py): no lock, nothing applied.
    """
    try:
        return _converge(c, steps, action, health_gate, check)
    finally:
        # Ends the SSH connection now: the lock the probe took lives as long as it (see runtime/lock.sh),
        # so a next run, even a next task of this `fab` command, finds it free.
        c.close()


def _situation(
    s: Settings,
    facts: Facts,
    steps: Sequence[Step],
    local: Mapping[str, Any],
    user: str,
    control_host: str,
    check: bool = False,
) -> tuple[Situation | None, tuple[str, str] | None]:
    """What the steps plan from, with what their `prepare` made of what they read on this machine
    (`local`: see _read); or, when the kit must not act on this server, the step and why."""
    try:
        platform = by_id(facts.platform, facts.system)
    except UnsupportedPlatform as error:
        return None, ("probe", str(error))
    situation = Situation(
        s, facts, platform, layout(s, platform), tuple(step.name for step in steps), datetime.now(UTC),
        user=user, control_host=control_host,
    )  # fmt: skip
    refused = guards.refusals(situation)
    if refused:
        return None, (guards.NAME, refused[0])
    for step in steps:
        if step.prepare is not None:
            try:
                made = step.prepare(situation, local[step.name], check)
            except Refused as error:
                return None, (step.name, str(error))
            situation = replace(situation, prepared={**situation.prepared, step.name: made})
    return situation, None


def _read(s: Settings, steps: Sequence[Step], host: str) -> dict[str, Any] | None:
    """What the steps read on this machine (push: the app), each step's notes said; None, with the
    refusal reported, when a step refuses what it read: before anything connects."""
    found = {}
    for step in steps:
        if step.read is None:
            continue
        try:
            found[step.name], notes = step.read(s)
        except Refused as error:
            recap.report(host, step.name, "failed", str(error))
            return None
        for text in notes:
            recap.note(host, f"{step.name}: {text}")
    return found


def _converge(c: Connection, steps: Sequence[Step], action: str, health_gate: bool, check: bool) -> bool:
    s = settings.load(c)
    host = host_name(c)
    local = _read(s, steps, host)
    if local is None:
        return False
    user, control_host = getpass.getuser(), socket.gethostname()
    if check:  # read-only: no lock, no health request (the app may write what it is asked)
        recap.checking(host)
        facts = probe.run(c, host, s, salt=checks.salt())
    else:
        facts = probe.run(c, host, s, holder=holder(user, control_host), action=action, health=health_gate)
    if facts is None:
        return False
    situation, stop = _situation(s, facts, steps, local, user, control_host, check)
    if situation is not None:  # the live release as found: a failed run leaves it (or switches back to it)
        recap.release(host, facts.link_name(situation.layout.current))
    plans = plan(situation, steps) if situation else []
    stop = stop or next(((p.name, p.blocked) for p in plans if p.blocked), None)
    if stop:
        step, why = stop
        recap.report(host, step, "failed", why)
        return False
    if check:
        checks.report(host, plans, facts.configs)
        return True
    names = [p.name if p else "health" for p in in_order(plans, health_gate)]
    acting = {p.name for p in plans if p.acts}
    if not acting and (not health_gate or facts.healthy):
        for name in names:
            recap.report(host, name, "ok")
        recap.note(host, "nothing to change")
        return True
    if health_gate:
        acting.add("health")
    files = {name: content for p in plans if p.acts for name, content in p.files.items()}
    script = apply_script(situation, plans, action, health_gate)
    progress = Progress(host, names, acting)  # each step's line as the server reports it
    try:
        result = remote.execute(c, script.render(), pack(files), stdout_to=progress)
    except remote.RemoteError as error:
        if not progress.failed:  # the server's own word on a failure says more
            recap.report(host, "apply", "failed", str(error))
        return False
    succeeded = progress.finish(result)
    switched = next((p.switches_to for p in plans if p.acts and p.switches_to), None)
    if succeeded and switched:
        recap.release(host, switched)
    return succeeded
