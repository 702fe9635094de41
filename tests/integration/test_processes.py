"""The app's processes (app.processes, or its Procfile) on a sandbox server: under supervisor as the app's
user, on the web's release through deploy, rollback and a failed deploy; restarted when killed, stopped
gracefully; restart and logs of one process; a changed count without touching the web; idempotent.

One server (module scope) serves the tests, in order: each deploys the version it needs. The app is
tests/apps/worker (a page naming its version, and worker.py, which notes its moves in the shared
instance/workers.log).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import fab as fab_cli
from tests.fab import ROOT, Run
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "proctest", 8095
BASE = f"/srv/{APP}"
LOG = f"{BASE}/shared/instance/workers.log"
SOURCE = ROOT / "tests" / "apps" / "worker"


@dataclass
class Site:
    server: Sandbox
    workdir: Path
    made: int = 0

    def version(
        self, label: str, processes: dict | None = None, procfile: str | None = None, **app: object
    ) -> Path:
        """A copy of the test app serving `version LABEL`, and the runtime config deploying it (its path):
        app.processes as given (None: left out), a Procfile as given (None: none)."""
        self.made += 1
        src = self.workdir / f"{self.made:02d}-{label}"
        shutil.copytree(SOURCE, src, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "app" / "requirements.txt", src / "requirements.txt")  # one venv for all
        (src / "version.txt").write_text(f"{label}\n{uuid.uuid4().hex}\n")  # each copy a new release
        if procfile is not None:
            (src / "Procfile").write_text(procfile)
        settings = {
            "app": {
                "name": APP, "src": str(src), "port": PORT, "health_path": "/health", "health_timeout": 15,
                "env": {"GREETING": "hello"}, "stop_timeout": 10, **app,
            },
        }  # fmt: skip
        if processes is not None:
            settings["app"]["processes"] = processes
        override = src.with_suffix(".yaml")
        override.write_text(yaml.safe_dump(settings))
        return override

    def fab(self, *args: str, config: Path, timeout: float = 300) -> Run:
        return fab_cli.run(
            self.server.lab.ssh_config, self.server.name, "-f", str(config), *args, timeout=timeout
        )

    def ssh(self, command: str, check: bool = True) -> str:
        return self.server.ssh(command, check=check).stdout

    def live(self) -> str:
        return self.ssh(f"readlink -f {BASE}/current").strip()

    def page(self) -> str:
        return self.ssh(f"curl -s -H 'Host: localhost' http://127.0.0.1:{PORT}/").strip()

    def workers(self, name: str = "worker") -> dict[str, int]:
        """The running copies of a process as supervisor has them: process name -> pid."""
        out = self.ssh(f"supervisorctl status '{APP}.{name}:*'", check=False)
        return {
            line.split()[0]: int(re.search(r"pid (\d+)", line)[1])
            for line in out.splitlines()
            if " RUNNING " in f" {line} "
        }

    def web_pids(self) -> tuple[int, frozenset[int]]:
        """The gunicorn master's pid and its workers'."""
        master = int(self.ssh(f"supervisorctl pid {APP}").strip())
        return master, frozenset(map(int, self.ssh(f"pgrep -P {master}").split()))

    def cwd(self, pid: int) -> str:
        return self.ssh(f"readlink /proc/{pid}/cwd").strip()

    def log(self) -> list[str]:
        return self.ssh(f"cat {LOG}", check=False).splitlines()


@pytest.fixture(scope="module")
def site(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    (server,) = lab.start(1)
    try:
        yield Site(server, tmp_path_factory.mktemp("processes"))
    finally:
        lab.remove(server)


def one_worker(site: Site) -> int:
    (pid,) = wait_until(lambda: site.workers() or None, 20, "the worker runs").values()
    return pid


def test_the_worker_runs_as_the_app_user_in_the_live_release_and_follows_deploy_and_rollback(site):
    v1 = site.version("v1", processes={"worker": "python worker.py 2"})
    run = site.fab("deploy", config=v1, timeout=600)
    assert run.code == 0, str(run)
    first_release, first = site.live(), one_worker(site)
    assert site.cwd(first) == first_release
    assert site.ssh(f"ps -o user= -p {first}").strip() == APP
    assert f"start {first} v1 {first_release} {APP} hello" in site.log()  # app.env reaches it
    # The worker's command never goes into supervisor's config; its file is root's, the app's group reads it.
    assert "worker.py" not in site.ssh(f"cat /etc/supervisor/conf.d/{APP}.process-worker.conf")
    assert site.ssh(f"stat -c '%U %G %a' {BASE}/processes/worker").split() == ["root", APP, "640"]

    v2 = site.version("v2", processes={"worker": "python worker.py 2"})
    run = site.fab("deploy", config=v2)
    assert run.code == 0, str(run)
    # The processes move once the web passed its health gate, and are reported after it.
    steps = [line.split()[1] for line in run.output.splitlines() if line.startswith(site.server.name)]
    assert steps.index("processes") > steps.index("health"), run.output
    second_release, second = site.live(), one_worker(site)
    assert second != first and second_release != first_release
    assert site.cwd(second) == second_release
    # The old worker got SIGTERM and the time to finish its job (2 s) before it exited.
    log = site.log()
    assert (
        log.index(f"term {first}")
        < log.index(f"done {first}")
        < log.index(next(line for line in log if line.startswith(f"start {second} ")))
    )

    run = site.fab("rollback", config=v2)
    assert run.code == 0, str(run)
    assert site.live() == first_release and site.page() == "version v1"
    back = one_worker(site)
    assert back != second and site.cwd(back) == first_release
    run = site.fab("deploy", config=v2)  # v2 again: the tests after this one start from it
    assert run.code == 0, str(run)


def test_a_no_op_deploy_changes_nothing_and_keeps_every_pid(site):
    v = site.version("noop", processes={"worker": "python worker.py 2"})
    assert site.fab("deploy", config=v).code == 0
    web, worker = site.web_pids(), one_worker(site)
    run = site.fab("deploy", config=v)
    assert run.code == 0, str(run)
    assert "changed=0" in run.output, run.output
    assert site.web_pids() == web and one_worker(site) == worker


def test_a_killed_worker_comes_back(site):
    v = site.version("kill", processes={"worker": "python worker.py 2"})
    assert site.fab("deploy", config=v).code == 0
    killed = one_worker(site)
    site.ssh(f"kill -9 {killed}")
    back = wait_until(lambda: (p := site.workers()) and killed not in p.values() and p, 20, "a new worker")
    (pid,) = back.values()
    assert site.cwd(pid) == site.live()


def test_restart_of_one_process_and_its_log(site):
    v = site.version("restart", processes={"worker": "python worker.py 0", "other": "python worker.py 0"})
    assert site.fab("deploy", config=v).code == 0
    web, worker, other = site.web_pids(), one_worker(site), site.workers("other")
    run = site.fab("restart", "--process", "worker", config=v)
    assert run.code == 0, str(run)
    restarted = one_worker(site)
    assert restarted != worker
    assert site.web_pids() == web and site.workers("other") == other  # the web and the others untouched
    run = site.fab("logs", "--process", "worker", config=v)
    assert run.code == 0, str(run)
    assert f"worker {restarted} started, version restart" in run.output
    run = site.fab("restart", "--process", "nosuch", config=v)
    assert run.code != 0 and "no process 'nosuch'" in run.one_error_line()
    # status: a part per process, in the table and the JSON document.
    run = site.fab("status", "--json", config=v)
    (row,) = json.loads(run.stdout)
    assert {p["name"]: (p["running"], p["expected"]) for p in row["processes"]} == {
        "other": (1, 1), "worker": (1, 1),
    }  # fmt: skip


def test_a_changed_count_and_a_removed_process_leave_the_web_alone(site):
    v = site.version("count", processes={"worker": "python worker.py 0"})
    assert site.fab("deploy", config=v).code == 0
    web = site.web_pids()
    more = v.with_name("count-2.yaml")
    settings = yaml.safe_load(v.read_text())
    settings["app"]["processes"] = {"worker": {"command": "python worker.py 0", "count": 2}}
    more.write_text(yaml.safe_dump(settings))
    run = site.fab("deploy", config=more)
    assert run.code == 0, str(run)
    copies = wait_until(lambda: len(p := site.workers()) == 2 and p, 20, "two workers")
    assert sorted(copies) == [f"{APP}.worker:{APP}.worker-0", f"{APP}.worker:{APP}.worker-1"]
    assert site.web_pids() == web  # no reload, no restart of gunicorn
    assert "other" not in site.ssh(
        f"ls /etc/supervisor/conf.d/ {BASE}/processes/"
    )  # removed with its program
    assert not site.workers("other")


def test_a_worker_that_does_not_stay_up_fails_the_deploy_and_everything_goes_back(site):
    good = site.version("good", processes={"worker": "python worker.py 0"})
    assert site.fab("deploy", config=good).code == 0
    live = site.live()
    bad = site.version("bad", processes={"worker": "python worker.py crash"})
    run = site.fab("deploy", config=bad)
    assert run.code == 1, str(run)
    assert "did not stay up" in run.one_error_line()
    assert "switched back" in run.one_error_line()
    assert site.live() == live and site.page() == "version good"
    back = one_worker(site)
    assert site.cwd(back) == live


def test_the_procfile_s_processes_and_release_line(site):
    procfile = (
        "# the test app's processes\n"
        "web: gunicorn app:app\n"
        "worker: python worker.py 0\n"
        "release: echo released >> instance/release.log\n"
    )
    v = site.version("procfile", procfile=procfile)
    run = site.fab("deploy", config=v)
    assert run.code == 0, str(run)
    assert "the Procfile's web line is ignored" in run.output
    assert site.ssh(f"cat {BASE}/shared/instance/release.log").split() == ["released"]
    pid = one_worker(site)
    assert site.cwd(pid) == site.live()
    assert not site.workers("other")


def test_push_alone_moves_the_processes_too(site):
    v = site.version("push", processes={"worker": "python worker.py 0"})
    before = one_worker(site)
    run = site.fab("push", config=v)
    assert run.code == 0, str(run)
    moved = one_worker(site)
    assert moved != before and site.cwd(moved) == site.live() and site.page() == "version push"
