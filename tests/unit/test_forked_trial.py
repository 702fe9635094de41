"""The import trial forked from the live gunicorn master (release.sh forked_trial and the handler in
configs/gunicorn.conf.py.j2), run here: a stand-in master that runs the rendered config as gunicorn runs
it, under a stand-in supervisord, and a stand-in gunicorn package (errors.AppImportError,
util.import_app). It answers for the release the request names, with that release's app.env instead of
the live one's, from a child of the master that is gone afterwards; a master without the handler, or
one on another venv, leaves the trial to a python of its own (return 1, nothing asked); a child that
dies or hangs past deploy.release_timeout fails the release instead of holding the deploy."""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tasks import configs
from tests.polling import wait_until
from tests.unit.conftest import paths_of
from tests.unit.serverside import run_functions

USER = pwd.getpwuid(os.getuid()).pw_name
LIVE, NEW = "20261126T100000Z-live", "20261127T110000Z-new"
pytestmark = pytest.mark.skipif(
    grp.getgrgid(os.getgid()).gr_name != USER, reason="the trial's files take the app's group: USER's own"
)

GUNICORN = {  # the stand-in: what the handler imports from gunicorn, as gunicorn's own does it
    "__init__.py": "",
    "errors.py": "class AppImportError(Exception):\n    pass\n",
    "util.py": (
        "import importlib\nfrom gunicorn.errors import AppImportError\n\n"
        "def import_app(uri):\n"
        "    module, name = uri.split(':')\n"
        "    app = getattr(importlib.import_module(module), name, None)\n"
        "    if app is None:\n"
        "        raise AppImportError(f'Failed to find attribute {name!r} in {module!r}.')\n"
        "    return app\n"
    ),
}
# A master as gunicorn runs one: the config executed (the handler installed, raw_env applied to its
# environment), `current` first on sys.path, the children it forks reaped; then it waits for signals.
MASTER = """
import os, signal, sys
conf, current = sys.argv[1:3]
namespace = {"__file__": conf}
if conf != "-":
    exec(compile(open(conf).read(), conf, "exec"), namespace)
for entry in namespace.get("raw_env", []):
    key, value = entry.split("=", 1)
    os.environ[key] = value
sys.path.insert(0, current)
def reap(signum, frame):
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return
signal.signal(signal.SIGCHLD, reap)
print("ready", flush=True)
while True:
    signal.pause()
"""


@dataclass
class Server:
    root: Path
    values: dict[str, str]
    pidfile: Path

    def release(self, name: str, source: str, env: dict[str, str] | None = None, venv: str = "v1") -> Path:
        release = self.root / "releases" / name
        (release / ".deploy").mkdir(parents=True, exist_ok=True)
        (release / "app.py").write_text(source)
        (release / ".deploy" / "env.json").write_text(json.dumps(env or {}))
        (release / ".venv").unlink(missing_ok=True)
        (release / ".venv").symlink_to(self.root / "venvs" / venv)
        return release

    def trial(self, built: Path, timeout: int = 30) -> subprocess.CompletedProcess:
        return run_functions(
            self.values,
            ["note_live_release", "begin_step push", f"BUILT={built}", "forked_trial", 'echo "returned $?"'],
            timeout=timeout,
        )


@pytest.fixture
def server(tmp_path: Path, settings) -> Server:
    root = tmp_path
    (root / "venvs" / "v1").mkdir(parents=True)
    fakes = root / "fakes" / "gunicorn"
    fakes.mkdir(parents=True)
    for name, text in GUNICORN.items():
        (fakes / name).write_text(text)
    paths = replace(
        paths_of(settings), current=str(root / "current"), trial_dir=str(root / "trial"),
        gunicorn_conf=str(root / "gunicorn.conf.py"),
    )  # fmt: skip
    (root / "gunicorn.conf.py").write_text(configs.gunicorn_conf(settings, paths, 1))
    values = {
        "CURRENT": paths.current, "PREVIOUS": str(root / "previous"), "RELEASES_DIR": str(root / "releases"),
        "META": ".deploy", "APP": USER, "APP_MODULE": "app:app", "TRIAL_DIR": paths.trial_dir,
        "SUPERVISORD_PIDFILE": str(root / "supervisord.pid"), "RELEASE_TIMEOUT": "30",
        "ERROR_LOG": str(root / "error.log"), "HISTORY_FILE": str(root / "history.log"), "ACTION": "deploy",
        "WHO": "alice",
    }  # fmt: skip
    return Server(root, values, root / "supervisord.pid")


def children_of(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()


@pytest.fixture
def master(server: Server) -> Iterator:
    """start(handler=True): the live release LIVE, and a master under a stand-in supervisord (a bash whose
    one child it is) that runs the rendered config (or, handler=False, none); returns the master's PID."""
    started: list[subprocess.Popen] = []

    def start(handler: bool = True) -> int:
        live = server.release(LIVE, "app = 'live'\n", env={"LIVE_ONLY": "1"})
        (server.root / "current").symlink_to(live)
        conf = str(server.root / "gunicorn.conf.py") if handler else "-"
        program = [sys.executable, "-c", MASTER, conf, str(server.root / "current")]
        supervisord = subprocess.Popen(
            ["bash", "-c", '"$@" & wait', "bash", *program],
            env={**os.environ, "PYTHONPATH": str(server.root / "fakes")}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(supervisord)
        assert supervisord.stdout.readline() == "ready\n"
        server.pidfile.write_text(f"{supervisord.pid}\n")
        children = children_of(supervisord.pid)
        assert len(children) == 1, children
        return int(children[0])

    yield start
    for supervisord in started:  # the masters this test started (children of its bashes), their children
        for pid in children_of(supervisord.pid):
            for child in children_of(int(pid)):
                os.kill(int(child), signal.SIGKILL)
            os.kill(int(pid), signal.SIGTERM)
        supervisord.wait(timeout=10)


def test_a_release_that_imports_passes_tried_by_a_child_of_the_master(server, master):
    pid = master()
    note = server.root / "importer"
    built = server.release(NEW, f"import os\nopen({str(note)!r}, 'w').write(str(os.getppid()))\napp = 1\n")
    done = server.trial(built)
    assert done.stdout.endswith("returned 0\n"), done.stdout + done.stderr
    assert note.read_text() == str(pid)  # imported by a child of the master
    wait_until(lambda: children_of(pid) == [], timeout=5, what="the trial's child to be reaped")


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("raise RuntimeError('boom at import')\n", "it does not load: RuntimeError: boom at import"),
        ("application = 1\n", "it does not load: Error: Failed to find attribute 'app' in 'app'."),
        (
            "import missing_module\n",
            "it does not load: ModuleNotFoundError: No module named 'missing_module'",
        ),
    ],
)
def test_a_release_that_does_not_import_fails_with_the_reason(server, master, source, why):
    master()
    done = server.trial(server.release(NEW, source))
    assert done.returncode == 1
    assert why in done.stdout, done.stdout + done.stderr


def test_the_trial_sees_the_new_release_s_app_env_not_the_live_one_s(server, master):
    master()
    source = "import os\nassert 'LIVE_ONLY' not in os.environ, 'live env'\napp = os.environ['NEW_ONLY']\n"
    done = server.trial(server.release(NEW, source, env={"NEW_ONLY": "1"}))
    assert done.stdout.endswith("returned 0\n"), done.stdout + done.stderr
    done = server.trial(server.release(NEW + "2", source))
    assert "it does not load: KeyError: 'NEW_ONLY'" in done.stdout, done.stdout


@pytest.mark.parametrize("case", ["no handler", "another venv", "no master"])
def test_without_a_master_that_can_try_it_nothing_is_asked_and_the_trial_runs_apart(server, master, case):
    if case != "no master":
        master(handler=case != "no handler")
    venv = "v2" if case == "another venv" else "v1"
    built = server.release(NEW, "raise RuntimeError('not tried here')\n", venv=venv)
    started = time.monotonic()
    done = server.trial(built)
    assert done.stdout.endswith("returned 1\n"), done.stdout + done.stderr
    assert time.monotonic() - started < 5, "it waited for an answer that could not come"
    assert not (server.root / "trial").exists(), "a request was made"


@pytest.mark.parametrize(
    "source", ["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "import time\ntime.sleep(60)\n"]
)
def test_a_trial_that_dies_or_outlives_the_release_timeout_fails_the_release(server, master, source):
    pid = master()
    server.values["RELEASE_TIMEOUT"] = "2"
    started = time.monotonic()
    done = server.trial(server.release(NEW, source))
    assert done.returncode == 1
    assert "it did not load: the check ended without an answer" in done.stdout, done.stdout + done.stderr
    assert time.monotonic() - started < 5, "it waited past the end of the trial"
    wait_until(lambda: children_of(pid) == [], timeout=5, what="the trial's child to be gone")


def test_what_the_app_writes_on_the_fifo_never_runs_as_root(server, master):
    # The app's code runs in the child: it can write lines with the request's token. A PID that is no
    # number must not reach bash arithmetic, where x[$(command)] runs the command.
    master()
    planted = server.root / "planted"
    payload = f"x[$(touch {planted})]"
    source = (
        f"token = open({str(server.root / 'trial' / 'request')!r}).read().split()[0]\n"
        f"with open({str(server.root / 'trial' / 'result')!r}, 'w') as fifo:\n"
        f"    fifo.write(token + ' started {payload}\\n')\n"
        "app = 1\n"
    )
    done = server.trial(server.release(NEW, source))
    assert not planted.exists(), "a line the app wrote ran as a command"
    assert done.returncode == 1 and f"it does not load: started {payload}" in done.stdout, done.stdout
