"""The deploy pipeline against real sandbox servers (issue 3's acceptance points 1-8).

One sandbox is deployed once and shared by the tests of this module, in order: they read its state,
and the ones that disturb it (kill, reboot, a second app) come after the ones that only look. The module
runs once per Debian suite (the `suite` fixture: [debian-12], then [debian-13]).
"""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tasks.steps import NAMES as STEPS
from tests import fab as fab_cli
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

DEFAULT_SITE = "/etc/nginx/sites-available/default"

pytestmark = pytest.mark.sandbox


def fab(sandbox: Sandbox, *args: str, host: str | None = None) -> fab_cli.Run:
    """Run `fab` from the repo root as a user would, against the sandbox."""
    return fab_cli.run(sandbox.lab.ssh_config, host or sandbox.name, *args)


def recap(result: fab_cli.Run, host: str) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith(f"{host}  ok=")]
    assert len(lines) == 1, f"no single recap line for {host}:\n{result}"
    return lines[0]


def succeeded(result: fab_cli.Run, host: str, changed: int | None = None) -> None:
    line = recap(result, host)
    assert result.code == 0 and "failed=0" in line, str(result)
    if changed is not None:
        assert f"changed={changed} " in line, result.stdout


def get(url: str, host_header: str | None = None) -> str | None:
    """The body of a 200 answer, or None for anything else (refused, timeout, error status)."""
    request = urllib.request.Request(url, headers={"Host": host_header} if host_header else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=3) as answer:
            return answer.read().decode()
    except (OSError, urllib.error.URLError):
        return None


def remote(sandbox: Sandbox, command: str) -> str:
    return sandbox.ssh(command).stdout.strip()


def nginx_pids(sandbox: Sandbox) -> str:
    """The nginx master and its workers: a reload or restart changes the workers at least."""
    return remote(sandbox, "p=$(cat /run/nginx.pid); echo $p $(pgrep -P $p | sort -n)")


def gunicorn_master(sandbox: Sandbox) -> str:
    return remote(sandbox, "supervisorctl pid flaskdemo")


def serves_sample(sandbox: Sandbox) -> bool:
    return get(f"http://{sandbox.address}/") == "flask index page"


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture(scope="module")
def deployed(lab: Lab, suite: str) -> Iterator[tuple[Sandbox, fab_cli.Run]]:
    """One sandbox of the suite, deployed once as root, shared by this module's tests."""
    (sandbox,) = lab.start(1, suite)
    try:
        yield sandbox, fab(sandbox, "deploy")
    finally:
        lab.remove(sandbox)


def test_deploy_serves_the_app_through_nginx_and_gunicorn_only_on_loopback(deployed):
    sandbox, result = deployed
    succeeded(result, sandbox.name)
    for step in STEPS:
        assert f"{sandbox.name}  {step}  changed" in result.stdout or step in (
            "enable_boot",
            "certificate",
            "postgresql",  # no services
            "redis",
            "schedule",  # no jobs
            "processes",  # the sample app has none
        ), result.stdout
    assert serves_sample(sandbox)
    assert refused(sandbox.address, 8080)
    assert remote(sandbox, "curl -s http://127.0.0.1:8080/") == "flask index page"
    assert remote(sandbox, "ss -Hltn 'sport = :8080' | awk '{print $4}'") == "127.0.0.1:8080"
    # The master forks its workers with no other thread running: no control socket server (gunicornc).
    master = gunicorn_master(sandbox)
    assert remote(sandbox, f"awk '/^Threads:/ {{print $2}}' /proc/{master}/status") == "1"
    assert remote(sandbox, "ls -A /run/flaskdemo") == ""


def test_default_site_backup_is_the_stock_file(deployed):
    sandbox, _ = deployed
    # dpkg records the md5 of every conffile as shipped: the backup must match the stock default.
    conffiles = remote(sandbox, "dpkg-query -W -f='${Conffiles}' nginx-common")
    stock_md5 = next(line.split()[1] for line in conffiles.splitlines() if line.split()[0] == DEFAULT_SITE)
    assert remote(sandbox, f"md5sum < {DEFAULT_SITE}.bak").split()[0] == stock_md5
    assert not remote(sandbox, "ls /etc/nginx/sites-enabled/").count("default")


def test_second_deploy_changes_reloads_and_restarts_nothing(deployed):
    sandbox, _ = deployed
    before = (gunicorn_master(sandbox), nginx_pids(sandbox))
    backup = remote(sandbox, "stat -c '%i %Y %Z' /etc/nginx/sites-available/default.bak")
    result = fab(sandbox, "deploy")
    succeeded(result, sandbox.name, changed=0)
    assert "nothing to change" in result.stdout
    assert (gunicorn_master(sandbox), nginx_pids(sandbox)) == before
    assert remote(sandbox, "stat -c '%i %Y %Z' /etc/nginx/sites-available/default.bak") == backup


def test_status_and_logs_show_the_live_release_its_services_and_its_logs(deployed):
    sandbox, _ = deployed
    live = remote(sandbox, "readlink /srv/flaskdemo/current").rsplit("/", 1)[-1]
    status = fab(sandbox, "status")
    succeeded(status, sandbox.name, changed=0)
    # One row for the host under a header: HOST STATE RELEASE AGE BY APP UPTIME WORKERS NGINX SUPERVISOR
    # HEALTH FREE LOCK (tasks/status.py), cells two spaces or more apart.
    rows = [re.split(r" {2,}", line) for line in status.stdout.splitlines()]
    (header,) = [cells for cells in rows if cells[0] == "HOST"]
    (row,) = [cells for cells in rows if len(cells) == len(header) and cells[0] == sandbox.name]
    cell = dict(zip(header, row, strict=True))
    assert (cell["STATE"], cell["RELEASE"], cell["APP"]) == ("healthy", live, "RUNNING"), row
    assert re.fullmatch(r"\d+[smhd](\d\d[mh])?", cell["UPTIME"]) and int(cell["WORKERS"]) >= 1, row
    assert cell["NGINX"] == "active/enabled" and cell["SUPERVISOR"] == "active/enabled", row
    assert re.fullmatch(r"200 \d+ms", cell["HEALTH"]) and cell["LOCK"] == "-", row
    logs = fab(sandbox, "logs", "--lines", "50")
    succeeded(logs, sandbox.name, changed=0)
    assert f"{sandbox.name}  == /var/log/flaskdemo/error.log" in logs.stdout
    assert f"{sandbox.name}  == /var/log/nginx/flaskdemo.error.log" in logs.stdout
    assert "Booting worker with pid" in logs.stdout  # gunicorn's own lines, from the app's error log


def test_each_task_alone_changes_nothing_after_deploy(deployed):
    sandbox, _ = deployed
    for step in STEPS:
        result = fab(sandbox, step)
        succeeded(result, sandbox.name, changed=0)
        assert f"{sandbox.name}  {step}  ok" in result.stdout


def test_enable_site_restores_a_deleted_link_and_reload_nginx_makes_it_live(deployed):
    sandbox, _ = deployed
    # Take the site down for real: no link, and nginx reloaded without it.
    sandbox.ssh("rm /etc/nginx/sites-enabled/flaskdemo && systemctl reload nginx")
    wait_until(lambda: not serves_sample(sandbox), 10, "site gone after removing its link")
    result = fab(sandbox, "enable_site")
    succeeded(result, sandbox.name, changed=1)
    assert (
        remote(sandbox, "readlink /etc/nginx/sites-enabled/flaskdemo")
        == "/etc/nginx/sites-available/flaskdemo"
    )
    assert not serves_sample(sandbox)  # linked, validated, but not live before a reload
    succeeded(fab(sandbox, "reload_nginx"), sandbox.name, changed=1)
    wait_until(lambda: serves_sample(sandbox), 10, "site live after reload_nginx")
    succeeded(fab(sandbox, "reload_nginx"), sandbox.name, changed=0)


def test_a_killed_gunicorn_master_is_replaced_within_10_seconds(deployed):
    sandbox, _ = deployed
    master = gunicorn_master(sandbox)
    sandbox.ssh(f"kill -9 {master}")
    killed = time.monotonic()
    wait_until(
        lambda: serves_sample(sandbox) and gunicorn_master(sandbox) not in ("", "0", master), 10,
        "site answering again from a new gunicorn master",
    )  # fmt: skip
    print(f"site back {time.monotonic() - killed:.1f} s after kill -9 of the gunicorn master")


def test_the_site_comes_back_after_a_reboot(deployed):
    sandbox, _ = deployed
    sandbox.reboot()
    wait_until(lambda: serves_sample(sandbox), 30, "site answering after reboot")
    assert remote(sandbox, "stat -c %U /run/flaskdemo") == "flaskdemo"  # tmpfiles.d recreated it
    succeeded(fab(sandbox, "deploy"), sandbox.name, changed=0)


def test_another_app_deploys_beside_the_sample_with_a_runtime_config_file(deployed):
    sandbox, _ = deployed
    result = fab(sandbox, "-f", "tests/fixtures/override.yaml", "deploy")
    succeeded(result, sandbox.name)
    assert get(f"http://{sandbox.address}/", "other.test") == "other app, 1,234,567 requests served"
    assert serves_sample(sandbox)
    assert refused(sandbox.address, 8081)
    assert remote(sandbox, "supervisorctl status otherapp | awk '{print $2}'") == "RUNNING"
    succeeded(fab(sandbox, "-f", "tests/fixtures/override.yaml", "deploy"), sandbox.name, changed=0)


def test_a_site_nginx_rejects_never_replaces_the_working_config(deployed, tmp_path):
    sandbox, _ = deployed
    # A second catch-all site on the same server: nginx -t fails on a duplicate default server.
    clash = tmp_path / "clash.yaml"
    clash.write_text(
        "app:\n  name: clash\n  src: tests/fixtures/otherapp\n  module: wsgi:application\n  port: 8083\n"
    )
    before = nginx_pids(sandbox)
    result = fab(sandbox, "-f", str(clash), "deploy")
    assert result.code != 0 and "failed=1" in recap(result, sandbox.name).split()
    assert f"{sandbox.name}  enable_site  failed: nginx -t rejected the new site" in result.stdout
    assert "duplicate default server" in result.stdout
    sandbox.ssh("test ! -e /etc/nginx/sites-available/clash && test ! -e /etc/nginx/sites-enabled/clash")
    sandbox.ssh("nginx -t")
    assert serves_sample(sandbox) and nginx_pids(sandbox) == before
    succeeded(fab(sandbox, "deploy"), sandbox.name, changed=0)  # the rejected attempt left no trace


def test_a_sudo_user_deploys_a_fresh_server_and_tasks_name_their_prerequisite(sandboxes, suite):
    (sandbox,) = sandboxes(1, suite)
    host = f"deploy@{sandbox.name}"
    early = fab(sandbox, "supervisor_update", host=host)
    assert early.code != 0
    assert "supervisor is not installed: run `fab provision` first" in early.stdout
    assert "failed=1" in recap(early, sandbox.name).split()
    succeeded(fab(sandbox, "deploy", host=host), sandbox.name)
    assert serves_sample(sandbox)
    assert refused(sandbox.address, 8080)
    result = fab(sandbox, "deploy", host=host)
    succeeded(result, sandbox.name, changed=0)
    sandbox.ssh("cmp /etc/nginx/sites-available/default /etc/nginx/sites-available/default.bak")


def test_a_failed_package_install_fails_provision_with_apts_reason_and_switches_nothing(sandbox):
    # provision installs in the background while push builds the release beside it; push awaits the
    # install before it switches, so a failed install leaves no release live and no apt still running.
    lab = sandbox.lab
    sandbox.ssh(f"echo 'deb [trusted=yes] http://{lab.gateway}:9/ ./' > /etc/apt/sources.list")
    result = fab(sandbox, "deploy")
    assert result.code == 1, result
    (failed,) = [x for x in result.stdout.splitlines() if x.startswith(f"{sandbox.name}  provision  failed")]
    assert "installing the packages failed:" in failed and "Traceback" not in result.output, failed
    assert f"{sandbox.name}  push  changed" not in result.stdout  # it stopped before switching
    assert remote(sandbox, "readlink /srv/flaskdemo/current || echo none") == "none"
    assert remote(sandbox, "pgrep -c -x 'apt-get|dpkg|http' || true") == "0"
