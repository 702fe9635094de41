"""Fixtures handing tests real sandbox servers (see tests/sandbox). They need root and Linux."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.sandbox.lab import Lab, Sandbox, sweep_orphans


def _why_no_sandboxes() -> str | None:
    if not sys.platform.startswith("linux"):
        return "sandbox servers need Linux (systemd-nspawn, network namespaces)"
    if os.geteuid() != 0:
        return "sandbox servers need root (mounts, namespaces, cgroups); run the tests as root"
    for tool in ("debootstrap", "systemd-nspawn", "apt-ftparchive", "ip", "ssh"):
        if not shutil.which(tool):
            return f"sandbox servers need `{tool}`; `bash .ci/setup` installs it"
    return None


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One lab per test run: a bridge, a client key, an SSH config; torn down at the end, pass or fail."""
    reason = _why_no_sandboxes()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the sandbox tests: {reason}")
        pytest.skip(reason)
    sweep_orphans()
    lab = Lab.create(owner_pid=os.getpid())
    try:
        yield lab
    finally:
        lab.destroy()


@pytest.fixture
def sandboxes(lab: Lab) -> Iterator[Callable[[int], list[Sandbox]]]:
    """Factory: `sandboxes(n)` starts n fresh sandboxes; all are destroyed after the test."""
    started: list[Sandbox] = []

    def start(count: int) -> list[Sandbox]:
        new = lab.start(count)
        started.extend(new)
        return new

    yield start
    for sandbox in started:
        lab.remove(sandbox)


@pytest.fixture
def sandbox(sandboxes: Callable[[int], list[Sandbox]]) -> Sandbox:
    """One fresh sandbox (a new Debian 12 server), destroyed after the test."""
    return sandboxes(1)[0]
