"""An ACME test CA for sandboxes: pebble and its mock DNS server pebble-challtestsrv, on the control machine.

Both listen on the lab's bridge address only (never 0.0.0.0), so only the lab's sandboxes and this
machine reach them. Pebble's directory is served over HTTPS with a certificate from a small CA made
here (`ca_bundle`: what a sandbox's certbot must trust, through REQUESTS_CA_BUNDLE); the
certificates pebble issues chain to a root it makes afresh at each start (`issuer_root()`).
Pebble's validation authority asks challtestsrv for a domain's address: every name resolves to the
`default_ipv4` given (a sandbox), unless `point()` sends it elsewhere.

    with Pebble(lab, default_ipv4=sandbox.address) as acme:
        sandbox.ssh(f"REQUESTS_CA_BUNDLE=... certbot certonly --server {acme.directory} ...")
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.sandbox.lab import Lab, _answers, _poll

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
ACME_PORT = 14000
MANAGEMENT_PORT = 15000
DNS_PORT = 8053
DNS_MANAGEMENT_PORT = 8055
START_TIMEOUT = 20
STOP_TIMEOUT = 5
# What pebble 2.4.0 logs for each request to its new-order endpoint (before it looks at the request).
NEW_ORDER_LOG = "POST /order-plz -> calling handler()"
# Pebble's test-only behaviours turned off: no random sleeps before validating, no good nonce
# rejected as bad, no valid authorization reused at random (half the time by default), so that
# every order validates its domains afresh.
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}


class PebbleError(RuntimeError):
    pass


class Pebble:
    """pebble + pebble-challtestsrv for one lab; a context manager that stops both on exit."""

    def __init__(self, lab: Lab, default_ipv4: str, timeout: float = START_TIMEOUT) -> None:
        self.lab = lab
        self.default_ipv4 = default_ipv4
        self.timeout = timeout
        self._processes: dict[str, subprocess.Popen] = {}

    # ---- where things are ------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.lab.dir / "pebble"

    @property
    def address(self) -> str:
        return self.lab.gateway

    @property
    def ca_bundle(self) -> Path:
        """PEM of the CA that signed pebble's HTTPS certificate: trust it to reach `directory`."""
        return self.dir / "ca.pem"

    @property
    def directory(self) -> str:
        return f"https://{self.address}:{ACME_PORT}/dir"

    def pid(self, name: str) -> int | None:
        """PID of "pebble" or "pebble-challtestsrv" while it runs."""
        proc = self._processes.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def pebble_log(self) -> Path:
        return self.dir / "pebble.log"

    @property
    def challtestsrv_log(self) -> Path:
        return self.dir / "challtestsrv.log"

    # ---- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Pebble:
        """Make the certificates, start challtestsrv then pebble; return once both answer."""
        ports = (ACME_PORT, MANAGEMENT_PORT, DNS_PORT, DNS_MANAGEMENT_PORT)
        taken = [port for port in ports if _answers(self.address, port)]
        if taken:  # checked first, or another server's answer would pass for ours
            raise PebbleError(f"port(s) {taken} on {self.address} in use (another Pebble of this lab?)")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self._make_certificates()
        config = {
            "pebble": {
                "listenAddress": f"{self.address}:{ACME_PORT}",
                "managementListenAddress": f"{self.address}:{MANAGEMENT_PORT}",
                "certificate": str(self.dir / "server.pem"),
                "privateKey": str(self.dir / "server.key"),
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.dir / "pebble-config.json").write_text(json.dumps(config, indent=2))
        try:
            self._spawn(
                "pebble-challtestsrv",
                [
                    CHALLTESTSRV,
                    "-defaultIPv4", self.default_ipv4,
                    "-defaultIPv6", "",  # no AAAA answers: validation goes to the IPv4 address only
                    "-dns01", f"{self.address}:{DNS_PORT}",
                    "-management", f"{self.address}:{DNS_MANAGEMENT_PORT}",
                    "-http01", "", "-https01", "", "-tlsalpn01", "",
                ],
                self.challtestsrv_log,
            )  # fmt: skip
            self._wait(
                "pebble-challtestsrv",
                self.challtestsrv_log,
                lambda: _answers(self.address, DNS_MANAGEMENT_PORT),
                f"on {self.address}:{DNS_MANAGEMENT_PORT}",
            )
            self._spawn(
                "pebble",
                [
                    PEBBLE,
                    "-config", str(self.dir / "pebble-config.json"),
                    "-dnsserver", f"{self.address}:{DNS_PORT}",
                ],
                self.pebble_log,
                env=PEBBLE_ENV,
            )  # fmt: skip
            self._wait("pebble", self.pebble_log, self._directory_answers, f"at {self.directory}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate both processes by PID and wait until they have exited; safe to call twice."""
        for name in ("pebble", "pebble-challtestsrv"):
            proc = self._processes.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def _spawn(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        """Start one server, output to its log. It gets SIGTERM should this process die without
        stop() (setpriv --pdeathsig), and no proxy nor PEBBLE_* settings from this environment:
        pebble's validation must go straight to the sandboxes, and behave as configured here."""
        clean = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        clean = {k: v for k, v in clean.items() if not k.startswith("PEBBLE_")}
        if shutil.which("setpriv"):
            cmd = ["setpriv", "--pdeathsig", "TERM", "--", *cmd]
        with open(log, "ab") as out:
            self._processes[name] = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.dir, env={**clean, **(env or {})},
            )  # fmt: skip

    def _wait(self, name: str, log: Path, ready: Callable[[], bool], what: str) -> None:
        """Poll until ready(); raise with the log's tail if the process exits or `timeout` s pass."""
        proc = self._processes[name]
        if _poll(lambda: proc.poll() is not None or ready(), self.timeout, 0.05) and proc.poll() is None:
            return
        if proc.poll() is not None:
            why = f"exited with {proc.returncode}"
        else:
            why = f"did not answer {what} within {self.timeout:g} s"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise PebbleError(f"{name} {why}; {log} ends with:\n{tail}")

    def _directory_answers(self) -> bool:
        """Whether pebble serves its directory (with our certificate) and its management interface."""
        try:
            self._open(urllib.request.Request(self.directory), self._context())
            self.issuer_root()
        except (OSError, PebbleError):
            return False
        return True

    # ---- certificates ----------------------------------------------------------------------------
    def _make_certificates(self) -> None:
        """A CA and, signed by it, a certificate for the bridge address (SAN IP) that pebble serves."""
        now = datetime.datetime.now(datetime.UTC)
        start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"flaskdeploy lab {self.lab.number} CA")]
        )
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.address)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(self.address))]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (self.dir / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
        key_path = self.dir / "server.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    # ---- talking to them -------------------------------------------------------------------------
    def issuer_root(self) -> str:
        """PEM of the root that pebble's issued certificates chain to (made afresh at each start)."""
        url = f"https://{self.address}:{MANAGEMENT_PORT}/roots/0"
        return self._open(urllib.request.Request(url), self._context()).decode()

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def point(self, domain: str, address: str) -> None:
        """Make `domain` resolve (A record) to `address` instead of the default."""
        self._challtestsrv("add-a", {"host": domain, "addresses": [address]})

    def unpoint(self, domain: str) -> None:
        """Back to the default address for `domain`."""
        self._challtestsrv("clear-a", {"host": domain})

    def orders(self) -> int:
        """How many new-order requests pebble has received since it started (counted in its log)."""
        return self.pebble_log.read_text(errors="replace").count(NEW_ORDER_LOG)

    def _challtestsrv(self, endpoint: str, body: dict) -> None:
        url = f"http://{self.address}:{DNS_MANAGEMENT_PORT}/{endpoint}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        self._open(request, None)

    @staticmethod
    def _open(request: urllib.request.Request, context: ssl.SSLContext | None) -> bytes:
        # No proxy: an http_proxy in the environment must not carry lab traffic elsewhere.
        handlers: list = [urllib.request.ProxyHandler({})]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=10) as answer:
                return answer.read()
        except urllib.error.HTTPError as error:
            raise PebbleError(
                f"{request.get_method()} {request.full_url}: {error.code} {error.read()!r}"
            ) from None


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
