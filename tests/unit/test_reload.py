"""tasks/runtime/reload.py, the graceful reload run on servers, as a program against a fake gunicorn master:
it HUPs the master and exits 0 only once none of the old workers is left and the configured number of
workers runs; exit 3 when no master runs; a reason and a non-zero exit when the master dies on reload or
the old workers outlive TIMEOUT. Also: reload.py reads the worker count from the gunicorn config the kit
renders."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, replace

import pytest

import tasks.runtime.reload as reload_py
from tasks import configs
from tasks.runtime import HERE
from tests.polling import wait_until
from tests.unit.conftest import paths_of

RELOAD = HERE / "reload.py"
WORKERS = 3

# A stand-in for a gunicorn master: forks COUNT workers that sleep, writes its pid to PIDFILE, and then
# does on SIGHUP what MODE says; on SIGTERM it stops (and reaps) its workers and exits.
FAKE_MASTER = """
import os, signal, sys, time

pidfile, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
SIGNALS = {signal.SIGHUP, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # taken with sigwait below, one at a time


def spawn():
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # a worker dies of SIGTERM
        while True:
            time.sleep(60)
    return pid


def stop(pids):
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        os.waitpid(pid, 0)


workers = [spawn() for _ in range(count)]
with open(pidfile + ".tmp", "w") as handle:
    handle.write("%d\\n" % os.getpid())
os.rename(pidfile + ".tmp", pidfile)
while True:
    if signal.sigwait(SIGNALS) == signal.SIGTERM:
        stop(workers)
        sys.exit(0)
    if mode == "reload":  # like gunicorn: new workers first, then the old ones stop
        new = [spawn() for _ in range(count)]
        stop(workers)
        workers = new
    elif mode == "staggered":  # the old workers stop first, the new ones come one by one
        stop(workers)
        workers = []
        for _ in range(count):
            time.sleep(0.1)
            workers.append(spawn())
    elif mode == "short":  # fewer new workers than configured
        new = [spawn() for _ in range(count - 1)]
        stop(workers)
        workers = new
    elif mode == "exit":  # the master dies on reload
        stop(workers)
        sys.exit(1)
    # mode "ignore": the old workers stay
"""


def children(pid: int) -> set[int]:
    """The live (not zombie) children of a process, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                state, ppid = handle.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(ppid) == pid and state != "Z":
            found.add(int(entry))
    return found


@dataclass
class Master:
    process: subprocess.Popen
    pidfile: str
    conf: str

    @property
    def pid(self) -> int:
        return self.process.pid


def stop_master(master: Master) -> None:
    """Stop a fake master and every worker it forked, by pid (and its own process group), and reap it."""
    process = master.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # it stops and reaps its workers
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    # Backstop: whatever is left in the master's own process group (only processes it forked).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


@pytest.fixture
def start_master(tmp_path):
    """Factory: start_master(mode, reap=True) starts a fake master with WORKERS workers and waits for its
    pidfile. With reap, a thread reaps the master as soon as it exits, as supervisor does."""
    program = tmp_path / "fake_master.py"
    program.write_text(FAKE_MASTER)
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f'bind = "127.0.0.1:8000"\nworkers = {WORKERS}\nworker_class = "gthread"\n')
    started: list[Master] = []

    def start(mode: str, reap: bool = True) -> Master:
        pidfile = tmp_path / f"gunicorn-{len(started)}.pid"
        process = subprocess.Popen(
            [sys.executable, "-I", str(program), str(pidfile), str(WORKERS), mode], start_new_session=True
        )
        master = Master(process, str(pidfile), str(conf))
        started.append(master)
        if reap:
            threading.Thread(target=process.wait, daemon=True).start()
        wait_until(pidfile.exists, 5, "the fake master writes its pidfile")
        assert len(children(master.pid)) == WORKERS
        return master

    try:
        yield start
    finally:
        for master in started:
            stop_master(master)


def reload(pidfile, conf, timeout: float = 5) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-I", str(RELOAD), str(pidfile), str(conf), str(timeout)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


# "staggered": the old workers stop before the new ones come, one by one: the reload is not done when
# the old ones are gone, only once as many new ones as configured run.
@pytest.mark.parametrize("mode", ["reload", "staggered"])
def test_after_a_reload_only_new_workers_run_and_as_many_as_configured(start_master, mode):
    master = start_master(mode)
    old = children(master.pid)
    done = reload(master.pidfile, master.conf)
    assert done.returncode == 0, done.stderr
    now = children(master.pid)
    assert not now & old
    assert len(now) >= WORKERS
    assert master.process.poll() is None  # the same master serves on


def test_a_master_starting_fewer_workers_than_configured_fails_the_reload(start_master):
    master = start_master("short")
    done = reload(master.pidfile, master.conf, timeout=0.5)
    assert done.returncode == 1
    assert "after the reload" in last_line(done.stderr)


@pytest.mark.parametrize("content", [None, "", "not-a-pid\n"], ids=["missing", "empty", "garbage"])
def test_no_pidfile_or_an_unreadable_one_means_no_master_runs(tmp_path, content):
    pidfile = tmp_path / "gunicorn.pid"
    if content is not None:
        pidfile.write_text(content)
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"workers = {WORKERS}\n")
    done = reload(pidfile, conf)
    assert done.returncode == 3, done.stderr


def test_a_pidfile_naming_a_dead_process_means_no_master_runs(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=5)  # dead and reaped: its pid names no process
    pidfile = tmp_path / "gunicorn.pid"
    pidfile.write_text(f"{gone.pid}\n")
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f"workers = {WORKERS}\n")
    done = reload(pidfile, conf)
    assert done.returncode == 3, done.stderr


def test_old_workers_that_outlive_the_timeout_fail_the_reload(start_master):
    master = start_master("ignore")
    old = children(master.pid)
    done = reload(master.pidfile, master.conf, timeout=1)
    assert done.returncode == 1
    assert "old workers still run" in last_line(done.stderr)
    assert last_line(done.stderr).startswith(f"{WORKERS} old workers")
    assert children(master.pid) == old  # nothing was stopped behind the master's back


def test_a_master_that_exits_on_reload_fails_the_reload_with_that_reason(start_master):
    master = start_master("exit")
    done = reload(master.pidfile, master.conf)
    assert done.returncode == 1
    assert last_line(done.stderr) == "the gunicorn master exited on reload"
    wait_until(lambda: master.process.poll() is not None, 5, "the fake master is reaped")


def test_a_master_that_exits_on_reload_is_recognised_before_its_parent_reaps_it(start_master):
    master = start_master("exit", reap=False)
    done = reload(master.pidfile, master.conf, timeout=1)
    assert last_line(done.stderr) == "the gunicorn master exited on reload"


@pytest.mark.parametrize("cpu_count", [1, 4])
def test_the_worker_count_reload_waits_for_is_the_one_in_the_rendered_gunicorn_config(
    tmp_path, settings, cpu_count
):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(configs.gunicorn_conf(settings, paths_of(settings), cpu_count))
    assert reload_py.configured_workers(str(conf)) == 2 * cpu_count + 1
    pinned = replace(settings, workers=7)
    conf.write_text(configs.gunicorn_conf(pinned, paths_of(pinned), cpu_count))
    assert reload_py.configured_workers(str(conf)) == 7
