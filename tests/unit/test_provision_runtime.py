"""runtime/provision.sh's package install, run by bash here with stand-ins for dpkg and apt: what it runs,
in which order, and that a run ended as the lock's watchdog ends it (its process group sent TERM) leaves
the install to go on to its end, which the run awaits before it says it was stopped."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from pathlib import Path

from tasks.shell import Script
from tasks.steps import APPLY
from tests.polling import wait_until
from tests.unit.serverside import library, run_functions

STOPPED = "stopped: the connection was lost or the run was interrupted"


def on_term(log: Path) -> str:
    """As begin_apply (apply.sh) has a run end when its watchdog sends TERM, the log told it began."""
    return f"trap 'echo stopping >>{log}; die \"{STOPPED}\"' TERM HUP INT"


def stand_in(tmp_path: Path, name: str, body: str = "") -> str:
    """A program standing for dpkg or apt: it writes its name and arguments in the log, then runs body."""
    path = tmp_path / name
    path.write_text(f'#!/bin/bash\necho "{name}${{*:+ $*}}" >>{tmp_path / "log"}\n{body}')
    path.chmod(0o755)
    return str(path)


def package_values(tmp_path: Path, repair: str = "", install: str = "") -> dict:
    work = tmp_path / "w"
    work.mkdir()
    return {
        # What a failure reads (die, apply.sh): no release here.
        "CURRENT": str(tmp_path / "current"), "PREVIOUS": str(tmp_path / "previous"),
        "RELEASES_DIR": str(tmp_path / "releases"), "META": ".deploy", "ACTION": "",
        "PACKAGES_REPAIR": (stand_in(tmp_path, "repair", repair),),
        "PACKAGES_UPDATE": (stand_in(tmp_path, "update"), "-q"),
        "PACKAGES_INSTALL": (stand_in(tmp_path, "install", install), "-y"),
        "W": str(work),
    }  # fmt: skip


def logged(tmp_path: Path) -> list[str]:
    return (tmp_path / "log").read_text().splitlines()


def test_dpkg_finishes_what_was_cut_off_then_the_lists_are_updated_then_the_packages_installed(tmp_path):
    done = run_functions(
        package_values(tmp_path),
        ["begin_step provision", "start_packages 1 nginx supervisor", "await_packages"],
    )
    assert done.returncode == 0, done.stderr
    assert logged(tmp_path) == ["repair", "update -q", "install -y nginx supervisor"]
    assert done.stdout.startswith("::note provision packages installed")


def test_a_dpkg_that_another_holds_the_lock_of_leaves_the_install_to_wait_for_it(tmp_path):
    # dpkg fails at once on a lock another dpkg holds; apt (the install) waits for it.
    busy = "echo 'dpkg: error: dpkg frontend lock was locked by another process with pid 4242' >&2; exit 2"
    done = run_functions(
        package_values(tmp_path, repair=busy),
        ["begin_step provision", "start_packages 0 nginx", "await_packages"],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert logged(tmp_path) == ["repair", "install -y nginx"]


def release(fifo: Path) -> bool:
    """Whether a reader waits on FIFO (the install stand-in, alive): it is sent its go-ahead."""
    try:
        end = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ENXIO:  # nobody reads it (yet, or any more)
            return False
        raise
    with os.fdopen(end, "w") as writer:
        writer.write("go\n")
    return True


def awaits_only(pid: int, child: int) -> bool:
    """Whether process PID is blocked waiting for its children, of which CHILD is the only one."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    return wchan == "do_wait" and children == [str(child)]


def stop(run: subprocess.Popen, install: Path) -> None:
    """End what is left of this test's run: its process group, and the install's (its stand-in's)."""
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError):
        pid = int((install.parent / "started").read_text().split()[0])
        if str(install).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    run.wait()


def test_an_install_goes_on_to_its_end_when_the_watchdog_ends_the_runs_process_group(tmp_path):
    started, go = tmp_path / "started", tmp_path / "go"
    os.mkfifo(go)
    # The install writes its PID and its parent's (the job start_packages started), then waits for its
    # go-ahead: the run is ended meanwhile.
    log = tmp_path / "log"
    values = package_values(
        tmp_path, install=f'echo "$$ $PPID" >{started}\nread -r _ <{go}\necho "installed" >>{log}\n'
    )
    lines = [
        f"trap 'echo \"run ended\" >>{log}' EXIT", on_term(log), "note_live_release",
        "begin_step provision", "start_packages 1 nginx supervisor", "await_packages", "echo not stopped",
    ]  # fmt: skip
    script = tmp_path / "run.sh"
    script.write_text(library(Script("test", values, APPLY, ())) + "\n".join(lines) + "\n")
    # A session of its own, as a run's command over SSH: the watchdog's `kill -TERM 0` is its process group.
    run = subprocess.Popen(
        ["bash", str(script)], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _, job = wait_until(lambda: started.exists() and started.read_text().split(), 10, "the install runs")
        os.killpg(run.pid, signal.SIGTERM)  # as the watchdog does once the connection is gone

        def ended_or_awaiting() -> bool:  # the install is released then: die awaits it, or did not
            return run.poll() is not None or (
                "stopping" in log.read_text() and awaits_only(run.pid, int(job))
            )

        wait_until(ended_or_awaiting, 10, "the stopped run ends, or awaits the install alone")
        wait_until(lambda: release(go), 5, "the install still runs after the run's process group was ended")
        out, err = run.communicate(timeout=20)
    except BaseException:
        stop(run, tmp_path / "install")
        raise
    assert run.returncode == 1, err
    assert out.splitlines()[-1] == f"::fail provision {STOPPED}", out + err
    # The run ended only after the install: die (apply.sh) awaited it.
    ended = ["repair", "update -q", "install -y nginx supervisor", "stopping", "installed", "run ended"]
    assert logged(tmp_path) == ended
