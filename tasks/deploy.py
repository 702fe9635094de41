"""The pipeline's tasks: `deploy` runs every step over one connection; each step is also a task alone.

The step tasks are made from the registry (tasks/steps), with each step's help line.
"""

from __future__ import annotations

from fabric import Connection
from fabric.tasks import Task

from tasks.cli import CHECK, host_task
from tasks.converge import converge
from tasks.steps import PIPELINE
from tasks.steps.model import Step


@host_task(help=CHECK, rolling=True)
def deploy(c: Connection, check: bool = False) -> None:
    """The whole pipeline (provision .. certificate) over one connection, a health check, the processes."""
    converge(c, PIPELINE, action="deploy", health_gate=True, check=check)


def step_task(step: Step) -> Task:
    """The task that runs one step alone: `fab -H HOST enable_site`."""

    def run(c: Connection, check: bool = False) -> None:
        converge(c, (step,), action=step.name, check=check)

    run.__name__ = run.__qualname__ = step.name
    run.__doc__ = step.doc
    return host_task(help=CHECK)(run)


STEP_TASKS = tuple(step_task(step) for step in PIPELINE)
