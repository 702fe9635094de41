"""Maintenance tasks: restart the app, show its status, show its logs."""

from __future__ import annotations

import shlex

from fabric import Connection, task

from tasks import recap, settings
from tasks.pipeline import converge, host_name, inspect
from tasks.supervisor import plan_restart


@task(help={"hard": "stop and start through supervisor (a short gap) instead of a graceful reload"})
def restart(c: Connection, hard: bool = False) -> None:
    """Restart the app: new workers without dropping a request (or --hard); then a health check via nginx."""
    converge(
        c, ("restart",), action="restart", planners={"restart": lambda ctx: plan_restart(ctx, hard)},
        check_health=True,
    )  # fmt: skip


def _show(c: Connection, step: str, script: str) -> None:
    host = host_name(c)
    stdout = inspect(c, step, script)
    for line in (stdout or "").splitlines():
        recap.note(host, line)


@task
def status(c: Connection) -> None:
    """Show the live release, the app's supervisor state, and whether nginx runs and both start at boot."""
    s, q = settings.load(c), shlex.quote
    _show(
        c,
        "status",
        f"""
if release=$(readlink {q(s.current)}); then echo "release: ${{release##*/}}"; else echo "release: none"; fi
if command -v supervisorctl >/dev/null; then echo "app: $(supervisorctl status {q(s.name)} 2>&1 | head -n 1)"
else echo "app: supervisor is not installed (run fab deploy)"; fi
for unit in nginx supervisor; do
  boot=$(systemctl is-enabled $unit 2>/dev/null) || boot=no
  echo "$unit: $(systemctl is-active $unit 2>/dev/null), at boot: $boot"
done
""",
    )


@task(help={"lines": "how many lines of each log (default 30)"})
def logs(c: Connection, lines: int = 30) -> None:
    """Show the last lines of the app's error log (gunicorn) and of its nginx error log."""
    s, q = settings.load(c), shlex.quote
    _show(
        c,
        "logs",
        f"""
for log in {q(s.error_log)} /var/log/nginx/{q(s.name)}.error.log; do
  echo "== $log"; tail -n {int(lines)} "$log" 2>&1
done
""",
    )
