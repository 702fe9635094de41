"""services.postgresql and services.redis on sandbox servers, Debian 12 and 13: two apps of
tests/apps/services on one server, each with its own database and Redis server, reached through nginx.

One sandbox a suite (module scope) holds both apps, deployed once; the tests look at what they left and
deploy again where they need to.
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
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP_SOURCE = Path(__file__).resolve().parents[1] / "apps" / "services"
APPS = {"svca": 8101, "svcb": 8102}  # name -> port; each its own site (svca.test, svcb.test)


@dataclass(frozen=True)
class Server:
    sandbox: Sandbox
    configs: dict[str, Path]  # app -> its runtime config

    def ssh(self, command: str, check: bool = True) -> str:
        return self.sandbox.ssh(command, check=check).stdout

    def fab(self, app: str, *args: str) -> fab_cli.Run:
        return fab_cli.run(
            self.sandbox.lab.ssh_config, self.sandbox.name, "-f", str(self.configs[app]), *args
        )

    def get(self, app: str, path: str) -> str:
        """The body nginx answers for the app's site (curl on the server: through nginx, port 80)."""
        return self.ssh(f"curl -s -m 10 -H 'Host: {app}.test' http://127.0.0.1{path}", check=False)

    def as_app(self, app: str, command: str) -> tuple[int, str]:
        """A command run as the app's system user, from / (one it may enter): its exit code and output."""
        done = self.sandbox.ssh(f"cd / && runuser -u {app} -- {command} 2>&1", check=False)
        return done.returncode, done.stdout

    def main_pids(self) -> dict[str, str]:
        units = [*(f"redis-server@{app}" for app in APPS), *self.clusters()]
        return {unit: self.ssh(f"systemctl show -P MainPID {unit}").strip() for unit in units}

    def clusters(self) -> list[str]:
        listed = self.ssh("ls /etc/postgresql/*/ -d").split()
        return [f"postgresql@{path.rstrip('/').rsplit('/', 1)[-1]}-main" for path in listed]


def recap(run: fab_cli.Run, host: str) -> str:
    (line,) = [line for line in run.stdout.splitlines() if line.startswith(f"{host}  ok=")]
    return line


@pytest.fixture(scope="module")
def server(lab: Lab, suite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("services")
    configs = {}
    for app, port in APPS.items():
        src = work / app
        shutil.copytree(APP_SOURCE, src, ignore=shutil.ignore_patterns("__pycache__"))
        settings = {
            "app": {"name": app, "src": str(src), "module": "app:app", "port": port,
                    "server_name": f"{app}.test", "env": {"SERVICES_APP_NAME": f"{app}-site"}},
            "services": {"postgresql": True, "redis": True},
        }  # fmt: skip
        configs[app] = work / f"{app}-{uuid.uuid4().hex[:6]}.yaml"
        configs[app].write_text(yaml.safe_dump(settings))
    (sandbox,) = lab.start(1, suite)
    try:
        served = Server(sandbox, configs)
        for app in APPS:
            run = served.fab(app, "deploy")
            assert run.code == 0 and "failed=0" in recap(run, sandbox.name), str(run)
        yield served
    finally:
        lab.remove(sandbox)


def test_each_app_writes_and_reads_its_database_and_redis_through_nginx(server: Server):
    assert server.get("svca", "/env") == (
        "DATABASE_URL=postgresql:///svca?host=/run/postgresql REDIS_URL=unix:///run/svca-redis/redis.sock\n"
    )
    assert server.get("svca", "/put/colour/blue") == "ok\n"
    assert server.get("svca", "/get/colour") == "pg=blue redis=blue\n"
    # The other app, its own database and Redis: A's key is not there.
    assert server.get("svcb", "/get/colour") == "pg=None redis=None\n"
    assert server.get("svcb", "/put/colour/green") == "ok\n"
    assert server.get("svca", "/get/colour") == "pg=blue redis=blue\n"


def test_postgresql_listens_on_loopback_at_most_and_redis_on_no_tcp_port(server: Server):
    listening = server.ssh("ss -Hltnp")
    postgres = [line.split()[3] for line in listening.splitlines() if '"postgres"' in line]
    assert postgres, listening
    assert all(re.fullmatch(r"(127\.0\.0\.1|\[::1\]):5432", local) for local in postgres), listening
    assert "redis" not in listening
    # Redis answers on the app's socket only.
    assert server.as_app("svca", "redis-cli -s /run/svca-redis/redis.sock ping") == (0, "PONG\n")


def test_an_app_cannot_use_the_other_apps_database_or_redis(server: Server):
    code, out = server.as_app("svcb", "psql -X -d svca -c 'SELECT 1'")
    assert code != 0 and "permission denied for database" in out, out
    code, out = server.as_app("svcb", "psql -X -U svca -d svca -c 'SELECT 1'")
    assert code != 0 and "Peer authentication failed" in out, out
    code, out = server.as_app("svcb", "redis-cli -s /run/svca-redis/redis.sock ping")
    assert "Permission denied" in out, out
    assert server.as_app("svca", "psql -X -At -d svca -c 'SELECT current_user'") == (0, "svca\n")
    role = "SELECT rolsuper, rolcreatedb, rolpassword IS NULL FROM pg_authid WHERE rolname = 'svca'"
    assert server.ssh(f'runuser -u postgres -- psql -X -At -c "{role}"') == "f|f|t\n"


def test_nothing_of_the_services_is_world_readable_and_both_start_at_boot(server: Server):
    stat = "stat -c '%n %U:%G %a'"
    assert server.ssh(f"{stat} /run/svca-redis /run/svca-redis/redis.sock /var/lib/redis-svca").split("\n")[
        :3
    ] == [
        "/run/svca-redis redis:svca 2750",
        "/run/svca-redis/redis.sock redis:svca 660",
        "/var/lib/redis-svca redis:redis 750",
    ]
    assert (
        server.ssh(f"{stat} /etc/redis/redis-svca.conf").strip()
        == "/etc/redis/redis-svca.conf root:redis 640"
    )
    # Persistence: the append-only file.
    assert server.ssh("ls /var/lib/redis-svca").split()
    env = server.ssh("stat -c '%a' /srv/svca/current/.deploy/env.json").strip()
    assert not int(env[-1]) & 4, env
    for unit in ("postgresql", "redis-server@svca", "redis-server@svcb"):
        assert server.ssh(f"systemctl is-enabled {unit}").strip() == "enabled"
        assert server.ssh(f"systemctl is-active {unit}").strip() == "active"


def test_a_second_deploy_changes_nothing_and_keeps_the_services_processes(server: Server):
    before = server.main_pids()
    assert all(pid != "0" for pid in before.values()), before
    run = server.fab("svca", "deploy")
    assert run.code == 0 and "changed=0 " in recap(run, server.sandbox.name), str(run)
    assert server.main_pids() == before
    check = server.fab("svca", "deploy", "--check")
    assert check.code == 0, str(check)


def test_status_has_a_row_part_per_service(server: Server):
    run = server.fab("svca", "status", "--json")
    assert run.code == 0, str(run)
    (row,) = json.loads(run.stdout)
    assert row["services"] == {
        "postgresql": {"active": "active", "enabled": "enabled"},
        "redis": {"active": "active", "enabled": "enabled"},
    }
    table = server.fab("svca", "status")
    assert "postgresql:active/enabled redis:active/enabled" in table.stdout, str(table)


def test_after_a_reboot_both_services_come_back_with_their_data(server: Server):
    assert server.get("svca", "/put/kept/yes") == "ok\n"
    server.sandbox.reboot()
    # Redis's socket directory (under /run, emptied at boot) is made again before Redis starts.
    wait_until(lambda: server.get("svca", "/get/kept") == "pg=yes redis=yes\n", 30, "both services back")
    assert server.ssh("stat -c '%U:%G %a' /run/svca-redis").strip() == "redis:svca 2750"
    run = server.fab("svca", "deploy")
    assert run.code == 0 and "changed=0 " in recap(run, server.sandbox.name), str(run)
