"""The sandbox servers behave like fresh Debian 12 (or 13) VPSes reached over real, verified SSH."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from tests import fab
from tests.sandbox import image
from tests.sandbox.lab import CGROUP_ROOTS, Lab, Sandbox, _pid_alive, existing_labs, sweep_orphans

pytestmark = pytest.mark.sandbox


def ssh(lab: Lab, target: str, command: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", *options, target, command],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_two_sandboxes_answer_over_ssh_with_host_keys_verified(lab: Lab, sandboxes, tmp_path: Path):
    first, second = sandboxes(2)
    for s in (first, second):
        assert ssh(lab, s.name, "hostname").stdout.strip() == s.name
        assert ssh(lab, f"deploy@{s.name}", "sudo -n whoami").stdout.strip() == "root"
        assert ssh(lab, s.name, "cat /proc/1/comm").stdout.strip() == "systemd"
    assert first.address != second.address
    assert all(a.startswith("198.18.") for a in (first.address, second.address))

    # Each sandbox has its own host key, and a wrong key is refused: checking is real.
    swapped = tmp_path / "known_hosts"
    lines = lab.known_hosts.read_text().splitlines()
    key_of = {line.split()[0].split(",")[0]: " ".join(line.split()[1:]) for line in lines}
    assert key_of[first.address] != key_of[second.address]
    swapped.write_text(f"{first.address} {key_of[second.address]}\n")
    refused = ssh(lab, first.name, "true", "-o", f"UserKnownHostsFile={swapped}")
    assert refused.returncode != 0
    assert "Host key verification failed" in refused.stderr


def test_fab_uses_the_ssh_config(lab: Lab, sandbox: Sandbox):
    result = fab.run(lab.ssh_config, sandbox.name, "--", "hostname", timeout=60)
    assert result.code == 0, str(result)
    assert result.stdout.strip() == sandbox.name


def test_fresh_sandbox_installs_nginx_from_the_local_repository_only(sandbox: Sandbox):
    for package in ("nginx", "supervisor", "python3-venv"):
        assert sandbox.ssh(f"dpkg -s {package}", check=False).returncode != 0, f"{package} preinstalled"
    assert sandbox.ssh("ip -4 route show default").stdout.strip() == ""  # no way out to the internet
    sandbox.ssh("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx")
    assert sandbox.ssh("systemctl is-active nginx").stdout.strip() == "active"
    assert sandbox.ssh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/").stdout == "200"


def test_a_lab_runs_debian_12_and_13_side_by_side_each_from_its_own_suites_repository(sandboxes):
    (bookworm,) = sandboxes(1)
    (trixie,) = sandboxes(1, "trixie")
    for server, version, python in ((bookworm, "12", "3.11"), (trixie, "13", "3.13")):
        assert server.ssh(". /etc/os-release; echo $VERSION_ID").stdout.strip() == version
        assert (
            server.ssh("python3 -c 'import sys; print(*sys.version_info[:2], sep=\".\")'").stdout.strip()
            == python
        )
        server.ssh("apt-get update -q")
        candidate = server.ssh(f"apt-cache policy python{python}-venv | awk '/Candidate:/ {{print $2}}'")
        assert candidate.stdout.strip() not in ("", "(none)"), f"Debian {version}: no python{python}-venv"


def test_reboot_from_inside_brings_sshd_and_enabled_services_back(sandbox: Sandbox):
    sandbox.ssh("echo kept > /etc/sandbox-survives; echo lost > /run/sandbox-forgets")
    unit = (
        "[Service]\nType=oneshot\nExecStart=/bin/touch /run/enabled-at-boot\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    sandbox.ssh(f"printf '{unit}' > /etc/systemd/system/marker.service && systemctl enable marker.service")
    pid1_start = sandbox.ssh("stat -c %Z /proc/1").stdout

    sandbox.reboot()

    assert sandbox.ssh("cat /etc/sandbox-survives").stdout.strip() == "kept"
    assert sandbox.ssh("test -e /run/sandbox-forgets", check=False).returncode != 0
    assert sandbox.ssh("stat -c %Z /proc/1").stdout != pid1_start
    assert sandbox.ssh("systemctl is-active ssh").stdout.strip() == "active"
    assert sandbox.ssh("test -e /run/enabled-at-boot", check=False).returncode == 0


def test_reset_gives_a_fresh_server_with_the_same_identity(lab: Lab, sandbox: Sandbox):
    sandbox.ssh("echo leftover > /root/leftover")
    sandbox.reset()
    assert sandbox.ssh("test -e /root/leftover", check=False).returncode != 0
    assert ssh(lab, sandbox.name, "hostname").stdout.strip() == sandbox.name  # same host key, still trusted


def _echo_round_trips(lab: Lab, sandbox: Sandbox, samples: int = 15) -> list[float]:
    """Time single bytes echoed by `cat` over one SSH session: each sample is one network round trip."""
    proc = subprocess.Popen(
        ["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", sandbox.name, "cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    try:
        times = []
        for _ in range(samples + 1):
            started = time.perf_counter()
            proc.stdin.write(b"x")
            assert proc.stdout.read(1) == b"x"
            times.append(time.perf_counter() - started)
        return times[1:]  # the first one also waits for the session to open
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_latency_is_added_to_ssh_and_measured(lab: Lab, sandbox: Sandbox):
    direct = statistics.median(_echo_round_trips(lab, sandbox))
    sandbox.set_latency(50)
    delayed = statistics.median(_echo_round_trips(lab, sandbox))
    print(f"ssh echo round trip: {direct * 1000:.1f} ms direct, {delayed * 1000:.1f} ms with rtt=50ms")
    assert 0.045 <= delayed - direct <= 0.150
    assert ssh(lab, sandbox.name, "hostname").stdout.strip() == sandbox.name  # host key still verified
    sandbox.set_latency(0)
    assert statistics.median(_echo_round_trips(lab, sandbox)) < 0.030


def _leftovers(lab: Lab, pids: list[int]) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line}" for line in netns.splitlines() if line.startswith(f"fdsb{lab.number}-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1]}" for line in links.splitlines() if f" fdsb{lab.number}" in line]
    found += [
        f"mount {line}" for line in Path("/proc/mounts").read_text().splitlines() if str(lab.dir) in line
    ]
    for root in CGROUP_ROOTS:
        found += [f"cgroup {p}" for p in root.glob(f"flaskdeploy-sandbox-{lab.number}-*")]
    found += [f"process {pid}" for pid in pids if _pid_alive(pid)]
    if lab.dir.exists():
        found.append(f"directory {lab.dir}")
    return found


def test_teardown_leaves_nothing_behind():
    lab = Lab.create(owner_pid=os.getpid())
    held = None
    try:
        (sandbox,) = lab.start(1)
        sandbox.set_latency(20)
        pids = [lab.repo_pid, sandbox.runner_pid, sandbox.proxy_pid]
        assert not [p for p in pids if not _pid_alive(p)]
        # What a lingering socket does (FIN_WAIT2 after a run under load): keep the namespace alive.
        held = os.open(f"/run/netns/{sandbox.netns}", os.O_RDONLY)
    finally:
        lab.destroy()
    try:
        assert _leftovers(lab, pids) == []
    finally:
        if held is not None:
            os.close(held)


def test_labs_of_a_dead_test_run_are_swept():
    dead = subprocess.Popen(["true"])
    dead.wait()
    lab = Lab.create(owner_pid=dead.pid)
    (sandbox,) = lab.start(1)
    pids = [lab.repo_pid, sandbox.runner_pid]
    sweep_orphans()
    assert lab.number not in [other.number for other in existing_labs()]
    assert _leftovers(lab, pids) == []


def test_second_start_reuses_the_cached_image(lab: Lab):
    ready = image.image_dir() / "ready"
    built_at = ready.stat().st_mtime
    assert image.ensure_image() == lab.images[image.DEFAULT_SUITE]
    assert ready.stat().st_mtime == built_at
