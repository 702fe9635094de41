"""Check mode (tasks/check.py): what each step would change and why, diffs of the configs, masked
secrets, the `would change` recap and its exit code; and what the planners say of themselves."""

from dataclasses import replace

import pytest

from tasks import check, configs, recap
from tasks.facts import Unit
from tasks.steps import PIPELINE, push, rollback
from tasks.steps.model import StepPlan
from tasks.steps.nginx import NginxConfig
from tasks.steps.push import Releases
from tasks.steps.supervisor import Program
from tests.unit.conftest import (
    PLATFORM,
    amended,
    converged_facts,
    fresh_facts,
    paths_of,
    plans,
    situation,
    with_processes,
)

SECRET = "s3cr3t-value"


@pytest.fixture
def printed(capsys):
    """What recap prints (the run is the test's own: see fresh_run)."""
    return capsys


def test_a_diff_shows_the_changed_lines_with_one_line_of_context():
    before = "a\nb\nc\nd\ne\n"
    after = "a\nb\nC\nd\ne\n"
    assert check.diff("/etc/x", before, after) == [
        "--- /etc/x", "+++ /etc/x (would be)", "@@ -2,3 +2,3 @@", " b", "-c", "+C", " d",
    ]  # fmt: skip
    # A file the server lacks: all of it added; one that is the same: no diff.
    assert check.diff("/etc/x", None, "a\n")[:2] == ["--- /dev/null", "+++ /etc/x (would be)"]
    assert check.diff("/etc/x", "a\n", "a\n") == []


def test_each_salt_is_new():
    assert check.salt() != check.salt()


def test_a_fresh_server_would_change_at_every_step_each_saying_why(settings, printed):
    settings = with_processes(settings, worker="python worker.py")
    facts = fresh_facts()
    steps = plans(settings, facts)
    off = ("certificate", "postgresql", "redis", "schedule")  # no https, services or jobs
    assert all(plan.acts and plan.why for plan in steps if plan.name not in ("backup_default", *off))
    check.report("h", steps, facts.configs)
    out = printed.readouterr().out
    for step in PIPELINE:
        assert f"h  {step.name}  would change" in out or step.name in off
    paths = paths_of(settings)
    # Every config it would write, as a diff from nothing.
    for path in (paths.tmpfiles_conf, paths.nginx_site, paths.supervisor_conf, paths.gunicorn_conf):
        assert f"h    +++ {path} (would be)" in out
    assert "h    install packages: nginx supervisor" in out
    changing = len(PIPELINE) - len(off)
    assert recap.current.hosts["h"].recap_line() == f"h  ok={len(off)} changed={changing} failed=0"


def test_a_converged_server_would_change_nothing(settings, printed):
    facts = converged_facts(settings)
    recap.checking("h")
    check.report("h", plans(settings, facts), facts.configs)
    out = printed.readouterr().out
    assert "would change" not in out.replace("nothing would change", "")
    assert out.endswith("h  nothing would change\n")
    assert recap.current.hosts["h"].recap_line() == f"h  ok={len(PIPELINE)} would change=0 failed=0"


def test_changed_settings_diff_exactly_their_lines_against_the_servers_configs(settings, printed):
    facts = converged_facts(settings)
    paths = paths_of(settings)
    texts = {
        paths.nginx_site: configs.nginx_site(settings, paths, PLATFORM),
        paths.supervisor_conf: configs.supervisor_program(settings, paths),
        paths.gunicorn_conf: configs.gunicorn_conf(settings, paths, facts.cpus),
    }
    changed = replace(settings, app=replace(settings.app, port=8081, threads=9))
    check.report("h", plans(changed, facts), texts)
    out = printed.readouterr().out
    shown, file = [], None  # the changed lines of the diffs of those configs
    for line in out.splitlines():
        if line.startswith("h    +++ "):
            file = line.removeprefix("h    +++ ").removesuffix(" (would be)")
        elif line.startswith(("h    -", "h    +")) and not line.startswith("h    ---") and file in texts:
            shown.append(line.split("    ", 1)[1])
    assert shown == [
        "-        proxy_pass http://127.0.0.1:8080;",
        "+        proxy_pass http://127.0.0.1:8081;",
        '-bind = "127.0.0.1:8080"  # only nginx talks to gunicorn',
        '+bind = "127.0.0.1:8081"  # only nginx talks to gunicorn',
        "-threads = 5",
        "+threads = 9",
    ]


def test_app_env_is_compared_through_salted_digests_and_never_shown(settings, printed):
    salt = "pepper"
    live = {"SECRET_KEY": push.env_digest(salt, "SECRET_KEY", "old-value"), "GONE": "x"}
    facts = replace(converged_facts(settings), env_digests=live, env_salt=salt, release_files={})
    s = replace(settings, app=replace(settings.app, env={"SECRET_KEY": SECRET, "NEW": "another-secret"}))
    (plan,) = [p for p in plans(s, facts) if p.name == "push"]
    check.report("h", [plan], {})
    out = printed.readouterr().out
    assert "h    app.env: ~ SECRET_KEY=**** (a new value)" in out
    assert "h    app.env: + NEW=****" in out
    assert "h    app.env: - GONE" in out
    assert SECRET not in out and "another-secret" not in out
    # The same value, digested with the same salt: no line.
    same = replace(facts, env_digests={"SECRET_KEY": push.env_digest(salt, "SECRET_KEY", SECRET)})
    (plan,) = [
        p
        for p in plans(replace(settings, app=replace(settings.app, env={"SECRET_KEY": SECRET})), same)
        if p.name == "push"
    ]
    assert not [line for line in plan.why if line.startswith("app.env")]


def test_a_release_lists_its_new_changed_and_removed_files_against_the_live_ones(settings):
    facts = converged_facts(settings)
    app = push.ready(situation(settings, facts)).app
    assert app is not None
    (first, second) = sorted(app.hashes)
    live_files = {first: "0" * 64, second: app.hashes[second], "gone.py": "1" * 64}
    facts = amended(replace(facts, release_files=live_files), Releases, fingerprint="another")
    (plan,) = [p for p in plans(settings, facts) if p.name == "push"]
    assert f"  ~ {first}" in plan.why and "  - gone.py" in plan.why
    assert f"  ~ {second}" not in plan.why and f"  + {second}" not in plan.why
    assert any(line.endswith(": reused") for line in plan.why)
    assert any("reloads onto it gracefully" in line for line in plan.why)


def test_a_new_venv_is_said_to_be_built_and_the_app_restarted(settings):
    facts = converged_facts(settings)
    (live,) = facts.of(Releases).releases
    facts = amended(facts, Releases, venvs=frozenset(), releases=(replace(live, venv="0" * 16),))
    (plan,) = [p for p in plans(settings, facts) if p.name == "push"]
    assert any(": built (dependencies from requirements.txt" in line for line in plan.why)
    assert any("restarts onto it" in line for line in plan.why)


def test_the_other_steps_say_why_they_act(settings):
    facts = converged_facts(settings)
    stale = plans(settings, facts.having(NginxConfig(stale=True)), ("reload_nginx",))
    assert stale[0].why == ("nginx's config changed since nginx loaded it: reload nginx",)
    off = replace(facts, units={"nginx": Unit("active", "disabled"), "supervisor": Unit("active", "enabled")})
    assert plans(settings, off, ("enable_boot",))[0].why == ("enable at boot: nginx",)
    stopped = facts.having(Program())
    assert plans(settings, stopped, ("supervisor_update",))[0].why == (
        "flaskdemo is not a program of supervisor: start it",
    )
    held = facts.of(Releases)
    live = held.ids[0]
    older = amended(
        facts,
        Releases,
        releases=(replace(held.releases[0], id="20200101T000000Z-aaaaaaaaaaaa"), *held.releases),
    )
    sit = replace(situation(settings, older, ()), steps=("rollback",))
    (back,) = [rollback.step("20200101T000000Z-aaaaaaaaaaaa").plan_for(sit)]
    assert back.why == (
        f"current -> 20200101T000000Z-aaaaaaaaaaaa (from {live}), with the configs it was deployed with;"
        " a graceful reload",
    )


def test_a_check_that_would_change_exits_3_and_one_that_fails_exits_1(printed, monkeypatch):
    exits = []
    monkeypatch.setattr(recap.os, "_exit", exits.append)
    recap.checking("h")
    recap.report("h", "push", recap.WOULD_CHANGE)
    recap._finish()
    assert exits == [3]
    assert "h  ok=0 would change=1 failed=0" in printed.readouterr().out
    recap.report("h2", "push", "failed", "no")
    recap._finish()
    assert exits[1] == 1


def test_a_plan_without_writes_shows_only_its_reasons():
    plan = StepPlan(("run",), why=("because",), name="x")
    assert check.details(plan, {}) == ["because"]
