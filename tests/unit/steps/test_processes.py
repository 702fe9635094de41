"""processes: the app's processes as supervisor programs on the web's release; their planner, config,
check-mode reasons, and restart --process."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import replace

from tasks import configs, runtime
from tasks.facts import Facts, PathState
from tasks.settings import Process, Settings
from tasks.steps import processes, restart, supervisor
from tasks.steps.processes import Copy, Processes
from tests.unit.conftest import (
    acting,
    converged_facts,
    fresh_facts,
    paths_of,
    plan_one,
    plans,
    with_processes,
)
from tests.unit.serverside import run_functions


def running(s: Settings, facts: Facts, release: str | None = None) -> Facts:
    """facts with the app's processes in place as the processes step leaves them: their files written,
    every copy running in `release` (default: the live one)."""
    paths = paths_of(s)
    release = release or facts.link(paths.current)
    files = {paths.app_command: runtime.source("app_command.py")}
    for name in s.app.processes:
        files[paths.process_conf(name)] = configs.process_program(s, paths, name)
        files[paths.process_command(name)] = processes.command_text(s, name)
    held = Processes(
        {name: p.count for name, p in s.app.processes.items()},
        {
            name: tuple(Copy(f"{paths.app}-{name}-{n}", 500 + n, release, 60) for n in range(p.count))
            for name, p in s.app.processes.items()
        },
    )
    states = {path: PathState.file(configs.sha256(text)) for path, text in files.items()}
    return replace(facts, paths={**facts.paths, **states}).having(held)


def test_a_converged_server_with_its_processes_running_needs_nothing(settings):
    s = with_processes(settings, worker="rq worker tasks")
    assert acting(plans(s, running(s, converged_facts(s)))) == []


def test_a_first_deploy_starts_them_after_the_health_gate_with_the_command_as_a_file(settings):
    s = with_processes(settings, worker="rq worker -u $REDIS_URL tasks", mailer=Process("flask mail", 2))
    found = plans(s, fresh_facts())
    (step,) = [p for p in found if p.name == "processes"]
    assert step.after_gate and step.commands == ("update_processes worker mailer", "keep_processes")
    assert step.files["processes/worker.command"] == b"rq worker -u $REDIS_URL tasks\n"
    # The user's command goes nowhere else: not into the program, nor the script's lines.
    assert b"rq worker" not in step.files["processes/worker.conf"]
    assert "rq worker" not in "\n".join(step.commands)
    assert "mailer: a new process, 2 running `flask mail`" in step.why


def test_the_program_runs_app_command_in_current_as_the_app_user_stopping_gracefully(settings):
    s = with_processes(settings, worker=Process("rq worker", 3))
    s = replace(s, app=replace(s.app, stop_timeout=45))
    paths = paths_of(s)
    program = configs.process_program(s, paths, "worker")
    lines = dict(
        line.split("=", 1) for line in program.splitlines() if "=" in line and not line.startswith(";")
    )
    assert "[program:flaskdemo.worker]" in program
    assert (
        lines["command"]
        == f"/usr/bin/python3 -I -S {paths.tools_dir}/app_command.py {paths.processes_dir}/worker"
    )
    assert (lines["directory"], lines["user"], lines["numprocs"]) == (paths.current, "flaskdemo", "3")
    assert (lines["stopsignal"], lines["stopwaitsecs"], lines["stopasgroup"], lines["killasgroup"]) == (
        "TERM", "45", "true", "true",
    )  # fmt: skip
    assert (lines["autostart"], lines["autorestart"], lines["startsecs"]) == ("true", "true", "3")
    assert lines["stdout_logfile"] == f"{paths.log_dir}/worker-%(process_num)d.log"


def test_a_changed_count_or_command_restarts_that_process_and_not_the_web(settings):
    s = with_processes(settings, worker="rq worker tasks")
    facts = running(s, converged_facts(s))
    for changed, why in (
        (Process("rq worker tasks", 2), "worker: its program changes (2 copies): restart it (not the web)"),
        (
            Process("rq worker other"),
            "worker: its command changes to `rq worker other`: restart it (not the web)",
        ),
    ):
        t = with_processes(s, worker=changed)
        found = plans(t, facts)
        assert acting(found) == ["processes"], changed  # no new release, no supervisor_update
        assert found[-1].why == (why,)
        assert not plan_one(t, facts, supervisor.STEP).acts


def test_a_process_gone_from_the_settings_is_removed(settings):
    s = with_processes(settings, worker="rq worker", mailer="flask mail")
    facts = running(s, converged_facts(s))
    t = with_processes(settings, worker="rq worker")
    step = plan_one(t, facts, processes.STEP)
    assert step.commands == ("remove_processes mailer", "update_processes worker", "keep_processes")
    assert step.why == ("mailer: gone from app.processes: stop it, remove its program",)
    # With none left, only the removal.
    assert plan_one(settings, facts, processes.STEP).commands == (
        "remove_processes mailer worker",
        "keep_processes",
    )


def test_they_follow_a_new_release_and_run_where_the_web_runs(settings):
    s = with_processes(settings, worker="rq worker")
    facts = running(s, converged_facts(s))
    elsewhere = running(s, facts, release="/srv/flaskdemo/releases/20261101T000000Z-aaaaaaaaaaaa")
    assert plan_one(s, elsewhere, processes.STEP).why == (
        f"worker: runs another release than the web's ({facts.link_name('/srv/flaskdemo/current')}):"
        " restart it there",
    )
    stopped = facts.having(Processes({"worker": 1}, {}))
    assert plan_one(s, stopped, processes.STEP).why == ("worker: 0 of 1 copies run: start it",)
    # A deploy of a new release: they move once the web passed the health gate.
    new_app = replace(facts, paths={**facts.paths})
    found = plans(replace(s, deploy=replace(s.deploy, shared_dirs=("instance", "uploads"))), new_app)
    push, step = (next(p for p in found if p.name == name) for name in ("push", "processes"))
    assert push.switches_to and step.why == (
        f"worker: moves to release {push.switches_to} once the web passed the health gate",
    )


def test_restart_restarts_the_processes_too_or_one_alone(settings):
    s = with_processes(settings, worker="rq worker")
    facts = running(s, converged_facts(s))
    every = plan_one(s, facts, restart.step())
    assert every.commands == ("reload_live_release", "ensure_running", "restart_app_processes")
    one = plan_one(s, facts, restart.step(process="worker"))
    assert one.commands == ("restart_app_processes worker",)
    nosuch = plan_one(s, facts, restart.step(process="nosuch"))
    assert nosuch.blocked == "flaskdemo has no process 'nosuch' on the server (its processes: worker)"
    assert plan_one(settings, converged_facts(settings), restart.step()).commands == (
        "reload_live_release", "ensure_running",
    )  # fmt: skip


def test_the_facts_read_back_from_the_probe_s_json():
    doc = {
        "processes": {
            "programs": {"worker": 2},
            "running": {
                "worker": [{"process": "app.worker-0", "pid": 9, "cwd": "/srv/app/releases/x", "uptime": 5}]
            },
        }
    }
    assert Processes.from_json(doc) == Processes(
        {"worker": 2}, {"worker": (Copy("app.worker-0", 9, "/srv/app/releases/x", 5),)}
    )
    assert Processes.from_json({}) == Processes()


def test_the_server_side_finds_the_programs_not_running_in_the_live_release(tmp_path):
    """processes_off_release (runtime/processes.sh): a program any copy of which is not RUNNING, or runs
    in another directory than `current`'s, is one to restart there; supervisorctl is a stub."""
    live, old = tmp_path / "releases" / "live", tmp_path / "releases" / "old"
    conf_dir = tmp_path / "conf.d"
    for directory in (live, old, conf_dir):
        directory.mkdir(parents=True)
    (tmp_path / "current").symlink_to(live)
    for name in ("moved", "behind", "starting", "other"):
        (conf_dir / f"app.process-{name}.conf").write_text("")
    (conf_dir / "otherapp.process-x.conf").write_text("")
    in_live = subprocess.Popen(["sleep", "30"], cwd=live)
    in_old = subprocess.Popen(["sleep", "30"], cwd=old)
    statuses = {
        "moved": [f"app.moved:app.moved-0   RUNNING   pid {in_live.pid}, uptime 0:00:05"],
        "behind": [
            f"app.behind:app.behind-0   RUNNING   pid {in_live.pid}, uptime 0:00:05",
            f"app.behind:app.behind-1   RUNNING   pid {in_old.pid}, uptime 0:01:05",
        ],
        "starting": ["app.starting:app.starting-0   STARTING"],
        "other": ["app.other: ERROR (no such group)"],
    }
    stub = "supervisorctl() {  # status GROUP:*\n    case $2 in\n"
    for name, lines in statuses.items():
        stub += f"        app.{name}:\\*) printf '%s\\n' {' '.join(shlex.quote(x) for x in lines)} ;;\n"
    stub += "    esac\n}"
    try:
        done = run_functions(
            {"APP": "app", "CURRENT": str(tmp_path / "current"), "SUPERVISOR_CONF_DIR": str(conf_dir)},
            [stub, "processes_off_release"],
        )
    finally:
        for process in (in_live, in_old):
            process.kill()
            process.wait()
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["behind", "other", "starting"]


def test_push_alone_moves_the_processes_itself(settings):
    s = with_processes(settings, worker="rq worker")
    facts = running(s, converged_facts(s))
    new_code = replace(s, deploy=replace(s.deploy, shared_dirs=("instance", "uploads")))
    (alone,) = plans(new_code, facts, ("push",))
    assert alone.commands[-1] == "follow_release"
    in_deploy = plans(new_code, facts)
    assert "follow_release" not in in_deploy[1].commands  # the processes step moves them after the gate
