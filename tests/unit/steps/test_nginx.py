"""nginx steps: the default site backed up once, the site enabled and validated, reloads only on change."""

from dataclasses import replace

from tasks.facts import ABSENT, PathState
from tasks.steps import nginx
from tasks.steps.nginx import NginxConfig
from tests.unit.conftest import acting, converged_facts, paths_of, plan_one, plans


def test_backup_default_never_overwrites_a_backup(settings):
    paths = paths_of(settings)
    converged = converged_facts(settings)
    other_default = replace(
        converged, paths={**converged.paths, paths.nginx_default: PathState.file("other")}
    )
    assert not plan_one(settings, other_default, nginx.BACKUP_DEFAULT).acts
    no_backup = replace(other_default, paths={**other_default.paths, paths.nginx_default_backup: ABSENT})
    assert plan_one(settings, no_backup, nginx.BACKUP_DEFAULT).commands == ("backup_default_site",)


def test_a_deleted_site_link_is_restored_and_then_nginx_reloaded(settings):
    paths = paths_of(settings)
    converged = converged_facts(settings)
    unlinked = replace(converged, paths={**converged.paths, paths.nginx_link: ABSENT})
    site = plan_one(settings, unlinked, nginx.ENABLE_SITE)
    assert site.commands == ("enable_site files/nginx-site 1",)  # 1: the catch-all site replaces the default
    assert b"proxy_pass http://127.0.0.1:8080;" in site.files["files/nginx-site"]
    # reload_nginx alone sees nginx's config changed after its last load.
    assert plan_one(settings, converged.having(NginxConfig(stale=True)), nginx.RELOAD_NGINX).commands == (
        "reload_nginx 1",
    )
    assert not plan_one(settings, converged, nginx.RELOAD_NGINX).acts


def test_a_named_site_leaves_the_default_site_enabled(settings):
    named = replace(settings, app=replace(settings.app, server_name="example.org"))
    assert plan_one(named, converged_facts(settings), nginx.ENABLE_SITE).commands == (
        "enable_site files/nginx-site 0",
    )


def test_reload_in_deploy_only_when_nginx_config_may_change(settings):
    paths = paths_of(settings)
    converged = converged_facts(settings)
    old_site = replace(converged, paths={**converged.paths, paths.nginx_site: PathState.file("old")})
    found = plans(settings, old_site)
    assert acting(found) == ["enable_site", "reload_nginx"]
    reload = next(p for p in found if p.name == "reload_nginx")
    assert reload.commands == ("reload_nginx 0",)  # nothing stale: it reloads if enable_site changed
