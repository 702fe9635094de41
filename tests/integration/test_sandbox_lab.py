"""Many sandboxes at once: each answers over SSH and stays small, and removing one leaves no process."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.sandbox.lab import CGROUP_ROOTS, Lab, Sandbox, _cgroup_pids

pytestmark = pytest.mark.sandbox

COUNT = 8
MEMORY_BOUND_MIB = 64  # measured about 40 MiB with nginx and supervisor running; generous on purpose


def _in_netns(netns: str) -> list[int]:
    """Host PIDs of processes in the sandbox's network namespace (its sshd, its latency proxy...)."""
    try:
        inode = os.stat(f"/run/netns/{netns}").st_ino
    except FileNotFoundError:
        return []
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.stat(proc / "ns/net").st_ino == inode:
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _in_cgroup(name: str) -> list[int]:
    """Host PIDs of processes whose cgroup, in any hierarchy, is the sandbox's or under it."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"/{name}" in (proc / "cgroup").read_text():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


class _Watched:
    """A sandbox's processes, held by pidfd so that a reused PID cannot pass for a survivor."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.cgroup = sandbox.cgroup
        pids = set(_cgroup_pids(CGROUP_ROOTS[0] / sandbox.cgroup)) | set(_in_netns(sandbox.netns))
        pids |= {sandbox.runner_pid, sandbox.proxy_pid} - {None}
        self.fds = {}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a short-lived one (an ssh session) ended
                self.fds[pid] = os.pidfd_open(pid)

    def survivors(self) -> list[str]:
        """Processes not yet reaped (zombies count: `ps` would still list them), and cgroups left."""
        left = []
        for pid, fd in self.fds.items():
            try:
                signal.pidfd_send_signal(fd, 0)
            except ProcessLookupError:
                continue
            left.append(f"pid {pid}: {_describe(pid)}")
        left += [f"pid {pid} in cgroup {self.cgroup}" for pid in _in_cgroup(self.cgroup)]
        left += [f"cgroup {root / self.cgroup}" for root in CGROUP_ROOTS if (root / self.cgroup).exists()]
        return left

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def _describe(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.index("(") : stat.rindex(")") + 4]


def test_eight_sandboxes_at_once_answer_stay_small_and_leave_no_process(lab: Lab):
    started = time.monotonic()
    group = lab.start(COUNT)
    boot = time.monotonic() - started
    try:
        with ThreadPoolExecutor(COUNT) as pool:
            names = list(pool.map(lambda s: s.ssh("hostname").stdout.strip(), group))
            assert names == [s.name for s in group]
            started = time.monotonic()
            list(pool.map(lambda s: s.ssh(
                "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx supervisor"
                " && systemctl is-active nginx supervisor"
            ), group))  # fmt: skip
            install = time.monotonic() - started
        time.sleep(1)  # let the services settle before reading their memory
        memory = [s.private_memory_kib() / 1024 for s in group]
        print(
            f"\n{COUNT} sandboxes: started in {boot:.1f} s, nginx + supervisor installed in {install:.1f} s;"
            f" private memory per sandbox MiB: median {statistics.median(memory):.1f},"
            f" max {max(memory):.1f} ({', '.join(f'{m:.1f}' for m in memory)})"
        )
        assert max(memory) < MEMORY_BOUND_MIB
        for s in group:
            assert s.ssh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/").stdout == "200"
    finally:
        watched = {s.name: _Watched(s) for s in group}
        survivors = {}
        started = time.monotonic()
        for s in group:
            lab.remove(s)
            survivors[s.name] = watched[s.name].survivors()  # right after remove returns, no grace
            watched[s.name].close()
        teardown = time.monotonic() - started
        print(f"removed {COUNT} sandboxes in {teardown:.1f} s")
    assert {name: left for name, left in survivors.items() if left} == {}


def test_halt_leaves_no_process_even_with_a_latency_proxy_and_a_busy_server(lab: Lab, sandboxes):
    (sandbox,) = sandboxes(1)
    sandbox.set_latency(10)
    sandbox.ssh("nohup sh -c 'while :; do :; done' >/dev/null 2>&1 & sleep 1000 >/dev/null 2>&1 &")
    watched = _Watched(sandbox)
    assert len(watched.fds) > 5
    sandbox.halt()
    try:
        assert watched.survivors() == []
    finally:
        watched.close()
    sandbox.boot()  # and it comes back: the runner's halting flag does not outlive the halt
    assert sandbox.ssh("hostname").stdout.strip() == sandbox.name
