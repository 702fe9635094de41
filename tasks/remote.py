"""Run one script on a host over the task's connection: stdin carries a tar, stdout carries markers.

Commands are built elsewhere as plain strings; this is the only place that talks to the server.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from fabric import Connection
from paramiko import SSHException

# What reaching a host can raise: refused, unreachable, cut, or the SSH layer giving up.
CONNECTION_ERRORS = (OSError, EOFError, SSHException)

# Lines the server scripts print to report on steps: `::step NAME ok|changed`, `::fail NAME message`,
# and `::note NAME message` (something the user should know, e.g. that the app was restarted).
MARKER = re.compile(r"^::(step|fail|note) (\S+) ?(.*)$")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def last_error(self, otherwise: str = "no output") -> str:
        """The last non-blank line of stderr: what a failed command said last."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1].strip() if lines else otherwise


@dataclass(frozen=True)
class Marker:
    kind: str  # "step", "fail" or "note"
    step: str
    text: str  # the status of a "step", the message of a "fail" or a "note"


def parse_markers(stdout: str) -> list[Marker]:
    """The marker lines of a script's output, in order; other lines are ignored."""
    found = []
    for line in stdout.splitlines():
        match = MARKER.match(line.strip())
        if match:
            found.append(Marker(*match.groups()))
    return found


def host_name(c: Connection) -> str:
    """The host as the user named it on the command line (the recap's first column)."""
    return getattr(c, "original_host", None) or c.host


def command_line(script: str, user: str) -> str:
    """The command that runs `script` with bash as root: directly, or through sudo (never prompting)."""
    line = f"bash -c {shlex.quote(script)}"
    return line if user == "root" else f"sudo -n {line}"


def execute(c: Connection, script: str, stdin: bytes = b"") -> Result:
    """Run `script` as root on c's host, feeding `stdin`; one exec on the already open connection.

    A raw channel rather than c.run(): Invoke decodes stdin as text, which would corrupt a tar stream.
    """
    c.open()
    channel = c.client.get_transport().open_session()
    try:
        channel.exec_command(command_line(script, c.user))
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        stdout = channel.makefile("rb").read().decode(errors="replace")
        stderr = channel.makefile_stderr("rb").read().decode(errors="replace")
        code = channel.recv_exit_status()
    finally:
        channel.close()
    if code != 0 and "sudo" in stderr and "password" in stderr:
        stderr = f"user {c.user} needs passwordless sudo (sudo -n failed: {stderr.strip().splitlines()[-1]})"
    return Result(code, stdout, stderr)
