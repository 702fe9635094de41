"""certificate: with https.mode acme, certbot obtains the site's certificate, and the site serves it.

It runs last, once the site serves the app over HTTP and nginx serves the ACME challenge on port 80
(enable_site puts the challenge location in the site, and the 443 server only once the certificate
exists). A certificate that already covers https.domains from https.directory is left alone:
certbot's timer renews it. If certbot fails, the run fails with its reason and the site keeps
serving as it did (this run's release switched back, as on any failure). How it is done
on the server: runtime/https.sh; why webroot and not certbot's nginx plugin: tasks/https.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks import configs, https
from tasks.layout import Layout
from tasks.platform import Platform
from tasks.settings import Settings
from tasks.shell import line
from tasks.steps.model import Probe, Requirement, Situation, Step, StepPlan
from tasks.steps.provision import NGINX, installed


@dataclass(frozen=True)
class Certificate:
    """certificate's facts (runtime/probe_certificate.py), with https: the certificate the site serves,
    its names, when it expires, its ACME directory."""

    path: str = ""  # "" when the site has none
    domains: tuple[str, ...] = ()
    not_after: str = ""  # UTC, ISO 8601
    server: str = ""  # the ACME directory certbot renews it from ("" for files of the user's)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Certificate:
        cert = doc.get("certificate")
        if not cert:
            return cls()
        return cls(
            cert["path"], tuple(cert.get("domains", ())), cert.get("not_after", ""), cert.get("server", "")
        )


CERTBOT = Requirement(
    lambda sit: sit.settings.https.mode == "acme"
    and sit.platform.packages.certbot not in installed(sit),
    "certbot is not installed", "provision",
)  # fmt: skip


def plan(sit: Situation) -> StepPlan:
    s, facts, paths = sit.settings, sit.facts, sit.layout
    if s.https.mode != "acme":
        return StepPlan()
    commands, files, why = [], {}, []
    if s.https.ca_bundle is not None:
        bundle = s.https.ca_bundle.read_bytes()
        if facts.sha256(paths.acme_ca_bundle) != hashlib.sha256(bundle).hexdigest() or not facts.exists(
            paths.certbot_dropin
        ):
            files["files/acme-ca.pem"] = bundle
            commands.append(line("trust_acme_ca", "files/acme-ca.pem"))
            why.append(f"certbot trusts {s.https.ca_bundle} to reach {s.https.directory} (https.ca_bundle)")
    elif facts.exists(paths.certbot_dropin) or facts.exists(paths.acme_ca_bundle):
        commands.append(line("forget_acme_ca"))
        why.append("no https.ca_bundle: certbot trusts the system's CAs again")
    wanted = https.wants_certificate(s, facts.of(Certificate))
    if wanted:
        # The site with its 443 server, validated and reloaded, once certbot has the certificate.
        site = configs.nginx_site(s, paths, sit.platform, https.tls(s, paths))
        files["files/nginx-site-tls"] = site.encode()
        commands += [
            line("obtain_certificate", *s.https.domains),
            line("enable_site", "files/nginx-site-tls", int(s.app.server_name == "_")),
            line("reload_nginx", 1),
        ]
        why += wanted
        return StepPlan(tuple(commands), files, touches=frozenset({"nginx"}), why=tuple(why),
            writes={paths.nginx_site: site},
        )  # fmt: skip
    return StepPlan(tuple(commands), files, why=tuple(why))


def acme_paths(s: Settings, paths: Layout) -> tuple[str, ...]:
    """What it compares with https.mode acme: the challenges' directory, certbot's lineage, the CA it
    trusts (https.ca_bundle) and the setting that makes certbot trust it."""
    if s.https.mode != "acme":
        return ()
    return (paths.acme_webroot, paths.certbot_fullchain, paths.acme_ca_bundle, paths.certbot_dropin)


def asks(s: Settings, paths: Layout, platform: Platform) -> Mapping[str, Any]:
    """The certificate the site serves (none without https) and, with acme, certbot's renewal config."""
    tls = https.tls(s, paths)
    renewal = paths.certbot_renewal if s.https.mode == "acme" else ""
    return {"cert": tls.cert, "renewal": renewal} if tls else {}


STEP = Step(
    "certificate",
    "With https.mode acme: certbot obtains the site's certificate (HTTP-01), nginx serves it on 443.",
    plan,
    requires=(NGINX, CERTBOT),
    runtime=("https.sh",),
    values=lambda s, paths, platform: {
        "ACME_EMAIL": s.https.email or "",
        "ACME_DIRECTORY": s.https.directory,
    },
    probe=Probe(
        paths=acme_paths,
        hashed=lambda s, paths: (paths.acme_ca_bundle,) if s.https.mode == "acme" else (),
        part="probe_certificate.py",
        asks=asks,
        facts=Certificate,
    ),
)
