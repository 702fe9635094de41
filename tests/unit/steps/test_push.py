"""push: a release built beside the others on the right venv, checked before the switch, pruned after."""

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from tasks.facts import PathState, ReleaseDir
from tasks.shell import line
from tasks.steps import push
from tasks.steps.model import Situation
from tasks.steps.push import Releases, releases_to_prune
from tests.unit.conftest import (
    NOW,
    amended,
    converged_facts,
    fresh_facts,
    paths_of,
    plan_one,
    plans,
    situation,
)

FLASK, JINJA, WERKZEUG = (
    Path(f"/cache/{name}")
    for name in (
        "flask-3.1.3-py3-none-any.whl",
        "jinja2-3.1.6-py3-none-any.whl",
        "werkzeug-3.1.9-py3-none-any.whl",
    )
)
APP_WHEEL = Path("/cache/app-0123/flaskr-1.0.0-py3-none-any.whl")


def prepared(sit: Situation, **changes) -> Situation:
    """The situation with push's preparation changed."""
    return replace(sit, prepared={"push": replace(push.ready(sit), **changes)})


def test_a_fresh_server_gets_a_venv_from_shipped_wheels_and_a_checked_release(settings):
    step = plans(settings, fresh_facts(), ("provision", "push"))[1]
    sit = situation(settings, fresh_facts(), ("push",))
    new = push.release_id(push.ready(sit).app.content_hash, NOW)
    assert step.commands == (
        "install_uv",  # the server has no uv yet: it builds the venv
        line("note", push.ready(sit).declared.describe()),  # where the dependencies came from
        f"build_venv {push.ready(sit).venv_id}",
        "make_shared_dirs instance",  # the server has none of deploy.shared_dirs yet
        f"build_release {new} {push.ready(sit).venv_id}",
        "try_import",  # imported as the app user before the switch
        "await_packages",  # provision's install ran beside all that: supervisor is needed now
        "switch_to_built",
    )
    assert step.commands[1] == "note 'dependencies from requirements.txt'"
    assert step.files["tools/uv.whl"] == Path("/cache/uv.whl")
    assert step.files["wheels/flask-3.1.3-py3-none-any.whl"] == FLASK
    assert step.files["wheels/manifest"] == b"flask-3.1.3-py3-none-any.whl\n"
    assert not any(n.startswith("app/") for n in step.files)  # the app is no installable project
    assert step.cleanup == ("prune_wheels",)  # a venv was built: the wheels no venv uses go
    assert "release/app.py" in step.files
    record = step.files["release/.deploy/release.json"]
    assert b'"user": "alice"' in record and b'"host": "laptop"' in record
    for name in push.SNAPSHOT:
        assert f"release/.deploy/{name}" in step.files


def test_code_change_builds_a_release_on_the_installed_venv_and_new_requirements_ship_wheels(settings):
    probed = amended(converged_facts(settings), Releases, fingerprint="other code")
    step = plan_one(settings, probed, push.STEP)
    assert step.acts and not any(n.startswith(("wheels/", "tools/", "app/")) for n in step.files)
    assert not any(c.startswith(("install_uv", "note", "build_venv")) for c in step.commands)
    assert "switch_to_built" in step.commands
    assert "release/.deploy/release.json" in step.files and "files/env.json" in step.files
    assert "prune_wheels" not in step.cleanup  # no venv built, none pruned: the wheels kept stay
    step = plan_one(
        settings, amended(probed, Releases, venvs=frozenset({"old"}), venv_dirs=frozenset({"old"})), push.STEP
    )
    # The server keeps uv: the venv is built with it, nothing under tools/ travels.
    assert [c.split()[0] for c in step.commands[:2]] == ["note", "build_venv"]
    assert "wheels/manifest" in step.files and "tools/uv.whl" not in step.files
    assert step.cleanup == ("prune_wheels",)


def test_only_the_wheels_the_server_lacks_travel_and_the_manifest_lists_all_of_them(settings):
    probed = amended(
        converged_facts(settings),
        Releases,
        venvs=frozenset(),
        venv_dirs=frozenset(),
        wheels=frozenset({FLASK.name, "click-8.5.1-py3-none-any.whl"}),
    )
    sit = situation(settings, probed, ("push",))
    sit = prepared(sit, wheels=(FLASK, JINJA, WERKZEUG))
    step = push.STEP.plan_for(sit)
    shipped = sorted(n for n in step.files if n.startswith("wheels/"))
    assert shipped == [
        "wheels/jinja2-3.1.6-py3-none-any.whl",
        "wheels/manifest",
        "wheels/werkzeug-3.1.9-py3-none-any.whl",
    ]
    assert step.files["wheels/jinja2-3.1.6-py3-none-any.whl"] == JINJA
    # All of them, the kept one too: the venv gets exactly these (and the server's click is not one).
    assert step.files["wheels/manifest"].decode().splitlines() == [FLASK.name, JINJA.name, WERKZEUG.name]
    assert step.commands[:2] == (
        line("note", push.ready(sit).declared.describe()),
        f"build_venv {push.ready(sit).venv_id}",
    )


def test_an_installable_app_ships_its_own_wheel_into_each_release_on_the_same_venv(settings):
    # A code change of an installable app: the venv stays (a graceful reload), the app's wheel travels
    # and build_release installs it into the release.
    probed = converged_facts(settings)
    sit = replace(situation(settings, probed, ("push",)), now=NOW + timedelta(hours=1))
    local = push.ready(sit)
    changed = replace(local.app, content_hash="f" * 64)
    sit = prepared(sit, app_wheel=APP_WHEEL, declared=replace(local.declared, project="flaskr"), app=changed)
    step = push.STEP.plan_for(sit)
    assert step.files["app/flaskr-1.0.0-py3-none-any.whl"] == APP_WHEEL
    assert not any(n.startswith(("wheels/", "tools/")) for n in step.files)
    assert step.commands[0].startswith("build_release 2026") and step.commands[0].endswith(
        push.ready(sit).venv_id
    )


def test_uv_travels_when_the_server_lacks_it_and_is_installed_first(settings):
    probed = amended(
        converged_facts(settings), Releases, venvs=frozenset(), venv_dirs=frozenset(), tools=frozenset()
    )
    sit = prepared(situation(settings, probed, ("push",)), uv_wheel=Path("/cache/uv.whl"))
    step = push.STEP.plan_for(sit)
    assert step.files["tools/uv.whl"] == Path("/cache/uv.whl")
    assert [c.split()[0] for c in step.commands[:3]] == ["install_uv", "note", "build_venv"]


def test_a_new_app_env_makes_a_new_release_and_travels_only_in_a_file(settings):
    probed = converged_facts(settings)
    assert not plan_one(settings, probed, push.STEP).acts
    with_env = replace(settings, app=replace(settings.app, env={"SECRET_KEY": "s3cret"}))
    step = plan_one(with_env, probed, push.STEP)
    assert step.acts and step.files["files/env.json"] == b'{"SECRET_KEY": "s3cret"}'
    assert "s3cret" not in "\n".join(step.commands)


def test_the_release_command_runs_after_the_import_trial_and_before_the_switch(settings):
    s = replace(settings, deploy=replace(settings.deploy, release_command="flask db upgrade"))
    step = plan_one(s, amended(converged_facts(settings), Releases, fingerprint="other code"), push.STEP)
    commands = [c.split()[0] for c in step.commands]
    assert commands == ["build_release", "try_import", "run_release_command", "switch_to_built"]
    assert "flask db upgrade" not in "\n".join(step.commands)  # a setting: it travels as a value


def test_prune_keeps_the_newest_and_never_current_or_previous():
    existing = [f"2026112{n}T100000Z-0123456789ab" for n in range(1, 7)]
    one, two, three, _, five, six = existing
    assert releases_to_prune(existing, 5, (six, five)) == [one]
    assert releases_to_prune(existing, 3, (six, one)) == [two, three]  # a rollback made the first previous
    assert releases_to_prune([one], 5, (one, None)) == []


def test_only_names_the_kit_gives_are_ever_pruned():
    # What the server lists comes back from the server: a name the kit does not give is never removed.
    odd = ["..", "x/../../etc", "20261120T000000Z-AAAAAAAAAAAA", "20261120T000000Z-0123456789ab.old"]
    assert releases_to_prune([*odd, "20261121T000000Z-0123456789ab"], 0, ()) == [
        "20261121T000000Z-0123456789ab"
    ]
    assert push.venvs_to_prune(["..", "0123456789abcdef", "ff6a817c047c4544/.."], ()) == ["0123456789abcdef"]


OLD_VENV, BROKEN, HALF = "0000000000000001", "000000000000000b", "0000000000000000"


def test_failed_releases_count_toward_keep_and_their_unused_venvs_go(settings):
    converged = converged_facts(settings)
    paths = paths_of(settings)
    (live,) = converged.of(Releases).releases
    # Five older releases, the newest two of them failed (their own venv "broken"); an unfinished venv too.
    older = [f"20261120T00000{n}Z-aaaaaaaaaaaa" for n in range(5)]
    probed = amended(
        replace(
            converged,
            paths={**converged.paths, paths.previous: PathState.link(f"{paths.releases_dir}/{older[0]}")},
        ),
        Releases,
        fingerprint="other code",
        releases=tuple(ReleaseDir(r, BROKEN if n >= 3 else OLD_VENV) for n, r in enumerate(older)) + (live,),
        venv_dirs=frozenset({live.venv, OLD_VENV, BROKEN, HALF}),
    )
    later = replace(
        situation(replace(settings, deploy=replace(settings.deploy, keep_releases=3)), probed, ("push",)),
        now=NOW + timedelta(hours=1),
    )
    step = push.STEP.plan_for(later)
    # Newest three: the new one, the live one, older[4] (failed): older[0..3] go although older[0] was
    # previous (after this deploy the live one is), and with them the venvs no kept release uses.
    assert step.cleanup == (
        f'prune "$RELEASES_DIR" {" ".join(older[:4])}',
        f'prune "$VENVS_DIR" {HALF} {OLD_VENV}',
        "prune_wheels",  # after the venvs: the wheels none of those left was built from
    )
    assert not any(c.startswith("prune") for c in step.commands)  # only once the whole run succeeded


def test_the_same_files_again_within_the_same_second_get_the_next_second_for_their_id(settings):
    # Deployed at NOW, then app.env changed and deployed again before the clock moved on: the id of the
    # same files at the same second is the live release's, which build_release refuses to replace.
    converged = converged_facts(settings)
    (live,) = converged.of(Releases).releases
    step = plan_one(settings, amended(converged, Releases, fingerprint="app.env changed"), push.STEP)
    sit = situation(settings, converged, ("push",))
    new = push.release_id(push.ready(sit).app.content_hash, NOW + timedelta(seconds=1))
    assert new != live.id and new > live.id  # the newer still sorts last
    assert f"build_release {new} {push.ready(sit).venv_id}" in step.commands and step.switches_to == new
    assert not any(live.id in c for c in step.cleanup)  # the live one is kept: it was live before
    taken = [push.release_id(push.ready(sit).app.content_hash, NOW + timedelta(seconds=n)) for n in range(3)]
    assert push.release_id(push.ready(sit).app.content_hash, NOW, taken) == push.release_id(
        push.ready(sit).app.content_hash, NOW + timedelta(seconds=3)
    )
