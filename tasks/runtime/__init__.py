"""Code that runs on the server, and how it gets there.

The *.sh files define bash functions only (each file's header says which, and which globals it reads);
the *.py files are whole programs. A server script (tasks/shell.py) includes the files it needs: a
shell file as it is, a Python file as a variable holding its source, so that everything travels in
the one command of a run. The values the files read come from the script's assignment block: see
`globals_for` for the ones every apply script gets.
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.layout import META, Layout, health_host, health_rule, health_url
from tasks.wheels import UV_VERSION

if TYPE_CHECKING:
    from tasks.platform import Platform
    from tasks.settings import Settings
    from tasks.shell import Value

HERE = Path(__file__).resolve().parent

# What each kind of script includes, in order (a file may use what an earlier one defines). An apply
# script: these, the frame of every run and what several steps share, then the steps' own files
# (steps.APPLY).
SHARED = (
    "python.sh", "lock.sh", "apply.sh", "units.sh", "switch.sh", "history.py", "health.py", "reload.py",
    "bounded.py", "mask.py", "app_command.py",
)  # fmt: skip
PROBE = ("python.sh", "probe.py", "lock.sh", "health.py")  # the last two when it locks, asks for health
SHOW = ("show.sh",)
FOLLOW = ("lock.sh", "show.sh")  # follow_logs: tail ends with the connection lock.sh finds
# A command in the live release (tasks/commands.py): in a unit of its own, the lock held while it runs.
EXEC = ("lock.sh", "units.sh", "bounded.py", "exec.sh")


def files() -> list[Path]:
    """Every runtime file."""
    return sorted(p for p in HERE.iterdir() if p.suffix in (".sh", ".py") and p.name != "__init__.py")


def python_variable(name: str) -> str:
    """The variable holding a Python file's source in a script: probe.py -> PY_PROBE."""
    return "PY_" + Path(name).stem.upper()


@functools.cache
def source(name: str) -> str:
    """A runtime file's text, read once per process: every script of every host includes the same files."""
    return (HERE / name).read_text()


def include(name: str) -> str:
    """A runtime file as it goes into a script."""
    text = source(name)
    if name.endswith(".sh"):
        return f"# ---- tasks/runtime/{name}\n{text.rstrip()}"
    # A quoted assignment, not `read` from a here-document: bash reads a pipe one byte per system call.
    variable = python_variable(name)
    return f'# ---- tasks/runtime/{name}: run_py "${variable}" ARG...\n{variable}={shlex.quote(text)}'


def globals_for(s: Settings, layout: Layout, platform: Platform) -> dict[str, Value]:
    """The values every apply script gets: what its runtime files read, besides the run's own (the
    lock's and the history's: see tasks/converge.py)."""
    return {
        **layout.values(),  # APP, BASE_DIR, CURRENT, NGINX_SITE, ... (tasks/layout.py)
        "META": META,
        "APP_MODULE": s.app.module,
        "SHARED_DIRS": s.deploy.shared_dirs,
        "RELEASE_COMMAND": s.deploy.release_command or "",
        "HEALTH_URL": health_url(s),
        "HEALTH_HOST": health_host(s),
        "HEALTH_RULE": health_rule(s),
        "HEALTH_TIMEOUT": s.app.health_timeout,
        # The first line of each config the kit renders names its template (configs/*.j2): how the server
        # tells the kit's files from those it did not write, which it keeps a copy of (provision.sh).
        "NGINX_SITE_MARK": "rendered from configs/nginx-site.conf.j2",
        "SUPERVISOR_CONF_MARK": "rendered from configs/supervisor-program.conf.j2",
        "NGINX_UNIT": platform.nginx_unit,
        "NGINX_PID": platform.nginx_pid,
        "NGINX_SITES_AVAILABLE": platform.nginx_sites_available,
        "NGINX_SITES_ENABLED": platform.nginx_sites_enabled,
        "SUPERVISOR_UNIT": platform.supervisor_unit,
        "SUPERVISORD_PIDFILE": platform.supervisord_pidfile,
        "APP_PORT": s.app.port,
        "RELEASE_TIMEOUT": s.deploy.release_timeout,
        "NOLOGIN_SHELL": platform.nologin_shell,
        "UV_VERSION": UV_VERSION,
    }
