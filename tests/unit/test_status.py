"""status (tasks/status.py): a row a host from the probe's facts, the table and the JSON document they
make, the row of a host that could not be looked at, and the task over several hosts: its rows printed
once at the end, its health step, and the run's exit code."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import pytest

from tasks import probe, recap, status
from tasks.facts import Lock, Unit
from tasks.probe import Found
from tasks.status import COLUMNS, HostStatus, Service
from tasks.steps.processes import Copy, Processes
from tasks.steps.push import Releases
from tasks.steps.schedule import JobState, Schedule
from tasks.steps.supervisor import Program
from tests.unit.conftest import NOW, PLATFORM, amended, converged_facts, default_config, fresh_facts, paths_of

LIVE_TIME = "2026-11-26T08:55:00Z"  # NOW minus 1 h 5 min
RUNNING = Program("RUNNING", 427, "pid 427, uptime 1:01:01", uptime=3661, workers=2)
KEYS = [
    "host", "reachable", "healthy", "error", "problems", "release", "release_time", "release_age_seconds",
    "deployed_by", "app", "app_pid", "app_uptime_seconds", "workers", "nginx", "supervisor", "services",
    "health", "health_ms", "disk_free_bytes", "certificate", "processes", "jobs", "lock",
]  # fmt: skip


def deployed(settings, **changes) -> Found:
    """A server right after a deploy by alice@laptop, its app up for an hour, 8 GiB free, healthy."""
    facts = converged_facts(settings)
    (live,) = facts.of(Releases).releases
    record = {**live.record, "time": LIVE_TIME, "user": "alice", "host": "laptop"}
    facts = amended(facts, Releases, releases=(replace(live, record=record),))
    program = changes.pop("program", RUNNING)
    facts = replace(facts, **{"health_ms": 12, "disk_free": 8 << 30, **changes}).having(program)
    return Found(facts, PLATFORM, paths_of(settings))


def columns(text: str) -> list[list[str]]:
    """The table's lines split into cells (two spaces or more apart)."""
    return [re.split(r" {2,}", line) for line in text.splitlines()]


def test_a_healthy_host_s_row(settings):
    found = deployed(settings)
    row = status.of_host("web1", found, NOW)
    live = found.facts.of(Releases).releases[0].id
    assert row == HostStatus(
        "web1", reachable=True, healthy=True, error=None, problems=(), release=live, release_time=LIVE_TIME,
        release_age_seconds=3900, deployed_by="alice@laptop", app="RUNNING", app_pid=427,
        app_uptime_seconds=3661, workers=2, nginx=Service("active", "enabled"),
        supervisor=Service("active", "enabled"), health="200", health_ms=12, disk_free_bytes=8 << 30,
        processes=(), jobs=(), lock=None,
    )  # fmt: skip
    (header, cells) = columns(status.table([row]))
    assert header == list(COLUMNS)
    assert cells == [
        "web1", "healthy", live, "1h05m", "alice@laptop", "RUNNING", "1h01m", "2", "active/enabled",
        "active/enabled", "-", "200 12ms", "8.0G", "-", "-", "-", "-",
    ]  # fmt: skip


def test_a_stopped_app_is_unhealthy_and_says_why(settings):
    stopped = Program("STOPPED", None, "Nov 26 09:59 AM")
    row = status.of_host("web1", deployed(settings, program=stopped, health="502", healthy=False), NOW)
    assert (row.healthy, row.state, row.app, row.app_uptime_seconds, row.workers) == (
        False, "unhealthy", "STOPPED", None, None,
    )  # fmt: skip
    assert row.problems == ("the app is STOPPED", "the health check through nginx failed: 502")
    cells = columns(status.table([row]))[1]
    assert cells[1] == "unhealthy" and cells[5:8] == ["STOPPED", "-", "-"] and cells[11] == "502 12ms"


def test_a_fresh_server_is_unhealthy_with_every_reason(settings):
    row = status.of_host("web1", Found(fresh_facts(), PLATFORM, paths_of(settings)), NOW)
    assert row.problems == (
        "no live release (run fab deploy)",
        "supervisor is not installed (run fab deploy)",
        "nginx is inactive",
        "supervisor is inactive",
        "the health check through nginx failed: no answer",
    )
    assert (row.release, row.release_time, row.deployed_by, row.app, row.nginx) == (
        None, None, None, None, Service("inactive", ""),
    )  # fmt: skip
    cells = columns(status.table([row]))[1]
    assert cells[2:8] == ["-", "-", "-", "-", "-", "-"] and cells[8] == "inactive/?"


def test_a_program_supervisor_lacks_and_a_failed_unit(settings):
    found = deployed(settings, program=Program(), units={"nginx": Unit("failed", "disabled")})
    row = status.of_host("web1", found, NOW)
    assert row.problems[:3] == (
        "flaskdemo is not a program of supervisor (run fab deploy)",
        "nginx is failed",
        "supervisor is unknown",
    )
    assert (row.nginx, row.supervisor) == (Service("failed", "disabled"), None)


def test_the_lock_holder_and_a_release_without_a_record(settings):
    held = Lock("bob@desk (deploy)", "2026-11-26T09:58:00Z")
    found = deployed(settings, lock=held)
    bare = replace(
        found.facts.of(Releases).releases[0], record={}
    )  # before release.json: its id holds the time
    row = status.of_host("web1", replace(found, facts=amended(found.facts, Releases, releases=(bare,))), NOW)
    assert (row.release_time, row.release_age_seconds, row.deployed_by) == ("2026-11-26T10:00:00Z", 0, None)
    assert row.lock == held
    assert columns(status.table([row]))[1][-1] == "bob@desk (deploy) since 2026-11-26T09:58:00Z"


def test_the_table_aligns_its_columns_and_a_host_not_looked_at_says_why(settings):
    rows = [
        status.of_host("web1.example.org", deployed(settings), NOW),
        status.not_looked_at("db", [("connect", "cannot connect to db port 22: Connection refused")]),
        status.of_host("b", deployed(settings, program=Program("FATAL", None), healthy=False), NOW),
        status.not_looked_at("old", [("status", "unsupported server system Fedora Linux 40")]),
    ]
    lines = status.table(rows).splitlines()
    assert len(lines) == 5
    header, full = lines[0], [lines[1], lines[3]]
    starts = [header.index(name) for name in COLUMNS]
    for line in full:  # every cell starts under its heading, two spaces after the widest before it
        cells = re.split(r" {2,}", line)
        assert [line.index(cell, start) for cell, start in zip(cells, starts, strict=True)] == starts
    assert lines[2] == "db                unreachable  cannot connect to db port 22: Connection refused"
    assert lines[4] == "old               failed       unsupported server system Fedora Linux 40"
    assert lines[2].index("unreachable") == header.index("STATE") == lines[1].index("healthy")
    assert all(line == line.rstrip() for line in lines)


def test_the_table_is_plain_text_whatever_the_server_says(settings):
    sneaky = Lock("bob\x1b[2J@desk\t(deploy)", "2026\n-11-26")
    row = status.of_host("web1", deployed(settings, lock=sneaky, health="no answer (\x07bell)"), NOW)
    text = status.table([row, status.not_looked_at("h", [("connect", "lost\r\nconnection")])])
    assert all(ch.isprintable() for line in text.splitlines() for ch in line)
    assert "bob?[2J@desk (deploy) since 2026 -11-26" in text and "lost  connection" in text


def test_the_json_document_is_a_list_of_hosts_with_stable_keys(settings):
    rows = [
        status.of_host("web1", deployed(settings, lock=Lock("bob@desk (exec)", "2026-11-26T09:58:00Z")), NOW),
        status.not_looked_at("web2", [("connect", "no answer from web2 port 22 within 10 s")]),
    ]
    document = json.loads(status.document(rows))
    assert [list(host) for host in document] == [KEYS, KEYS]
    web1, web2 = document
    assert web1 == {
        "host": "web1", "reachable": True, "healthy": True, "error": None, "problems": [],
        "release": rows[0].release, "release_time": LIVE_TIME, "release_age_seconds": 3900,
        "deployed_by": "alice@laptop", "app": "RUNNING", "app_pid": 427, "app_uptime_seconds": 3661,
        "workers": 2, "nginx": {"active": "active", "enabled": "enabled"},
        "supervisor": {"active": "active", "enabled": "enabled"}, "services": {}, "health": "200",
        "health_ms": 12, "disk_free_bytes": 8 << 30, "certificate": None, "processes": [], "jobs": [],
        "lock": {"holder": "bob@desk (exec)", "since": "2026-11-26T09:58:00Z"},
    }  # fmt: skip
    assert web2 == {
        **{key: None for key in KEYS}, "host": "web2", "reachable": False, "healthy": False,
        "error": "no answer from web2 port 22 within 10 s", "problems": [], "services": {},
    }  # fmt: skip
    assert len(status.document(rows).splitlines()) == 1


def test_a_host_whose_probe_failed_is_reachable_but_failed():
    row = status.not_looked_at("h", [("probe", "python3 is missing on the server: install it first")])
    assert (row.reachable, row.healthy, row.state) == (True, False, "failed")
    assert row.error == "python3 is missing on the server: install it first"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h00m"), (3900, "1h05m"),
     (86400 * 3 + 3600 * 4 + 5, "3d04h")],
)  # fmt: skip
def test_ages(seconds, shown):
    assert status.age(seconds) == shown


@pytest.mark.parametrize(
    ("count", "shown"),
    [(None, "-"), (0, "0B"), (1023, "1023B"), (1024, "1.0K"), (812 * 1024 + 300, "812.3K"),
     (int(8.14 * (1 << 30)), "8.1G"), (3 << 50, "3.0P"), (5000 << 50, "5000.0P")],
)  # fmt: skip
def test_sizes(count, shown):
    assert status.size(count) == shown


def test_an_age_ahead_of_the_clock_is_0_and_a_bad_time_none():
    assert status.seconds_since((NOW + timedelta(minutes=5)).isoformat(), NOW) == 0
    assert status.seconds_since("yesterday", NOW) is None


# The task over several hosts: probe.look stood in for, the recap's and the rows' state kept apart.


@pytest.fixture
def run(monkeypatch, capsys, settings):
    """A `fab status` run over fake hosts: `looks` maps a host to what probe.look finds there (a Found),
    or to why it cannot (a failed step reported, as probe.run reports it); `finish()` prints what the
    run prints at exit and returns (stdout, stderr, exit code)."""
    monkeypatch.setattr(status, "_rows", [])
    monkeypatch.setattr(status, "_as_json", False)
    looks: dict = {}
    asked: list[tuple[str, str, bool]] = []

    def look(c, step, *, health=False):
        asked.append((c.host, step, health))
        found = looks[c.host]
        if isinstance(found, Found):
            recap.report(c.host, step, "ok")
            return found
        recap.report(c.host, *found)
        return None

    monkeypatch.setattr(probe, "look", look)

    def on(host: str, **options) -> None:
        status.status.body(SimpleNamespace(host=host, config=default_config(), user="root"), **options)

    def finish() -> tuple[str, str, int]:
        for show in recap.current.documents:
            show()
        out, err = capsys.readouterr()
        return out, err, recap.exit_code()

    return SimpleNamespace(looks=looks, asked=asked, status=on, finish=finish)


def test_status_prints_one_table_for_all_hosts_at_the_end_and_exits_1_for_an_unhealthy_one(run, settings):
    run.looks |= {"a": deployed(settings), "b": deployed(settings, health="502", healthy=False)}
    run.status("a")
    run.status("b")
    assert run.asked == [("a", "status", True), ("b", "status", True)]  # the health request, no lock
    out, err, code = run.finish()
    assert err == ""
    steps, table = out.split("\n\n")
    assert steps.splitlines() == [
        "a  status  ok", "a  health  ok", "b  status  ok",
        "b  health  failed: the health check through nginx failed: 502",
    ]  # fmt: skip
    assert [cells[:2] for cells in columns(table)] == [
        ["HOST", "STATE"],
        ["a", "healthy"],
        ["b", "unhealthy"],
    ]
    assert code == 1


def test_all_healthy_exits_0(run, settings):
    run.looks |= {"a": deployed(settings), "b": deployed(settings)}
    run.status("a")
    run.status("b")
    out, _, code = run.finish()
    assert code == 0 and out.count("  healthy  ") == 2


def test_status_json_prints_the_document_alone_on_stdout_and_a_host_it_cannot_reach_is_in_it(run, settings):
    refused = "cannot connect to b port 22 (connect timeout 10 s): [Errno 111] Connection refused"
    run.looks |= {"a": deployed(settings), "b": ("connect", "failed", refused)}
    run.status("a", json=True)
    run.status("b", json=True)
    out, err, code = run.finish()
    (line,) = out.splitlines()
    a, b = json.loads(line)
    assert (a["host"], a["healthy"], b["host"], b["reachable"], b["error"]) == (
        "a",
        True,
        "b",
        False,
        refused,
    )
    assert err.splitlines() == ["a  status  ok", "a  health  ok", f"b  connect  failed: {refused}"]
    assert code == 1


def test_an_unreachable_host_is_a_row_saying_why_only_its_own_failures_this_time(run, settings):
    recap.report("b", "deploy", "failed", "an earlier task of the same run")
    run.looks |= {"b": ("connect", "failed", "no answer from b port 22 within 10 s (the connect timeout)")}
    run.status("b")
    out, _, code = run.finish()
    assert (
        out.splitlines()[-1]
        == "b     unreachable  no answer from b port 22 within 10 s (the connect timeout)"
    )
    assert code == 1


def test_each_process_is_a_part_of_the_row_running_of_expected_copies_and_the_youngest_s_uptime(settings):
    live = "/srv/flaskdemo/releases/x"
    held = Processes(
        {"worker": 2, "mailer": 1},
        {"worker": (Copy("flaskdemo.worker-0", 501, live, 300), Copy("flaskdemo.worker-1", 502, live, 90))},
    )
    found = deployed(settings)
    found = Found(found.facts.having(held), found.platform, found.paths)
    row = status.of_host("web1", found, NOW)
    assert row.processes == (
        status.ProcessStatus("mailer", 0, 1, None), status.ProcessStatus("worker", 2, 2, 90),
    )  # fmt: skip
    assert not row.healthy and row.problems == ("process mailer: 0 of 1 copies run",)
    cells = columns(status.table([row]))[1]
    assert cells[COLUMNS.index("PROCESSES")] == "mailer 0/1 -,worker 2/2 1m"
    (document,) = json.loads(status.document([row]))
    assert document["processes"] == [
        {"name": "mailer", "running": 0, "expected": 1, "uptime_seconds": None},
        {"name": "worker", "running": 2, "expected": 2, "uptime_seconds": 90},
    ]


def test_each_scheduled_job_is_a_part_of_the_row_with_its_next_run_and_last_result(settings):
    next_run, last = "Mon 2026-12-07 18:00:00 UTC", "Mon 2026-12-07 17:00:00 UTC"
    found = Schedule({
        "report": JobState("active", "enabled", next_run, last, "inactive", "success", 0),
        "cleanup": JobState("active", "disabled", next_run, None, "inactive", "success", 0),
        "mail": JobState("active", "enabled", next_run, last, "inactive", "exit-code", 3),
        "sync": JobState("active", "enabled", None, last, "activating", "success", 0),
    })  # fmt: skip
    row = status.of_host(
        "web1", Found(deployed(settings).facts.having(found), PLATFORM, paths_of(settings)), NOW
    )
    assert [(j.name, j.last_result) for j in row.jobs] == [
        ("cleanup", None), ("mail", "failed (exit 3)"), ("report", "ok"), ("sync", "running"),
    ]  # fmt: skip
    cell = status.cells(row)[COLUMNS.index("JOBS")]
    assert cell == (
        f"cleanup: never run, timer active/disabled, next {next_run}; mail: failed (exit 3), next {next_run};"
        f" report: ok, next {next_run}; sync: running, next -"
    )
    (doc,) = json.loads(status.document([row]))
    assert doc["jobs"][0] == {
        "name": "cleanup", "timer": "active/disabled", "next_run": next_run, "last_run": None,
        "last_result": None,
    }  # fmt: skip
