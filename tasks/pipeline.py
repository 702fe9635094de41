"""Converge a host: one probe, pure plans, one apply script (files as a tar on its stdin), one report.

A no-op run is the probe alone (with the health check folded in when asked for). The probe takes the
server's lock; the apply command keeps it and drops it when it ends.
"""

from __future__ import annotations

import getpass
import io
import shlex
import socket
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from fabric import Connection

from tasks import history, lock, recap, remote, settings, switch
from tasks.boot import plan_enable_boot
from tasks.facts import parse_probe, probe_script
from tasks.nginx import plan_backup_default, plan_enable_site, plan_reload_nginx
from tasks.packages import plan_provision
from tasks.release import plan_push, read_source
from tasks.settings import Settings
from tasks.steps import Context, StepPlan
from tasks.supervisor import plan_supervisor_update
from tasks.wheels import Target, WheelError, resolve, venv_id

Planner = Callable[[Context], StepPlan]

PLANNERS: dict[str, Planner] = {
    "provision": plan_provision,
    "push": plan_push,
    "backup_default": plan_backup_default,
    "enable_site": plan_enable_site,
    "reload_nginx": lambda ctx: plan_reload_nginx(ctx, config_changes=False),
    "supervisor_update": plan_supervisor_update,
    "enable_boot": plan_enable_boot,
}

# Runs whose apply command is recorded in the server's history (see tasks/history.py).
RECORDED = ("deploy", "push", "rollback", "restart")


def prelude(s: Settings, action: str, holder: str, user: str) -> str:
    """The top of every apply script: the lock kept, helpers, the live release as found, files unpacked.

    `die` ends the whole run (later steps depend on earlier ones) and records the failure in the history.
    """
    q = shlex.quote
    return "\n".join([
        "set -u",
        "export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "STEP=apply",
        lock.hold_script(s.name, holder, action),
        history.append_function(s.base_dir),
        f"ACTION={q(action if action in RECORDED else '')} WHO={q(user)}",
        f"LIVE_DIR=$(readlink {q(s.current)} || true) PREVIOUS_DIR=$(readlink {q(s.previous)} || true)",
        'RELEASE=${LIVE_DIR##*/} BUILT="" SWITCHED="" PRUNE=()',
        r"""record() {  # RESULT DETAIL
  [ -z "$ACTION" ] || history_append "$WHO" "${RELEASE:--}" "$ACTION" "$1" "$2" 2>/dev/null || true
}
die() {  # a failure after this run switched releases puts the one that was live back (switch_back)
  local message="$*"
  if switch_back; then
    mark_failed "$STEP: $message"
    message="$message; switched back to ${LIVE_DIR##*/}"
  fi
  echo "::fail $STEP $message"; record failed "$STEP: $message"; exit 1
}
step_done() { if [ "$CHANGED" = 1 ]; then echo "::step $STEP changed"; else echo "::step $STEP ok"; fi; }
quiet() {
  local out
  out=$("$@" 2>&1) || die "$1 failed: $(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)"
}
install_file() {  # SOURCE DEST MODE: replace DEST atomically when its content differs
  cmp -s "$1" "$2" && return 0
  { install -m "$3" -o root -g root "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; } || die "could not write $2"
  CHANGED=1
}
W=$(mktemp -d /tmp/flaskdeploy.XXXXXX) || die "mktemp failed"
trap 'rm -rf "$W"; drop_lock' EXIT
trap 'exit 143' TERM HUP
tar -x -C "$W" || die "could not unpack the files sent"
""",
        switch.functions(s),
    ])  # fmt: skip


def plan(ctx: Context, planners: Mapping[str, Planner]) -> list[StepPlan]:
    """Every step's plan, in the order of ctx.steps."""
    plans: list[StepPlan] = []
    for step in ctx.steps:
        if step == "reload_nginx":
            # Inside deploy, reload only when an earlier step may have touched nginx's config.
            changes = any(p.acts for p in plans if p.name in ("provision", "enable_site"))
            plans.append(plan_reload_nginx(ctx, config_changes=changes))
        else:
            plans.append(planners[step](ctx))
    return plans


def apply_script(top: str, plans: Sequence[StepPlan], check_health: bool = False) -> str:
    """One bash script (`top` is its prelude) running the acting steps in order, each ending with its
    marker line; then the health gate, and only after all of it succeeded, the pruning the steps planned
    and the history entry."""
    parts = [top]
    for p in plans:
        if p.acts:
            parts.append(f"STEP={p.name}; CHANGED=0\n{p.script}\nstep_done\n")
    if check_health:
        parts.append("STEP=health; CHANGED=0\ngate\nstep_done\n")
    parts.append(
        'STEP=finish\n[ ${#PRUNE[@]} = 0 ] || rm -rf "${PRUNE[@]}"\n'
        'live=${LIVE_DIR##*/}; [ "$live" = "$RELEASE" ] && live=""\n'
        'record ok "${live:+from $live}"\n'
    )
    return "\n".join(parts)


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


def host_name(c: Connection) -> str:
    """The host as the user named it on the command line (the recap's first column)."""
    return getattr(c, "original_host", None) or c.host


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
                report_failure(host, marker)
            return False
        for note in (m for m in found if m.kind == "note" and m.step == name):
            recap.note(host, f"{name}: {note.text}")
    if not changed:
        recap.note(host, "nothing changed")
    return True


def report_failure(host: str, marker: remote.Marker) -> None:
    """A `::fail STEP message` line as the step's failure; a held lock fails the run with exit code 75."""
    if marker.step == "lock":
        recap.locked(host, marker.text)
    else:
        recap.report(host, marker.step, "failed", marker.text)


def holder() -> str:
    """Who runs this, as the lock and the history name them: local user @ control machine."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def inspect(c: Connection, step: str, script: str) -> str | None:
    """Run a read-only script (no lock, no history); report it as `step`; its stdout, None on failure."""
    host = host_name(c)
    try:
        result = remote.execute(c, script)
    except remote.CONNECTION_ERRORS as error:
        recap.report(host, "connect", "failed", f"{type(error).__name__}: {error}")
        return None
    if result.code != 0:
        recap.report(host, step, "failed", result.last_error())
        return None
    recap.report(host, step, "ok")
    return result.stdout


def converge(c: Connection, steps: Sequence[str], *, action: str, planners: Mapping[str, Planner] = PLANNERS,
             check_health: bool = False) -> bool:  # fmt: skip
    """Bring c's host to the state `steps` describe; report each step and count it for the recap.

    `action` names the run for the server's lock (taken in the probe, dropped when the apply command
    ends, or when the connection closes) and, for deploy, push, rollback and restart, in its history.
    """
    try:
        return _converge(c, steps, action, planners, check_health)
    finally:
        # Ends the SSH connection now: the lock the probe took lives as long as it (see tasks/lock.py),
        # so a next run, even a next task of this `fab` command, finds it free.
        c.close()


def _converge(c: Connection, steps: Sequence[str], action: str, planners: Mapping[str, Planner],
              check_health: bool) -> bool:  # fmt: skip
    s = settings.load(c)
    host = host_name(c)
    app = read_source(s.src, s.shared_dirs) if "push" in steps else None
    try:
        probed = remote.execute(c, probe_script(s, check_health, holder(), action))
    except remote.CONNECTION_ERRORS as error:
        recap.report(host, "connect", "failed", f"{type(error).__name__}: {error}")
        return False
    if probed.code != 0:
        failure = next((m for m in remote.parse_markers(probed.stdout) if m.kind == "fail"), None)
        if failure:
            report_failure(host, failure)
        else:
            recap.report(host, "probe", "failed", probed.last_error())
        return False
    facts = parse_probe(probed.stdout)
    if not facts.python:
        recap.report(host, "probe", "failed", "python3 is missing on the server: install it first")
        return False
    ctx = Context(
        s, facts, tuple(steps), datetime.now(UTC), user=getpass.getuser(), control_host=socket.gethostname()
    )
    if app is not None:
        target = Target(facts.python, facts.machine, facts.glibc)
        vid = venv_id(app.requirements, target)
        try:
            wheels = () if vid in facts.venvs else resolve(app.requirements, target)
        except WheelError as error:
            recap.report(host, "push", "failed", str(error))
            return False
        ctx = replace(ctx, app=app, venv_id=vid, wheels=wheels)

    plans = plan(ctx, planners)
    stop = next((p for p in plans if p.blocked), None)
    if stop:
        recap.report(host, stop.name, "failed", stop.blocked)
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
    script = apply_script(prelude(s, action, holder(), getpass.getuser()), plans, check_health)
    try:
        result = remote.execute(c, script, pack(files))
    except remote.CONNECTION_ERRORS as error:
        recap.report(host, "apply", "failed", f"connection lost: {type(error).__name__}: {error}")
        return False
    return report_outcome(host, names, acting, result)
