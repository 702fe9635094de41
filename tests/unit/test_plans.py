"""Planning: facts of a server + desired state -> which steps act, without SSH."""

from dataclasses import replace
from datetime import timedelta

from tasks import facts as facts_module
from tasks.facts import Facts
from tasks.pipeline import PLANNERS, plan
from tasks.release import releases_to_prune
from tests.unit.conftest import NOW, context, converged_facts, fresh_facts


def with_values(probed: Facts, **changes: str) -> Facts:
    return Facts({**probed.values, **{k.replace("__", "."): v for k, v in changes.items()}})


def acting(plans) -> list[str]:
    return [p.name for p in plans if p.acts]


def test_a_fresh_server_needs_every_step(settings):
    plans = plan(context(settings, fresh_facts()), PLANNERS)
    assert not [p for p in plans if p.blocked]
    assert acting(plans) == ["provision", "push", "backup_default", "enable_site", "reload_nginx",
                             "supervisor_update", "enable_boot"]  # fmt: skip
    provision = plans[0].script
    assert "apt-get update" in provision  # empty lists
    assert "nginx supervisor python3-venv" in provision
    assert "useradd --system" in provision and "--shell /usr/sbin/nologin" in provision
    push = plans[1]
    assert "wheels/flask-3.1.3-py3-none-any.whl" in push.files
    assert "release/app.py" in push.files
    assert "--check-config" in push.script
    assert push.script.index("--check-config") < push.script.index("switch_to")  # import before the switch


def test_a_converged_server_needs_nothing(settings):
    plans = plan(context(settings, converged_facts(settings)), PLANNERS)
    assert acting(plans) == []


def test_apt_update_only_when_the_lists_are_older_than_the_cache_valid_time(settings):
    probed = with_values(converged_facts(settings), pkg__supervisor="", apt_lists_age="60")
    script = plan(context(settings, probed, ("provision",)), PLANNERS)[0].script
    assert "apt-get update" not in script and "install" in script and "supervisor" in script
    probed = with_values(probed, apt_lists_age=str(settings.apt_cache_valid_time + 1))
    assert "apt-get update" in plan(context(settings, probed, ("provision",)), PLANNERS)[0].script


def test_a_task_alone_names_the_task_to_run_first(settings):
    for step in ("supervisor_update", "enable_site", "reload_nginx", "backup_default", "enable_boot", "push"):
        (only,) = plan(context(settings, fresh_facts(), (step,)), PLANNERS)
        assert only.blocked.endswith("run `fab provision` first"), step
    probed = with_values(converged_facts(settings), **{f"path__{settings.current}": "-"})
    (only,) = plan(context(settings, probed, ("supervisor_update",)), PLANNERS)
    assert only.blocked == "no release on the server: run `fab push` first"


def test_backup_default_never_overwrites_a_backup(settings):
    probed = with_values(converged_facts(settings), **{f"path__{facts_module.NGINX_DEFAULT}": "F:other"})
    assert not plan(context(settings, probed, ("backup_default",)), PLANNERS)[0].acts
    probed = with_values(probed, **{f"path__{facts_module.NGINX_DEFAULT_BAK}": "-"})
    script = plan(context(settings, probed, ("backup_default",)), PLANNERS)[0].script
    assert "[ ! -e /etc/nginx/sites-available/default.bak ]" in script


def test_a_deleted_site_link_is_restored_and_then_nginx_reloaded(settings):
    probed = with_values(converged_facts(settings), **{f"path__{settings.nginx_link}": "-"})
    (site,) = plan(context(settings, probed, ("enable_site",)), PLANNERS)
    assert site.acts and "nginx -t" in site.script
    assert site.script.index("install_file") < site.script.index("nginx -t")
    # reload_nginx alone sees nginx's config changed after its last load.
    stale = with_values(converged_facts(settings), nginx_stale="1")
    (reload,) = plan(context(settings, stale, ("reload_nginx",)), PLANNERS)
    assert "systemctl reload nginx" in reload.script


def test_reload_in_deploy_only_when_nginx_config_may_change(settings):
    probed = with_values(converged_facts(settings), **{f"path__{settings.nginx_site}": "F:old"})
    plans = plan(context(settings, probed), PLANNERS)
    assert acting(plans) == ["enable_site", "reload_nginx"]


def test_code_change_builds_a_release_on_the_installed_venv_and_new_requirements_ship_wheels(settings):
    converged = converged_facts(settings)
    probed = with_values(converged, fingerprint="other code")
    (push,) = plan(context(settings, probed, ("push",)), PLANNERS)
    assert push.acts and not any(n.startswith("wheels/") for n in push.files)
    assert "python3 -m venv" not in push.script and 'reload_app "$LIVE_DIR"' in push.script
    assert "release/.deploy/release.json" in push.files and "files/env.json" in push.files
    probed = with_values(probed, venvs="old", venv_dirs="old")
    (push,) = plan(context(settings, probed, ("push",)), PLANNERS)
    assert "python3 -m venv" in push.script and "wheels/requirements.txt" in push.files


def test_a_new_app_env_makes_a_new_release(settings):
    probed = converged_facts(settings)
    assert not plan(context(settings, probed, ("push",)), PLANNERS)[0].acts
    with_env = replace(settings, env={"SECRET_KEY": "s3cret"})
    (push,) = plan(context(with_env, probed, ("push",)), PLANNERS)
    assert push.acts and push.files["files/env.json"] == b'{"SECRET_KEY": "s3cret"}'
    assert "s3cret" not in push.script  # the secret travels in a file (mode 640), never on a command line
    assert "-m 640 -o root -g flaskdemo" in push.script


def test_the_release_command_runs_as_the_app_user_in_the_release_before_the_switch(settings):
    s = replace(settings, release_command="flask db upgrade")
    probed = with_values(converged_facts(settings), fingerprint="other code")
    (push,) = plan(context(s, probed, ("push",)), PLANNERS)
    script = push.script
    assert "command='flask db upgrade'" in script
    assert "runuser -u flaskdemo" in script and "cd /srv/flaskdemo/releases/20261126T100000Z-" in script
    assert script.index("--check-config") < script.index('"$command"') < script.index("switch_to")
    # Built aside and renamed into place: nothing incomplete is ever listed.
    assert (
        script.index(".partial-")
        < script.index("mv -T /srv/flaskdemo/releases/.partial-")
        < script.index("--check-config")
    )


def test_changed_gunicorn_config_is_applied_by_supervisor_update(settings):
    probed = converged_facts(settings, cpu_count=2)
    more_cpus = with_values(probed, nproc="8")
    (update,) = plan(context(settings, more_cpus, ("supervisor_update",)), PLANNERS)
    assert update.acts and b"workers = 17" in update.files["files/gunicorn.conf.py"]
    assert not plan(context(replace(settings), probed, ("supervisor_update",)), PLANNERS)[0].acts


def test_prune_keeps_the_newest_and_never_current_or_previous():
    existing = ["1", "2", "3", "4", "5", "6"]
    assert releases_to_prune(existing, 5, ("6", "5")) == ["1"]
    assert releases_to_prune(existing, 3, ("6", "1")) == ["2", "3"]  # a rollback made "1" previous
    assert releases_to_prune(["1"], 5, ("1", None)) == []


def test_failed_releases_count_toward_keep_and_their_unused_venvs_go(settings):
    converged = converged_facts(settings)
    live = converged.releases[-1]
    venv_of_live = converged.release_venv(live)
    # Five older releases, the newest two of them failed (their own venv "broken"); an unfinished venv too.
    older = [f"20261120T00000{n}Z-aaaaaaaaaaaa" for n in range(5)]
    values = {
        f"release__{r}": f"{settings.venvs_dir}/{'broken' if n >= 3 else 'old'}" for n, r in enumerate(older)
    }
    probed = with_values(
        converged, fingerprint="other code", venv_dirs=f"{venv_of_live} old broken half", **values,
        **{f"path__{settings.previous}": f"L:{settings.releases_dir}/{older[0]}"},
    )  # fmt: skip
    later = replace(
        context(replace(settings, keep_releases=3), probed, ("push",)), now=NOW + timedelta(hours=1)
    )
    (push,) = plan(later, PLANNERS)
    prune_line = push.script.splitlines()[-1]
    # Newest three: the new one, the live one, older[4] (failed): older[0..3] go although older[0] was
    # previous (after this deploy the live one is), and with them the venvs no kept release uses.
    for r in older[:4]:
        assert f"{settings.releases_dir}/{r}" in prune_line
    assert older[4] not in prune_line and live not in prune_line
    assert f"{settings.venvs_dir}/old" in prune_line and f"{settings.venvs_dir}/half" in prune_line
    assert f"{settings.venvs_dir}/broken " not in prune_line + " " and venv_of_live not in prune_line
