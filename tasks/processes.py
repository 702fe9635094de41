"""The app's processes on the server (its gunicorn, app.processes): restart them, show their logs (and its
site's nginx error log)."""

from __future__ import annotations

import sys

from fabric import Connection

from tasks import probe, recap, remote, runtime
from tasks.cli import CHECK, host_task
from tasks.converge import converge, read_only
from tasks.platform import SSHD_PROCESS_NAMES
from tasks.probe import Found
from tasks.remote import host_name
from tasks.shell import Each, Script, line
from tasks.steps import restart as restart_step
from tasks.steps.processes import Processes


@host_task(
    help={
        "hard": "stop and start through supervisor (a short gap) instead of a graceful reload",
        "process": "only this one of the app's processes (app.processes): stopped gracefully, started again",
        **CHECK,
    },
    rolling=True,
)
def restart(c: Connection, hard: bool = False, process: str = "", check: bool = False) -> None:
    """Restart the app (no request dropped, or --hard) and its processes, or one (--process); health check.

    The app: new gunicorn workers without dropping a request (--hard: stop and start through supervisor);
    its processes (app.processes): each stopped gracefully and started again; --process NAME restarts
    that one alone, not the web. Then a health check through nginx."""
    converge(c, (restart_step.step(hard, process),), action="restart", health_gate=True, check=check)


@host_task(
    help={
        "lines": "how many lines of each log (default 30)",
        "follow": "then print each line added to them as it comes, until Ctrl-C",
        "process": "the log of this one of the app's processes (app.processes) instead: each copy's",
    },
    serial=True,  # --follow runs until Ctrl-C, which only the main thread gets
)
def logs(c: Connection, lines: int = 30, follow: bool = False, process: str = "") -> None:
    """Show the last lines of the app's error log and its nginx error log, or a process's (--process).

    The app's error log (gunicorn) and its site's nginx error log; with --process NAME, the log of each
    copy of that process (app.processes) instead; --follow: then each line added, until Ctrl-C."""
    found = probe.look(c, "probe")
    if found is None:
        return
    paths = found.paths
    files = {"LOGS": (paths.error_log, paths.nginx_error_log)}
    if process:
        logged = process_logs(found, process)
        if not logged:
            known = ", ".join(sorted(found.facts.of(Processes).programs)) or "none"
            recap.report(
                host_name(c),
                "logs",
                "failed",
                f"no process {process!r} on the server (its processes: {known})",
            )
            return
        files = {"LOGS": logged}
    if follow:
        _follow(c, found, files, int(lines))
        return
    show = Script("logs", files, runtime.SHOW, [line("show_logs", int(lines), Each("LOGS"))])
    for text in (read_only(c, "logs", show) or "").splitlines():
        recap.note(host_name(c), text)


def process_logs(found: Found, name: str) -> tuple[str, ...]:
    """The logs of the copies of the app's process `name` as the server runs it (none: no such process)."""
    held = found.facts.of(Processes)
    if name not in held.programs:
        return ()
    log = found.paths.process_log(name)
    return tuple(log.replace("%(process_num)d", str(n)) for n in range(held.programs[name]))


def _follow(c: Connection, found: Found, files: dict, lines: int) -> None:
    """The logs' last lines, then every line added, on stdout as they come, until Ctrl-C (or the link
    goes): the server's tail ends with the connection."""
    values = {**files, "SSHD_PROCESS_NAMES": SSHD_PROCESS_NAMES}
    follow = Script("logs --follow", values, runtime.FOLLOW, [line("follow_logs", lines, Each("LOGS"))])
    try:
        result = remote.execute(
            c, follow.render(), stdout_to=remote.passed_to(sys.stdout.buffer), endless=True
        )
    except KeyboardInterrupt:
        recap.report(host_name(c), "logs", "ok", "stopped (Ctrl-C)")
        return
    except remote.RemoteError as error:
        recap.report(host_name(c), "logs", "failed", str(error))
        return
    finally:
        c.close()
    recap.report(host_name(c), "logs", "failed", result.last_error(otherwise="the logs are gone"))
