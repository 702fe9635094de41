"""Host keys: every connection is checked against known_hosts as OpenSSH checks it (Fabric alone accepts
any key), with paramiko's own HostKeys and the SSH config Fabric loaded (-S FILE, or ~/.ssh/config).

- The files: UserKnownHostsFile and GlobalKnownHostsFile from the SSH config, or OpenSSH's defaults; the
  host is looked up as HostKeyAlias if set, else as `host` or `[host]:port` (hashed entries, and patterns
  with `*`, `?` and `!`, too).
- A known key that matches: the connection goes on. A known host offering another key: refused, always,
  naming the known_hosts line to check.
- An unknown host: refused with its key's type and SHA256 fingerprint, unless trusting it was asked for
  (--trust-new-host-key) or the SSH config says StrictHostKeyChecking accept-new (or no): then its key is
  recorded in the first UserKnownHostsFile, hashed if HashKnownHosts says so.
- A key of a `@revoked` line for the host: refused, always, even where another line has it as known.
- `@cert-authority` lines are skipped: paramiko never checks a host certificate's signature (it takes the
  plain key out of it), so a host known only through its CA is an unknown host.
- A line that cannot be read (not UTF-8, a key that does not parse) is skipped, not the file.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paramiko import HostKeys, MissingHostKeyPolicy, PKey, SSHClient, SSHException
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

USER_FILES = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_FILES = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
SSH_PORT = 22
# ssh-keygen -l names a key's type like this.
KEY_TYPES = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA"}


class HostKeyError(Exception):
    """A host key refused; the message is one line naming the host's key and what to do."""


def describe(key: PKey) -> str:
    """A key as `ssh-keygen -l` shows it: its type and SHA256 fingerprint."""
    name = key.get_name()
    kind = KEY_TYPES.get(name, "ECDSA" if name.startswith("ecdsa") else name)
    return f"{kind} key {key.fingerprint}"


def lookup_name(host: str, port: int, alias: str | None = None) -> str:
    """The name a host's key is filed under in known_hosts: its alias, or host, or [host]:port."""
    if alias:
        return alias
    return host if port == SSH_PORT else f"[{host}]:{port}"


@dataclass(frozen=True)
class Known:
    """A known_hosts line that names the host: its key known, or revoked (a `@revoked` line)."""

    file: Path
    line: int
    key: PKey
    revoked: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


_recording = threading.Lock()  # hosts' keys recorded at once (a run's threads): one line after the other


@dataclass(frozen=True)
class KnownHosts:
    user_files: tuple[Path, ...]  # the first one records new keys
    global_files: tuple[Path, ...]
    strict: str  # StrictHostKeyChecking: "yes" (and "ask": nobody answers), "accept-new" or "no"
    hash_new: bool  # HashKnownHosts: record a new host's name hashed

    @classmethod
    def from_ssh_config(cls, options: Mapping[str, Any]) -> KnownHosts:
        """From the options paramiko's SSHConfig found for the host (Fabric's Connection.ssh_config)."""

        def files(key: str, default: tuple[str, ...]) -> tuple[Path, ...]:
            value = options.get(key)
            names = shlex.split(value) if isinstance(value, str) else value or default
            return tuple(Path(os.path.expanduser(name)) for name in names if name.lower() != "none")

        strict = str(options.get("stricthostkeychecking", "yes")).lower()
        strict = {"off": "no", "ask": "yes", "true": "yes", "false": "no"}.get(strict, strict)
        return cls(
            files("userknownhostsfile", USER_FILES),
            files("globalknownhostsfile", GLOBAL_FILES),
            strict if strict in ("yes", "accept-new", "no") else "yes",
            str(options.get("hashknownhosts", "no")).lower() == "yes",
        )

    def entries(self, name: str) -> list[Known]:
        """Every line of every known_hosts file that names the host, in the order OpenSSH reads them."""
        found = []
        for path in (*self.user_files, *self.global_files):
            try:
                lines = path.read_bytes().split(b"\n")
            except OSError:
                continue
            for number, raw in enumerate(lines, 1):
                parsed = parse_line(raw)
                if parsed and matches(parsed[1].hostnames, name):
                    found.append(Known(path, number, parsed[1].key, parsed[0] == "@revoked"))
        return found

    def record(self, name: str, key: PKey) -> Path:
        """Append the host's key to the first user known_hosts file, unless another thread of the run did
        (hosts behind one jump host all meet it at once); return that file."""
        if not self.user_files:
            raise HostKeyError(f"{name}: no UserKnownHostsFile to record its key in")
        path = self.user_files[0]
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shown = HostKeys.hash_host(name) if self.hash_new else name
        with _recording:
            if any(known.key == key for known in self.entries(name)):
                return path
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as file:
                if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                    file.write("\n")
                file.write(HostKeyEntry([shown], key).to_line())
        return path


def parse_line(raw: bytes) -> tuple[str, HostKeyEntry] | None:
    """A known_hosts line's marker ("", "@revoked" or "@cert-authority") and entry; None for a comment, a
    blank line, or a line that cannot be read, which OpenSSH skips too (one bad line, not its file)."""
    try:
        fields = raw.decode().split()
    except UnicodeDecodeError:
        return None
    marker = fields.pop(0) if fields and fields[0].startswith("@") else ""
    if len(fields) < 3 or fields[0].startswith("#") or marker not in ("", "@revoked"):
        return None  # @cert-authority: paramiko cannot check a certificate against it
    try:
        entry = HostKeyEntry.from_line(" ".join(fields[:3]))
    except (InvalidHostKey, SSHException):  # not base64, or not a key of its type
        return None
    return (marker, entry) if entry else None


def matches(patterns: list[str], name: str) -> bool:
    """Whether a known_hosts line's host field names `name`, as OpenSSH matches it: a hashed name
    (HashKnownHosts) or a pattern (`*` and `?` wildcards, case ignored) matches, and no negated one
    (`!pattern`) does."""
    found = False
    for pattern in patterns:
        if pattern.startswith("|1|"):
            found = found or hashed(pattern, name)
        elif pattern.startswith("!"):
            if wildcard(pattern[1:], name):
                return False
        else:
            found = found or wildcard(pattern, name)
    return found


def hashed(pattern: str, name: str) -> bool:
    """Whether a hashed name (|1|SALT|HASH) is `name`'s; a broken one is no one's."""
    try:
        return HostKeys.hash_host(name, pattern) == pattern
    except (ValueError, AssertionError):  # a salt that is not base64, or not 20 bytes (paramiko asserts)
        return False


def wildcard(pattern: str, name: str) -> bool:
    """Whether `name` matches an OpenSSH host pattern: `*` any run of characters, `?` any one."""
    regex = "".join({"*": ".*", "?": "."}.get(char, re.escape(char)) for char in pattern.lower())
    return re.fullmatch(regex, name.lower(), re.DOTALL) is not None


class RecordOrRefuse(MissingHostKeyPolicy):
    """What happens to a key no known_hosts file has for the host, or to another key than the one it has,
    or to a key revoked for it."""

    def __init__(
        self, known: KnownHosts, name: str, lines: list[Known], revoked: list[Known], trust_new: bool
    ) -> None:
        self.known, self.name, self.trust_new = known, name, trust_new
        self.lines, self.revoked = lines, revoked  # the lines that have the host's key, that revoke one
        self.recorded = ""  # what was recorded where, once it was

    def missing_host_key(self, client: SSHClient, hostname: str, key: PKey) -> None:
        if any(line.key == key for line in self.revoked):
            raise self.refused(key)
        if self.trust_new or self.known.strict in ("accept-new", "no"):
            self.recorded = f"{describe(key)} recorded in {self.known.record(self.name, key)}"
            return
        files = ", ".join(str(p) for p in self.known.user_files) or "no known_hosts file"
        raise HostKeyError(
            f"unknown host key {describe(key)} for {self.name} (not in {files}): if that is the server's"
            " key, trust it with --trust-new-host-key, or StrictHostKeyChecking accept-new in the SSH config"
        )

    def refused(self, offered: PKey) -> HostKeyError:
        """The refusal of a key revoked for the host, or of another key than the one known_hosts has: loud,
        and no flag overrides it."""
        revoked = [str(line) for line in self.revoked if line.key == offered]
        if revoked:
            return HostKeyError(
                f"REVOKED HOST KEY for {self.name}: the server offers {describe(offered)}, revoked in"
                f" {', '.join(revoked)}: someone may be passing for the server with a stolen key; refused"
                " whatever the flags or the SSH config say, until the server has a new key"
            )
        where = ", ".join(str(k) for k in self.lines) or "known_hosts"
        recorded = self.lines[0].key.fingerprint if self.lines else "another key"
        return HostKeyError(
            f"HOST KEY CHANGED for {self.name}: the server offers {describe(offered)}, known_hosts has"
            f" {recorded} ({where}): someone may be intercepting the connection; if the server was"
            f" reinstalled, check and replace that line (ssh-keygen -R {self.name})"
        )


def prepare(
    client: SSHClient, options: Mapping[str, Any], host: str, port: int, trust_new: bool
) -> RecordOrRefuse:
    """Make `client` check the host's key against known_hosts when it connects to host:port; return the
    policy that decides about an unknown, changed or revoked key."""
    known = KnownHosts.from_ssh_config(options)
    name = lookup_name(host, port, options.get("hostkeyalias"))
    lines = known.entries(name)
    revoked = [entry for entry in lines if entry.revoked]
    # A revoked key is never one paramiko accepts, even where a line has it as known: the policy sees it.
    valid = [entry for entry in lines if not any(r.key == entry.key for r in revoked)]
    ours = client.get_host_keys()  # paramiko checks the server's key against these
    ours.clear()
    for entry in valid:
        ours.add(lookup_name(host, port), entry.key.get_name(), entry.key)
    policy = RecordOrRefuse(known, name, valid, revoked, trust_new)
    client.set_missing_host_key_policy(policy)
    return policy
