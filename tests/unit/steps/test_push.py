"""push: a release built beside the others on the right venv, checked before the switch, pruned after."""

from dataclasses import replace
from datetime import timedelta

from tasks.facts import PathState, Release
from tasks.steps import push
from tasks.steps.push import releases_to_prune
from tests.unit.conftest import NOW, converged_facts, fresh_facts, paths_of, plan_one, plans, situation


def test_a_fresh_server_gets_a_venv_from_shipped_wheels_and_a_checked_release(settings):
    step = plans(settings, fresh_facts(), ("provision", "push"))[1]
    sit = situation(settings, fresh_facts(), ("push",))
    new = push.release_id(sit.app.content_hash, NOW)
    assert step.commands == (
        f"build_venv {sit.venv_id}",
        f"build_release {new} {sit.venv_id}",
        "check_release",  # imported as the app user before the switch
        "switch_to_built",
    )
    assert "wheels/flask-3.1.3-py3-none-any.whl" in step.files and "wheels/requirements.txt" in step.files
    assert "release/app.py" in step.files
    record = step.files["release/.deploy/release.json"]
    assert b'"user": "alice"' in record and b'"host": "laptop"' in record
    for name in push.SNAPSHOT:
        assert f"release/.deploy/{name}" in step.files


def test_code_change_builds_a_release_on_the_installed_venv_and_new_requirements_ship_wheels(settings):
    probed = replace(converged_facts(settings), fingerprint="other code")
    step = plan_one(settings, probed, push.STEP)
    assert step.acts and not any(n.startswith("wheels/") for n in step.files)
    assert not any(c.startswith("build_venv") for c in step.commands) and "switch_to_built" in step.commands
    assert "release/.deploy/release.json" in step.files and "files/env.json" in step.files
    step = plan_one(
        settings, replace(probed, venvs=frozenset({"old"}), venv_dirs=frozenset({"old"})), push.STEP
    )
    assert step.commands[0].startswith("build_venv ") and "wheels/requirements.txt" in step.files


def test_a_new_app_env_makes_a_new_release_and_travels_only_in_a_file(settings):
    probed = converged_facts(settings)
    assert not plan_one(settings, probed, push.STEP).acts
    with_env = replace(settings, env={"SECRET_KEY": "s3cret"})
    step = plan_one(with_env, probed, push.STEP)
    assert step.acts and step.files["files/env.json"] == b'{"SECRET_KEY": "s3cret"}'
    assert "s3cret" not in "\n".join(step.commands)


def test_the_release_command_runs_after_the_import_check_and_before_the_switch(settings):
    s = replace(settings, release_command="flask db upgrade")
    step = plan_one(s, replace(converged_facts(settings), fingerprint="other code"), push.STEP)
    commands = [c.split()[0] for c in step.commands]
    assert commands == ["build_release", "check_release", "run_release_command", "switch_to_built"]
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
    (live,) = converged.releases
    # Five older releases, the newest two of them failed (their own venv "broken"); an unfinished venv too.
    older = [f"20261120T00000{n}Z-aaaaaaaaaaaa" for n in range(5)]
    probed = replace(
        converged,
        fingerprint="other code",
        releases=tuple(Release(r, BROKEN if n >= 3 else OLD_VENV) for n, r in enumerate(older)) + (live,),
        venv_dirs=frozenset({live.venv, OLD_VENV, BROKEN, HALF}),
        paths={**converged.paths, paths.previous: PathState.link(f"{paths.releases_dir}/{older[0]}")},
    )
    later = replace(
        situation(replace(settings, keep_releases=3), probed, ("push",)), now=NOW + timedelta(hours=1)
    )
    step = push.STEP.plan_for(later)
    # Newest three: the new one, the live one, older[4] (failed): older[0..3] go although older[0] was
    # previous (after this deploy the live one is), and with them the venvs no kept release uses.
    assert step.cleanup == (
        f'prune "$RELEASES_DIR" {" ".join(older[:4])}',
        f'prune "$VENVS_DIR" {HALF} {OLD_VENV}',
    )
    assert not any(c.startswith("prune") for c in step.commands)  # only once the whole run succeeded
