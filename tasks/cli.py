"""How `fab` runs the kit's tasks: what every task that connects to hosts takes on the command line
besides its own options, and a runtime config file that cannot be merged refused in one line."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fabric.executor
import yaml
from fabric import Connection, task
from fabric.tasks import Task
from invoke.config import AmbiguousMergeError
from invoke.exceptions import Exit

from tasks import recap, remote
from tasks.settings import SECTIONS, WHERE

TRUST = "trust_new_host_key"
TRUST_HELP = (
    "record the host's key in known_hosts when none is known for it yet (a changed key is still refused)"
)


# The --check flag of the tasks that change a server (tasks/check.py).
CHECK = {
    "check": "say what would change and why (diffs of the config files), change nothing; exit 3 when"
    " something would change, 0 when nothing would"
}


class HostTask(Task):
    """A Fabric task whose --trust-new-host-key has no one-letter form: trusting a key is never a typo."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if name == TRUST:
            opts["names"] = opts["names"][:1]
        return opts


def host_task(
    help: dict[str, str] | None = None, name: str | None = None
) -> Callable[[Callable[..., Any]], Task]:
    """fabric.task, plus --trust-new-host-key: the explicit opt-in to trust a host seen for the first time.
    `name`: the task's name when it cannot be the function's (`exec`, a Python builtin)."""

    def decorate(body: Callable[..., Any]) -> Task:
        @functools.wraps(body)
        def run(c: Connection, *args: Any, trust_new_host_key: bool = False, **kwargs: Any) -> Any:
            started = time.monotonic()  # the host's run, from its settings on: its recap line says how long
            try:
                if trust_new_host_key:
                    remote.trust_new_host_key(c)
                return body(c, *args, **kwargs)
            finally:
                recap.timed(remote.host_name(c), time.monotonic() - started)

        signature = inspect.signature(body)
        flag = inspect.Parameter(TRUST, inspect.Parameter.KEYWORD_ONLY, default=False)
        run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), flag])
        return task(name=name, help={**(help or {}), TRUST: TRUST_HELP}, klass=HostTask)(run)

    return decorate


class Executor(fabric.executor.Executor):
    """Fabric's executor (fabric.yaml names it: tasks.executor_class), which refuses in one line, exit 2,
    a runtime config file (-f FILE) whose section is no mapping: Invoke cannot merge it with invoke.yaml
    and would print a traceback holding the other file's values, secrets included."""

    def execute(self, *tasks: Any) -> Any:
        try:
            return super().execute(*tasks)
        except AmbiguousMergeError:
            raise Exit(_unmergeable(self.config._runtime_path), code=2) from None


def _unmergeable(path: str | None) -> str:
    """What is wrong with a runtime config that Invoke could not merge."""
    try:
        given = yaml.safe_load(Path(path).read_text()) if path else None
    except (OSError, yaml.YAMLError):
        given = None
    for section in SECTIONS:
        value = given.get(section) if isinstance(given, Mapping) else None
        if value is not None and not isinstance(value, Mapping):
            return f"{section}: must be a section of settings (key: value lines), got {value!r} {WHERE}"
    return f"{path}: a section of it is no mapping of settings (key: value lines) {WHERE}"
