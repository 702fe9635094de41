"""The platform table: what differs between server systems, in one place.

Each entry names the packages, units, paths and commands of one system. The probe picks the entry
from the server's /etc/os-release (see runtime/probe.py: the first entry whose `match` fits), so a
new Debian release is a new entry here (Debian 13: Debian 12's with what differs replaced), and
another family (its package manager, its paths) a new entry with other values. Nothing else in the kit
spells a Debian path or package name. Whatever the system, its python3 must be MIN_PYTHON or later.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# The names sshd's per-connection process goes by: sshd, or sshd-session since OpenSSH 9.8 (Debian 13).
# The lock needs them before the probe has said which system this is, so it knows them all.
SSHD_PROCESS_NAMES = ("sshd", "sshd-session")
# The oldest python3 the kit's server-side programs (runtime/*.py) run on: what the tested entries have
# (Debian 12's 3.11). The probe answers only its version on an older one (runtime/probe.py runs that far on
# Python 3.8), and the run stops there (`python_refusal`), before anything on the server changes.
MIN_PYTHON = (3, 11)


class UnsupportedPlatform(RuntimeError):
    """The server runs a system the table has no entry for."""


@dataclass(frozen=True)
class Packages:
    """The system packages the kit needs, by role."""

    nginx: str = "nginx"
    supervisor: str = "supervisor"
    certbot: str = "certbot"  # only with https.mode acme

    def all(self) -> tuple[str, ...]:
        """What every app needs."""
        return (self.nginx, self.supervisor)

    def asked(self) -> tuple[str, ...]:
        """Every package the probe asks about."""
        return (*self.all(), self.certbot)


@dataclass(frozen=True)
class Platform:
    id: str  # "debian-12"
    name: str  # for people: "Debian 12 (bookworm)"
    # os-release fields an entry matches: {"ID": "debian", "VERSION_ID": "12"}; "ID_LIKE" matches when
    # the server's ID or any word of its ID_LIKE equals it (a family entry, e.g. Ubuntu as Debian-like).
    match: dict[str, str]
    tested: bool  # run by the integration suite
    packages: Packages = field(default_factory=Packages)
    # Package manager: the query the probe runs (prints "NAME<TAB>STATUS" per package) and the status of
    # an installed one, the directory whose newest file dates the package lists, and the commands that
    # finish what a package manager cut off halfway left (apt refuses to go on until it is done: "dpkg was
    # interrupted"), refresh the lists and install. The install waits up to 5 minutes for another's dpkg
    # (a new server's first unattended upgrades) rather than fail at once.
    package_query: tuple[str, ...] = ("dpkg-query", "-W", "-f=${Package}\\t${db:Status-Status}\\n")
    installed_status: str = "installed"
    package_lists: str = "/var/lib/apt/lists"
    repair_command: tuple[str, ...] = ("dpkg", "--configure", "-a", "--force-confold")
    update_command: tuple[str, ...] = ("apt-get", "update", "-q")
    install_command: tuple[str, ...] = (
        "apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold",
        "-o", "DPkg::Lock::Timeout=300",
    )  # fmt: skip
    # systemd units.
    nginx_unit: str = "nginx"
    supervisor_unit: str = "supervisor"
    # nginx.
    nginx_conf_dir: str = "/etc/nginx"
    nginx_sites_available: str = "/etc/nginx/sites-available"
    nginx_sites_enabled: str = "/etc/nginx/sites-enabled"
    nginx_default_site: str = "default"  # the stock site the package enables
    nginx_pid: str = "/run/nginx.pid"
    nginx_log_dir: str = "/var/log/nginx"
    # How a 443 server turns HTTP/2 on: `listen 443 ssl http2` ("listen", nginx before 1.25.1) or the
    # `http2 on;` directive ("directive", nginx 1.25.1 on, which warns about the listen parameter).
    nginx_http2: str = "listen"
    # HTTPS: the user's certificate files (https.mode files); certbot's directory, the timer that renews
    # its certificates, and where a drop-in sets the environment of its service (a private ACME CA).
    tls_dir: str = "/etc/ssl/flaskdeploy"
    letsencrypt_dir: str = "/etc/letsencrypt"
    certbot_timer: str = "certbot.timer"
    certbot_dropin_dir: str = "/etc/systemd/system/certbot.service.d"
    # supervisor.
    supervisor_conf_dir: str = "/etc/supervisor/conf.d"
    supervisor_socket: str = "/var/run/supervisor.sock"
    supervisord_pidfile: str = "/var/run/supervisord.pid"  # root's: names supervisord, the app's parent
    # Users, logs and boot.
    nologin_shell: str = "/usr/sbin/nologin"
    log_group: str = "adm"  # may read /var/log
    tmpfiles_dir: str = "/etc/tmpfiles.d"
    systemd_unit_dir: str = "/etc/systemd/system"  # the admin's units: the scheduled jobs' go here

    @property
    def units(self) -> tuple[str, ...]:
        """What runs the site and must start at boot."""
        return (self.nginx_unit, self.supervisor_unit)

    def probe_entry(self) -> dict:
        """What the probe needs of this entry to choose it and to ask the facts every run shares (the
        steps ask theirs: steps.model.Probe.asks)."""
        return {
            "id": self.id,
            "match": self.match,
            "units": [*self.units, self.certbot_timer],
        }


DEBIAN_12 = Platform("debian-12", "Debian 12 (bookworm)", {"ID": "debian", "VERSION_ID": "12"}, tested=True)
# Debian 13 as deployed to in the sandboxes: Python 3.13, glibc 2.41 and OpenSSH 10 (sshd-session) reach
# the kit as probed facts; packages, units and paths are Debian 12's (nginx, supervisor 4.2.5, the same
# sites-*, conf.d, sockets and pidfiles). nginx 1.26 turns HTTP/2 on with its directive.
DEBIAN_13 = replace(DEBIAN_12, id="debian-13", name="Debian 13 (trixie)",
                    match={"ID": "debian", "VERSION_ID": "13"}, tested=True,
                    nginx_http2="directive")  # fmt: skip
# Ubuntu LTS and other Debian derivatives: the same packages and paths, expected to work, not tested (with
# a python3 of MIN_PYTHON or later: Ubuntu 24.04, not 22.04).
DEBIAN_LIKE = replace(DEBIAN_12, id="debian-like", name="a Debian-like system", match={"ID_LIKE": "debian"},
                      tested=False)  # fmt: skip

# In the order the probe tries them: exact entries first, families last.
PLATFORMS = (DEBIAN_12, DEBIAN_13, DEBIAN_LIKE)


def _tested() -> str:
    return " and ".join(p.name for p in PLATFORMS if p.tested)


def by_id(platform_id: str | None, described: str = "") -> Platform:
    """The entry the probe chose; UnsupportedPlatform naming the system when it chose none."""
    for platform in PLATFORMS:
        if platform.id == platform_id:
            return platform
    raise UnsupportedPlatform(
        f"unsupported server system {described or '(no /etc/os-release)'}: flaskdeploy runs on {_tested()}"
        " (and is expected to work on Debian-like systems such as Ubuntu 24.04 LTS)"
    )


def python_refusal(version: str) -> str:
    """Why the kit refuses a server whose python3 is `version` (the probe's "3.9.2"); "" when it runs
    there."""
    found = tuple(int(number) for number in version.split(".")[:2] if number.isdigit())
    if not found or found >= MIN_PYTHON:  # not found: no answer to refuse (by_id refuses what has none)
        return ""
    needed = ".".join(map(str, MIN_PYTHON))
    return (
        f"python3 on the server is {version}; flaskdeploy runs on Python {needed} and later, as on"
        f" {_tested()}: upgrade the server"
    )
