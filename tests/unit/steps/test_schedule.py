"""schedule: app.schedule's jobs as systemd timers and services; the calendar grammar checked before
anything connects, the server's systemd-analyze deciding; changed only where the server differs."""

from __future__ import annotations

import os
import runpy
from dataclasses import replace
from pathlib import Path

import pytest

from tasks import calendar, configs, probe, runtime
from tasks.facts import PathState
from tasks.settings import SettingError, Settings, parse
from tasks.shell import line
from tasks.steps import schedule
from tasks.steps.schedule import JobState, Schedule
from tests.unit.conftest import (
    amended,
    converged_facts,
    default_config,
    fresh_facts,
    paths_of,
    plan_one,
    plans,
)
from tests.unit.serverside import run_functions

ACCEPTED = [
    "daily", "hourly", "minutely", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually",
    "Daily", "*:0/15", "Mon 03:00", "Mon..Fri *-*-* 09:00:00", "*-*-* 03:00:00", "Sat,Sun 10:00",
    "*-02~03", "2026-12-24 18:00 UTC", "*:*:0/5", "Mon 03:00 Europe/Berlin", "*:0/15:30.5",
    "Monday..Wednesday,Fri 12:00", "*-*-1,15 04:30", "10-15", "08..18:00/30", "  daily  ",
]  # fmt: skip
REFUSED = [
    ("", "it is empty"), ("garbage", "'garbage' is no weekday"), ("Mon 25:00", "hour 25 is out of 0-23"),
    ("*:60", "minute 60 is out of 0-59"), ("03:00 Mon", "is not [WEEKDAYS] [DATE] [TIME]"),
    ("rm -rf /", "'rm' is no weekday"), ("*-13-01", "month 13 is out of 1-12"),
    ("0/0:00", "hour repetition '0/0' must be above 0"), ("every 5 minutes", "'every' is no weekday"),
    ("*:0/15 *-*-*", "is not [WEEKDAYS] [DATE] [TIME]"), ("10..5:00", "hour range '10..5' runs backwards"),
    ("*,3:00", "hour '*,3' lists * with other values"), ("1.5:00", "hour '1.5' is no whole number"),
    ("Mon..Funday", "'funday' is no weekday"), ("*-*-* %H:00", "hour '%H' is no number"),
    ("*-*-* $X", "is not [WEEKDAYS] [DATE] [TIME]"), ("2026-1-2-3", "date '2026-1-2-3' is not MONTH-DAY"),
]  # fmt: skip


@pytest.mark.parametrize("expression", ACCEPTED)
def test_the_grammar_takes_systemd_s_calendar_expressions(expression):
    assert calendar.problem(expression) is None


@pytest.mark.parametrize(("expression", "why"), REFUSED)
def test_the_grammar_refuses_garbage_saying_why(expression, why):
    assert why in (calendar.problem(expression) or "")


KINDS = ("command", "service", "timer")  # what each job's files are, as the plan sends them


def with_schedule(value) -> Settings:
    config = default_config()
    config["app"]["schedule"] = value
    return parse(config)


JOBS = {
    "report": {"command": "flask send-report --to $ADMIN", "when": "Mon..Fri   *-*-* 09:00:00"},
    "cleanup": {"command": "python -m cleanup", "when": "*:0/15"},
}


def test_jobs_are_read_with_their_when_on_single_spaces():
    s = with_schedule(JOBS)
    assert s.app.schedule["report"].when == "Mon..Fri *-*-* 09:00:00"
    assert s.app.schedule["report"].command == "flask send-report --to $ADMIN"
    assert list(s.app.schedule) == ["report", "cleanup"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"report": {"command": "x", "when": "Mon 25:00"}},
         "app.schedule: job 'report': when 'Mon 25:00' is no systemd calendar expression (hour 25 is out"
         " of 0-23): write one like daily, hourly"),
        ({"Report": {"command": "x", "when": "daily"}}, "app.schedule: 'Report' is no job name"),
        ({"a_b": {"command": "x", "when": "daily"}}, "app.schedule: 'a_b' is no job name"),
        ({"r": {"command": "x"}}, "app.schedule: job 'r' must be {command: ..., when: ...}"),
        ({"r": {"command": "x", "when": "daily", "user": "root"}}, "job 'r' must be {command: ..., when"),
        ({"r": "flask report"}, "job 'r' must be {command: ..., when: ...}"),
        ({"r": {"command": "a\nb", "when": "daily"}}, "job 'r': command must be one shell command line"),
        ({"r": {"command": "a\x1bb", "when": "daily"}}, "job 'r': command holds the control character"),
        ({"r": {"command": "  ", "when": "daily"}}, "job 'r': command is empty"),
        ({"r": {"command": "x", "when": "daily\nExecStart=/bin/sh"}}, "job 'r': when must be one line"),
        ({"r": {"command": "x", "when": 5}}, "job 'r': when must be one line"),
        (["report"], "app.schedule: must map job names to {command: ..., when: ...}"),
    ],
)  # fmt: skip
def test_a_bad_job_is_one_line_naming_the_job_and_the_fix(value, says):
    with pytest.raises(SettingError) as raised:
        with_schedule(value)
    message = str(raised.value)
    assert says in message and "\n" not in message


@pytest.fixture
def scheduled() -> Settings:
    return with_schedule(JOBS)


def test_a_deploy_puts_each_job_s_command_file_and_units_in_place_then_starts_the_timers(scheduled):
    found = {p.name: p for p in plans(scheduled, fresh_facts())}
    step, paths = found["schedule"], paths_of(scheduled)
    assert step.commands == (
        line("schedule_begin", 1),
        line("schedule_job", "report", *(f"files/schedule/report.{kind}" for kind in KINDS)),
        line("schedule_job", "cleanup", *(f"files/schedule/cleanup.{kind}" for kind in KINDS)),
        line("schedule_end"),
    )  # fmt: skip
    service = step.files["files/schedule/report.service"].decode()
    timer = step.files["files/schedule/report.timer"].decode()
    assert "\nType=oneshot\n" in service and "\nUser=flaskdemo\nGroup=flaskdemo\n" in service
    assert f"\nWorkingDirectory={paths.current}\n" in service
    main = f"{paths.tools_dir}/app_command.py {paths.jobs_dir}/report.command"
    assert f"\nExecStart=/usr/bin/python3 -I -S {main}\n" in service
    assert "\nUMask=0027\n" in service and "\nNoNewPrivileges=yes\n" in service
    assert step.files["files/schedule/report.command"] == b"flask send-report --to $ADMIN"
    assert "send-report" not in service + timer  # the command is in its file only, never in a unit
    assert "\nOnCalendar=Mon..Fri *-*-* 09:00:00\n" in timer and "\nPersistent=true\n" in timer
    assert "\nWantedBy=timers.target\n" in timer
    assert step.writes[f"{paths.jobs_dir}/report.command"] == "flask send-report --to $ADMIN\n"
    assert step.writes["/etc/systemd/system/flaskdemo-job.report.timer"] == timer
    assert "job report: new, runs on 'Mon..Fri *-*-* 09:00:00'" in step.why


def settled(s: Settings) -> Schedule:
    """The server's view of the settings' jobs once deployed: timers enabled and running."""
    running = JobState("active", "enabled", "Tue 2026-12-08 09:00:00 UTC", None, "inactive", "success", 0)
    return Schedule(
        {name: running for name in s.app.schedule}, {job.when: "" for job in s.app.schedule.values()}
    )


def deployed(s: Settings):
    """The facts of a server where the jobs are in place (their files written, their timers running)."""
    paths = paths_of(s)
    facts = amended(converged_facts(s), Schedule, **vars(settled(s)))
    app_command = PathState.file(configs.sha256(runtime.source("app_command.py")))
    return replace(facts, paths={
        **facts.paths, paths.jobs_dir: PathState.dir("root", paths.app, "750"),
        f"{paths.tools_dir}/app_command.py": app_command,
    })  # fmt: skip


def test_a_second_deploy_with_nothing_changed_does_nothing(scheduled):
    assert not plan_one(scheduled, deployed(scheduled), schedule.STEP).acts
    assert [p.name for p in plans(scheduled, deployed(scheduled)) if p.acts] == []


def test_a_changed_when_rewrites_that_job_s_timer_only_and_says_so(scheduled):
    facts = deployed(scheduled)
    changed = with_schedule({**JOBS, "cleanup": {"command": "python -m cleanup", "when": "hourly"}})
    step = plan_one(changed, amended(facts, Schedule, calendar={"hourly": ""}), schedule.STEP)
    assert step.why == ("job cleanup: its timer (when) changes",)
    assert list(step.writes) == ["/etc/systemd/system/flaskdemo-job.cleanup.timer"]
    assert "OnCalendar=hourly" in step.writes["/etc/systemd/system/flaskdemo-job.cleanup.timer"]
    assert [c.split()[:2] for c in step.commands][1] == ["schedule_job", "cleanup"]
    assert len(step.commands) == 3


def test_a_changed_command_rewrites_its_command_file(scheduled):
    changed = with_schedule({**JOBS, "report": {**JOBS["report"], "command": "flask report"}})
    step = plan_one(changed, deployed(scheduled), schedule.STEP)
    assert step.why == ("job report: its command changes",)
    assert step.writes == {f"{paths_of(scheduled).jobs_dir}/report.command": "flask report\n"}


def test_a_stopped_or_disabled_timer_is_started_and_enabled(scheduled):
    facts = deployed(scheduled)
    held = facts.of(Schedule)
    stopped = {**held.jobs, "report": replace(held.jobs["report"], timer_active="inactive")}
    step = plan_one(scheduled, amended(facts, Schedule, jobs=stopped), schedule.STEP)
    assert step.why == ("job report: its timer is inactive/enabled: enable and start it",)
    assert not step.writes


def test_a_job_gone_from_the_settings_is_unscheduled(scheduled):
    fewer = with_schedule({"report": JOBS["report"]})
    step = plan_one(fewer, deployed(scheduled), schedule.STEP)
    assert step.commands == (
        line("schedule_begin", 1),
        line("unschedule_job", "cleanup"),
        line("schedule_end"),
    )
    assert step.why == (
        "job cleanup: no longer in app.schedule: stop and disable its timer, remove its units",
    )
    none_left = plan_one(with_schedule({}), deployed(scheduled), schedule.STEP)
    assert none_left.commands[0] == line("schedule_begin", 0)
    assert set(none_left.commands[1:-1]) == {
        line("unschedule_job", "cleanup"),
        line("unschedule_job", "report"),
    }


def test_no_jobs_and_none_on_the_server_is_nothing_to_do(settings):
    assert not plan_one(settings, converged_facts(settings), schedule.STEP).acts
    assert schedule.STEP.probe.hashed(settings, paths_of(settings)) == []


def test_a_when_the_server_s_systemd_refuses_stops_the_run_before_anything_changes(scheduled):
    facts = amended(deployed(scheduled), Schedule, calendar={"*:0/15": "systemd-analyze calendar refuses it",
                                                             "Mon..Fri *-*-* 09:00:00": ""})  # fmt: skip
    found = plans(scheduled, facts)
    blocked = [p for p in found if p.blocked]
    assert [p.name for p in blocked] == ["schedule"]
    assert blocked[0].blocked.startswith(
        "app.schedule: job 'cleanup': the server's systemd refuses when '*:0/15'"
    )
    assert "\n" not in blocked[0].blocked


def test_alone_on_a_server_without_a_release_it_names_the_step_to_run_first(scheduled):
    assert plan_one(scheduled, fresh_facts(), schedule.STEP).blocked.startswith(
        "no release on the server for the scheduled jobs to run in: run `fab push` first"
    )


def test_the_probe_asks_for_the_jobs_files_and_each_when_once(scheduled):
    paths = paths_of(scheduled)
    asked = schedule.STEP.probe.asks(scheduled, paths, None)
    assert asked == {
        "unit_dir": "/etc/systemd/system", "prefix": "flaskdemo-job.", "jobs_dir": paths.jobs_dir,
        "whens": ["*:0/15", "Mon..Fri *-*-* 09:00:00"],
    }  # fmt: skip
    hashed = schedule.STEP.probe.hashed(scheduled, paths)
    assert f"{paths.jobs_dir}/cleanup.command" in hashed and f"{paths.tools_dir}/app_command.py" in hashed
    # A check run diffs the jobs' files as the server has them (runtime/probe.py `detail`).
    shown = list(schedule.STEP.probe.shown(scheduled, paths))
    assert (
        "/etc/systemd/system/flaskdemo-job.cleanup.timer" in shown
        and f"{paths.jobs_dir}/report.command" in shown
    )
    assert f"{paths.tools_dir}/app_command.py" not in shown
    assert set(shown) <= set(probe.questions(scheduled)["platforms"][0]["configs"])


# The probe's part, run here with stand-ins for systemctl and systemd-analyze.
FAKE_SYSTEMCTL = """#!/bin/sh
shift 2  # show --property=...
first=1
for unit; do
    [ "$first" = 1 ] || echo
    first=0
    case $unit in
        *.timer) printf 'Id=%s\\nActiveState=active\\nUnitFileState=enabled\\nNextElapseUSecRealtime=Mon 2026-12-07 18:00:00 UTC\\nLastTriggerUSec=\\n' "$unit" ;;
        *) printf 'Id=%s\\nActiveState=inactive\\nResult=exit-code\\nExecMainStatus=3\\n' "$unit" ;;
    esac
done
"""  # noqa: E501
FAKE_ANALYZE = """#!/bin/sh
shift  # calendar
for spec; do
    case $spec in
        bad*) echo "Failed to parse calendar specification '$spec': Invalid argument" >&2 ;;
        *) printf 'Normalized form: %s\\n    Next elapse: soon\\n\\n' "$spec" ;;
    esac
done
"""


@pytest.fixture
def part(tmp_path, monkeypatch) -> dict:
    for name, text in (("systemctl", FAKE_SYSTEMCTL), ("systemd-analyze", FAKE_ANALYZE)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.syspath_prepend(str(runtime.HERE))
    return runpy.run_path(str(runtime.HERE / "probe_schedule.py"), run_name="probe_schedule")


def test_the_probe_part_finds_the_app_s_jobs_only_and_their_state(part, tmp_path: Path):
    units, jobs = tmp_path / "units", tmp_path / "jobs"
    units.mkdir(), jobs.mkdir()
    for name in ("app-job.a.service", "app-job.a.timer", "app-job.b.timer", "app-jobx.c.timer",
                 "other-job.d.timer", "app-job.e.conf"):  # fmt: skip
        (units / name).write_text("# Scheduled job, rendered from configs/job.timer.j2 by `fab schedule`.\n")
    (units / "app-job.handmade.timer").write_text("[Timer]\nOnCalendar=daily\n")  # not the kit's: left alone
    (jobs / "f.command").write_text("x\n")
    asked = {"unit_dir": str(units), "prefix": "app-job.", "jobs_dir": str(jobs), "whens": ["daily", "bad"]}
    found = part["gather"](asked)["schedule"]
    assert sorted(found["jobs"]) == ["a", "b", "f"]
    assert found["jobs"]["a"] == {
        "timer_active": "active", "timer_enabled": "enabled", "next_run": "Mon 2026-12-07 18:00:00 UTC",
        "last_run": None, "service_active": "inactive", "result": "exit-code", "exit_status": 3,
    }  # fmt: skip
    assert found["calendar"] == {"daily": "", "bad": "systemd-analyze calendar refuses it"}
    assert Schedule.from_json({"schedule": found}).jobs["a"].exit_status == 3


def test_the_probe_part_with_no_jobs_asks_systemd_nothing(part, tmp_path: Path):
    asked = {"unit_dir": str(tmp_path / "none"), "prefix": "app-job.", "jobs_dir": str(tmp_path), "whens": []}
    assert part["gather"](asked) == {"schedule": {"jobs": {}, "calendar": {}}}


# The server side, run here: systemctl stubbed (it records its calls), files under a scratch root.
def server_values(tmp_path: Path) -> dict:
    for name in ("units", "tools", "files/schedule"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    return {
        "APP": "root", "JOBS_DIR": str(tmp_path / "jobs"), "SYSTEMD_UNIT_DIR": str(tmp_path / "units"),
        "APP_COMMAND": str(tmp_path / "tools/app_command.py"), "W": str(tmp_path),
    }  # fmt: skip


STUB = (
    'systemctl() { echo "systemctl $*" >>"$W/systemctl.log"; case "$1" in is-enabled | is-active)'
    ' grep -qx "systemctl enable -q $3" "$W/systemctl.log" ;; esac; }'
)


def run_schedule(tmp_path: Path, *calls: str):
    lines = [STUB, line("begin_step", "schedule"), *calls, 'echo "changed=$CHANGED"']
    done = run_functions(server_values(tmp_path), lines)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()[-1]


@pytest.mark.skipif(os.geteuid() != 0, reason="install -o root needs root")
def test_schedule_job_writes_the_files_once_and_reloads_and_starts_only_on_change(tmp_path: Path):
    (tmp_path / "files/schedule").mkdir(parents=True)
    (tmp_path / "files/schedule/r.service").write_text("[Service]\n")
    (tmp_path / "files/schedule/r.timer").write_text("[Timer]\n")
    (tmp_path / "files/schedule/r.command").write_text("echo '$HOME' ; x")
    job = line("schedule_job", "r", *(f"files/schedule/r.{kind}" for kind in KINDS))
    calls = (line("schedule_begin", 1), job, line("schedule_end"))
    assert run_schedule(tmp_path, *calls) == "changed=1"
    assert (tmp_path / "jobs/r.command").read_text() == "echo '$HOME' ; x\n"
    assert oct((tmp_path / "jobs/r.command").stat().st_mode & 0o777) == "0o640"
    assert oct((tmp_path / "jobs").stat().st_mode & 0o777) == "0o750"
    assert (tmp_path / "units/root-job.r.timer").read_text() == "[Timer]\n"
    assert (tmp_path / "tools/app_command.py").read_text() == runtime.source("app_command.py")
    log = (tmp_path / "systemctl.log").read_text().splitlines()
    assert log[:2] == ["systemctl daemon-reload", "systemctl restart root-job.r.timer"]
    assert "systemctl enable -q root-job.r.timer" in log
    (tmp_path / "systemctl.log").unlink()
    (tmp_path / "systemctl.log").write_text("systemctl enable -q root-job.r.timer\n")
    assert run_schedule(tmp_path, *calls) == "changed=0"
    assert "daemon-reload" not in (tmp_path / "systemctl.log").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="install -o root needs root")
def test_unschedule_job_stops_its_timer_and_removes_its_files(tmp_path: Path):
    server_values(tmp_path)
    (tmp_path / "jobs").mkdir()
    for path in ("units/root-job.r.service", "units/root-job.r.timer", "jobs/r.command", "jobs/k.command"):
        (tmp_path / path).write_text("x\n")
    assert run_schedule(tmp_path, line("schedule_begin", 0), line("unschedule_job", "r"),
                        line("schedule_end")) == "changed=1"  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["k.command"]
    log = (tmp_path / "systemctl.log").read_text().splitlines()
    assert log[0] == "systemctl disable --now -q root-job.r.timer" and log[-1] == "systemctl daemon-reload"
