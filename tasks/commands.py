"""One-off commands in the live release: `fab -H HOST exec "flask --app flaskr init-db"`.

The command runs as the release command does (runtime/release.sh's as_app): in the release `current`
points at, as the app user, with app.env (read on the server from the release's env.json, never sent on
a command line) and the release's venv first on PATH. It holds the deploy lock while it runs, its output
comes back as it comes (stdout to stdout, stderr to stderr, the kit's own lines on stderr), and the run
exits with its exit code. It is not recorded in the history: it is no deploy.
"""

from __future__ import annotations

import getpass
import socket
import sys

from fabric import Connection

from tasks import lock, probe, recap, remote, runtime, settings
from tasks.cli import host_task
from tasks.converge import holder
from tasks.layout import Layout, layout
from tasks.platform import Platform, UnsupportedPlatform, by_id
from tasks.settings import Settings
from tasks.shell import Script, line

ACTION = "exec"  # the task's name, and the run's in the lock's record ("alice@laptop (exec)")
NO_RELEASE = "no live release on the server: run fab deploy first"


def script(s: Settings, paths: Layout, platform: Platform, command: str, who: str) -> Script:
    """The script running `command` (a shell line, for /bin/sh -c) in the live release, the lock held by
    `who` ("alice@laptop") while it runs. The command is a value of the script, never part of its code."""
    values = {
        **runtime.globals_for(s, paths, platform),
        **lock.values(paths.lock_root, paths.app, who, ACTION),
        "EXEC_COMMAND": command,
    }
    return Script("a command in the live release", values, runtime.EXEC, [line("exec_in_live_release")])


@host_task(
    name="exec",
    help={"command": 'the shell line to run, quoted as one argument: "flask --app flaskr init-db"'},
    serial=True,  # its output is the command's own, as it comes: hosts at once would mix it
)
def exec_(c: Connection, command: str) -> None:
    """Run one command in the live release as the app user, with app.env and the venv; exit with its code."""
    recap.to_stderr()  # stdout is the command's
    try:
        _exec(c, command)
    finally:
        c.close()  # the lock the probe took lives as long as the connection


def _exec(c: Connection, command: str) -> None:
    s, host = settings.load(c), remote.host_name(c)
    who = holder(getpass.getuser(), socket.gethostname())
    facts = probe.run(c, host, s, holder=who, action=ACTION)  # takes the lock: exit 75 if a deploy has it
    if facts is None:
        return
    try:
        platform = by_id(facts.platform, facts.system)
    except UnsupportedPlatform as error:
        recap.report(host, ACTION, "failed", str(error))
        return
    paths = layout(s, platform)
    if facts.link_name(paths.current) is None:
        recap.report(host, ACTION, "failed", NO_RELEASE)
        return
    sent = script(s, paths, platform, command, who)
    try:
        result = remote.execute(
            c, sent.render(),
            stdout_to=remote.passed_to(sys.stdout.buffer), stderr_to=remote.passed_to(sys.stderr.buffer),
        )  # fmt: skip
    except remote.RemoteError as error:
        recap.report(host, ACTION, "failed", str(error))
        return
    if result.code < 0:
        recap.report(host, ACTION, "failed", "the command ended without an exit code (killed by a signal?)")
    else:
        recap.exited(host, ACTION, result.code)
