"""Fleets on four sandbox servers: a deploy acts on all the hosts given at once; `releases --json` is one
document keyed by host; a host that cannot be reached fails alone; a rolling deploy (--batch 2) whose
first batch has a host failing its health gate stops before the second batch starts.

The four sandboxes (module scope) get v1 by the first, parallel, deploy; the tests run in this order, the
rolling one last (it leaves the hosts on different releases).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tasks.steps import NAMES as STEPS
from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "fleetapp", 8095
NO_LISTENER = 1  # a port nothing listens on: a host there cannot be reached
STEP_LINE = re.compile(r"^(\S+)  (\w+)  (ok|changed|failed)\b")


@dataclass
class Fleet:
    lab: Lab
    servers: list[Sandbox]
    versions: AppVersions
    v1: Version
    first: fab_cli.Run | None = None  # the parallel deploy of v1 to all four

    def fab(self, hosts: list[Sandbox] | str, *args: str, version: Version | None = None) -> fab_cli.Run:
        names = hosts if isinstance(hosts, str) else ",".join(s.name for s in hosts)
        return fab_cli.run(
            self.lab.ssh_config, names, "-f", str((version or self.v1).override), *args, timeout=900
        )


@pytest.fixture(scope="module")
def fleet(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    servers = lab.start(4)
    try:
        versions = AppVersions(tmp_path_factory.mktemp("fleet"), APP, PORT)
        v1 = versions.make("fleet-v1")
        made = Fleet(lab, servers, versions, v1)
        made.first = made.fab(servers, "deploy")
        yield made
    finally:
        for server in servers:
            lab.remove(server)


def live(server: Sandbox) -> str:
    return server.ssh(f"readlink /srv/{APP}/current").stdout.strip().rsplit("/", 1)[-1]


def release_dirs(server: Sandbox) -> list[str]:
    return sorted(server.ssh(f"ls -1 /srv/{APP}/releases").stdout.split())


def recap_lines(run: fab_cli.Run) -> list[str]:
    """The recap: the lines after the last blank line."""
    lines = run.output.splitlines()
    return lines[len(lines) - lines[::-1].index("") :]


def test_a_deploy_to_four_hosts_runs_on_all_of_them_at_once(fleet: Fleet):
    run = fleet.first
    assert run is not None and run.code == 0, str(run)
    assert "Traceback" not in run.output
    names = [s.name for s in fleet.servers]
    steps = [(n, m[1]) for n, line in enumerate(run.stdout.splitlines()) if (m := STEP_LINE.match(line))]
    lines_of = {name: [n for n, host in steps if host == name] for name in names}
    assert all(len(lines_of[name]) == len(STEPS) + 1 for name in names), run.stdout  # and the health gate
    # One after the other, each host's lines would all come before the next one's: they are mixed, every
    # host's first step reported before another host's last.
    for name in names:
        others_last = max(lines_of[other][-1] for other in names if other != name)
        assert lines_of[name][0] < others_last, run.stdout
    assert lines_of[names[0]][-1] > min(lines_of[other][0] for other in names[1:])
    # Every line whole: a step line of its host, or a note of its host, nothing mixed.
    for line in run.stdout.splitlines():
        assert line == "" or line.split("  ", 1)[0] in names, line
    # The recap: a line a host, in the order given; their times add up to more than the run took.
    recap = recap_lines(run)
    assert [line.split("  ", 1)[0] for line in recap] == names
    seconds = [float(re.search(r"in (\d+\.\d) s$", line)[1]) for line in recap]
    assert sum(seconds) > 1.5 * run.seconds, (seconds, run.seconds)
    assert all(live(server) for server in fleet.servers)  # v1 live everywhere


def test_releases_json_for_three_hosts_is_one_document_keyed_by_host(fleet: Fleet):
    three = fleet.servers[:3]
    run = fleet.fab(three, "releases", "--json")
    assert run.code == 0, str(run)
    document = json.loads(run.stdout)  # all of stdout: one document
    assert list(document) == [s.name for s in three]
    for server in three:
        (only,) = document[server.name]
        assert only["id"] == live(server) and only["current"] is True
    history = fleet.fab(three, "history", "--json")
    assert history.code == 0, str(history)
    entries = json.loads(history.stdout)
    assert list(entries) == [s.name for s in three]
    assert all(e[-1]["action"] == "deploy" and e[-1]["result"] == "ok" for e in entries.values())


def test_a_host_that_cannot_be_reached_fails_alone_and_its_recap_line_says_why(fleet: Fleet):
    a, b = fleet.servers[:2]
    address = fleet.servers[3].address  # a sandbox of this run, at a port nothing listens on
    hosts = f"{a.name},root@{address}:{NO_LISTENER},{b.name}"
    run = fleet.fab(hosts, "deploy")
    assert run.code == 1, str(run)
    assert "Traceback" not in run.output, str(run)
    recap = recap_lines(run)
    every = len(STEPS) + 1  # and the health gate
    assert recap[0].startswith(f"{a.name}  ok={every} changed=0 failed=0")
    assert recap[1].startswith(f"{b.name}  ok={every} changed=0 failed=0")
    assert recap[2].startswith(f"{address}  ok=0 changed=0 failed=1")
    assert f"(connect: cannot connect to {address} port {NO_LISTENER} " in recap[2]
    assert f"{a.name}  nothing to change" in run.stdout and f"{b.name}  nothing to change" in run.stdout


def test_a_rolling_deploy_stops_after_the_batch_where_a_host_failed_its_health_gate(fleet: Fleet):
    a, b, c, d = fleet.servers
    before = {s.name: live(s) for s in fleet.servers}
    dirs_before = {s.name: release_dirs(s) for s in (c, d)}
    # v2's /health answers 503 until instance/health.go exists (a shared dir): there on every host but b.
    v2 = fleet.versions.make("fleet-v2", health_waits=True)
    for server in (a, c, d):
        server.ssh(f"touch /srv/{APP}/shared/instance/health.go")
    run = fleet.fab(fleet.servers, "deploy", "--batch", "2", version=v2)
    assert run.code == 1, str(run)
    assert "Traceback" not in run.output, str(run)
    new = live(a)
    assert new != before[a.name]  # done: on v2
    assert live(b) == before[b.name]  # failed its gate: switched back to v1
    assert {live(c), live(d)} == {before[c.name], before[d.name]} and live(c) == before[c.name]
    assert {s.name: release_dirs(s) for s in (c, d)} == dirs_before  # batch 2 never started
    lines = run.output.splitlines()
    before_recap = lines[: len(lines) - lines[::-1].index("")]
    assert not any(line.startswith((f"{c.name}  ", f"{d.name}  ")) for line in before_recap)
    stopped = next(line for line in run.output.splitlines() if line.startswith("rollout stopped"))
    assert f"1 host(s) failed ({b.name})" in stopped
    assert f"done, on the new release: {a.name} ({new})" in stopped
    assert f"failed, live release: {b.name} ({before[b.name]})" in stopped
    assert f"not started, unchanged: {c.name}, {d.name}" in stopped
    recap = recap_lines(run)
    assert recap[0].startswith(f"{a.name}  ok=") and "failed=0" in recap[0]
    assert recap[1:3] == [f"{s.name}  not started: the rollout stopped after batch 1 of 2" for s in (c, d)]
    assert recap[3].startswith(f"{b.name}  ok=") and "(health: " in recap[3]
    # --max-failures 1 lets the rollout go past b: c and d get v2 too.
    go_on = fleet.fab(fleet.servers, "deploy", "--batch", "50%", "--max-failures", "1", version=v2)
    assert go_on.code == 1, str(go_on)
    assert "rollout stopped" not in go_on.output
    assert live(c) != before[c.name] and live(d) != before[d.name] and live(b) == before[b.name]
