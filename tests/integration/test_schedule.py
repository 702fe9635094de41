"""Scheduled jobs (app.schedule) on a sandbox server: a systemd timer and service per job, running the
job's command as the app user, in the live release, with app.env; no overlapping runs; enabled at boot;
removed with the settings; a second deploy changes nothing.

One server (module scope) serves every test: a cold deploy of the test app with three jobs. The tests
that only look come first, then the ones that change the server (a new release, a refused `when`, a
reboot, jobs removed), each deploying the settings it needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.fab import Run
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "schedtest", 8095
BASE = f"/srv/{APP}"
INSTANCE = f"{BASE}/shared/instance"  # each release's instance/: the jobs write their logs there
UNITS = "/etc/systemd/system"
GREETING = "hello from app.env"
JOBS = {
    # Started by hand in the tests (its calendar is far away): who, where, with what environment.
    "whoami": {
        "command": 'echo "$(id -un) $(pwd -P) $JOB_GREETING $(command -v python)" >> instance/whoami.log',
        "when": "Mon *-*-* 03:00:00",
    },
    # The timer itself, every 2 s.
    "tick": {"command": "date +%s.%N >> instance/ticks.log", "when": "*:*:0/2"},
    # A run that takes 3 s: started again while it runs, it must not run twice at once.
    "slow": {
        "command": 'echo "start $$" >> instance/slow.log; sleep 3; echo "end $$" >> instance/slow.log',
        "when": "Mon 03:00",
    },
}


def unit(job: str, kind: str = "service") -> str:
    return f"{APP}-job.{job}.{kind}"


@dataclass
class Site:
    server: Sandbox
    workdir: Path
    versions: AppVersions
    version: Version  # the app's version deployed last

    def config(self, jobs: dict, version: Version | None = None) -> Path:
        """A runtime config: the version's settings with these jobs."""
        return (version or self.version).overlaid(self.workdir, app={"schedule": jobs})

    def fab(self, config: Path, *args: str) -> Run:
        return fab_cli.run(
            self.server.lab.ssh_config, self.server.name, "-f", str(config), *args, timeout=600
        )

    def deploy(self, config: Path) -> Run:
        run = self.fab(config, "deploy")
        assert run.code == 0, str(run)
        return run

    def ssh(self, command: str, check: bool = True) -> str:
        return self.server.ssh(command, check=check).stdout

    def live(self) -> str:
        return self.ssh(f"readlink -f {BASE}/current").strip()

    def lines(self, log: str) -> list[str]:
        return self.ssh(f"cat {INSTANCE}/{log} 2>/dev/null", check=False).splitlines()


def changed(run: Run) -> int:
    found = re.search(r"\bchanged=(\d+)", run.output)
    assert found, str(run)
    return int(found[1])


@pytest.fixture(scope="module")
def site(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    (server,) = lab.start(1)
    try:
        workdir = tmp_path_factory.mktemp("schedule")
        versions = AppVersions(workdir, APP, PORT)
        site = Site(server, workdir, versions, versions.make("v1", env={"JOB_GREETING": GREETING}))
        site.deploy(site.config(JOBS))
        yield site
    finally:
        lab.remove(server)


def test_a_job_runs_as_the_app_user_in_the_live_release_with_app_env_and_the_venv(site: Site):
    site.ssh(f"systemctl start {unit('whoami')}")  # a oneshot: returns once the run ended
    live = site.live()
    assert site.lines("whoami.log")[-1] == f"{APP} {live} {GREETING} {live}/.venv/bin/python"
    # The command is in root's file only, which the app's group reads; no unit holds it.
    assert site.ssh(f"stat -c '%U %G %a' {BASE}/jobs/whoami.command").split() == ["root", APP, "640"]
    assert site.ssh(f"grep -l whoami.log {UNITS}/{APP}-job.* || true").strip() == ""
    shown = site.ssh(f"systemctl show -p User,UMask,NoNewPrivileges,Type {unit('whoami')}")
    assert set(shown.split()) == {f"User={APP}", "UMask=0027", "NoNewPrivileges=yes", "Type=oneshot"}


def test_the_timer_fires_by_itself_and_is_enabled_at_boot(site: Site):
    for job in JOBS:
        assert site.ssh(f"systemctl is-enabled {unit(job, 'timer')}").strip() == "enabled"
        assert site.ssh(f"systemctl is-active {unit(job, 'timer')}").strip() == "active"
    before = len(site.lines("ticks.log"))
    wait_until(lambda: len(site.lines("ticks.log")) >= before + 2, 15, "two more runs of the 2 s timer")
    journal = site.ssh(f"journalctl -q -u {unit('tick')} -o cat | tail -n 20")
    assert "Finished" in journal or "Deactivated successfully" in journal, journal


def test_a_run_still_going_is_not_started_again(site: Site):
    start = f"systemctl start --no-block {unit('slow')}"
    site.ssh(start)
    wait_until(
        lambda: any(line.startswith("start") for line in site.lines("slow.log")), 10, "the slow job runs"
    )
    site.ssh(f"{start}; {start}")
    wait_until(
        lambda: site.ssh(f"systemctl is-active {unit('slow')}", check=False).strip() == "inactive",
        15,
        "the slow job's run ends",
    )
    words = [line.split()[0] for line in site.lines("slow.log")]
    assert words == ["start", "end"], site.lines("slow.log")


def test_status_has_a_part_per_job(site: Site):
    site.ssh(f"systemctl start {unit('whoami')}")
    run = site.fab(site.config(JOBS), "status", "--json")
    (row,) = json.loads(run.stdout)
    jobs = {job["name"]: job for job in row["jobs"]}
    assert set(jobs) == set(JOBS), run.stdout
    assert jobs["whoami"]["last_result"] == "ok" and jobs["whoami"]["timer"] == "active/enabled"
    assert jobs["whoami"]["next_run"] and "03:00:00" in jobs["whoami"]["next_run"]
    table = site.fab(site.config(JOBS), "status")
    assert "whoami: ok, next " in table.stdout, str(table)


def test_a_second_deploy_changes_nothing(site: Site):
    run = site.deploy(site.config(JOBS))
    assert changed(run) == 0, str(run)
    assert "nothing to change" in run.output


def test_a_new_release_is_where_the_next_run_happens(site: Site):
    site.version = site.versions.make("v2", env={"JOB_GREETING": GREETING})
    run = site.deploy(site.config(JOBS))
    assert re.search(r"schedule\s+ok", run.output), str(run)  # the jobs follow `current`: nothing to do
    site.ssh(f"systemctl start {unit('whoami')}")
    live = site.live()
    assert live.endswith(site.ssh(f"ls {BASE}/releases | sort | tail -n 1").strip())
    assert site.lines("whoami.log")[-1] == f"{APP} {live} {GREETING} {live}/.venv/bin/python"


def test_a_when_the_server_refuses_fails_in_one_line_and_changes_nothing(site: Site):
    units = f"sha256sum {UNITS}/{APP}-job.* {BASE}/jobs/*"
    before = site.ssh(units)
    refused = {**JOBS, "tick": {**JOBS["tick"], "when": "*-*-* 03:00:00 Mars/Olympus"}}
    run = site.fab(site.config(refused), "deploy")
    assert run.code == 1, str(run)
    line = run.one_error_line()
    assert "schedule  failed: app.schedule: job 'tick': the server's systemd refuses when" in line, line
    assert site.ssh(units) == before


def test_the_timers_come_back_after_a_reboot(site: Site):
    site.server.reboot()
    wait_until(
        lambda: site.ssh(f"systemctl is-active {unit('tick', 'timer')}", check=False).strip() == "active",
        30,
        "the tick timer running after the reboot",
    )
    before = len(site.lines("ticks.log"))
    wait_until(lambda: len(site.lines("ticks.log")) > before, 15, "a run of the 2 s timer after the reboot")


def test_a_job_removed_from_the_settings_loses_its_timer_units_and_command(site: Site):
    kept = {"whoami": JOBS["whoami"]}
    run = site.deploy(site.config(kept))
    assert changed(run) == 1, str(run)
    for job in ("tick", "slow"):
        for kind in ("service", "timer"):
            assert site.server.ssh(f"test -e {UNITS}/{unit(job, kind)}", check=False).returncode == 1
        assert site.ssh(f"systemctl is-active {unit(job, 'timer')}", check=False).strip() == "inactive"
    assert site.ssh(f"ls {BASE}/jobs").split() == ["whoami.command"]
    assert unit("tick", "timer") not in site.ssh("systemctl list-timers --all --no-legend")
    assert unit("whoami", "timer") in site.ssh("systemctl list-timers --all --no-legend")
    again = site.deploy(site.config(kept))
    assert changed(again) == 0, str(again)
    none = site.deploy(site.config({}))
    assert changed(none) == 1 and site.ssh(f"ls {UNITS} | grep -c {APP}-job || true").strip() == "0"
