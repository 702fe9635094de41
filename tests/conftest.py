"""Fixtures handing tests real sandbox servers (see tests/sandbox). They need root and Linux."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.sandbox.image import DEFAULT_SUITE, SUITES
from tests.sandbox.lab import Lab, Sandbox, sweep_orphans

# What tests/fixtures holds is for tests to copy (a worked example of a step: tests/unit/test_new_step.py).
collect_ignore = ["fixtures"]


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


@pytest.fixture(scope="module", params=list(SUITES), ids=lambda name: f"debian-{SUITES[name].version}")
def suite(request: pytest.FixtureRequest) -> str:
    """The Debian suite of a module's sandboxes ("bookworm", "trixie"): a module whose fixtures take it
    runs once per suite (test ids [debian-12], [debian-13]), one suite after the other; the others run
    on Debian 12 only."""
    return request.param


@pytest.fixture
def sandboxes(lab: Lab) -> Iterator[Callable[..., list[Sandbox]]]:
    """Factory: `sandboxes(n)` starts n fresh sandboxes (Debian 12; `suite=` another); all are destroyed
    after the test."""
    started: list[Sandbox] = []

    def start(count: int, suite: str = DEFAULT_SUITE) -> list[Sandbox]:
        new = lab.start(count, suite)
        started.extend(new)
        return new

    yield start
    for sandbox in started:
        lab.remove(sandbox)


@pytest.fixture
def sandbox(sandboxes: Callable[..., list[Sandbox]]) -> Sandbox:
    """One fresh sandbox (a new Debian 12 server), destroyed after the test."""
    return sandboxes(1)[0]
