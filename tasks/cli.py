"""How `fab` runs the kit's tasks: what every task that connects to hosts takes on the command line
besides its own options (--trust-new-host-key, --parallel N; deploy, rollback and restart: --batch N and
--max-failures N), the hosts of a run acted on at once (threads, see tasks/fleet.py), and a runtime config
file that cannot be merged refused in one line."""

from __future__ import annotations

import functools
import inspect
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import fabric
import fabric.executor
import yaml
from fabric import Connection, task
from fabric.tasks import ConnectionCall, Task
from invoke.config import AmbiguousMergeError
from invoke.exceptions import Exit, UncastableEnvVar

from tasks import fleet, recap, remote, settings
from tasks.fleet import BATCH, MAX_FAILURES, PARALLEL
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


# The flags the executor reads (tasks/fleet.py), the task itself ignores; none has a one-letter form.
FLEET_FLAGS = (PARALLEL, BATCH, MAX_FAILURES)


class HostTask(Task):
    """A Fabric task whose --trust-new-host-key has no one-letter form (trusting a key is never a typo),
    nor have the fleet's flags. `serial`: its hosts go one after the other unless --parallel N says
    otherwise (its output is a command's, not lines); `rolling`: it takes --batch and --max-failures."""

    serial = False
    rolling = False

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if name in (TRUST, *FLEET_FLAGS):
            opts["names"] = opts["names"][:1]
        return opts


def host_task(
    help: dict[str, str] | None = None,
    name: str | None = None,
    *,
    serial: bool = False,
    rolling: bool = False,
) -> Callable[[Callable[..., Any]], Task]:
    """fabric.task, plus --trust-new-host-key: the explicit opt-in to trust a host seen for the first time;
    and --parallel N (with `rolling`, --batch N and --max-failures N too), read by the Executor.
    `name`: the task's name when it cannot be the function's (`exec`, a Python builtin)."""

    def decorate(body: Callable[..., Any]) -> Task:
        @functools.wraps(body)
        def run(c: Connection, *args: Any, trust_new_host_key: bool = False, **kwargs: Any) -> Any:
            for flag in FLEET_FLAGS:  # the executor's
                kwargs.pop(flag, None)
            started = time.monotonic()  # the host's run, from its settings on: its recap line says how long
            try:
                if trust_new_host_key:
                    remote.trust_new_host_key(c)
                return body(c, *args, **kwargs)
            finally:
                recap.timed(remote.host_name(c), time.monotonic() - started)

        signature = inspect.signature(body)
        flags = [inspect.Parameter(TRUST, inspect.Parameter.KEYWORD_ONLY, default=False)]
        flags.append(inspect.Parameter(PARALLEL, inspect.Parameter.KEYWORD_ONLY, default=0))
        helps = {TRUST: TRUST_HELP, **fleet.FLEET_HELP}
        if rolling:
            flags.append(inspect.Parameter(BATCH, inspect.Parameter.KEYWORD_ONLY, default=""))
            flags.append(inspect.Parameter(MAX_FAILURES, inspect.Parameter.KEYWORD_ONLY, default=0))
            helps.update(fleet.ROLLING_HELP)
        run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *flags])
        made = task(name=name, help={**(help or {}), **helps}, klass=HostTask)(run)
        made.serial, made.rolling = serial, rolling
        return made

    return decorate


class Executor(fabric.executor.Executor):
    """Fabric's executor (fabric.yaml names it: tasks.executor_class), which

    - refuses in one line, exit 2, a runtime config file (-f FILE) whose section is no mapping: Invoke
      cannot merge it with invoke.yaml and would print a traceback holding the other file's values,
      secrets included;
    - with no -H, acts on the hosts of the settings (deploy.group's, else deploy.hosts);
    - runs a task's calls for its hosts (Fabric expands a call into one a host, each with its own
      Connection) at once, in a pool of N threads (deploy.parallel, --parallel N), in batches for a
      rolling run (--batch), a batch after the other while no more than --max-failures hosts failed.
      A host whose run raises fails alone: its recap line says why.
    """

    def execute(self, *tasks: Any) -> Any:
        try:
            return self._execute(*tasks)
        except AmbiguousMergeError:
            raise Exit(_unmergeable(self.config._runtime_path), code=2) from None

    def _settings(self, called_as: str | None = None) -> settings.Settings:
        """The settings as the task sees them: invoke.yaml (the collection's), -f FILE, FABRIC_ env vars."""
        self.config.load_collection(self.collection.configuration(called_as))
        try:
            self.config.load_shell_env()
        except (ValueError, UncastableEnvVar) as error:  # FABRIC_DEPLOY_PARALLEL=x: not the type of its key
            raise Exit(f"a FABRIC_ environment variable of a setting: {error} {WHERE}", code=2) from None
        try:
            return settings.parse(self.config)
        except settings.SettingError as error:
            raise Exit(str(error), code=2) from None

    def expand_calls(self, calls: Any, apply_hosts: bool = True) -> Any:
        hosts = self.core[0].args.hosts
        if apply_hosts and not hosts.value and calls:
            first = calls[0]
            called_as = getattr(first, "called_as", None)
            chosen = fleet.hosts_of(self._settings(called_as)) if isinstance(first.task, HostTask) else ()
            if chosen:
                hosts.value = ",".join(chosen)  # as if given with -H, which wins when it is
        return super().expand_calls(calls, apply_hosts)

    def _execute(self, *tasks: Any) -> dict:
        calls = self.normalize(tasks)
        expanded = self.expand_calls(calls)
        results: dict = {}
        for group in _grouped(expanded):
            first = group[0]
            if isinstance(first.task, HostTask) and not isinstance(first, ConnectionCall):
                raise Exit(
                    f"{first.called_as or first.task.name}: no hosts: give -H HOST[,HOST...], or set"
                    f" deploy.hosts (or deploy.groups and deploy.group) {WHERE}",
                    code=2,
                )
            if not isinstance(first, ConnectionCall) or not isinstance(first.task, HostTask):
                for call in group:  # as Invoke runs them
                    config = self.config
                    config.load_collection(self.collection.configuration(call.called_as))
                    config.load_shell_env()
                    results[call.task] = call.task(call.make_context(config), *call.args, **call.kwargs)
                continue
            results[first.task] = self._run_hosts(group)
        return results

    def _run_hosts(self, calls: list[ConnectionCall]) -> Any:
        """One task's calls, one a host: in batches, each batch's hosts at once (N threads at most)."""
        first = calls[0]
        s = self._settings(first.called_as)
        kwargs = first.kwargs
        workers = fleet.parallel(kwargs.get(PARALLEL), s, serial=first.task.serial)
        rolling = first.task.rolling
        size = fleet.batch_size(kwargs.get(BATCH) if rolling else "", len(calls))
        allowed = fleet.max_failures(kwargs.get(MAX_FAILURES) if rolling else 0)
        # Each host's Connection, made here: its own, on its own copy of the config.
        configs = copies(self.config, len(calls))
        runs = [(call, call.make_context(config)) for call, config in zip(calls, configs, strict=True)]
        return roll(runs, size, workers, allowed)


def copies(config: fabric.Config, count: int) -> list[fabric.Config]:
    """`count` copies of config, one a host: copies of one copy. Fabric's Config.clone() parses the SSH
    config files again into the config it copies, unless that one was given them as an object, as a copy
    is: `count` copies of `config` itself would grow it by the whole files each time (each copy, and each
    host's lookups in it, slower than the one before: quadratic in the hosts)."""
    first = config.clone()
    return [first.clone() for _ in range(count)]


def roll(runs: list[tuple[Any, Connection]], size: int, workers: int, allowed: int) -> Any:
    """The hosts' calls in batches of `size`, each batch's at once (`workers` threads at most); after a
    batch, the rollout stops when more than `allowed` hosts failed, saying which hosts have which release.
    The last call's result."""
    hosts = [remote.host_name(c) for _, c in runs]
    recap.order(hosts)
    failures_before = {host: len(recap.failures(host)) for host in hosts}
    result, done = None, []
    parts = fleet.batches(runs, size)
    for number, part in enumerate(parts, 1):
        result = _run_batch(part, workers)
        done += [remote.host_name(c) for _, c in part]
        lost = [h for h in done if len(recap.failures(h)) > failures_before[h]]
        left = hosts[len(done) :]
        if left and len(lost) > allowed:
            ok = [h for h in done if h not in lost]
            for host in left:
                recap.not_started(host, f"the rollout stopped after batch {number} of {len(parts)}")
            recap.say(fleet.stopped_message(ok, lost, left, recap.releases()))
            break
    return result


def _grouped(calls: list) -> list[list]:
    """Consecutive calls of one task with the same arguments (Fabric's expansion of a call per host)."""
    groups: list[list] = []
    for call in calls:
        last = groups[-1][0] if groups else None
        if (
            last is not None
            and isinstance(call, ConnectionCall)
            and isinstance(last, ConnectionCall)
            and call.task is last.task
            and call.args == last.args
            and call.kwargs == last.kwargs
        ):
            groups[-1].append(call)
        else:
            groups.append([call])
    return groups


def _run_one(call: ConnectionCall, c: Connection) -> Any:
    """A host's call; whatever it raises but an Exit (a setting, exit 2) is the host's failure alone."""
    try:
        return call.task(c, *call.args, **call.kwargs)
    except (Exit, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - one host's bug or broken link must not stop the others
        recap.report(remote.host_name(c), "run", "failed", f"{type(error).__name__}: {error}")
        return None
    finally:
        c.close()  # its SSH connection ends with its run


def _run_batch(part: list[tuple[ConnectionCall, Connection]], workers: int) -> Any:
    """The calls of a batch: in this thread one after the other (--parallel 1: Ctrl-C reaches the task,
    as logs --follow needs), else in a pool of `workers` threads; the last call's result."""
    if workers <= 1 or len(part) == 1:
        result = None
        for call, c in part:
            result = _run_one(call, c)
        return result
    pool = ThreadPoolExecutor(max_workers=min(workers, len(part)), thread_name_prefix="host")
    futures = [pool.submit(_run_one, call, c) for call, c in part]
    try:
        wait(futures)  # an Exit on one host: the others still finish
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        for _, c in part:  # the servers' runs end with their connections (runtime/lock.sh's watchdog)
            _close_quietly(c)
        raise
    pool.shutdown(wait=True)
    for future in futures:  # the first Exit (a setting refused on a host: exit 2) ends the run, as before
        error = future.exception()
        if error is not None:
            raise error
    return futures[-1].result()


def _close_quietly(c: Connection) -> None:
    try:
        c.close()
    except Exception:  # noqa: BLE001 - closing while a thread uses it: it fails there, as it should
        print(f"{remote.host_name(c)}: could not close the connection", file=sys.stderr)


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
