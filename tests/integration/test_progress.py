"""The operator's view (issue 10): each step's line comes as the server finishes the step, with its time;
the recap line ends with the host's time. Read from fab's stdout as a stream, as a pipe gives it (no
terminal: plain lines)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from tasks.steps import NAMES as STEPS
from tests import fab as fab_cli
from tests.sandbox.lab import Sandbox

pytestmark = pytest.mark.sandbox

TIMED = r"(?P<status>ok|changed) +(?P<seconds>\d+\.\d) s"


def streamed(
    sandbox: Sandbox, *args: str, timeout: float = 300
) -> tuple[int, float, list[tuple[float, str]]]:
    """Run fab in the background: its exit code, how long it ran, and each line of its output with the
    time it arrived (seconds after fab started)."""
    started = time.monotonic()
    process = fab_cli.start(sandbox.lab.ssh_config, sandbox.name, *args)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in process.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    ended = time.monotonic() - started
    reader.join(timeout=10)
    return code, ended, lines


def test_a_deploy_shows_each_step_as_the_server_finishes_it_with_its_time(sandbox):
    host = sandbox.name
    code, ended, lines = streamed(sandbox, "deploy")
    output = "\n".join(text for _, text in lines)
    assert code == 0, output
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", output), "control characters in plain output"

    # Every step's line, in pipeline order, carries its time on the server.
    steps: dict[str, tuple[float, float]] = {}  # step: (when its line arrived, its time on the server)
    for arrived, text in lines:
        match = re.fullmatch(rf"{host}  (?P<step>\w+)  {TIMED}", text)
        if match:
            steps[match["step"]] = (arrived, float(match["seconds"]))
    off = ("certificate", "postgresql", "redis", "schedule", "processes")  # nothing to do, no time
    assert list(steps) == [*(s for s in STEPS if s not in off), "health"], output

    # Live, not at the end: provision's line arrives while the server still works on the steps after
    # it, so the lines of those come later by at least the time they took there (push builds a venv).
    after = sum(seconds for step, (_, seconds) in steps.items() if step != "provision")
    assert after > 1, f"the steps after provision took {after:.1f} s: too little to tell\n{output}"
    last_arrived = lines[-1][0]
    assert steps["health"][0] - steps["provision"][0] >= after - 0.5, output
    assert last_arrived - steps["provision"][0] >= after - 0.5, output

    # The recap line ends with the host's time: the run on the control machine, its steps included.
    recap = [text for _, text in lines if text.startswith(f"{host}  ok=")]
    assert len(recap) == 1, output
    total = re.fullmatch(rf"{host}  ok=\d+ changed=\d+ failed=0  in (\d+\.\d) s", recap[0])
    assert total, recap[0]
    assert sum(seconds for _, seconds in steps.values()) - 0.5 <= float(total[1]) <= ended, output

    # A deploy with nothing to do: the steps that did not act have no time; the recap line has its own.
    code, ended, lines = streamed(sandbox, "deploy")
    texts = [text for _, text in lines]
    assert code == 0, texts
    # The steps that follow the health gate (the processes) are reported after it.
    in_order = [*(s for s in STEPS if s != "processes"), "health", "processes"]
    assert texts[: len(STEPS) + 1] == [f"{host}  {step}  ok" for step in in_order]
    total = re.fullmatch(rf"{host}  ok={len(STEPS) + 1} changed=0 failed=0  in (\d+\.\d) s", texts[-1])
    assert total and float(total[1]) <= ended, texts


def test_logs_follow_streams_each_line_added_until_ctrl_c_and_leaves_no_tail_behind(sandbox):
    log = "/var/log/flaskdemo/error.log"  # the default app's (invoke.yaml), made here: no deploy needed
    sandbox.ssh(f"mkdir -p /var/log/flaskdemo /var/log/nginx && echo before > {log}")
    process = fab_cli.start(sandbox.lab.ssh_config, sandbox.name, "logs", "--follow", "--lines", "5")
    lines: list[str] = []
    seen = {"before": threading.Event(), "added": threading.Event()}
    marker = f"added-{os.getpid()}-{time.monotonic_ns()}"

    def read() -> None:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            for word, event in (("before", seen["before"]), (marker, seen["added"])):
                if line.strip() == word:
                    event.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert seen["before"].wait(60), "\n".join(lines)
        sandbox.ssh(f"echo {marker} >> {log}")
        assert seen["added"].wait(30), "\n".join(lines)  # streamed while fab runs on
        assert process.poll() is None
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0, "\n".join(lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert f"{sandbox.name}  logs  ok: stopped (Ctrl-C)" in lines
    # The server's tail ended with the connection (it polls its sshd process every second or so).
    gone = sandbox.ssh(
        "for i in $(seq 50); do pgrep -x tail >/dev/null || exit 0; sleep 0.1; done; exit 1", check=False
    )
    assert gone.returncode == 0, sandbox.ssh("ps -eo pid,args", check=False).stdout
