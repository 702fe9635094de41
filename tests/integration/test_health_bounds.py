"""Health requests bounded in time on a sandbox server: a health route whose answer drips (200 at once, then
a byte every 2 s for a minute) fails the deploy's gate within app.health_timeout, the release that was
live serving on, and `fab status` answers within the one try's own limit, saying why.

One server (module scope) has a healthy version of the test app deployed; each test deploys what it needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.runtime.health import TRY_LIMIT
from tests import fab as fab_cli
from tests.apps.versions import HEALTH_TIMEOUT, AppVersions, Version
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "boundsapp", 8092
BASE = f"/srv/{APP}"
DRIPS_LOG = f"{BASE}/shared/instance/drips.log"  # when each dripping answer began (tests/apps/template)


@dataclass
class Server:
    sandbox: Sandbox
    versions: AppVersions
    work: Path

    def fab(self, *args: str, version: Version | None = None, config: Path | None = None) -> fab_cli.Run:
        settings = config or version.override
        return fab_cli.run(self.sandbox.lab.ssh_config, self.sandbox.name, "-f", str(settings), *args)

    def ssh(self, command: str) -> str:
        return self.sandbox.ssh(command).stdout

    def deploy(self, version: Version, config: Path | None = None) -> str:
        """Deploy `version` (with `config`, when given, as its settings); the id of its release."""
        run = self.fab("deploy", version=version, config=config)
        assert run.code == 0, str(run)
        return self.current()

    def current(self) -> str:
        return self.ssh(f"readlink {BASE}/current").strip().rsplit("/", 1)[-1]

    def page(self) -> str:
        return self.ssh("curl -s -m 5 http://127.0.0.1/")

    def last_drip(self) -> float:
        """When the last dripping answer began (the app's clock: the sandbox shares this machine's)."""
        return float(self.ssh(f"tail -n 1 {DRIPS_LOG}"))

    def switched(self) -> float:
        """When `current` was last switched (the link's own mtime)."""
        return float(self.ssh(f"stat -c %.9Y {BASE}/current"))


@pytest.fixture(scope="module")
def server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    (sandbox,) = lab.start(1)
    work = tmp_path_factory.mktemp("bounds")
    try:
        served = Server(sandbox, AppVersions(work, APP, PORT), work)
        served.deploy(served.versions.make("first"))
        yield served
    finally:
        lab.remove(sandbox)


def test_a_dripping_health_route_fails_the_gate_within_health_timeout_and_the_live_release_serves_on(
    server: Server,
):
    good = server.versions.make("good")
    good_id = server.deploy(good)
    dripping = server.versions.make("drips", health_drips=True)

    run = server.fab("deploy", version=dripping)

    assert run.code == 1, str(run)
    failures = [line for line in run.output.splitlines() if "  health  failed: " in line]
    assert len(failures) == 1, str(run)
    why = f"answered no whole answer within {HEALTH_TIMEOUT} s (app.health_path must answer 2xx)"
    assert why in failures[0] and f"live: {good_id}" in failures[0], str(run)
    # The gate's health request, from reaching the app to the switch back that follows its verdict
    # (the few milliseconds before and after are the request's way there and the switch itself).
    took = server.switched() - server.last_drip()
    assert HEALTH_TIMEOUT - 1 < took < HEALTH_TIMEOUT + 1, f"the gate took {took:.2f} s\n{run}"
    assert server.current() == good_id
    assert server.page() == good.page


def test_status_answers_within_its_one_try_s_limit_when_the_health_route_drips(server: Server):
    dripping = server.versions.make("drips-live", health_drips=True)
    # Live despite its health route: the gate of its deploy asks /pid instead, as the status to compare.
    elsewhere = dripping.overlaid(server.work, app={"health_path": "/pid"})
    server.deploy(dripping, config=elsewhere)
    healthy = server.fab("status", "--json", config=elsewhere)
    assert healthy.code == 0, str(healthy)

    run = server.fab("status", "--json", version=dripping)  # its health path: /health

    assert run.code == 1, str(run)
    (row,) = json.loads(run.stdout)
    why = f"no whole answer within {TRY_LIMIT} s"
    assert row["health"] == why and f"the health check through nginx failed: {why}" in row["problems"]
    assert TRY_LIMIT * 1000 <= row["health_ms"] < (TRY_LIMIT + 1) * 1000, row
    # The same status, the health request aside: the one try adds its limit, and no more.
    took = f"{run.seconds:.1f} s, against {healthy.seconds:.1f} s asking /pid"
    assert run.seconds < healthy.seconds + TRY_LIMIT + 1, took
