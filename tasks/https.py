"""HTTPS: which certificate nginx serves, and whether the `https` settings go together.

Three modes (https.mode):
- off: the site serves port 80 only, as the recipe does.
- acme: certbot (Debian's package) obtains a certificate for https.domains from https.directory over
  HTTP-01, with its webroot authenticator: nginx serves the challenge files from a directory of the
  app's (`acme_webroot`) on port 80. Webroot rather than certbot's nginx plugin, because the kit owns
  the site file: the plugin would rewrite it, and the next deploy would see a changed file and put its
  own back. certbot keeps the certificate as the lineage named like the app; its timer renews it, and
  the lineage's deploy hook reloads nginx (after `nginx -t`).
- files: the user's certificate and key (https.cert, https.key) are installed on the server, the key
  0600 and root's, never printed.

With HTTPS, port 80 answers 301 to https:// except for the ACME challenge path, and for requests from
the server itself (the health request goes through nginx on 127.0.0.1:80, whichever site is live).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

if TYPE_CHECKING:
    from tasks.facts import Facts
    from tasks.layout import Layout
    from tasks.settings import Settings
    from tasks.steps.certificate import Certificate


@dataclass(frozen=True)
class Tls:
    """What the nginx site's 443 server reads: the certificate (its chain after it) and its key."""

    cert: str
    key: str


def tls(s: Settings, paths: Layout, facts: Facts | None = None) -> Tls | None:
    """The certificate nginx serves (None: the site serves HTTP only, https.mode off). Given the facts,
    acme's only once certbot has obtained it: before, the site serves the challenge on port 80."""
    if s.https.mode == "files":
        return Tls(paths.tls_cert, paths.tls_key)
    if s.https.mode == "acme" and (facts is None or facts.exists(paths.certbot_fullchain)):
        return Tls(paths.certbot_fullchain, paths.certbot_privkey)
    return None


def wants_certificate(s: Settings, held: Certificate) -> list[str]:
    """Why certbot must be asked for a certificate (acme mode), given the one the site serves (as the
    probe found it): none yet, other domains, another CA."""
    if s.https.mode != "acme":
        return []
    if not held.domains:
        return [f"no certificate yet: obtain one for {' '.join(s.https.domains)} from {s.https.directory}"]
    why = []
    if set(held.domains) != set(s.https.domains):
        why.append(
            f"the certificate is for {' '.join(held.domains)}: obtain one for {' '.join(s.https.domains)}"
        )
    if held.server and held.server != s.https.directory:
        why.append(f"the certificate is from {held.server}: obtain one from {s.https.directory}")
    return why


def problem(s: Settings) -> str | None:
    """Why the https settings do not go together (one line naming the key and the fix), or None."""
    if s.https.mode == "off":
        return None
    if not s.https.domains:
        return f"https.domains: list the site's names (like [example.org]) for https.mode {s.https.mode}"
    if s.https.mode == "acme":
        if not s.https.email:
            return "https.email: the ACME account's email address is needed for https.mode acme"
        return None
    if s.https.cert is None or s.https.key is None:
        missing = "https.cert" if s.https.cert is None else "https.key"
        return f"{missing}: give the path of the certificate's file (PEM) for https.mode files"
    return files_problem(s)


def files_problem(s: Settings) -> str | None:
    """Whether https.cert is a PEM certificate for https.domains and https.key its unencrypted key."""
    assert s.https.cert is not None and s.https.key is not None
    try:
        cert = x509.load_pem_x509_certificates(s.https.cert.read_bytes())[0]
    except (ValueError, OSError):
        return f"https.cert: {s.https.cert} is no PEM certificate (-----BEGIN CERTIFICATE-----)"
    try:
        key = serialization.load_pem_private_key(s.https.key.read_bytes(), password=None)
    except TypeError:
        return f"https.key: {s.https.key} is encrypted: nginx needs the key without a passphrase"
    except (ValueError, OSError, serialization.UnsupportedAlgorithm):
        return f"https.key: {s.https.key} is no PEM private key"
    if key.public_key().public_bytes(*_SPKI) != cert.public_key().public_bytes(*_SPKI):
        return f"https.key: {s.https.key} is not the key of the certificate in {s.https.cert}"
    names = cert_names(cert)
    uncovered = [d for d in s.https.domains if not any(covers(name, d) for name in names)]
    if uncovered:
        held = " ".join(names) or "no name"
        return f"https.cert: the certificate is for {held}, not for {' '.join(uncovered)}"
    return None


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in san.get_values_for_type(x509.DNSName)]


def covers(name: str, domain: str) -> bool:
    """Whether a certificate's name (a wildcard `*.example.org` too) covers a domain."""
    if name.startswith("*."):
        head, _, rest = domain.partition(".")
        return bool(head) and rest == name[2:]
    return name == domain
