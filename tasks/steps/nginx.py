"""nginx: keep the stock default site, enable the app's site (validated before it goes live), reload.

How each is done on the server: runtime/nginx.sh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks import configs, https
from tasks.layout import Layout
from tasks.settings import Settings
from tasks.shell import line
from tasks.steps.model import Probe, Situation, Step, StepPlan
from tasks.steps.provision import NGINX, installed


@dataclass(frozen=True)
class NginxConfig:
    """reload_nginx's facts (runtime/probe_nginx.py)."""

    stale: bool = False  # a file under nginx's config changed after nginx last loaded it

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> NginxConfig:
        return cls(bool(doc.get("nginx_stale")))


def plan_backup_default(sit: Situation) -> StepPlan:
    facts, paths = sit.facts, sit.layout
    # A backup, once taken, is never overwritten: it is the only copy of the stock site.
    has_nginx = sit.platform.packages.nginx in installed(sit)
    if facts.exists(paths.nginx_default_backup) or (has_nginx and not facts.exists(paths.nginx_default)):
        return StepPlan()
    why = (f"copy {paths.nginx_default} to {paths.nginx_default_backup} (once)",)
    return StepPlan((line("backup_default_site"),), why=why)


def plan_enable_site(sit: Situation) -> StepPlan:
    s, facts, paths = sit.settings, sit.facts, sit.layout
    # With https.mode acme, the 443 server comes once certbot has the certificate (steps/certificate.py).
    site = configs.nginx_site(s, paths, sit.platform, https.tls(s, paths, facts))
    replaces_default = s.app.server_name == "_"
    tls_files = {}  # https.mode files: the user's certificate and key, where they differ from the server's
    if s.https.mode == "files":
        assert s.https.cert is not None and s.https.key is not None
        for local, there in ((s.https.cert, paths.tls_cert), (s.https.key, paths.tls_key)):
            if facts.sha256(there) != hashlib.sha256(local.read_bytes()).hexdigest():
                tls_files[there] = local
    if (
        facts.sha256(paths.nginx_site) == configs.sha256(site)
        and facts.link(paths.nginx_link) == paths.nginx_site
        and not (replaces_default and facts.exists(paths.nginx_default_link))
        and not tls_files
    ):
        return StepPlan()
    why = [f"install {there} (https.{'cert' if there == paths.tls_cert else 'key'})" for there in tls_files]
    commands, files = [], {}
    if tls_files:  # both, so that the pair always matches
        files = {"files/tls.crt": s.https.cert, "files/tls.key": s.https.key}
        commands.append(line("install_tls_files", "files/tls.crt", "files/tls.key"))
    if facts.link(paths.nginx_link) != paths.nginx_site:
        why.append(f"link {paths.nginx_link} -> {paths.nginx_site}")
    if replaces_default and facts.exists(paths.nginx_default_link):
        why.append(f"disable the stock site ({paths.nginx_default_link}): this site is the default server")
    return StepPlan(
        (*commands, line("enable_site", "files/nginx-site", int(replaces_default))),
        {**files, "files/nginx-site": site.encode()},
        touches=frozenset({"nginx"}),
        why=tuple(why),
        writes={paths.nginx_site: site},
    )


def plan_reload_nginx(sit: Situation) -> StepPlan:
    facts, stale = sit.facts, sit.facts.of(NginxConfig).stale
    # Run alone, it reloads when nginx's config changed since nginx loaded it; inside deploy, also when
    # an earlier step may change that config.
    if facts.active(sit.platform.nginx_unit) and not stale and not sit.earlier_touches("nginx"):
        return StepPlan()
    if not facts.active(sit.platform.nginx_unit):
        why = "nginx is not running: start it"
    elif stale:
        why = "nginx's config changed since nginx loaded it: reload nginx"
    else:
        why = "an earlier step changes nginx's config: reload nginx (if nginx -t passes)"
    return StepPlan((line("reload_nginx", int(stale)),), why=(why,))


def site_paths(s: Settings, paths: Layout) -> tuple[str, ...]:
    """What enable_site compares: the site, its link, the stock site's link, and the certificate files
    the site serves (the user's with https.mode files; certbot's, once it has them, with acme)."""
    tls = {"files": (paths.tls_cert, paths.tls_key), "acme": (paths.certbot_fullchain,)}.get(s.https.mode, ())
    return (paths.nginx_site, paths.nginx_link, paths.nginx_default_link, *tls)


def site_hashed(s: Settings, paths: Layout) -> tuple[str, ...]:
    """Of those, the kit's files whose content it compares: the site, the user's certificate files."""
    return (paths.nginx_site, *((paths.tls_cert, paths.tls_key) if s.https.mode == "files" else ()))


BACKUP_DEFAULT = Step(
    "backup_default",
    "Keep a copy of nginx's stock default site as default.bak (once; never overwritten).",
    plan_backup_default,
    requires=(NGINX,),
    runtime=("nginx.sh",),
    probe=Probe(paths=lambda s, paths: (paths.nginx_default, paths.nginx_default_backup)),
)
ENABLE_SITE = Step(
    "enable_site",
    "Render the nginx site (with https, its 443 server), link it in sites-enabled, validate with nginx -t.",
    plan_enable_site,
    requires=(NGINX,),
    runtime=("nginx.sh",),
    probe=Probe(paths=site_paths, hashed=site_hashed),
)
RELOAD_NGINX = Step(
    "reload_nginx",
    "nginx -t, then a graceful reload (only when nginx's config changed since it last loaded it).",
    plan_reload_nginx,
    requires=(NGINX,),
    runtime=("nginx.sh",),
    probe=Probe(
        part="probe_nginx.py",
        asks=lambda s, paths, platform: {
            "conf_dir": platform.nginx_conf_dir,
            "pid": platform.nginx_pid,
            "loaded_stamp": paths.nginx_loaded_stamp,
        },
        facts=NginxConfig,
    ),
)
