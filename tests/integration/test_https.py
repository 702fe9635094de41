"""HTTPS on a sandbox server: a certificate from an ACME CA (pebble, on the control machine) with the
server's certbot, and a certificate of the user's own (https.mode files).

One sandbox and one pebble for the module. challtestsrv answers every name with the sandbox's address,
so pebble's HTTP-01 validation reaches the sandbox's nginx; a name pointed at an address nobody has
cannot be validated. The sandbox's certbot trusts pebble's CA through https.ca_bundle.
"""

from __future__ import annotations

import datetime
import http.client
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import fab as fab_cli
from tests.sandbox.lab import Lab, Sandbox
from tests.sandbox.pebble import Pebble

pytestmark = pytest.mark.sandbox

DOMAIN = "app.test"


@dataclass
class Acme:
    server: Sandbox
    pebble: Pebble
    root: Path  # pebble's issuing root, as curl --cacert takes it
    override: Path
    deploy: fab_cli.Run  # the first HTTPS deploy

    def fab(self, *args: str, override: Path | None = None) -> fab_cli.Run:
        settings = str(override or self.override)
        return fab_cli.run(self.server.lab.ssh_config, self.server.name, "-f", settings, *args, timeout=600)

    def ssh(self, command: str) -> str:
        return self.server.ssh(command).stdout.strip()


def write_settings(path: Path, **sections: dict) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


def recap(run: fab_cli.Run, host: str) -> str:
    lines = [line for line in run.stdout.splitlines() if line.startswith(f"{host}  ok=")]
    assert len(lines) == 1, f"no single recap line for {host}:\n{run}"
    return lines[0]


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True)


def https_get(acme: Acme, domain: str = DOMAIN, cacert: Path | None = None) -> subprocess.CompletedProcess:
    """What a client gets from https://DOMAIN/, resolved to the sandbox, trusting `cacert`."""
    return curl(
        "--cacert", str(cacert or acme.root), "--resolve", f"{domain}:443:{acme.server.address}",
        f"https://{domain}/",
    )  # fmt: skip


def http_get(address: str, host: str, path: str = "/") -> tuple[int, str | None, str]:
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        reply = conn.getresponse()
        return reply.status, reply.getheader("Location"), reply.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def acme(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acme]:
    """The sample app deployed with https.mode acme against pebble."""
    work = tmp_path_factory.mktemp("https")
    (server,) = lab.start(1)
    try:
        with Pebble(lab, default_ipv4=server.address) as pebble:
            root = work / "pebble-root.pem"
            root.write_text(pebble.issuer_root())
            https = {
                "mode": "acme", "domains": [DOMAIN], "email": "ops@example.org",
                "directory": pebble.directory, "ca_bundle": str(pebble.ca_bundle),
            }  # fmt: skip
            override = write_settings(work / "acme.yaml", https=https)
            deploy = fab_cli.run(lab.ssh_config, server.name, "-f", str(override), "deploy", timeout=600)
            assert deploy.code == 0, f"the HTTPS deploy failed: {deploy}"
            yield Acme(server, pebble, root, override, deploy)
    finally:
        lab.remove(server)


def test_an_acme_deploy_serves_the_app_over_https_with_the_cas_certificate(acme: Acme):
    host = acme.server.name
    assert f"{host}  certificate  changed" in acme.deploy.stdout, acme.deploy
    print(f"HTTPS deploy against pebble: {acme.deploy.seconds:.1f} s")  # for the note
    served = https_get(acme)
    assert served.returncode == 0, served.stderr
    assert served.stdout == "flask index page"
    # Mozilla intermediate: TLS 1.2 and 1.3 only.
    old = curl("--cacert", str(acme.root), "--resolve", f"{DOMAIN}:443:{acme.server.address}",
               "--tlsv1.1", "--tls-max", "1.1", f"https://{DOMAIN}/")  # fmt: skip
    assert old.returncode != 0


def test_http_redirects_to_https_except_the_acme_challenge(acme: Acme):
    status, location, _ = http_get(acme.server.address, DOMAIN, "/some/page?x=1")
    assert (status, location) == (301, f"https://{DOMAIN}/some/page?x=1")
    acme.ssh("install -d /srv/flaskdemo/acme/.well-known/acme-challenge")
    acme.ssh("echo token > /srv/flaskdemo/acme/.well-known/acme-challenge/probe-token")
    status, _, body = http_get(acme.server.address, DOMAIN, "/.well-known/acme-challenge/probe-token")
    acme.ssh("rm /srv/flaskdemo/acme/.well-known/acme-challenge/probe-token")
    assert (status, body) == (200, "token\n")


def test_a_second_deploy_changes_nothing_and_orders_nothing(acme: Acme):
    before = acme.pebble.orders()
    again = acme.fab("deploy")
    assert again.code == 0, again
    assert " changed=0 failed=0" in recap(again, acme.server.name), again
    assert acme.pebble.orders() == before


def test_certbot_renews_against_the_ca_with_the_kits_settings(acme: Acme):
    # certbot's timer runs certbot.service: its environment (the kit's drop-in) trusts pebble's CA.
    environment = acme.ssh("systemctl show -p Environment --value certbot.service")
    assert environment.startswith("REQUESTS_CA_BUNDLE=")
    assert acme.ssh("systemctl is-enabled certbot.timer") == "enabled"
    # A dry run goes to Let's Encrypt's staging CA unless told the server (a real renewal reads the
    # lineage's own, pebble, from its renewal configuration: checked below).
    renewed = acme.server.ssh(
        f"env {environment} certbot renew --dry-run --no-random-sleep-on-renew"
        f" --server {acme.pebble.directory}",
        check=False,
        timeout=120,
    )
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    renewal = acme.ssh("cat /etc/letsencrypt/renewal/flaskdemo.conf")
    assert f"server = {acme.pebble.directory}" in renewal
    assert "renew_hook = nginx -t -q && systemctl reload nginx" in renewal
    assert "authenticator = webroot" in renewal


def test_status_shows_the_certificates_domains_and_expiry(acme: Acme):
    status = acme.fab("status")
    assert status.code == 0, status
    served = x509.load_pem_x509_certificate(acme.ssh("cat /etc/letsencrypt/live/flaskdemo/cert.pem").encode())
    match = re.search(rf"{re.escape(DOMAIN)} until (\d{{4}}-\d\d-\d\d)", status.stdout)
    assert match, status.stdout
    assert match[1] == f"{served.not_valid_after_utc:%Y-%m-%d}"
    as_json = acme.fab("status", "--json")
    assert f'"domains": ["{DOMAIN}"]' in as_json.stdout


def test_a_domain_pointed_elsewhere_fails_in_one_line_and_the_site_serves_http(acme: Acme, tmp_path):
    # Another app on the same server, served over HTTP under its own name; then HTTPS for a name whose
    # DNS points at an address nobody has.
    elsewhere = "elsewhere.test"
    acme.pebble.point(elsewhere, f"198.18.{acme.server.lab.number}.250")
    app = {"name": "badtls", "port": 8093, "server_name": elsewhere}
    plain = write_settings(tmp_path / "plain.yaml", app=app)
    assert acme.fab("deploy", override=plain).code == 0
    https = {
        "mode": "acme", "domains": [elsewhere], "email": "ops@example.org",
        "directory": acme.pebble.directory, "ca_bundle": str(acme.pebble.ca_bundle),
    }  # fmt: skip
    failing = acme.fab("deploy", override=write_settings(tmp_path / "bad.yaml", app=app, https=https))
    assert failing.code == 1, failing
    (line,) = [x for x in failing.stdout.splitlines() if "  certificate  failed" in x]
    assert f"certbot could not obtain a certificate for {elsewhere}" in line
    assert f"{elsewhere}: " in line and "198.18." in line  # the CA's reason: it could not connect
    assert "Traceback" not in failing.output
    status, _, body = http_get(acme.server.address, elsewhere)
    assert (status, body) == (200, "flask index page")  # still served over HTTP, as before
    assert https_get(acme, elsewhere).returncode != 0  # no certificate for it
    other = https_get(acme)
    assert other.stdout == "flask index page", other.stderr  # the other site keeps its own


def self_signed(directory: Path, domain: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = directory / f"{domain}.crt", directory / f"{domain}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_files_mode_installs_the_users_certificate_and_never_shows_its_key(acme: Acme, tmp_path):
    domain = "files.test"
    cert, key = self_signed(tmp_path, domain)
    app = {"name": "filetls", "port": 8094, "server_name": domain}
    https = {"mode": "files", "domains": [domain], "cert": str(cert), "key": str(key), "hsts": True}
    settings = write_settings(tmp_path / "files.yaml", app=app, https=https)
    check = acme.fab("deploy", "--check", override=settings)
    deploy = acme.fab("deploy", override=settings)
    assert deploy.code == 0, deploy
    secret = key.read_text().splitlines()[1]  # a line of the key's base64
    assert secret not in check.output and secret not in deploy.output
    assert acme.ssh("stat -c '%U:%G %a' /etc/ssl/flaskdeploy/filetls.key") == "root:root 600"
    served = curl("-i", "--cacert", str(cert), "--resolve", f"{domain}:443:{acme.server.address}",
                  f"https://{domain}/")  # fmt: skip
    assert served.returncode == 0, served.stderr
    assert served.stdout.endswith("flask index page")
    assert "strict-transport-security: max-age=63072000" in served.stdout.lower()
    again = acme.fab("deploy", override=settings)
    assert " changed=0 failed=0" in recap(again, acme.server.name), again
