"""Run one script on a host over the task's connection: stdin carries the script and a tar, stdout carries
markers.

Commands are built elsewhere as plain strings; this is the only place that talks to the server. The
connection checks the host's key (tasks/hostkeys.py), gives up connecting after Fabric's connect timeout
(`fab -t SECONDS`, 10 s by default in invoke.yaml), keeps the link alive, and stops waiting for a command
after Fabric's command timeout (`fab -T SECONDS`): a stalled server never hangs a run.
"""

from __future__ import annotations

import gzip
import re
import select
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from fabric import Connection
from paramiko import BadHostKeyException, SSHException
from paramiko.channel import Channel

from tasks import hostkeys
from tasks.hostkeys import HostKeyError

KEEPALIVE = 15  # s between keepalive messages: idle links are kept open, dead ones found
CHUNK = 1 << 16

Sink = Callable[[bytes], object]  # takes a command's output as it comes (see `collect`)

# Lines the server scripts print to report on steps: `::step NAME ok|changed SECONDS` (the step's time on
# the server; an older server script leaves it out), `::fail NAME message`, and `::note NAME message`
# (something the user should know, e.g. that the app was restarted).
MARKER = re.compile(r"^::(step|fail|note) (\S+) ?(.*)$")
TIMED = re.compile(r"^(\S+) (\d+(?:\.\d+)?)$")  # a step's status and its time


class RemoteError(Exception):
    """The host could not be reached, or a command there could not be run to its end: one line."""


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
    seconds: float | None = None  # a "step"'s time on the server, when it says


def parse_marker(line: str) -> Marker | None:
    """The marker a line of a script's output is, or None."""
    match = MARKER.match(line.strip())
    if not match:
        return None
    kind, step, text = match.groups()
    timed = TIMED.match(text) if kind == "step" else None
    return Marker(kind, step, timed[1], float(timed[2])) if timed else Marker(kind, step, text)


def parse_markers(stdout: str) -> list[Marker]:
    """The marker lines of a script's output, in order; other lines are ignored."""
    return [marker for line in stdout.splitlines() if (marker := parse_marker(line))]


def host_name(c: Connection) -> str:
    """The host as the user named it on the command line (the recap's first column)."""
    return getattr(c, "original_host", None) or c.host


def trust_new_host_key(c: Connection) -> None:
    """Let this connection record an unknown host's key instead of refusing it (--trust-new-host-key)."""
    # c's own attribute: `c.name = value` would set a key of its config, which the settings refuse.
    c._set(trust_new_host_key=True)


def connect(c: Connection) -> str:
    """Open c's connection, after those of its jump hosts (ProxyJump), each host's key checked against the
    known_hosts of its own SSH config entry; say which new host keys it recorded, if it did."""
    if c.is_connected:
        return ""
    trust = getattr(c, "trust_new_host_key", False)
    hops = jump_hosts(c)
    try:
        # Each hop opened here, checked, before c's open() would open it: Fabric's own accepts any key.
        recorded = [opened(hop, trust, f"jump host {host_name(hop)}: ") for hop in hops]
        recorded.append(opened(c, trust))
    except RemoteError:
        for each in (c, *hops):
            each.client.close()  # a refused server is not kept waiting on a half-open connection
        raise
    return "; ".join(filter(None, recorded))


def jump_hosts(c: Connection) -> list[Connection]:
    """The jump hosts c is reached through, in the order they are connected to: the first directly (or
    through jump hosts of its own), each next one through the one before it, c through the last.

    A ProxyCommand is no jump host: it is a program of the user's (say `ssh -W %h:%p bastion`, which
    checks the bastion's key itself); only c's key is checked here then."""
    gateway = c.gateway
    if not isinstance(gateway, Connection):
        return []
    names = c.ssh_config.get("proxyjump", "").split(",")
    if len(names) > 1:
        gateway = c.gateway = jump_chain(names, c)
    hops = [gateway]
    for _ in names[1:]:
        hops.insert(0, hops[0].gateway)
    return [*jump_hosts(hops[0]), *hops]


def jump_chain(names: list[str], c: Connection) -> Connection:
    """c's gateway for `ProxyJump a,b`, nested as OpenSSH goes: a (as its own SSH config entry says), then
    b through a. Fabric nests the list the other way round: it would go to b first, directly."""
    gateway = None  # for the first: its own, from its entry
    for name in names:
        gateway = Connection(name.strip(), config=c.config.clone(), gateway=gateway)
    return gateway


def opened(c: Connection, trust: bool, hop: str = "") -> str:
    """Open c's connection alone (its jump host, if any, is open), its host key checked; what new key it
    recorded, if it did. `hop` leads what it says about a jump host."""
    if c.is_connected:
        return ""
    if "timeout" in c.connect_kwargs:  # fab -t SECONDS puts it there; Fabric refuses it twice
        c.connect_timeout = int(c.connect_kwargs.pop("timeout"))
    policy = hostkeys.prepare(c.client, c.ssh_config, c.host, c.port, trust)
    try:
        c.open()
    except BadHostKeyException as error:
        raise RemoteError(hop + str(policy.refused(error.key))) from None
    except HostKeyError as error:
        raise RemoteError(hop + str(error)) from None
    except TimeoutError:
        raise RemoteError(
            f"{hop}no answer from {c.host} port {c.port} within {c.connect_timeout} s (the connect"
            " timeout: fab -t SECONDS)"
        ) from None
    except (OSError, EOFError, SSHException) as error:
        raise RemoteError(
            f"{hop}cannot connect to {c.host} port {c.port} (connect timeout {c.connect_timeout} s):"
            f" {error or type(error).__name__}"
        ) from None
    c.transport.set_keepalive(KEEPALIVE)
    return hop + policy.recorded if policy.recorded else ""


# The one command line of every run: bash reads the script from stdin, where the script's size comes
# first, then the script (gzip'd: ~100 kB of shell is ~34 kB on the link), then what the script reads
# there (a tar). Never the script itself as an argument, where `ps` and sudo's log would show it (a
# release command, exec's command line) and the kernel's limit on one argument (128 KiB) would bound it.
# dd takes exactly the script's bytes (it asks for what is left of its one block), so the rest of stdin
# is the script's. The script is one block whose closing brace only a whole, intact gzip stream gets
# (gzip checks its length and CRC), and `source` reads the whole block before it runs any of it: a script
# cut short, anywhere, runs not at all.
READ_SCRIPT = (
    'read -r size && source <(dd bs="$size" count=1 iflag=fullblock status=none | gzip -dc && echo "}")'
)


def command_line(user: str) -> str:
    """The command that runs the script on stdin with bash as root: directly, or through sudo (never
    prompting)."""
    line = f"bash -c {shlex.quote(READ_SCRIPT)}"
    return line if user == "root" else f"sudo -n {line}"


def framed(script: str, stdin: bytes = b"") -> bytes:
    """What the command line reads on stdin: the script's size, the script as one block (gzip'd, its
    closing brace left to READ_SCRIPT), then `stdin`."""
    block = gzip.compress(f"{{\n{script}\n".encode(), compresslevel=6, mtime=0)
    return f"{len(block)}\n".encode() + block + stdin


def collect(
    channel: Channel, deadline: float, stdout_to: Sink | None = None, stderr_to: Sink | None = None
) -> tuple[bytes, bytes, int]:
    """stdout, stderr and the exit code of the command on `channel`, both streams read as they come (a
    command filling one while we wait on the other would stall both sides). TimeoutError at the deadline;
    exit code -1 when the channel closed without one (a signal, or the connection went away). With a sink
    for a stream (`stdout_to`, `stderr_to`), its chunks go there as they come, and it comes back empty."""
    stdout, stderr = bytearray(), bytearray()
    to_stdout, to_stderr = stdout_to or stdout.extend, stderr_to or stderr.extend
    while True:
        if channel.recv_ready():
            to_stdout(channel.recv(CHUNK))
        elif channel.recv_stderr_ready():
            to_stderr(channel.recv_stderr(CHUNK))
        elif channel.exit_status_ready():  # its exit status came, or the channel closed
            return bytes(stdout), bytes(stderr), channel.recv_exit_status()
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            select.select([channel], [], [], min(left, 0.5))


def passed_to(stream: BinaryIO) -> Sink:
    """A sink writing a command's output to a local stream as it comes (sys.stdout.buffer)."""

    def write(chunk: bytes) -> None:
        stream.write(chunk)
        stream.flush()

    return write


def execute(
    c: Connection,
    script: str,
    stdin: bytes = b"",
    *,
    stdout_to: Sink | None = None,
    stderr_to: Sink | None = None,
    endless: bool = False,
) -> Result:
    """Run `script` as root on c's host, feeding `stdin` after it; one exec on the already open connection.
    Its output is collected, or passed to `stdout_to` and `stderr_to` as it comes (see `collect`). Within
    the command timeout, unless `endless` (a command that runs until the user stops it: logs --follow).

    A raw channel rather than c.run(): Invoke decodes stdin as text, which would corrupt a tar stream.
    """
    connect(c)
    timeout = 0 if endless else c.config.timeouts.command
    deadline = time.monotonic() + timeout if timeout else float("inf")
    try:
        channel = c.client.get_transport().open_session()
    except (OSError, EOFError, SSHException, AttributeError) as error:
        raise RemoteError(f"connection lost: {error or type(error).__name__}") from None
    try:
        channel.exec_command(command_line(c.user))
        channel.settimeout(None if deadline == float("inf") else max(deadline - time.monotonic(), 0.1))
        channel.sendall(framed(script, stdin))
        channel.shutdown_write()
        out, err, code = collect(channel, deadline, stdout_to, stderr_to)
    except TimeoutError:
        c.close()  # the server's run ends with the connection (runtime/lock.sh's watchdog)
        raise RemoteError(
            f"the server did not finish within {timeout:g} s (the command timeout: fab -T SECONDS);"
            " the run was stopped"
        ) from None
    except (OSError, EOFError, SSHException) as error:
        raise RemoteError(f"connection lost: {error or type(error).__name__}") from None
    finally:
        channel.close()
    if code == -1 and not c.transport.is_active():
        raise RemoteError("connection lost before the command ended")
    stderr = err.decode(errors="replace")
    if code != 0 and "sudo" in stderr and "password" in stderr:
        stderr = f"user {c.user} needs passwordless sudo (sudo -n failed: {stderr.strip().splitlines()[-1]})"
    return Result(code, out.decode(errors="replace"), stderr)
