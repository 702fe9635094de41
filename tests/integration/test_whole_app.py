"""The whole app on one sandbox: tests/apps/stack, shaped like microblog. Its Procfile gives the worker
(`rq worker -u $REDIS_URL stack-tasks`) and the release command; a scheduled job; PostgreSQL and Redis
from the settings. A job goes web -> Redis -> worker -> PostgreSQL; the worker runs the web's release;
a no-op deploy restarts nothing; a reboot brings back everything."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import fab as fab_cli
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

STACK = Path(__file__).resolve().parents[1] / "apps" / "stack"
APP, PORT = "stack", 8097
WORKER = f"{APP}.worker:{APP}.worker-0"  # supervisor's name of the worker's one copy
TICK = f"{APP}-job.tick"  # the scheduled job's units


@dataclass
class Server:
    sandbox: Sandbox
    work: Path
    made: int = 0

    def ssh(self, command: str, check: bool = True) -> str:
        return self.sandbox.ssh(command, check=check).stdout.strip()

    def version(self, label: str) -> Path:
        """The app's settings with a copy of tests/apps/stack serving `stack LABEL`: a new release."""
        self.made += 1
        src = self.work / f"{label}-{self.made}"
        shutil.copytree(STACK, src, ignore=shutil.ignore_patterns("__pycache__"))
        init = src / "stack" / "__init__.py"
        init.write_text(init.read_text().replace('VERSION = "v1"', f'VERSION = "{label}"'))
        settings = {
            "app": {
                "name": APP, "port": PORT, "src": str(src), "module": "stack:create_app()",
                "schedule": {"tick": {"command": "python -m stack.tick", "when": "hourly"}},
            },
            "services": {"postgresql": True, "redis": True},
        }  # fmt: skip
        config = self.work / f"{label}-{uuid.uuid4().hex[:6]}.yaml"
        config.write_text(yaml.safe_dump(settings))
        return config

    def fab(self, config: Path, *args: str) -> fab_cli.Run:
        return fab_cli.run(self.sandbox.lab.ssh_config, self.sandbox.name, "-f", str(config), *args)

    def get(self, path: str, *options: str) -> str:
        return self.ssh(f"curl -s -m 10 {' '.join(options)} http://127.0.0.1{path}", check=False)

    def live(self) -> str:
        """The live release's directory."""
        return self.ssh(f"readlink -e /srv/{APP}/current")

    def worker(self) -> tuple[str, str]:
        """The worker's PID and its working directory."""
        pid = self.ssh(f"supervisorctl pid {WORKER}")
        return pid, self.ssh(f"readlink /proc/{pid}/cwd", check=False)

    def pids(self) -> dict[str, str]:
        """The main PIDs of everything the app runs: gunicorn, the worker, PostgreSQL, Redis."""
        units = [f"redis-server@{APP}", *self.ssh("systemctl list-units -q --plain 'postgresql@*' "
                                                 "| cut -d' ' -f1").split()]  # fmt: skip
        found = {unit: self.ssh(f"systemctl show -P MainPID {unit}") for unit in units}
        return {**found, "web": self.ssh(f"supervisorctl pid {APP}"), "worker": self.worker()[0]}

    def noted(self, note: str) -> str:
        """The row the worker wrote for a job, once it is there: `NOTE RELEASE PID` (the PID of the work
        horse rq forks for the job)."""
        found = wait_until(
            lambda: next((r for r in self.get("/rows").splitlines() if r.startswith(f"{note} ")), None),
            30, f"the worker's row for {note}",
        )  # fmt: skip
        return found


@pytest.fixture(scope="module")
def server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    (sandbox,) = lab.start(1)
    try:
        yield Server(sandbox, tmp_path_factory.mktemp("stack"))
    finally:
        lab.remove(sandbox)


def test_a_job_goes_through_redis_to_the_worker_which_writes_postgresql_in_the_webs_release(server: Server):
    v1 = server.version("v1")
    run = server.fab(v1, "deploy")
    assert run.code == 0, str(run)
    assert "Procfile" in run.stdout and "web" in run.stdout  # its web line is ignored, in one line
    assert server.get("/") == "stack v1"
    job = server.get("/jobs", "-d", "note=first")
    assert job, "no job id"
    pid, cwd = server.worker()
    assert cwd == server.live()
    assert server.noted("first").split()[:2] == ["first", Path(cwd).name]  # by a work horse rq forks
    assert server.ssh(f"ps -o user= -p {pid}") == APP  # the worker runs as the app's user, not root
    # The scheduled job, started now rather than on the hour: a row in PostgreSQL from the live release.
    server.ssh(f"systemctl start {TICK}.service")
    assert server.get("/ticks") == "1"

    # A no-op deploy: nothing changes, nothing restarts.
    before = server.pids()
    again = server.fab(v1, "deploy")
    assert again.code == 0 and " changed=0 " in again.stdout, str(again)
    assert server.pids() == before

    # A new release: the worker follows the web to it; a rollback takes it back.
    v2 = server.version("v2")
    assert server.fab(v2, "deploy").code == 0
    assert server.get("/") == "stack v2"
    pid2, cwd2 = server.worker()
    assert cwd2 == server.live() != cwd and pid2 != pid
    server.get("/jobs", "-d", "note=second")
    assert server.noted("second").split()[:2] == ["second", Path(cwd2).name]
    rollback = server.fab(v2, "rollback")
    assert rollback.code == 0, str(rollback)
    assert server.get("/") == "stack v1"
    assert server.worker()[1] == cwd == server.live()


def test_a_reboot_brings_back_the_site_the_worker_the_timer_and_both_services(server: Server):
    server.get("/jobs", "-d", "note=before-reboot")
    server.noted("before-reboot")
    server.sandbox.reboot()
    wait_until(lambda: server.get("/").startswith("stack "), 60, "the site back after the reboot")
    server.get("/jobs", "-d", "note=after-reboot")
    assert server.noted("after-reboot").split()[1] == Path(server.live()).name
    assert "before-reboot" in server.get("/rows")  # PostgreSQL kept its rows
    assert server.ssh(f"systemctl is-enabled {TICK}.timer") == "enabled"
    assert server.ssh(f"systemctl is-active {TICK}.timer") == "active"
    for unit in ("postgresql", f"redis-server@{APP}", "supervisor", "nginx"):
        assert server.ssh(f"systemctl is-active {unit}") == "active", unit
