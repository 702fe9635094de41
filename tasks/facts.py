"""What the steps need to know about a server, gathered by one probe script in one round trip."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from tasks import health, lock
from tasks.settings import META, Settings

PACKAGES = ("nginx", "supervisor", "python3-venv")
NGINX_DEFAULT = "/etc/nginx/sites-available/default"
NGINX_DEFAULT_BAK = "/etc/nginx/sites-available/default.bak"
NGINX_DEFAULT_LINK = "/etc/nginx/sites-enabled/default"
# Touched after every reload we do: nginx runs its config as of the later of this and its pid file.
NGINX_LOADED_STAMP = "/run/flaskdeploy-nginx.loaded"

# supervisorctl takes ~0.2 s to start; the same question over supervisord's socket takes ~0.02 s.
_SUPERVISOR_STATE = """
import http.client, socket, sys, xmlrpc.client
class Connection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(sys.argv[1])
class Transport(xmlrpc.client.Transport):
    def make_connection(self, host):
        return Connection("localhost")
try:
    rpc = xmlrpc.client.ServerProxy("http://localhost", transport=Transport())
    info = rpc.supervisor.getProcessInfo(sys.argv[2])
    print(info["statename"], info["pid"])
except xmlrpc.client.Fault:
    print("ABSENT")
except OSError:
    print("DOWN")
"""
SUPERVISOR_SOCKET = "/var/run/supervisor.sock"

_PRELUDE = r"""
describe() {
  if [ -L "$1" ]; then echo "path.$1=L:$(readlink "$1")"
  elif [ -f "$1" ]; then echo "path.$1=F:$(sha256sum < "$1" | cut -c1-64)"
  elif [ -d "$1" ]; then echo "path.$1=D:$(stat -c %U:%G:%a "$1")"
  else echo "path.$1=-"; fi
}
"""


def nginx_stale_test() -> str:
    """Shell test: true when a file under /etc/nginx changed after nginx last (re)loaded its config."""
    return (
        f"{{ ref=/run/nginx.pid; [ {NGINX_LOADED_STAMP} -nt /run/nginx.pid ] && ref={NGINX_LOADED_STAMP};"
        ' [ -n "$(find /etc/nginx -newer "$ref" -print -quit 2>/dev/null)" ]; }'
    )


def described_paths(s: Settings) -> list[str]:
    return [
        s.base_dir, s.releases_dir, s.venvs_dir, s.shared_dir, f"{s.shared_dir}/instance", s.log_dir,
        s.run_dir, s.tmpfiles_conf, s.gunicorn_conf, s.current, f"{s.current}/.venv", s.previous,
        s.nginx_site, s.nginx_link, NGINX_DEFAULT, NGINX_DEFAULT_BAK, NGINX_DEFAULT_LINK, s.supervisor_conf,
    ]  # fmt: skip


def probe_script(s: Settings, with_health: bool = False, holder: str = "", action: str = "") -> str:
    """The bash script printing key=value facts about the server (run as root).

    With a holder, it first takes the app's deploy lock for `action` (exit 75 when another run has it).
    """
    q = shlex.quote
    lines = [
        lock.acquire_script(s.name, holder, action) if holder else "",
        _PRELUDE,
        'echo "python=$(python3 -c \'import sys; print("%d.%d" % sys.version_info[:2])\' 2>/dev/null)"',
        'echo "machine=$(uname -m)"',
        "echo \"glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)\"",
        'echo "nproc=$(nproc)"',
        *(f"echo \"pkg.{p}=$(dpkg-query -W -f='${{db:Status-Status}}' {p} 2>/dev/null)\"" for p in PACKAGES),
        # Age of the newest apt list: fresh servers have none (-1), so provision must update first.
        "newest=$(find /var/lib/apt/lists -maxdepth 1 -type f -name '*Packages*' -printf '%T@\\n' 2>/dev/null"
        " | sort -n | tail -n 1)",
        'if [ -n "$newest" ]; then echo "apt_lists_age=$(( $(date +%s) - ${newest%.*} ))"; '
        'else echo "apt_lists_age=-1"; fi',
        f'echo "user=$(getent passwd {q(s.name)} | cut -d: -f7)"',
        *(f"describe {q(p)}" for p in described_paths(s)),
        # Each release (never a hidden .partial one being built) with the venv it runs on.
        f'for d in {q(s.releases_dir)}/*/; do [ -d "$d" ] || continue; r=${{d%/}};'
        ' echo "release.${r##*/}=$(readlink "$d.venv")"; done',
        f'echo "fingerprint=$(cat {q(s.current)}/{META}/fingerprint 2>/dev/null)"',
        f'echo "venv_dirs=$(ls -1 {q(s.venvs_dir)} 2>/dev/null | tr "\\n" " ")"',
        f'echo "venvs=$(cd {q(s.venvs_dir)} 2>/dev/null && ls -1d */.complete 2>/dev/null'
        ' | cut -d/ -f1 | tr "\\n" " ")"',
        f'echo "program=$(python3 -c {q(_SUPERVISOR_STATE)} {SUPERVISOR_SOCKET} {q(s.name)} 2>/dev/null)"',
        'echo "nginx_active=$(systemctl is-active nginx 2>/dev/null)"',
        'echo "nginx_pid=$(cat /run/nginx.pid 2>/dev/null)"',
        f"if {nginx_stale_test()}; then echo nginx_stale=1; else echo nginx_stale=0; fi",
        'echo "supervisor_active=$(systemctl is-active supervisor 2>/dev/null)"',
        *(f'echo "enabled.{u}=$(systemctl is-enabled {u} 2>/dev/null)"' for u in ("nginx", "supervisor")),
    ]
    if with_health:
        lines.append(f'echo "health=$({health.check_command(s, timeout=0)} 2>/dev/null)"')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Facts:
    """The probe's answers, with the questions steps ask of them."""

    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.values.get(key, "")

    @property
    def python(self) -> str:
        return self.get("python")

    @property
    def machine(self) -> str:
        return self.get("machine")

    @property
    def glibc(self) -> str:
        return self.get("glibc")

    @property
    def cpu_count(self) -> int:
        return int(self.get("nproc") or 1)

    def installed(self, package: str) -> bool:
        return self.get(f"pkg.{package}") == "installed"

    @property
    def apt_lists_age(self) -> int | None:
        """Seconds since apt's lists were updated; None when there are none."""
        age = int(self.get("apt_lists_age") or -1)
        return None if age < 0 else age

    @property
    def user_shell(self) -> str | None:
        """The app user's login shell; None when there is no such user."""
        return self.get("user") or None

    def path(self, path: str) -> str:
        """'-' (absent), 'L:<target>', 'F:<sha256>' or 'D:<owner>:<group>:<mode>'."""
        return self.get(f"path.{path}") or "-"

    def exists(self, path: str) -> bool:
        return self.path(path) != "-"

    def sha256(self, path: str) -> str | None:
        value = self.path(path)
        return value[2:] if value.startswith("F:") else None

    def link(self, path: str) -> str | None:
        value = self.path(path)
        return value[2:] if value.startswith("L:") else None

    def link_name(self, path: str) -> str | None:
        """The name a symlink points at (a release or venv id); None when path is no symlink."""
        return target_name(self.link(path))

    def directory(self, path: str) -> str | None:
        """'owner:group:mode' of a directory, None when it is no directory."""
        value = self.path(path)
        return value[2:] if value.startswith("D:") else None

    @property
    def releases(self) -> list[str]:
        """The releases on the server, oldest first."""
        return sorted(key.removeprefix("release.") for key in self.values if key.startswith("release."))

    def release_venv(self, release: str) -> str | None:
        """The id of the venv a release runs on."""
        return target_name(self.get(f"release.{release}"))

    @property
    def venv_dirs(self) -> set[str]:
        """Every directory under venvs/, complete or not."""
        return set(self.get("venv_dirs").split())

    @property
    def fingerprint(self) -> str:
        """What shaped the live release (see release.fingerprint); "" when unknown."""
        return self.get("fingerprint")

    @property
    def venvs(self) -> set[str]:
        return set(self.get("venvs").split())

    @property
    def program_state(self) -> str | None:
        """Supervisor's state of the app's program (RUNNING, STOPPED, FATAL ...); None if it has none."""
        state = self.get("program").split()[:1]
        return state[0] if state and state[0] not in ("ABSENT", "DOWN") else None

    @property
    def program_pid(self) -> int | None:
        words = self.get("program").split()
        return int(words[1]) if len(words) > 1 and words[1].isdigit() and words[1] != "0" else None

    @property
    def nginx_active(self) -> bool:
        return self.get("nginx_active") == "active"

    @property
    def nginx_stale(self) -> bool:
        """A file under /etc/nginx changed after nginx last loaded its config."""
        return self.get("nginx_stale") == "1"

    @property
    def supervisor_active(self) -> bool:
        return self.get("supervisor_active") == "active"

    def enabled(self, unit: str) -> bool:
        return self.get(f"enabled.{unit}") == "enabled"

    @property
    def healthy(self) -> bool:
        return self.get("health") == "200"


def target_name(target: str | None) -> str | None:
    """The last part of a link target: /srv/app/releases/ID/ -> ID; None for no target."""
    return target.rstrip("/").rsplit("/", 1)[-1] if target else None


def parse_probe(stdout: str) -> Facts:
    values = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return Facts(values)
