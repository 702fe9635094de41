"""The app's processes on the server: restart them, show their logs (and its site's nginx error log)."""

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


@host_task(
    help={"hard": "stop and start through supervisor (a short gap) instead of a graceful reload", **CHECK},
    rolling=True,
)
def restart(c: Connection, hard: bool = False, check: bool = False) -> None:
    """Restart the app: new workers without dropping a request (or --hard); then a health check via nginx."""
    converge(c, (restart_step.step(hard),), action="restart", health_gate=True, check=check)


@host_task(
    help={
        "lines": "how many lines of each log (default 30)",
        "follow": "then print each line added to them as it comes, until Ctrl-C",
    },
    serial=True,  # --follow runs until Ctrl-C, which only the main thread gets
)
def logs(c: Connection, lines: int = 30, follow: bool = False) -> None:
    """Show the last lines of the app's error log (gunicorn) and of its nginx error log (--follow: stream)."""
    found = probe.look(c, "probe")
    if found is None:
        return
    paths = found.paths
    files = {"LOGS": (paths.error_log, paths.nginx_error_log)}
    if follow:
        _follow(c, found, files, int(lines))
        return
    show = Script("logs", files, runtime.SHOW, [line("show_logs", int(lines), Each("LOGS"))])
    for text in (read_only(c, "logs", show) or "").splitlines():
        recap.note(host_name(c), text)


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
