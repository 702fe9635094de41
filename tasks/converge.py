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

from fabric import Connection

from tasks import dependencies, lock, probe, recap, remote, runtime, settings, wheels
from tasks.facts import Facts
from tasks.layout import layout
from tasks.platform import UnsupportedPlatform, by_id
from tasks.remote import host_name
from tasks.settings import Settings
from tasks.shell import Script, line
from tasks.source import AppSource, read_source
from tasks.steps import guards, push
from tasks.steps.model import Situation, Step, StepPlan
from tasks.wheels import Target

# Runs whose apply command is recorded in the server's history (runtime/history.py).
RECORDED = ("deploy", "push", "rollback", "restart")


def plan(situation: Situation, steps: Sequence[Step]) -> list[StepPlan]:
    """Every step's plan, in order; each planner sees the plans of the steps before it."""
    plans: list[StepPlan] = []
    for step in steps:
        plans.append(step.plan_for(replace(situation, earlier=tuple(plans))))
    return plans


def apply_script(situation: Situation, plans: Sequence[StepPlan], action: str, check_health: bool) -> Script:
    """One script running the acting steps in order, each reported; then the health gate, and only after
    all of it succeeded, the steps' cleanup (pruning) and the history entry."""
    paths = situation.layout
    values = {
        **runtime.globals_for(situation.settings, paths, situation.platform),
        **lock.values(paths.lock_root, paths.app, holder(situation.user, situation.control_host), action),
        "ACTION": action if action in RECORDED else "",
        "WHO": situation.user,
    }
    lines = [line("begin_apply")]
    for p in plans:
        if p.acts:
            lines += [line("begin_step", p.name), *p.commands, line("end_step")]
    if check_health:
        lines += [line("begin_step", "health"), line("gate"), line("end_step")]
    lines += [command for p in plans if p.acts for command in p.cleanup]
    lines.append(line("finish_run"))
    return Script(f"apply script of a {action}", values, runtime.APPLY, lines)


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


def report_outcome(host: str, names: Sequence[str], acting: set[str], result: remote.Result) -> bool:
    """Print and count each step's outcome from the apply script's markers; False at the first failure."""
    found = remote.parse_markers(result.stdout)
    markers = {m.step: m for m in found if m.kind != "note"}
    failure = next((m for m in markers.values() if m.kind == "fail"), None)
    changed = 0
    for name in names:
        marker = markers.get(name)
        if name not in acting:
            recap.report(host, name, "ok")
        elif marker and marker.kind == "step":
            recap.report(host, name, marker.text)
            changed += marker.text == "changed"
        else:
            if marker is None and failure and failure.step not in names:  # failed before any step started
                marker = failure
            if marker is None:
                reason = result.last_error(otherwise=f"the apply script exited {result.code}")
                recap.report(host, name, "failed", f"stopped: {reason}")
            else:
                recap.report_failure(host, marker)
            return False
        for note in (m for m in found if m.kind == "note" and m.step == name):
            recap.note(host, f"{name}: {note.text}")
    if not changed:
        recap.note(host, "nothing changed")
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


def converge(c: Connection, steps: Sequence[Step], *, action: str, check_health: bool = False) -> bool:
    """Bring c's host to the state `steps` describe; report each step and count it for the recap.

    `action` names the run for the server's lock (taken in the probe, dropped when the apply command
    ends, or when the connection closes) and, for deploy, push, rollback and restart, in its history.
    """
    try:
        return _converge(c, steps, action, check_health)
    finally:
        # Ends the SSH connection now: the lock the probe took lives as long as it (see runtime/lock.sh),
        # so a next run, even a next task of this `fab` command, finds it free.
        c.close()


def _situation(
    s: Settings, facts: Facts, steps: Sequence[Step], app: AppSource | None, user: str, control_host: str
) -> tuple[Situation | None, tuple[str, str] | None]:
    """What the steps plan from; or, when the kit must not act on this server, the step and why."""
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
        return None, ("check", refused[0])
    if app is not None:
        stop, situation = _with_app(situation, app)
        if stop:
            return None, ("push", stop)
    return situation, None


def _with_app(situation: Situation, app: AppSource) -> tuple[str, Situation]:
    """The situation with the local app and, when the server lacks its venv, the wheels to build it
    from; or why the app cannot go to this server (before anything on it changes)."""
    s, facts = situation.settings, situation.facts
    try:
        declared = dependencies.declared(app.root, s.gunicorn)
    except dependencies.DependencyError as error:
        return str(error), situation
    if not declared.fits(facts.python):
        return (
            f"the app requires Python {declared.requires_python} (requires-python in pyproject.toml) and"
            f" the server has Python {facts.python}: deploy to a server with a Python that fits, or relax"
            " requires-python",
            situation,
        )
    target = Target(facts.python, facts.machine, facts.glibc)
    situation = replace(situation, app=app, declared=declared, venv_id=wheels.venv_id(declared, target))
    new_venv, new_release = situation.venv_id not in facts.venvs, not push.is_live(situation)
    try:
        built = wheels.dependencies(declared, target) if new_venv else ()
        own = wheels.app_wheel(app, declared.project) if declared.project and new_release else None
        needs_uv = (built or own) and f"uv-{wheels.UV_VERSION}" not in facts.tools
        uv = wheels.uv_wheel(facts.machine) if needs_uv else None
    except wheels.WheelError as error:
        return str(error), situation
    return "", replace(situation, wheels=built, app_wheel=own, uv_wheel=uv)


def _converge(c: Connection, steps: Sequence[Step], action: str, check_health: bool) -> bool:
    s = settings.load(c)
    host = host_name(c)
    app = read_source(s.src, s.shared_dirs) if any(step.needs_app for step in steps) else None
    user, control_host = getpass.getuser(), socket.gethostname()
    facts = probe.run(c, host, s, holder=holder(user, control_host), action=action, health=check_health)
    if facts is None:
        return False
    situation, stop = _situation(s, facts, steps, app, user, control_host)
    plans = plan(situation, steps) if situation else []
    stop = stop or next(((p.name, p.blocked) for p in plans if p.blocked), None)
    if stop:
        step, why = stop
        recap.report(host, step, "failed", why)
        return False
    names = [p.name for p in plans] + (["health"] if check_health else [])
    acting = {p.name for p in plans if p.acts}
    if not acting and (not check_health or facts.healthy):
        for name in names:
            recap.report(host, name, "ok")
        recap.note(host, "nothing to change")
        return True
    if check_health:
        acting.add("health")
    files = {name: content for p in plans if p.acts for name, content in p.files.items()}
    script = apply_script(situation, plans, action, check_health)
    try:
        result = remote.execute(c, script.render(), pack(files))
    except remote.RemoteError as error:
        recap.report(host, "apply", "failed", str(error))
        return False
    return report_outcome(host, names, acting, result)
