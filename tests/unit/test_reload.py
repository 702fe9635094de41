"""tasks/runtime/reload.py, the graceful reload run on servers, as a program against a fake supervisord
and the fake gunicorn masters it started: it finds the master as supervisor knows it (a child of the
process in supervisord's pidfile, running as the app's user, with the app's gunicorn config among its
words), HUPs it and exits 0 only once none of the old workers is left and the configured number of
workers runs; exit 3 when no such master runs (nothing signalled), 1 with a reason when several do, when
the master dies on reload or when the old workers outlive TIMEOUT. Also: reload.py reads the worker
count from the gunicorn config the kit renders."""

import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import tasks.runtime.reload as reload_py
from tasks import configs
from tasks.runtime import HERE
from tests.polling import wait_until
from tests.unit.conftest import paths_of

RELOAD = HERE / "reload.py"
WORKERS = 3
USER = pwd.getpwuid(os.getuid()).pw_name  # who runs the tests, and so the fake masters by default
ROOT = os.geteuid() == 0
# A master as another user runs a python3 that user may run (not one under /root, say).
SYSTEM_PYTHON = "/usr/bin/python3"
as_nobody = pytest.mark.skipif(
    not (ROOT and os.path.exists(SYSTEM_PYTHON)),
    reason=f"needs root and {SYSTEM_PYTHON}: runs a master as nobody",
)

# A stand-in for a gunicorn master, run as `python3 -I -c FAKE_MASTER --config CONF COUNT MODE NAME`
# (the config among its words, as gunicorn's are): forks COUNT workers that sleep (they share its
# words and its user, as gunicorn's do), then does on SIGHUP what MODE says, printing HUP first; on
# SIGTERM it stops (and reaps) its workers and exits.
FAKE_MASTER = """
import os, signal, sys, time

count, mode = int(sys.argv[3]), sys.argv[4]
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
while True:
    if signal.sigwait(SIGNALS) == signal.SIGTERM:
        stop(workers)
        sys.exit(0)
    print("HUP", flush=True)
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

# A stand-in for supervisord: `python3 fake_supervisord.py PIDFILE reap|keep SPEC`. Starts the masters
# SPEC (a JSON file) lists, each as its user with its output to its log, writes its own pid to PIDFILE,
# and then, with reap, reaps a master that exits (as supervisord does); with keep it leaves it a zombie.
# On SIGTERM it stops its masters and exits.
FAKE_SUPERVISORD = """
import json, os, pwd, signal, subprocess, sys

pidfile, reap, spec = sys.argv[1], sys.argv[2] == "reap", sys.argv[3]
masters = []
with open(spec) as handle:
    for user, argv, log, program in json.load(handle):
        entry = pwd.getpwnam(user)
        switch = {}  # as supervisord's user=: the user's uid, gid and no other groups
        if entry.pw_uid != os.getuid():
            switch = dict(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        env = dict(os.environ, SUPERVISOR_PROCESS_NAME=program) if program else None  # as supervisord's
        with open(log, "w") as out:
            masters.append(subprocess.Popen(argv, stdout=out, cwd="/", env=env, **switch))
SIGNALS = {signal.SIGTERM, signal.SIGCHLD}
signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
with open(pidfile + ".tmp", "w") as handle:
    handle.write("%d\\n" % os.getpid())
os.rename(pidfile + ".tmp", pidfile)
while True:
    if reap:
        for master in masters:
            master.poll()
    if signal.sigwait(SIGNALS) == signal.SIGTERM:
        break
for master in masters:
    if master.poll() is None:
        master.terminate()
for master in masters:
    master.wait()
"""


# How reload.py reads /proc (a process's state and parent, whether it runs, its live children), to
# watch the fake masters with.
stat_of, running, children = reload_py.state_and_parent, reload_py.running, reload_py.children


def argv_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


@dataclass
class Master:
    name: str
    conf: str
    log: Path
    pid: int = 0

    def hups(self) -> int:
        """How many SIGHUPs it has taken."""
        return self.log.read_text().count("HUP\n")


@dataclass
class Supervisord:
    process: subprocess.Popen
    pidfile: str
    masters: list[Master]

    @property
    def master(self) -> Master:
        return self.masters[0]


def stop_supervisord(supervisord: Supervisord) -> None:
    """Stop a fake supervisord, its masters and their workers, and reap it."""
    process = supervisord.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # it stops its masters, which stop and reap their workers
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    # Backstop: whatever is left in its own session (only processes it and its masters forked).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


@pytest.fixture
def conf(tmp_path) -> Path:
    """The app's gunicorn config, as the kit renders it (the line reload.py reads: workers = N)."""
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(f'bind = "127.0.0.1:8000"\nworkers = {WORKERS}\nworker_class = "gthread"\n')
    return path


@pytest.fixture
def start(tmp_path, conf):
    """Factory: start(*modes, user=USER, confs=None, reap=True, programs=None) starts a fake supervisord
    with one fake master per mode (each as `user`, with its conf: the app's unless `confs` says otherwise;
    in its environment the program `programs` names for it, if any) and waits until each master runs its
    WORKERS workers."""
    program = tmp_path / "fake_supervisord.py"
    program.write_text(FAKE_SUPERVISORD)
    started: list[Supervisord] = []

    def starting(
        *modes: str,
        user: str = USER,
        confs: list[str] | None = None,
        reap: bool = True,
        programs: list[str] | None = None,
    ) -> Supervisord:
        number = len(started)
        python = sys.executable if user == USER else SYSTEM_PYTHON
        masters, spec = [], []
        for index, mode in enumerate(modes):
            name = f"master-{number}-{index}"
            master = Master(name, confs[index] if confs else str(conf), tmp_path / f"{name}.log")
            argv = [python, "-I", "-c", FAKE_MASTER, "--config", master.conf, str(WORKERS), mode, name]
            masters.append(master)
            spec.append([user, argv, str(master.log), programs[index] if programs else ""])
        spec_file = tmp_path / f"supervisord-{number}.json"
        spec_file.write_text(json.dumps(spec))
        pidfile = tmp_path / f"supervisord-{number}.pid"
        process = subprocess.Popen(
            [sys.executable, "-I", str(program), str(pidfile), "reap" if reap else "keep", str(spec_file)],
            start_new_session=True,
        )
        supervisord = Supervisord(process, str(pidfile), masters)
        started.append(supervisord)

        def ready() -> bool:
            by_name = {(argv_of(pid) or [""])[-1]: pid for pid in children(process.pid)}
            for master in masters:
                master.pid = by_name.get(master.name, 0)
            return pidfile.exists() and all(
                master.pid and len(children(master.pid)) == WORKERS for master in masters
            )

        wait_until(ready, 5, "the fake supervisord runs its masters, each with its workers")
        return supervisord

    try:
        yield starting
    finally:
        for supervisord in started:
            stop_supervisord(supervisord)


def reload(pidfile, conf, user: str = USER, timeout: float = 5) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-I", str(RELOAD), str(pidfile), str(conf), str(timeout), user],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def untouched(master: Master, workers: set[int]) -> bool:
    """Not signalled: no HUP taken, the same workers, still running."""
    return master.hups() == 0 and children(master.pid) == workers and running(master.pid)


# ---- a reload


# "staggered": the old workers stop before the new ones come, one by one: the reload is not done when
# the old ones are gone, only once as many new ones as configured run.
@pytest.mark.parametrize(
    "mode, user",
    [
        ("reload", USER),
        ("staggered", USER),
        pytest.param("reload", "nobody", marks=as_nobody, id="as-nobody"),
    ],
)
def test_after_a_reload_only_new_workers_run_and_as_many_as_configured(start, mode, user):
    supervisord = start(mode, user=user)
    master = supervisord.master
    old = children(master.pid)
    done = reload(supervisord.pidfile, master.conf, user)
    assert done.returncode == 0, done.stderr
    now = children(master.pid)
    assert not now & old
    assert len(now) >= WORKERS
    assert running(master.pid)  # the same master serves on
    assert master.hups() == 1


def test_another_app_s_master_under_the_same_supervisord_is_left_alone(start, tmp_path, conf):
    other_conf = f"{conf}.app2"  # another app's, its path starting with the app's
    supervisord = start("reload", "reload", confs=[str(conf), other_conf])
    ours, other = supervisord.masters
    other_workers = children(other.pid)
    done = reload(supervisord.pidfile, conf)
    assert done.returncode == 0, done.stderr
    assert ours.hups() == 1
    assert untouched(other, other_workers)


def test_the_app_s_other_programs_under_the_same_supervisord_are_left_alone(start):
    """The app's processes (app.processes) run as its user under supervisord too; their environment names
    their program, which is not the app's own: the one left is the master, whatever their command line."""
    supervisord = start("reload", "reload", programs=[USER, f"{USER}-worker-0"])
    ours, worker = supervisord.masters
    worker_children = children(worker.pid)
    done = reload(supervisord.pidfile, ours.conf)
    assert done.returncode == 0, done.stderr
    assert ours.hups() == 1
    assert untouched(worker, worker_children)


def test_a_master_starting_fewer_workers_than_configured_fails_the_reload(start):
    supervisord = start("short")
    done = reload(supervisord.pidfile, supervisord.master.conf, timeout=0.5)
    assert done.returncode == 1
    assert "after the reload" in last_line(done.stderr)


def test_old_workers_that_outlive_the_timeout_fail_the_reload(start):
    supervisord = start("ignore")
    master = supervisord.master
    old = children(master.pid)
    done = reload(supervisord.pidfile, master.conf, timeout=1)
    assert done.returncode == 1
    assert last_line(done.stderr) == f"{WORKERS} old workers still run 1 s after the reload"
    assert children(master.pid) == old  # nothing was stopped behind the master's back


def test_a_master_that_exits_on_reload_fails_the_reload_with_that_reason(start):
    supervisord = start("exit")
    master = supervisord.master
    done = reload(supervisord.pidfile, master.conf)
    assert done.returncode == 1
    assert last_line(done.stderr) == "the gunicorn master exited on reload"
    wait_until(lambda: stat_of(master.pid) is None, 5, "the fake supervisord reaps the master")


def test_a_master_that_exits_on_reload_is_recognised_before_its_parent_reaps_it(start):
    supervisord = start("exit", reap=False)
    master = supervisord.master
    done = reload(supervisord.pidfile, master.conf, timeout=1)
    assert done.returncode == 1
    assert last_line(done.stderr) == "the gunicorn master exited on reload"
    assert (stat_of(master.pid) or ("gone",))[0] == "Z"  # what reload.py saw: a zombie, not yet reaped


# ---- which master: none (exit 3, nothing signalled) or several (exit 1)


@pytest.mark.parametrize("content", [None, "", "not-a-pid\n"], ids=["missing", "empty", "garbage"])
def test_no_supervisord_pidfile_or_an_unreadable_one_means_no_master_runs(start, tmp_path, content):
    master = start("reload").master
    workers = children(master.pid)
    pidfile = tmp_path / "supervisord.pid"
    if content is not None:
        pidfile.write_text(content)
    done = reload(pidfile, master.conf)
    assert done.returncode == 3, done.stderr
    assert untouched(master, workers)


def test_a_supervisord_pidfile_naming_a_dead_process_means_no_master_runs(start, tmp_path):
    master = start("reload").master
    workers = children(master.pid)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=5)  # dead and reaped: its pid names no process
    pidfile = tmp_path / "supervisord.pid"
    pidfile.write_text(f"{gone.pid}\n")
    done = reload(pidfile, master.conf)
    assert done.returncode == 3, done.stderr
    assert untouched(master, workers)


def test_a_pidfile_naming_a_process_that_is_not_the_master_s_parent_finds_no_master(start, tmp_path, conf):
    """Another supervisord, running another app's master (another app: another user): the app's master
    runs, but not under it."""
    master = start("reload").master
    other = start("reload", confs=[str(tmp_path / "other.conf.py")], user="nobody")
    workers, other_workers = children(master.pid), children(other.master.pid)
    done = reload(other.pidfile, conf)
    assert done.returncode == 3, done.stderr
    assert untouched(master, workers)
    assert untouched(other.master, other_workers)


def test_a_master_whose_title_was_changed_is_found_by_its_user(start, tmp_path, conf):
    """setproctitle in the app's venv makes gunicorn rename itself ("gunicorn: master [app]"): the app's
    user runs one program under supervisord, and that is its master, whatever its command line says."""
    renamed = start("reload", confs=[str(tmp_path / "renamed.conf.py")])
    old = children(renamed.master.pid)
    done = reload(renamed.pidfile, conf)
    assert done.returncode == 0, done.stderr
    assert not children(renamed.master.pid) & old


def test_a_pidfile_naming_the_master_itself_signals_nothing(start, tmp_path):
    """Its children are its workers, forked with its words and its user (as gunicorn's are): each looks
    like a master, so reload.py finds several and fails rather than HUP a worker."""
    master = start("reload").master
    workers = children(master.pid)
    pidfile = tmp_path / "supervisord.pid"
    pidfile.write_text(f"{master.pid}\n")
    done = reload(pidfile, master.conf)
    assert done.returncode == 1
    assert last_line(done.stderr).startswith(f"{WORKERS} gunicorn masters of {USER} run under supervisord: ")
    assert untouched(master, workers)


@pytest.mark.parametrize(
    "master_user, app_user",
    [
        pytest.param(USER, "nobody", id="app-user-nobody"),
        pytest.param("nobody", USER, marks=as_nobody, id="master-nobody"),
    ],
)
def test_a_master_running_as_another_user_than_the_app_s_is_not_signalled(start, master_user, app_user):
    supervisord = start("reload", user=master_user)
    master = supervisord.master
    workers = children(master.pid)
    done = reload(supervisord.pidfile, master.conf, app_user)
    assert done.returncode == 3, done.stderr
    assert untouched(master, workers)


def test_several_masters_of_the_app_under_supervisord_fail_the_reload_and_none_is_signalled(start):
    supervisord = start("reload", "reload")
    workers = [children(master.pid) for master in supervisord.masters]
    done = reload(supervisord.pidfile, supervisord.master.conf)
    assert done.returncode == 1
    pids = sorted(master.pid for master in supervisord.masters)
    found = last_line(done.stderr)
    assert found.startswith(f"2 gunicorn masters of {USER} run under supervisord: ")
    assert sorted(map(int, found.split(": ", 1)[1].strip("[]").split(", "))) == pids
    assert all(untouched(master, w) for master, w in zip(supervisord.masters, workers, strict=True))


# ---- the worker count


@pytest.mark.parametrize("cpu_count", [1, 4])
def test_the_worker_count_reload_waits_for_is_the_one_in_the_rendered_gunicorn_config(
    tmp_path, settings, cpu_count
):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(configs.gunicorn_conf(settings, paths_of(settings), cpu_count))
    assert reload_py.configured_workers(str(conf)) == 2 * cpu_count + 1
    pinned = replace(settings, app=replace(settings.app, workers=7))
    conf.write_text(configs.gunicorn_conf(pinned, paths_of(pinned), cpu_count))
    assert reload_py.configured_workers(str(conf)) == 7
