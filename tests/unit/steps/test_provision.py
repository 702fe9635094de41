"""provision: packages (with an apt update only when the lists are old), the app's user, its directories."""

from dataclasses import replace

from tasks.facts import PathState, User
from tasks.shell import Var, line
from tasks.steps import provision
from tasks.steps.provision import Packages
from tests.unit.conftest import (
    PLATFORM,
    converged_facts,
    fresh_facts,
    paths_of,
    plan_one,
    script_of,
    situation,
)


def test_a_fresh_server_gets_the_packages_the_user_and_every_directory(settings):
    step = plan_one(settings, fresh_facts(), provision.STEP)
    assert step.commands[:2] == (
        "start_packages 1 nginx supervisor",  # empty lists: updated first; in the background
        "ensure_app_user",
    )
    paths = paths_of(settings)
    for path, _owner, _group, mode in provision.directories(settings, paths, PLATFORM):
        assert any(c.startswith("ensure_dir ") and c.endswith(f" {mode}") for c in step.commands), path
    assert 'ensure_dir "$SHARED_DIR"/instance "$APP" "$APP" 750' in step.commands
    assert 'ensure_dir "$LOG_DIR" root adm 750' in step.commands  # supervisord (root) writes there
    assert 'ensure_dir "$SHARED_DIR" root "$APP" 750' in step.commands  # only its leaves are the app's
    # The wheels and the venvs built from them (a private index's packages): readable by the app's group
    # only; uv, which builds them: root's, readable by all.
    assert 'ensure_dir "$WHEELS_DIR" root "$APP" 750' in step.commands
    assert 'ensure_dir "$VENVS_DIR" root "$APP" 750' in step.commands
    assert 'ensure_dir "$TOOLS_DIR" root root 755' in step.commands
    assert step.files["files/tmpfiles.conf"].endswith(b"d /run/flaskdemo 0755 flaskdemo flaskdemo -\n")
    assert line("install_file", Var("W", "/files/tmpfiles.conf"), Var("TMPFILES_CONF"), 644) in step.commands
    assert "nginx" in step.touches  # installing nginx: reload_nginx must look


def test_apt_update_only_when_the_lists_are_older_than_the_cache_valid_time(settings):
    converged = converged_facts(settings)
    installed = converged.of(Packages).installed - {"supervisor"}
    probed = converged.having(Packages(installed, package_lists_age=60))
    step = plan_one(settings, probed, provision.STEP)
    assert step.commands == ("start_packages 0 supervisor",) and not step.touches
    old = converged.having(Packages(installed, package_lists_age=settings.deploy.apt_cache_valid_time + 1))
    assert "start_packages 1 supervisor" in script_of(plan_one(settings, old, provision.STEP))


def test_only_what_differs_is_changed_and_what_the_app_user_owned_is_taken_back(settings):
    converged = converged_facts(settings)
    paths = paths_of(settings)
    probed = replace(
        converged,
        app_user=User("/srv/flaskdemo", "/bin/bash"),
        paths={**converged.paths, paths.shared_dir: PathState.dir("flaskdemo", "flaskdemo", "755")},
    )
    assert plan_one(settings, probed, provision.STEP).commands == (
        "ensure_app_user",
        'ensure_dir "$SHARED_DIR" root "$APP" 750',  # as earlier versions made it: the app's
    )
    assert not plan_one(settings, converged, provision.STEP).acts


def test_a_server_provisioned_before_uv_lacks_the_tools_dir_and_push_waits_for_provision(settings):
    converged = converged_facts(settings)
    paths = paths_of(settings)
    older = replace(converged, paths={k: v for k, v in converged.paths.items() if k != paths.tools_dir})
    assert provision.PROVISIONED.missing(situation(settings, older))
    assert not provision.PROVISIONED.missing(situation(settings, converged))
    assert plan_one(settings, older, provision.STEP).commands == ('ensure_dir "$TOOLS_DIR" root root 755',)
