"""Check mode on a sandbox server (issue 10): `--check` says what a run would change, and changes nothing.

One server for the module, in order: a check on the fresh server, a deploy, a check that finds nothing,
then a check of changed settings. "Nothing changed" is checked byte for byte: owner, mode, link target,
size and content of everything under /etc, /srv, /run and the app's log directory, and the names in /tmp.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.steps import NAMES as STEPS
from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "chkapp", 8096
SECRET, NEW_SECRET = (f"s3cr3t-{uuid.uuid4().hex}" for _ in range(2))
WOULD_CHANGE = 3
WATCHED = f"/etc /srv /run /var/log/{APP}"


@dataclass
class Server:
    sandbox: Sandbox
    live: Version
    work: Path

    def ssh(self, command: str) -> str:
        return self.sandbox.ssh(command).stdout

    def fab(self, *args: str, config: Path | None = None) -> fab_cli.Run:
        override = config or self.live.override
        return fab_cli.run(self.sandbox.lab.ssh_config, self.sandbox.name, "-f", str(override), *args)

    def state(self) -> str:
        """Everything a check must leave as it was (but agetty's stamp, which a fresh sandbox's console
        setup touches on its own once its network is up, whoever logs in)."""
        unrelated = "! -path /run/agetty.reload ! -path /run"
        listing = f"find {WATCHED} -xdev {unrelated} -printf '%p %y %u %g %m %l %s\\n' 2>/dev/null | sort"
        hashes = f"find {WATCHED} -xdev -type f {unrelated} -exec sha256sum {{}} + 2>/dev/null | sort"
        return self.ssh(f"{listing}; {hashes}; echo /tmp:; ls -A /tmp")

    def config(self, **app) -> Path:
        return self.live.overlaid(self.work, app=app)


@pytest.fixture(scope="module")
def server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    (sandbox,) = lab.start(1)
    work = tmp_path_factory.mktemp("check")
    live = AppVersions(work, APP, PORT).make("c1", env={"SECRET_KEY": SECRET})
    # A fresh sandbox is still booting: what its boot writes (under /run) is not the check's doing.
    sandbox.ssh("systemctl is-system-running --wait", check=False)
    try:
        yield Server(sandbox, live, work)
    finally:
        lab.remove(sandbox)


def step_lines(run: fab_cli.Run) -> dict[str, str]:
    """Step name -> its status in a run's output."""
    found = {}
    for line in run.stdout.splitlines():
        match = re.fullmatch(r"\S+  (\w+)  (ok|would change|changed|failed)(: .*)?", line)
        if match:
            found[match[1]] = match[2]
    return found


def diff_lines(run: fab_cli.Run, path: str) -> set[str]:
    """The - and + lines of the diff a check run shows for the config file at path."""
    lines, inside = set(), False
    for line in run.stdout.splitlines():
        detail = re.fullmatch(r"\S+    (.*)", line)  # "HOST    text": a line under a step
        text = detail[1] if detail else ""
        if text.startswith(("--- ", "+++ ")):
            inside = text.startswith(f"+++ {path} ")
        elif inside and text[:1] in ("+", "-"):
            lines.add(text)
        elif not detail:
            inside = False
    return lines


def test_a_check_on_a_fresh_server_lists_every_step_as_would_change_and_changes_nothing(server: Server):
    before = server.state()
    run = server.fab("deploy", "--check")
    assert run.code == WOULD_CHANGE, str(run)
    off = ("certificate", "postgresql", "redis", "schedule", "processes")  # nothing to do for those
    acting = [step for step in STEPS if step not in off]
    assert step_lines(run) == {**dict.fromkeys(acting, "would change"), **dict.fromkeys(off, "ok")}, str(run)
    assert re.search(rf"  ok={len(off)} would change={len(acting)} failed=0  in [\d.]+ s$", run.stdout), str(
        run
    )
    assert server.state() == before
    assert SECRET not in run.output


def test_after_a_deploy_a_check_exits_0_and_finds_nothing_to_change(server: Server):
    deploy = server.fab("deploy")
    assert deploy.code == 0, str(deploy)
    before = server.state()
    run = server.fab("deploy", "--check")
    assert run.code == 0, str(run)
    assert step_lines(run) == dict.fromkeys(STEPS, "ok"), str(run)
    assert "nothing would change" in run.stdout
    assert re.search(rf"  ok={len(STEPS)} would change=0 failed=0  in [\d.]+ s$", run.stdout), str(run)
    assert server.state() == before


def test_changed_settings_show_exactly_the_changed_lines_and_a_masked_secret(server: Server):
    config = server.config(port=PORT + 1, threads=9, env={"SECRET_KEY": NEW_SECRET})
    before = server.state()
    run = server.fab("deploy", "--check", config=config)
    assert run.code == WOULD_CHANGE, str(run)
    assert server.state() == before
    assert diff_lines(run, f"/etc/nginx/sites-available/{APP}") == {
        f"-        proxy_pass http://127.0.0.1:{PORT};",
        f"+        proxy_pass http://127.0.0.1:{PORT + 1};",
    }, str(run)
    assert diff_lines(run, f"/srv/{APP}/gunicorn.conf.py") == {
        f'-bind = "127.0.0.1:{PORT}"  # only nginx talks to gunicorn',
        f'+bind = "127.0.0.1:{PORT + 1}"  # only nginx talks to gunicorn',
        "-threads = 5",
        "+threads = 9",
    }, str(run)
    assert "app.env: ~ SECRET_KEY=**** (a new value)" in run.stdout
    assert SECRET not in run.output and NEW_SECRET not in run.output
    # The same check on one step alone: only its own would-change.
    alone = server.fab("enable_site", "--check", config=config)
    assert alone.code == WOULD_CHANGE and step_lines(alone) == {"enable_site": "would change"}, str(alone)
