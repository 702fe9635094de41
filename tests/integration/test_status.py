"""status on sandbox servers: one table (or one JSON document) for all the hosts given, a row a host,
read-only; an unhealthy or unreachable host makes the run exit 1.

Two sandboxes (module scope) have the sample app deployed; the second one's app is stopped.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tasks.status import COLUMNS
from tests import fab as fab_cli
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP = "flaskdemo"  # the sample app (invoke.yaml)
NO_LISTENER = 1  # a port nothing listens on: a host there cannot be reached
LOCKS = "/run/flaskdeploy"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@dataclass(frozen=True)
class Servers:
    lab: Lab
    running: Sandbox  # the app up
    stopped: Sandbox  # the app stopped through supervisor

    def fab(self, hosts: str, *args: str) -> fab_cli.Run:
        return fab_cli.run(self.lab.ssh_config, hosts, *args)

    @property
    def both(self) -> str:
        return f"{self.running.name},{self.stopped.name}"


@pytest.fixture(scope="module")
def servers(lab: Lab) -> Iterator[Servers]:
    running, stopped = lab.start(2)
    try:
        served = Servers(lab, running, stopped)
        deployed = served.fab(served.both, "deploy")
        assert deployed.code == 0, str(deployed)
        stopped.ssh(f"supervisorctl stop {APP}")
        yield served
    finally:
        lab.remove(running)
        lab.remove(stopped)


def live(sandbox: Sandbox) -> str:
    return sandbox.ssh(f"readlink /srv/{APP}/current").stdout.strip().rsplit("/", 1)[-1]


def document(run: fab_cli.Run) -> list[dict]:
    """The run's JSON document: its stdout, all of it."""
    assert "Traceback" not in run.output, str(run)
    return json.loads(run.stdout)


def lock_records(sandbox: Sandbox) -> str:
    """The lock's records (name, mtime, content): a read-only run leaves them as they are."""
    return sandbox.ssh(f'cd {LOCKS} && for f in *; do echo "$f $(stat -c %Y "$f") $(cat "$f")"; done').stdout


def test_status_json_names_both_hosts_the_stopped_one_unhealthy_and_exits_1(servers: Servers):
    before = lock_records(servers.running)
    run = servers.fab(servers.both, "status", "--json")
    assert run.code == 1, str(run)
    up, down = document(run)
    assert (up["host"], down["host"]) == (servers.running.name, servers.stopped.name)
    assert list(up) == list(down)  # the same keys for every host
    assert up["healthy"] is True and up["problems"] == [] and (up["reachable"], up["error"]) == (True, None)
    assert up["release"] == live(servers.running) and re.fullmatch(ISO, up["release_time"])
    assert 0 <= up["release_age_seconds"] < 3600
    assert up["deployed_by"] == f"{getpass.getuser()}@{socket.gethostname()}"
    master = servers.running.ssh(f"supervisorctl pid {APP}").stdout.strip()
    workers = servers.running.ssh(f"pgrep -c -P {master}").stdout.strip()
    assert (up["app"], str(up["app_pid"]), str(up["workers"])) == ("RUNNING", master, workers)
    assert up["workers"] >= 1 and up["app_uptime_seconds"] >= 0
    for unit in ("nginx", "supervisor"):
        assert up[unit] == {"active": "active", "enabled": "enabled"}
    assert up["health"] == "200" and 0 <= up["health_ms"] < 5000
    free = servers.running.ssh(f"df -B1 --output=avail /srv/{APP} | tail -1").stdout.strip()
    assert abs(up["disk_free_bytes"] - int(free)) < 64 << 20
    assert up["lock"] is None  # the deploy's record is stale: its connection closed
    assert (down["healthy"], down["app"], down["workers"], down["health"]) == (False, "STOPPED", None, "502")
    assert "the app is STOPPED" in down["problems"]
    # The document alone on stdout; the step lines and the recap on stderr, the stopped one failing.
    assert f"{servers.stopped.name}  health  failed: the app is STOPPED" in run.stderr
    assert re.search(rf"^{servers.running.name}  ok=2 changed=0 failed=0", run.stderr, re.MULTILINE)
    assert re.search(rf"^{servers.stopped.name}  ok=1 changed=0 failed=1", run.stderr, re.MULTILINE)
    assert lock_records(servers.running) == before  # read-only: no lock taken


def test_status_is_one_aligned_plain_table_a_row_a_host(servers: Servers):
    run = servers.fab(servers.both, "status")
    assert run.code == 1, str(run)
    assert "Traceback" not in run.output and all(ch.isprintable() for ch in run.stdout.replace("\n", ""))
    lines = run.stdout.splitlines()
    (top,) = [n for n, line in enumerate(lines) if line.startswith("HOST  ")]
    header, up, down = lines[top : top + 3]
    assert re.split(r" {2,}", header) == list(COLUMNS)
    starts = [header.index(name) for name in COLUMNS]
    for row, server, state, app in (
        (up, servers.running, "healthy", "RUNNING"),
        (down, servers.stopped, "unhealthy", "STOPPED"),
    ):
        cells = re.split(r" {2,}", row)
        assert [row.index(cell, start) for cell, start in zip(cells, starts, strict=True)] == starts
        assert (cells[:3], cells[5]) == ([server.name, state, live(server)], app)
        assert cells[8:11] == ["active/enabled", "active/enabled", "-"]  # no services
    assert re.split(r" {2,}", up)[11].startswith("200 ") and re.split(r" {2,}", down)[11].startswith("502 ")
    assert lines[top + 3] == "" and lines[top + 4].startswith(f"{servers.running.name}  ok=2")


def test_a_host_that_cannot_be_reached_is_a_row_saying_why(servers: Servers):
    address = servers.stopped.address  # a sandbox of this run, at a port nothing listens on
    gone = f"root@{address}:{NO_LISTENER}"
    run = servers.fab(f"{servers.running.name},{gone}", "status")
    assert run.code == 1, str(run)
    assert "Traceback" not in run.output, str(run)
    lines = run.stdout.splitlines()
    row = next(line for line in lines if line.startswith(f"{address}  ") and "unreachable" in line)
    why = f"cannot connect to {address} port {NO_LISTENER} "
    assert row.startswith(f"{address}  unreachable  {why}"), row
    assert any(line.startswith(f"{servers.running.name}  ") and "  healthy  " in line for line in lines)
    as_json = servers.fab(gone, "status", "--json")
    assert as_json.code == 1, str(as_json)
    (only,) = document(as_json)
    assert (only["host"], only["reachable"], only["healthy"], only["release"]) == (
        address,
        False,
        False,
        None,
    )
    assert only["error"].startswith(why)


def test_the_lock_holder_is_shown_while_its_run_lives_and_not_once_it_ended(servers: Servers):
    started = f"/tmp/status-exec-{uuid.uuid4().hex}"
    process = fab_cli.start(
        servers.lab.ssh_config, servers.running.name, "exec", f"touch {started}; sleep 300"
    )
    try:
        wait_until(
            lambda: servers.running.ssh(f"test -e {started}", check=False).returncode == 0, 60, "exec runs"
        )
        (held,) = document(servers.fab(servers.running.name, "status", "--json"))
        assert held["lock"]["holder"].endswith(" (exec)") and re.fullmatch(ISO, held["lock"]["since"])
        assert held["healthy"] is True  # a lock held is no illness
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # as a cut link: the connection goes, the command ends
        process.wait(timeout=30)
    wait_until(
        lambda: document(servers.fab(servers.running.name, "status", "--json"))[0]["lock"] is None,
        60, "the lock is free once the exec's connection is gone",
    )  # fmt: skip
    # A run that ended leaves its records (a no-op deploy's probe took the lock): stale, no holder.
    assert servers.fab(servers.running.name, "deploy").code == 0
    assert servers.running.ssh(f"cat {LOCKS}/{APP}.owner", check=False).stdout.strip()
    (after,) = document(servers.fab(servers.running.name, "status", "--json"))
    assert after["lock"] is None
