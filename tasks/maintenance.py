"""Maintenance tasks: restart the app, show its status, show its logs."""

from __future__ import annotations

from fabric import Connection

from tasks import probe, recap, runtime
from tasks.cli import host_task
from tasks.converge import converge, read_only
from tasks.probe import Found
from tasks.remote import host_name
from tasks.shell import Each, Script, line
from tasks.steps import restart as restart_step


@host_task(help={"hard": "stop and start through supervisor (a short gap) instead of a graceful reload"})
def restart(c: Connection, hard: bool = False) -> None:
    """Restart the app: new workers without dropping a request (or --hard); then a health check via nginx."""
    converge(c, (restart_step.step(hard),), action="restart", check_health=True)


def status_lines(found: Found) -> list[str]:
    """The live release, the app as supervisor sees it, and nginx and supervisor: running, at boot."""
    facts, platform, paths = found.facts, found.platform, found.paths
    release = facts.link_name(paths.current)
    if platform.packages.supervisor not in facts.installed:
        app = "supervisor is not installed (run fab deploy)"
    elif facts.program is None:
        app = f"{paths.app} is not a program of supervisor (run fab deploy)"
    else:
        app = f"{paths.app} {facts.program.state} {facts.program.description}".rstrip()
    lines = [f"release: {release or 'none'}", f"app: {app}"]
    for unit in platform.units:
        state = facts.units.get(unit)
        boot = "enabled" if facts.enabled(unit) else "no"
        lines.append(f"{unit}: {state.active if state else 'unknown'}, at boot: {boot}")
    return lines


@host_task()
def status(c: Connection) -> None:
    """Show the live release, the app's supervisor state, and whether nginx runs and both start at boot."""
    found = probe.look(c, "status")
    if found is not None:
        for text in status_lines(found):
            recap.note(host_name(c), text)


@host_task(help={"lines": "how many lines of each log (default 30)"})
def logs(c: Connection, lines: int = 30) -> None:
    """Show the last lines of the app's error log (gunicorn) and of its nginx error log."""
    found = probe.look(c, "probe")
    if found is None:
        return
    paths = found.paths
    show = Script(
        "logs", {"LOGS": (paths.error_log, paths.nginx_error_log)}, runtime.SHOW,
        [line("show_logs", int(lines), Each("LOGS"))],
    )  # fmt: skip
    for text in (read_only(c, "logs", show) or "").splitlines():
        recap.note(host_name(c), text)
