"""nginx: keep the stock default site, enable the app's site (validated before it goes live), reload."""

from __future__ import annotations

import shlex

from tasks import configs
from tasks.facts import (
    NGINX_DEFAULT,
    NGINX_DEFAULT_BAK,
    NGINX_DEFAULT_LINK,
    NGINX_LOADED_STAMP,
    nginx_stale_test,
)
from tasks.steps import Context, StepPlan, blocked

NO_NGINX = "nginx is not installed"

# nginx -t reports the culprit on its first [emerg] (or error) line; that line is the message.
_FIRST_ERROR = (
    'printf "%s\\n" "$out" | grep -m 1 -E "emerg|error|failed" || printf "%s\\n" "$out" | head -n 1'
)


def plan_backup_default(ctx: Context) -> StepPlan:
    facts = ctx.facts
    prerequisite = blocked(ctx, "backup_default", not facts.installed("nginx"), NO_NGINX, "provision")
    if prerequisite:
        return prerequisite
    # A backup, once taken, is never overwritten: it is the only copy of the stock site.
    if facts.exists(NGINX_DEFAULT_BAK) or (facts.installed("nginx") and not facts.exists(NGINX_DEFAULT)):
        return StepPlan("backup_default")
    return StepPlan(
        "backup_default",
        f"if [ ! -e {NGINX_DEFAULT_BAK} ] && [ -f {NGINX_DEFAULT} ]; then"
        f" cp -p {NGINX_DEFAULT} {NGINX_DEFAULT_BAK}.tmp && mv {NGINX_DEFAULT_BAK}.tmp {NGINX_DEFAULT_BAK}"
        f' || die "could not copy {NGINX_DEFAULT}"; CHANGED=1; fi',
    )


def plan_enable_site(ctx: Context) -> StepPlan:
    s, facts, q = ctx.settings, ctx.facts, shlex.quote
    prerequisite = blocked(ctx, "enable_site", not facts.installed("nginx"), NO_NGINX, "provision")
    if prerequisite:
        return prerequisite
    site = configs.nginx_site(s)
    replaces_default = s.server_name == "_"
    if (
        facts.sha256(s.nginx_site) == configs.sha256(site)
        and facts.link(s.nginx_link) == s.nginx_site
        and not (replaces_default and facts.exists(NGINX_DEFAULT_LINK))
    ):
        return StepPlan("enable_site")
    site_path, link = q(s.nginx_site), q(s.nginx_link)
    # Put the new state in place, validate the whole config, and put the old state back on failure:
    # nginx only reads files on reload, so it keeps serving the old config throughout.
    script = f"""
had_site=0; [ -f {site_path} ] && cp -p {site_path} "$W/site.before" && had_site=1
touch -r /etc/nginx/sites-available "$W/available.mtime"; touch -r /etc/nginx/sites-enabled "$W/enabled.mtime"
link_before=$(readlink {link} || true)
default_before=$(readlink {NGINX_DEFAULT_LINK} || true)
install_file "$W/files/nginx-site" {site_path} 644
if [ "$(readlink {link})" != {site_path} ]; then
  ln -sfn {site_path} {link}.tmp && mv -T {link}.tmp {link}; CHANGED=1
fi
"""
    if replaces_default:
        script += f"[ -e {NGINX_DEFAULT_LINK} ] && {{ rm -f {NGINX_DEFAULT_LINK}; CHANGED=1; }}\n"
    script += f"""
if ! out=$(nginx -t 2>&1); then
  if [ $had_site = 1 ]; then cp -p "$W/site.before" {site_path}; else rm -f {site_path}; fi
  if [ -n "$link_before" ]; then ln -sfn "$link_before" {link}; else rm -f {link}; fi
  [ -n "$default_before" ] && ln -sfn "$default_before" {NGINX_DEFAULT_LINK}
  # As it was, times included: reload_nginx must not take the rejected attempt for a config change.
  touch -r "$W/available.mtime" /etc/nginx/sites-available
  touch -r "$W/enabled.mtime" /etc/nginx/sites-enabled
  die "nginx -t rejected the new site, the old config stays: $({_FIRST_ERROR})"
fi
"""
    return StepPlan("enable_site", script.strip(), {"files/nginx-site": site.encode()})


def reload_script() -> str:
    """Start nginx if it is down; reload it gracefully (after nginx -t) if its config changed since."""
    return f"""
if ! systemctl is-active -q nginx; then
  out=$(nginx -t 2>&1) || die "nginx -t failed: $({_FIRST_ERROR})"
  quiet systemctl start nginx; touch {NGINX_LOADED_STAMP}; CHANGED=1
elif {nginx_stale_test()}; then
  out=$(nginx -t 2>&1) || die "nginx -t failed, nginx keeps its running config: $({_FIRST_ERROR})"
  quiet systemctl reload nginx; touch {NGINX_LOADED_STAMP}; CHANGED=1
fi""".strip()


def plan_reload_nginx(ctx: Context, config_changes: bool) -> StepPlan:
    """`config_changes`: an earlier step of this run may change nginx's config."""
    facts = ctx.facts
    prerequisite = blocked(ctx, "reload_nginx", not facts.installed("nginx"), NO_NGINX, "provision")
    if prerequisite:
        return prerequisite
    if facts.nginx_active and not facts.nginx_stale and not config_changes:
        return StepPlan("reload_nginx")
    return StepPlan("reload_nginx", reload_script())
