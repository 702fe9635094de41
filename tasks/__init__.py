"""Deploy a Flask app to Debian/Ubuntu servers: nginx -> gunicorn (127.0.0.1) -> Flask, under supervisor."""

from __future__ import annotations

from invoke import Collection

from tasks import deploy, maintenance, releases


def namespace() -> Collection:
    """Every task at the top level, under the contract's names (`fab backup_default`)."""
    return Collection(
        deploy.deploy, deploy.provision, deploy.push, deploy.backup_default, deploy.enable_site,
        deploy.reload_nginx, deploy.supervisor_update, deploy.enable_boot,
        maintenance.restart, maintenance.status, maintenance.logs,
        releases.rollback, releases.releases, releases.history,
    )  # fmt: skip
