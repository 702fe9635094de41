"""Deploy a Flask app to Debian servers: nginx -> gunicorn (127.0.0.1) -> Flask, under supervisor.

How the package is laid out, and how to add a step: tasks/README.md.
"""

from __future__ import annotations

from invoke import Collection

from tasks import commands, deploy, processes, releases, status


def namespace() -> Collection:
    """Every task at the top level, under the contract's names (`fab backup_default`)."""
    return Collection(
        deploy.deploy, *deploy.STEP_TASKS,
        processes.restart, status.status, processes.logs,
        releases.rollback, releases.releases, releases.history,
        commands.exec_,
    )  # fmt: skip
