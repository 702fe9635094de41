"""The pipeline's tasks: `deploy` runs the seven steps over one connection; each step also runs alone."""

from __future__ import annotations

from fabric import Connection, task

from tasks.pipeline import converge
from tasks.steps import PIPELINE


@task
def deploy(c: Connection) -> None:
    """The whole pipeline (provision .. enable_boot) over one connection, then a health check via nginx."""
    converge(c, PIPELINE, action="deploy", check_health=True)


@task
def provision(c: Connection) -> None:
    """apt packages (nginx, supervisor, python3-venv), the app's system user, its directories."""
    converge(c, ("provision",), action="provision")


@task
def push(c: Connection) -> None:
    """Upload a new release of the app and its dependencies (as wheels); switch `current` to it."""
    converge(c, ("push",), action="push")


@task
def backup_default(c: Connection) -> None:
    """Keep a copy of nginx's stock default site as default.bak (once; never overwritten)."""
    converge(c, ("backup_default",), action="backup_default")


@task
def enable_site(c: Connection) -> None:
    """Render the nginx site, put it in sites-available, link it in sites-enabled, validate with nginx -t."""
    converge(c, ("enable_site",), action="enable_site")


@task
def reload_nginx(c: Connection) -> None:
    """nginx -t, then a graceful reload (only when nginx's config changed since it last loaded it)."""
    converge(c, ("reload_nginx",), action="reload_nginx")


@task
def supervisor_update(c: Connection) -> None:
    """Render the supervisor program and gunicorn config, supervisorctl update; restart only on change."""
    converge(c, ("supervisor_update",), action="supervisor_update")


@task
def enable_boot(c: Connection) -> None:
    """nginx and supervisor enabled at boot (checked with systemctl is-enabled)."""
    converge(c, ("enable_boot",), action="enable_boot")
