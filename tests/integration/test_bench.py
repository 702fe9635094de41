"""The comparison bench (bench/compare.py) runs end to end in its smoke mode: one round at RTT 0, the cold
deploy, ours only, no timing asserted. It makes its own lab of sandboxes, as `python -m bench` does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import _why_no_sandboxes
from tests.fab import ROOT

pytestmark = pytest.mark.sandbox


def test_bench_smoke_deploys_and_prints_the_table():
    reason = _why_no_sandboxes()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the sandbox tests: {reason}")
        pytest.skip(reason)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    rows = [line.split() for line in done.stdout.splitlines()]
    cold = [row for row in rows if row[:2] == ["cold", "0"]]
    assert cold, done.stdout
    assert float(cold[0][2]) > 0, done.stdout  # ours' median, in seconds
    assert "1/2" in done.stdout or "connections" in done.stdout, done.stdout  # SSH counts were read
