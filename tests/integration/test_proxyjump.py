"""Deploying through a jump host (ProxyJump) on sandbox servers: the jump host's key is checked as the
target's is, against the known_hosts of the jump host's own SSH config entry, before anything logs in to
it; once trusted, the deploy goes through it.

Two servers (module scope): `jump`, and `web`, which the SSH config reaches through `jump`. web's
known_hosts has both keys, jump's has none at first: jump's own entry is the one that counts.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "jumpapp", 8094


@dataclass(frozen=True)
class Route:
    jump: Sandbox
    web: Sandbox
    ssh_config: Path  # web through jump
    jump_known_hosts: Path  # jump's entry's UserKnownHostsFile
    version: Version

    def fab(self, *args: str) -> fab_cli.Run:
        return fab_cli.run(self.ssh_config, self.web.name, "-f", str(self.version.override), *args)

    def logins_from(self, sandbox: Sandbox, address: str) -> list[str]:
        """sshd's lines on `sandbox` of logins from `address`."""
        log = sandbox.ssh("journalctl -u ssh --no-pager -o cat").stdout
        return re.findall(rf"Accepted publickey for root from {re.escape(address)} port \d+", log)


def host_key(sandbox: Sandbox) -> tuple[str, str]:
    """The server's host key (type, base64) and its fingerprint as `ssh-keygen -lf` prints it."""
    pub = sandbox.dir / "ssh_host_ed25519_key.pub"
    printed = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True)
    return " ".join(pub.read_text().split()[:2]), printed.stdout.split()[1]


def entry(lab: Lab, sandbox: Sandbox, known_hosts: Path, more: str = "") -> str:
    """The lab's SSH config entry for the sandbox, with its own known_hosts file and `more` lines."""
    text = next(e for e in lab.ssh_config.read_text().split("\n\n") if e.startswith(f"Host {sandbox.name}\n"))
    text = re.sub(r"UserKnownHostsFile .*", f"UserKnownHostsFile {known_hosts}", text)
    return text.rstrip("\n") + "\n" + more


@pytest.fixture(scope="module")
def route(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Route]:
    jump, web = lab.start(2)
    work = tmp_path_factory.mktemp("proxyjump")
    try:
        jump_known, web_known = work / "known_hosts-jump", work / "known_hosts-web"
        jump_known.write_text("")
        web_known.write_text("".join(f"{s.address} {host_key(s)[0]}\n" for s in (web, jump)))
        ssh_config = work / "ssh_config"
        ssh_config.write_text(
            entry(lab, jump, jump_known) + "\n" + entry(lab, web, web_known, f"  ProxyJump {jump.name}\n")
        )
        yield Route(jump, web, ssh_config, jump_known, AppVersions(work, APP, PORT).make("j1"))
    finally:
        lab.remove(jump)
        lab.remove(web)


def test_a_jump_host_with_an_unknown_key_is_refused_naming_it_and_web_is_untouched(route: Route):
    refused = route.fab("deploy")
    assert refused.code == 1, str(refused)
    assert "Traceback" not in refused.output
    (line,) = [line for line in refused.output.splitlines() if "  failed: " in line]
    fingerprint = host_key(route.jump)[1]
    assert (
        f"{route.web.name}  connect  failed: jump host {route.jump.name}: unknown host key ED25519 key"
        f" {fingerprint} for {route.jump.address} (not in {route.jump_known_hosts})"
    ) in line, str(refused)
    assert route.jump_known_hosts.read_text() == ""
    assert route.web.ssh(f"test -e /srv/{APP}", check=False).returncode == 1
    assert route.logins_from(route.web, route.jump.address) == []


def test_once_trusted_the_deploy_goes_through_the_jump_host(route: Route):
    key, fingerprint = host_key(route.jump)
    trusted = route.fab("deploy", "--trust-new-host-key")
    assert trusted.code == 0, str(trusted)
    recorded = f"ED25519 key {fingerprint} recorded in {route.jump_known_hosts}"
    assert f"trusted: jump host {route.jump.name}: {recorded}" in trusted.output, str(trusted)
    assert route.jump_known_hosts.read_text() == f"{route.jump.address} {key}\n"
    # web saw the deploy's login come from jump's address, not from this machine's.
    wait_until(lambda: route.logins_from(route.web, route.jump.address), 10, "a login from the jump host")
    assert route.version.expected in route.web.ssh("curl -s -m 5 http://127.0.0.1/").stdout
    again = route.fab("releases", "--json")  # known now: no flag needed
    assert again.code == 0 and "trusted:" not in again.output, str(again)
