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

from tasks import configs, https
from tasks.shell import line
from tasks.steps.model import Requirement, Situation, Step, StepPlan
from tasks.steps.provision import NGINX

CERTBOT = Requirement(
    lambda sit: sit.settings.https_mode == "acme"
    and sit.platform.packages.certbot not in sit.facts.installed,
    "certbot is not installed", "provision",
)  # fmt: skip


def plan(sit: Situation) -> StepPlan:
    s, facts, paths = sit.settings, sit.facts, sit.layout
    if s.https_mode != "acme":
        return StepPlan("certificate")
    commands, files, why = [], {}, []
    if s.https_ca_bundle is not None:
        bundle = s.https_ca_bundle.read_bytes()
        if facts.sha256(paths.acme_ca_bundle) != hashlib.sha256(bundle).hexdigest() or not facts.exists(
            paths.certbot_dropin
        ):
            files["files/acme-ca.pem"] = bundle
            commands.append(line("trust_acme_ca", "files/acme-ca.pem"))
            why.append(f"certbot trusts {s.https_ca_bundle} to reach {s.https_directory} (https.ca_bundle)")
    elif facts.exists(paths.certbot_dropin) or facts.exists(paths.acme_ca_bundle):
        commands.append(line("forget_acme_ca"))
        why.append("no https.ca_bundle: certbot trusts the system's CAs again")
    wanted = https.wants_certificate(s, facts)
    if wanted:
        # The site with its 443 server, validated and reloaded, once certbot has the certificate.
        site = configs.nginx_site(s, paths, sit.platform, https.tls(s, paths))
        files["files/nginx-site-tls"] = site.encode()
        commands += [
            line("obtain_certificate", *s.https_domains),
            line("enable_site", "files/nginx-site-tls", int(s.server_name == "_")),
            line("reload_nginx", 1),
        ]
        why += wanted
        return StepPlan(
            "certificate", tuple(commands), files, touches=frozenset({"nginx"}), why=tuple(why),
            writes={paths.nginx_site: site},
        )  # fmt: skip
    return StepPlan("certificate", tuple(commands), files, why=tuple(why))


STEP = Step(
    "certificate",
    "With https.mode acme: certbot obtains the site's certificate (HTTP-01), nginx serves it on 443.",
    plan,
    requires=(NGINX, CERTBOT),
)
