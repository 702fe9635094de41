"""Fresh sandbox servers the kit meets halfway: a first deploy cut off while apt installs (dpkg goes on to
its end, the next deploy succeeds), a dpkg left half-done by someone else (the next deploy finishes its
work first) or still at work (the deploy waits for it), and a server set up by hand with the common
recipe under the app's name (its nginx site and supervisor program kept beside, said in the run's
output, the kit's in their place)."""

from __future__ import annotations

import os
import signal

import pytest

from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.polling import wait_until
from tests.sandbox.lab import Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "handmade", 8096
RECIPE_PORT = 8000  # where the hand-made program listens: not app.port, which the kit would refuse
PACKAGES = "nginx supervisor"
APTS_DPKG = "^/usr/bin/dpkg .*--status-fd"  # anchored: the shell that waits for it has it in its own line


def fab(sandbox: Sandbox, version: Version, *args: str) -> fab_cli.Run:
    return fab_cli.run(sandbox.lab.ssh_config, sandbox.name, "-f", str(version.override), *args)


def deploy_when_free(sandbox: Sandbox, version: Version) -> fab_cli.Run:
    """`fab deploy`, again while a run whose connection is gone still stops (exit 75: try again)."""
    return wait_until(
        lambda: (run := fab(sandbox, version, "deploy")).code != 75 and run, 180, "the lock is free again"
    )


def remote(sandbox: Sandbox, command: str) -> str:
    return sandbox.ssh(command).stdout.strip()


def dpkg_state(sandbox: Sandbox) -> str:
    """What dpkg says is unfinished: its journal of a run cut off (apt's "dpkg was interrupted"), and the
    packages it left half-done (`dpkg --audit`); "" when there is nothing."""
    return remote(sandbox, "ls /var/lib/dpkg/updates | grep '^[0-9]'; dpkg --audit")


def serves(sandbox: Sandbox, page: str) -> bool:
    return remote(sandbox, "curl -s -m 5 http://127.0.0.1/") == page


def test_a_first_deploy_cut_off_while_apt_installs_lets_dpkg_finish_and_the_next_deploy_succeeds(
    sandbox, tmp_path
):
    version = AppVersions(tmp_path, APP, PORT).make("v1")
    process = fab_cli.start(sandbox.lab.ssh_config, sandbox.name, "-f", str(version.override), "deploy")
    try:
        # apt's dpkg (the one it gives a status fd) unpacks and configures: cut the link then.
        sandbox.ssh(f"timeout 120 sh -c 'until pgrep -f \"{APTS_DPKG}\" >/dev/null; do sleep 0.05; done'")
        assert process.poll() is None, "the deploy ended before dpkg ran"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # as a cut link: the connection goes, the run is stopped
        process.communicate()
    wait_until(lambda: remote(sandbox, "pgrep -c -x 'apt-get|dpkg' || true") == "0", 180, "apt has ended")
    assert dpkg_state(sandbox) == ""  # never cut off: no "dpkg was interrupted", nothing half-done
    assert remote(sandbox, f"dpkg-query -W -f '${{db:Status-Status}} ' {PACKAGES}") == "installed installed"
    run = deploy_when_free(sandbox, version)
    assert run.code == 0, str(run)
    assert serves(sandbox, version.page)


# dpkg cut off in a package's postinst: a policy-rc.d (asked before a service starts) holds it there.
CUT_OFF_DPKG = r"""
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
printf '#!/bin/sh\ntouch /run/in-postinst\nexec sleep 300\n' >/usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
setsid apt-get install -y -q --no-install-recommends nginx </dev/null >/dev/null 2>&1 &
apt=$!
timeout 120 sh -c 'until [ -e /run/in-postinst ]; do sleep 0.05; done'
kill -KILL -- "-$apt" "-$(ps -o pgid= -C dpkg | tr -d ' ')"
rm /usr/sbin/policy-rc.d /run/in-postinst
"""


def test_a_dpkg_someone_else_left_half_done_is_finished_before_the_install(sandbox, tmp_path):
    sandbox.ssh(CUT_OFF_DPKG)
    assert "half configured" in dpkg_state(sandbox)  # and apt would refuse: "dpkg was interrupted"
    version = AppVersions(tmp_path, APP, PORT).make("v1")
    run = fab(sandbox, version, "deploy")
    assert run.code == 0, str(run)
    assert dpkg_state(sandbox) == "" and serves(sandbox, version.page)


# Another dpkg at work (a new server's first unattended upgrades): its lock held until /run/go exists.
HOLD_DPKG = r"""
setsid python3 -c '
import fcntl, os, time
lock = open("/var/lib/dpkg/lock-frontend", "w")
fcntl.lockf(lock, fcntl.LOCK_EX)
open("/run/held", "w").close()
while not os.path.exists("/run/go"):
    time.sleep(0.05)
' </dev/null >/dev/null 2>&1 &
timeout 30 sh -c 'until [ -e /run/held ]; do sleep 0.05; done'
"""


def test_a_deploy_waits_for_another_dpkg_to_end(sandbox, tmp_path):
    sandbox.ssh(HOLD_DPKG)
    version = AppVersions(tmp_path, APP, PORT).make("v1")
    process = fab_cli.start(sandbox.lab.ssh_config, sandbox.name, "-f", str(version.override), "deploy")
    try:

        def installing_or_ended() -> bool:  # the kit's install runs, and waits for the lock; or it failed
            return process.poll() is not None or remote(sandbox, "pgrep -f '^apt-get install' || true") != ""

        wait_until(installing_or_ended, 120, "the kit's install runs")
        sandbox.ssh("touch /run/go")  # the other dpkg ends
        out, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, out
    assert serves(sandbox, version.page)


# The common recipe, by hand: nginx in front of a program of supervisor's on another port, both named
# like the app, beside the stock site (the kit's site takes its place as the default server).
RECIPE = f"""
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends nginx supervisor >/dev/null
cat >/etc/nginx/sites-available/{APP} <<'EOF'
server {{
    listen 80;
    server_name recipe.example;
    location / {{ proxy_pass http://127.0.0.1:{RECIPE_PORT}; }}
}}
EOF
ln -s /etc/nginx/sites-available/{APP} /etc/nginx/sites-enabled/{APP}
cat >/etc/supervisor/conf.d/{APP}.conf <<'EOF'
[program:{APP}]
command=python3 -m http.server {RECIPE_PORT} --bind 127.0.0.1
directory=/var/www/html
user=nobody
autorestart=true
EOF
supervisorctl update >/dev/null && nginx -t -q && systemctl reload nginx
"""
SITE, PROGRAM = f"/etc/nginx/sites-available/{APP}", f"/etc/supervisor/conf.d/{APP}.conf"


def test_a_server_set_up_by_hand_keeps_its_site_and_program_beside_the_kits(sandbox, tmp_path):
    sandbox.ssh(RECIPE)
    wait_until(
        lambda: (
            "Directory listing" in remote(sandbox, "curl -s -m 5 -H 'Host: recipe.example' http://127.0.0.1/")
        ),
        30,
        "it serves",
    )
    hand_made = {path: remote(sandbox, f"cat {path}") for path in (SITE, PROGRAM)}
    version = AppVersions(tmp_path, APP, PORT).make("v1")
    run = fab(sandbox, version, "deploy")
    assert run.code == 0, str(run)
    for path, text in hand_made.items():
        assert f"{path} was not written by flaskdeploy: a copy is kept as {path}.bak" in run.output, str(run)
        assert remote(sandbox, f"cat {path}.bak") == text
        assert "rendered from configs/" in remote(sandbox, f"head -n 1 {path}")
    assert serves(sandbox, version.page)
    # Supervisor runs the kit's program only (conf.d/*.conf), nginx serves the kit's site only.
    assert remote(sandbox, "supervisorctl avail | awk '{print $1}'") == APP
    assert remote(sandbox, f"ss -Hltn 'sport = :{RECIPE_PORT}'") == ""
    assert remote(sandbox, "ls /etc/nginx/sites-enabled") == APP
    again = fab(sandbox, version, "deploy")
    assert again.code == 0 and "changed=0" in again.stdout, str(again)  # nothing kept again
    assert remote(sandbox, f"ls -d {SITE}.bak* {PROGRAM}.bak*").split() == [f"{SITE}.bak", f"{PROGRAM}.bak"]
