"""Maintenance tasks: restart the app, show its status, show its logs."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from fabric import Connection

from tasks import probe, recap, remote, runtime
from tasks import status as status_rows
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
    converge(c, (restart_step.step(hard),), action="restart", check_health=True, check=check)


@host_task(help={"json": "print one JSON document instead: a list, an object a host (its keys: see above)"})
def status(c: Connection, json: bool = False) -> None:
    """One table for all hosts: live release, app, nginx and supervisor, health check, free disk, lock.

    A row a host: the live release, its age and who deployed it; the app as supervisor has it (state,
    uptime, gunicorn's workers); nginx and supervisor (ActiveState/UnitFileState: running, at boot); the
    health check through nginx as deploy's gate asks it (status, latency); the space free under
    /srv/APP; who holds the deploy lock, since when. A host that cannot be looked at is a row saying why.
    Read-only: it takes no lock.

    --json prints one JSON document on stdout instead (step and recap lines go to stderr): a list with an
    object a host, in the order given, with the keys host, reachable (false: no connection), healthy,
    error (why the host could not be looked at, else null), problems (why it is unhealthy: a list),
    release, release_time, release_age_seconds, deployed_by, app (RUNNING, STOPPED, ...), app_pid,
    app_uptime_seconds, workers, nginx and supervisor ({"active": ..., "enabled": ...} as systemd says
    them), health (the check's status: "200", "502", "no answer (...)"), health_ms, disk_free_bytes and
    lock ({"holder": "alice@laptop (deploy)", "since": TIME}, or null); null where a value is unknown.

    Exit code: 0 when every host is healthy (a live release, RUNNING under supervisor, nginx and
    supervisor active, the health check passing); 1 when any is not, or could not be reached or probed.
    """
    host = host_name(c)
    if json:
        recap.to_stderr()
    before = len(recap.failures(host))
    found = probe.look(c, "status", health=True)
    if found is None:
        row = status_rows.not_looked_at(host, recap.failures(host)[before:])
    else:
        row = status_rows.of_host(host, found, datetime.now(UTC))
    status_rows.add(row, as_json=json)


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
