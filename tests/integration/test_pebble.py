"""The ACME test CA (tests/sandbox/pebble.py) against a real certbot in a sandbox, over HTTP-01.

A sandbox installs certbot from the lab's repository, trusts the CA of pebble's HTTPS certificate,
and asks pebble for a certificate with certbot's standalone server on port 80: pebble's validation
reaches it because challtestsrv resolves every name to the sandbox. A name pointed at an address
nobody has cannot be validated, and certbot says so.
"""

from __future__ import annotations

import shlex
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.x509.verification import DNSName, PolicyBuilder, Store

from tests.sandbox.lab import Lab, Sandbox
from tests.sandbox.pebble import Pebble

pytestmark = pytest.mark.sandbox

CA_IN_SANDBOX = "/usr/local/share/lab-acme-ca.pem"
LIVE = "/etc/letsencrypt/live"


def certbot(sandbox: Sandbox, acme: Pebble, domain: str) -> subprocess.CompletedProcess:
    command = (
        f"REQUESTS_CA_BUNDLE={CA_IN_SANDBOX} certbot certonly --standalone --non-interactive --agree-tos"
        f" -m a@example.org --server {shlex.quote(acme.directory)} -d {shlex.quote(domain)}"
    )
    return sandbox.ssh(command, check=False, timeout=90)


@pytest.mark.timeout(180)
def test_certbot_in_a_sandbox_gets_a_certificate_from_pebble(lab: Lab, sandbox: Sandbox) -> None:
    started = time.monotonic()
    sandbox.ssh("apt-get update -q && apt-get install -y -q --no-install-recommends certbot", timeout=180)
    installed = time.monotonic()

    with Pebble(lab, default_ipv4=sandbox.address) as acme:
        up = time.monotonic()
        (sandbox.merged / CA_IN_SANDBOX.lstrip("/")).write_bytes(acme.ca_bundle.read_bytes())
        before = acme.orders()

        issued = certbot(sandbox, acme, "app.test")
        assert issued.returncode == 0, f"certbot failed:\n{issued.stdout}\n{issued.stderr}"
        assert acme.orders() == before + 1
        obtained = time.monotonic()

        fullchain = sandbox.ssh(f"cat {LIVE}/app.test/fullchain.pem").stdout
        chain = x509.load_pem_x509_certificates(fullchain.encode())
        assert sandbox.ssh(f"test -s {LIVE}/app.test/privkey.pem", check=False).returncode == 0
        root = x509.load_pem_x509_certificate(acme.issuer_root().encode())
        verifier = PolicyBuilder().store(Store([root])).build_server_verifier(DNSName("app.test"))
        verified = verifier.verify(chain[0], chain[1:])  # raises VerificationError if it does not chain
        assert verified[-1] == root

        acme.point("elsewhere.test", f"198.18.{lab.number}.250")  # an address nobody on the bridge has
        failed = certbot(sandbox, acme, "elsewhere.test")
        refused = time.monotonic()
        # certbot exits 1; the CA's reason is on stdout, stderr only says "Some challenges have failed."
        assert failed.returncode == 1, f"{failed.stdout}\n{failed.stderr}"
        assert "Some challenges have failed." in failed.stderr, failed.stderr
        why = [line.strip() for line in failed.stdout.splitlines() if line.strip().startswith("Detail:")]
        assert len(why) == 1 and f"198.18.{lab.number}.250:80" in why[0], failed.stdout
        assert acme.orders() == before + 2  # the order is made, then its authorization fails
        assert sandbox.ssh(f"test -e {LIVE}/elsewhere.test", check=False).returncode != 0

    print(
        f"\ncertbot installed in {installed - started:.1f} s, pebble up in {up - installed:.2f} s,"
        f" certificate in {obtained - up:.1f} s, refusal in {refused - obtained:.1f} s"
        f"\ncertbot's refusal (exit {failed.returncode}): {why[0]}"
    )
