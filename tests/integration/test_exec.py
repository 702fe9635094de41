"""`fab exec "CMD"` on a sandbox server: one command in the live release, as the app user, with app.env
and the release's venv first on PATH; its output as it comes, its exit code, the deploy lock held.

One server (module scope) has the test app (tests/apps/template) deployed with a value in app.env.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "exectest", 8095
BASE = f"/srv/{APP}"
INSTANCE = f"{BASE}/shared/instance"
SECRET = f"s3cr3t-{uuid.uuid4().hex}"
LOCKED = 75


@dataclass
class Server:
    sandbox: Sandbox
    versions: AppVersions
    live: Version

    def fab(self, *args: str, version: Version | None = None, timeout: float = 240) -> fab_cli.Run:
        override = ("-f", str((version or self.live).override))
        return fab_cli.run(self.sandbox.lab.ssh_config, self.sandbox.name, *override, *args, timeout=timeout)

    def start_fab(self, *args: str, version: Version | None = None) -> subprocess.Popen:
        override = ("-f", str((version or self.live).override))
        return fab_cli.start(self.sandbox.lab.ssh_config, self.sandbox.name, *override, *args)

    def ssh(self, command: str, check: bool = True) -> str:
        return self.sandbox.ssh(command, check=check).stdout

    def exists(self, path: str) -> bool:
        return self.sandbox.ssh(f"test -e {path}", check=False).returncode == 0

    def current(self) -> str:
        return self.ssh(f"readlink {BASE}/current").strip()


@pytest.fixture(scope="module")
def server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    (sandbox,) = lab.start(1)
    versions = AppVersions(tmp_path_factory.mktemp("exec"), APP, PORT)
    live = versions.make("e1", env={"EXEC_TEST_ENV": SECRET})
    try:
        served = Server(sandbox, versions, live)
        run = served.fab("deploy", timeout=600)
        assert run.code == 0, f"the cold deploy failed: {run}"
        yield served
    finally:
        lab.remove(sandbox)


class Lines:
    """The lines of a background fab's output (stdout and stderr together), read as they come."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.lines, self.seen = process, queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, wanted: str, timeout: float) -> list[str]:
        """Every line up to the one that is `wanted`; fails if fab ends or `timeout` s pass before it."""
        while wanted not in self.seen:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line {wanted!r} within {timeout} s; got {self.seen}") from None
            assert line is not None, f"fab ended before printing {wanted!r}: {self.seen}"
            self.seen.append(line)
        return self.seen


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    """The rest of a background fab's output once it has ended (killed if it does not end in time)."""
    try:
        return process.communicate(timeout=timeout)[0] or ""
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.communicate()[0] or ""


def test_output_of_both_streams_and_the_exit_code_come_back(server: Server):
    history = server.ssh(f"cat {BASE}/history.log", check=False)
    run = server.fab("exec", "echo out; echo err >&2; exit 3")
    assert run.code == 3, str(run)
    assert run.stdout == "out\n", "stdout is the command's, and nothing else"
    assert "err" in run.stderr.splitlines(), str(run)
    assert f"{server.sandbox.name}  exec  failed: the command exited 3" in run.stderr, str(run)
    assert "Traceback" not in run.output
    assert server.ssh(f"cat {BASE}/history.log", check=False) == history, "exec is not recorded"

    ok = server.fab("exec", "true")
    assert ok.code == 0 and ok.stdout == "", str(ok)


def test_the_command_runs_in_the_live_release_as_the_app_user_with_app_env_and_the_venv(server: Server):
    release = server.current()
    cmdlines = r'for f in /proc/[0-9]*/cmdline; do tr "\0" " " <"$f"; echo; done'
    run = server.fab(
        "exec",
        f'id -un; command -v python; command -v flask; printf "%s\\n" "$EXEC_TEST_ENV"; pwd -P; {cmdlines}',
    )
    assert run.code == 0, str(run)
    user, python, flask, env, cwd, *processes = run.stdout.splitlines()
    assert user == APP
    assert python == f"{release}/.venv/bin/python"
    assert flask == f"{release}/.venv/bin/flask"
    assert env == SECRET
    assert cwd == release
    assert processes and not [p for p in processes if SECRET in p], "app.env is on no command line"

    # The README's way of setting up a database: Flask's CLI from the venv, the app's env around it.
    routes = server.fab("exec", "flask --app app routes")
    assert routes.code == 0 and "/health" in routes.stdout, str(routes)


def test_output_comes_as_the_command_writes_it_and_the_lock_is_held_meanwhile(server: Server):
    go = f"/tmp/exec-go-{uuid.uuid4().hex}"
    command = f"echo first; while [ ! -e {go} ]; do sleep 0.1; done; echo second"
    process = server.start_fab("exec", command)
    try:
        lines = Lines(process)
        assert "second" not in lines.until("first", timeout=60)
        assert process.poll() is None, "the command still waits"
        # While it runs, it holds the deploy lock: a deploy is refused at once, naming the exec.
        deploy = server.fab("deploy", timeout=60)
        assert deploy.code == LOCKED, str(deploy)
        assert "locked by" in deploy.output and "(exec)" in deploy.output, str(deploy)
        server.ssh(f"touch {go}")
        lines.until("second", timeout=30)
        assert process.wait(timeout=60) == 0
    finally:
        finish(process)
        server.ssh(f"rm -f {go}", check=False)
    after = server.fab("deploy")
    assert after.code == 0, "the lock is free once the exec ended"


def test_exec_while_a_deploy_holds_the_lock_fails_at_once_with_75(server: Server):
    held = server.versions.make("held", env={"EXEC_TEST_ENV": SECRET}, release_command="python3 hold.py")
    server.ssh(f"rm -f {INSTANCE}/hold.started {INSTANCE}/hold.go")
    marker = f"/tmp/exec-ran-{uuid.uuid4().hex}"
    deploy = server.start_fab("deploy", version=held)
    try:
        started = f"{INSTANCE}/hold.started"
        wait_until(lambda: server.exists(started), 120, "the deploy runs its release command")
        run = server.fab("exec", f"touch {marker}", timeout=60)
        assert run.code == LOCKED, str(run)
        failures = [line for line in run.output.splitlines() if "failed:" in line]
        assert len(failures) == 1 and "locked by" in failures[0] and "(deploy)" in failures[0], str(run)
        assert run.seconds < 30, str(run)
        assert not server.exists(marker), "the command did not run"
    finally:
        server.ssh(f"mkdir -p {INSTANCE} && touch {INSTANCE}/hold.go", check=False)
        output = finish(deploy)
    assert deploy.returncode == 0, output
    server.ssh(f"rm -f {INSTANCE}/hold.started {INSTANCE}/hold.go")


def test_with_no_live_release_exec_says_so_and_exits_1(server: Server, tmp_path: Path):
    never = AppVersions(tmp_path, "neverdeployed", PORT + 1).make("n1")
    run = server.fab("exec", "touch /tmp/exec-should-not-run", version=never)
    assert run.code == 1, str(run)
    failures = [line for line in run.output.splitlines() if "failed:" in line]
    assert len(failures) == 1 and "no live release" in failures[0] and "fab deploy" in failures[0], str(run)
    assert not server.exists("/tmp/exec-should-not-run")


def test_a_command_whose_run_is_cut_off_ends_with_its_connection_and_frees_the_lock(server: Server):
    started = f"/tmp/exec-started-{uuid.uuid4().hex}"
    process = server.start_fab("exec", f"touch {started}; sleep 317")
    try:
        wait_until(lambda: server.exists(started), 60, "the command runs")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # as a cut link: the connection goes
        finish(process)
    gone = "! pgrep -f 'slee[p] 317' >/dev/null"  # [p]: not the shell running pgrep
    wait_until(lambda: server.sandbox.ssh(gone, check=False).returncode == 0, 30, "the command is stopped")
    run = wait_until(lambda: (r := server.fab("deploy")).code != LOCKED and r, 30, "the lock is free again")
    assert run.code == 0, str(run)
    server.ssh(f"rm -f {started}")
