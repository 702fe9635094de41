"""Host keys: every connection is checked against known_hosts as OpenSSH checks it (Fabric alone accepts
any key), with paramiko's own HostKeys and the SSH config Fabric loaded (-S FILE, or ~/.ssh/config).

- The files: UserKnownHostsFile and GlobalKnownHostsFile from the SSH config, or OpenSSH's defaults; the
  host is looked up as HostKeyAlias if set, else as `host` or `[host]:port` (hashed entries too).
- A known key that matches: the connection goes on. A known host offering another key: refused, always,
  naming the known_hosts line to check.
- An unknown host: refused with its key's type and SHA256 fingerprint, unless trusting it was asked for
  (--trust-new-host-key) or the SSH config says StrictHostKeyChecking accept-new (or no): then its key is
  recorded in the first UserKnownHostsFile, hashed if HashKnownHosts says so.
"""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paramiko import HostKeys, MissingHostKeyPolicy, PKey, SSHClient
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
    """A known_hosts line that names the host."""

    file: Path
    line: int
    key: PKey

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
                lines = path.read_text().splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for number, text in enumerate(lines, 1):
                text = text.strip()
                if not text or text.startswith(("#", "@")):  # @cert-authority and @revoked: not for us
                    continue
                try:
                    entry = HostKeyEntry.from_line(text, number)
                except InvalidHostKey:
                    continue
                if entry is not None and names(entry, name):
                    found.append(Known(path, number, entry.key))
        return found

    def record(self, name: str, key: PKey) -> Path:
        """Append the host's key to the first user known_hosts file; return that file."""
        if not self.user_files:
            raise HostKeyError(f"{name}: no UserKnownHostsFile to record its key in")
        path = self.user_files[0]
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shown = HostKeys.hash_host(name) if self.hash_new else name
        with _recording, os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as file:
            if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                file.write("\n")
            file.write(HostKeyEntry([shown], key).to_line())
        return path


def names(entry: HostKeyEntry, name: str) -> bool:
    """Whether a known_hosts entry is for `name`: by name, or hashed (HashKnownHosts) with its salt."""
    return any(
        hostname == name or (hostname.startswith("|1|") and HostKeys.hash_host(name, hostname) == hostname)
        for hostname in entry.hostnames
    )


class RecordOrRefuse(MissingHostKeyPolicy):
    """What happens to a key no known_hosts file has for the host, or to another key than the one it has."""

    def __init__(self, known: KnownHosts, name: str, lines: list[Known], trust_new: bool) -> None:
        self.known, self.name, self.lines, self.trust_new = known, name, lines, trust_new
        self.recorded = ""  # what was recorded where, once it was

    def missing_host_key(self, client: SSHClient, hostname: str, key: PKey) -> None:
        if self.trust_new or self.known.strict in ("accept-new", "no"):
            self.recorded = f"{describe(key)} recorded in {self.known.record(self.name, key)}"
            return
        files = ", ".join(str(p) for p in self.known.user_files) or "no known_hosts file"
        raise HostKeyError(
            f"unknown host key {describe(key)} for {self.name} (not in {files}): if that is the server's"
            " key, trust it with --trust-new-host-key, or StrictHostKeyChecking accept-new in the SSH config"
        )

    def changed(self, offered: PKey) -> HostKeyError:
        """The refusal of a host whose key is not the one known_hosts has: loud, and no flag overrides it."""
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
    policy that decides about an unknown key."""
    known = KnownHosts.from_ssh_config(options)
    name = lookup_name(host, port, options.get("hostkeyalias"))
    lines = known.entries(name)
    ours = client.get_host_keys()  # paramiko checks the server's key against these
    ours.clear()
    for entry in lines:
        ours.add(lookup_name(host, port), entry.key.get_name(), entry.key)
    policy = RecordOrRefuse(known, name, lines, trust_new)
    client.set_missing_host_key_policy(policy)
    return policy
