"""Deploy settings: read from the layered Invoke config, validated before anything connects."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fabric
from invoke.exceptions import Exit

from tasks import https, recap
from tasks.layout import META

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WHERE = "(invoke.yaml or -f FILE)"


class SettingError(ValueError):
    """A setting with a wrong value; the message is one line naming the key and the fix."""


@dataclass(frozen=True)
class Settings:
    """The validated `app` and `deploy` sections. Where things go on a server is tasks/layout.py."""

    name: str
    src: Path
    module: str
    port: int
    server_name: str
    workers: int | None
    threads: int
    health_path: str | None  # None: GET / passes on any answer below 500
    health_timeout: int
    gunicorn: str  # the gunicorn version installed into every venv, unless the app's requirements name one
    static: dict[str, str]  # URL prefix -> directory of the app, served by nginx; empty: Flask's static/
    keep_releases: int
    apt_cache_valid_time: int
    shared_dirs: tuple[str, ...]
    release_command: str | None
    release_timeout: int
    connect_timeout: int
    command_timeout: int
    env: dict[str, str] = field(repr=False)  # secret: never printed
    # The fleet (tasks/fleet.py): hosts used when no -H is given, named groups of hosts, the group a run
    # acts on (instead of `hosts`), and how many hosts a run acts on at once.
    hosts: tuple[str, ...] = ()
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    group: str | None = None
    parallel: int = 10
    # HTTPS (tasks/https.py): off, a certificate from an ACME CA (certbot, HTTP-01), or files of the user's.
    https_mode: str = "off"
    https_domains: tuple[str, ...] = ()
    https_email: str | None = None
    https_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    https_ca_bundle: Path | None = None  # a CA the server trusts to reach a private ACME directory
    https_cert: Path | None = None  # files: the certificate (its chain after it)
    https_key: Path | None = field(default=None, repr=False)  # files: its private key (secret)
    https_hsts: bool = False


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SettingError(f"must be an integer {low}-{high}")
        return value

    return validate


def _optional(validate: Callable[[Any], int]) -> Callable[[Any], int | None]:
    def optional(value: Any) -> int | None:
        if value is None or (
            isinstance(value, str) and value.strip().lower() in ("", "null", "none", "auto")
        ):
            return None
        return validate(value)

    return optional


def _fullmatch(pattern: str, value: str) -> bool:
    """Whether all of value matches pattern, its word characters and digits ASCII only: other letters and
    digits would reach nginx, supervisor, the shell and the health request."""
    return re.fullmatch(pattern, value, re.ASCII) is not None


def _matching(pattern: str, what: str) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        if not isinstance(value, str) or not _fullmatch(pattern, value):
            raise SettingError(f"must be {what}")
        return value

    return validate


# Accounts and directories a Debian server has, or its admin made: an app may not take them over (its
# name becomes a user, /run/<name>, /var/log/<name>, /etc/tmpfiles.d/<name>.conf and /srv/<name>).
TAKEN_NAMES = frozenset((
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "nobody", "sshd", "messagebus", "polkitd", "avahi",
    "colord", "dnsmasq", "ntp", "chrony", "postfix", "exim", "dovecot", "mysql", "postgres", "redis",
    "nginx", "supervisor", "admin", "debian", "ubuntu", "user", "users", "staff", "adm", "sudo", "wheel",
    "lock", "log", "lib", "cache", "tmp", "spool", "run", "shadow", "utmp", "tty", "disk", "kmem",
    "dialout", "cdrom", "floppy", "audio", "video", "plugdev", "netdev", "input", "render", "kvm", "sgx",
    "systemd", "flaskdeploy",
))  # fmt: skip


def _app_name(value: Any) -> str:
    _matching(r"[a-z][a-z0-9_-]{0,30}", "a lowercase name like 'flaskdemo' (a-z 0-9 _ -)")(value)
    if value in TAKEN_NAMES or value.startswith(("systemd-", "_")):
        raise SettingError(f"{value!r} is a name the system uses: choose a name of the app's own")
    return value


# One nginx server name: a host name (a trailing `.*` or leading `*.` wildcard allowed), or `_`.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?(?:\.\*)?"


def _server_name(value: Any) -> str:
    if not isinstance(value, str) or not all(
        name == "_" or _fullmatch(_HOST, name) for name in value.split(" ")
    ):
        raise SettingError("must be host names separated by spaces (like example.org *.example.org), or '_'")
    return value


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingError("must be a mapping of environment variable names to strings")
    for key, text in value.items():
        if not isinstance(key, str) or not _fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingError(f"{key!r} is no environment variable name (letters, digits, _)")
        if not isinstance(text, str) or "\0" in text:
            raise SettingError(f"the value of {key} must be a string (quote it in YAML)")
    return dict(value)


# Names a release uses itself: a shared directory may not take them.
_RESERVED = (".venv", META)


def _shared_dirs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(d, str) for d in value):
        raise SettingError("must be a list of directories relative to the app, like [instance]")
    for d in value:
        parts = d.split("/")
        if not _fullmatch(r"[\w.-]+(/[\w.-]+)*", d) or {".", ".."} & set(parts) or parts[0] in _RESERVED:
            raise SettingError(f"{d!r} is no plain relative directory (like uploads or data/files)")
    for d in value:
        for other in value:
            if other.startswith(f"{d}/"):
                raise SettingError(f"{d!r} holds {other!r}: list the one or the other (shared as a whole)")
    return tuple(dict.fromkeys(value))


def _optional_command(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or "\n" in value.strip():
        raise SettingError("must be one shell command line, or null")
    # A NUL cuts the line short where the shell reads it; other control characters hide what it runs.
    control = next((c for c in value.strip() if c != "\t" and unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise SettingError(f"holds the control character U+{ord(control):04X}: write the command without it")
    return value.strip()


def _source_dir(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise SettingError("must be the path of the Flask app's directory")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if not path.is_dir():
        raise SettingError(f"must be an existing directory (looked in {path})")
    if not any((path / name).is_file() for name in ("requirements.txt", "pyproject.toml")):
        raise SettingError(f"must hold a requirements.txt or a pyproject.toml ({path} has neither)")
    return path


def _optional_path(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
        return None
    path = _matching(
        r"/[\w.~/?&=%:+-]*",
        "a URL path starting with '/' (ASCII: percent-encode other characters), or null (GET / answering"
        " below 500)",
    )
    return path(value)


def _static(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise SettingError("must map URL prefixes to directories of the app, like {/static/: static}")
    for prefix, directory in value.items():
        if not isinstance(prefix, str) or not _fullmatch(r"/([\w.~-]+/)*", prefix):
            raise SettingError(f"{prefix!r} is no URL prefix like /static/ (starts and ends with /)")
        parts = directory.split("/") if isinstance(directory, str) else []
        if not parts or not _fullmatch(r"[\w.-]+(/[\w.-]+)*", directory) or {".", ".."} & set(parts):
            raise SettingError(f"{directory!r} is no plain relative directory of the app (like static)")
        if parts[0] in _RESERVED:
            raise SettingError(f"{directory!r} is the kit's own: name a directory of the app")
    return dict(value)


# A host as -H takes it: [user@]host[:port], the host a name (an SSH config alias too), an IPv4 address
# or an IPv6 one in brackets.
_HOST_ENTRY = re.compile(
    r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,31}@)?(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>\d{1,5}))?",
    re.ASCII,
)


def _host_entry(value: Any) -> str:
    match = _HOST_ENTRY.fullmatch(value) if isinstance(value, str) else None
    if match is None or (match["port"] is not None and not 1 <= int(match["port"]) <= 65535):
        raise SettingError(f"{value!r} is no host like web1, deploy@web1.example.org or 10.0.0.5:2222")
    return value


def _hosts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise SettingError("must be a list of hosts, like [web1, deploy@web2.example.org:2222]")
    return tuple(dict.fromkeys(_host_entry(host) for host in value))


def _groups(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise SettingError("must map group names to lists of hosts, like {web: [web1, web2]}")
    groups = {}
    for name, hosts in value.items():
        if not isinstance(name, str) or not _fullmatch(r"[A-Za-z0-9_][\w.-]*", name):
            raise SettingError(f"{name!r} is no group name (letters, digits, _ . -)")
        if not isinstance(hosts, list | tuple) or not hosts:
            raise SettingError(f"group {name!r} must be a non-empty list of hosts")
        groups[name] = _hosts(hosts)
    return groups


def _group(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
        return None
    if not isinstance(value, str):
        raise SettingError("must be the name of a group of deploy.groups, or null")
    return value.strip()


def _choice(*choices: str) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        if value is False:  # YAML reads a bare `off` as false
            value = "off"
        if value not in choices:
            raise SettingError(f"must be one of {', '.join(choices)}")
        return value

    return validate


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingError("must be true or false")
    return value


# A name a certificate can be issued for over HTTP-01: a host name with a dot, no wildcard.
_DOMAIN = rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+"


def _domains(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise SettingError("must be a list of domain names, like [example.org, www.example.org]")
    for name in value:
        if not isinstance(name, str) or not _fullmatch(_DOMAIN, name):
            raise SettingError(f"{name!r} is no domain name like www.example.org (no wildcards, no IPs)")
    return tuple(dict.fromkeys(name.lower() for name in value))


def _email(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _matching(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", "an email address")(value)


def _https_url(value: Any) -> str:
    return _matching(r"https://[A-Za-z0-9.-]+(:\d{1,5})?(/[\w.~%/-]*)?", "an https:// URL")(value)


def _local_file(value: Any) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SettingError("must be the path of a file on this machine")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if not path.is_file():
        raise SettingError(f"must be an existing file on this machine (looked at {path})")
    return path


@dataclass(frozen=True)
class Key:
    """One setting: where it is given, how it is validated, its default, whether its value is secret."""

    section: str
    key: str
    validate: Callable[[Any], Any]  # the value as given -> the value the kit uses, or SettingError
    default: Any
    secret: bool = False  # never echoed in an error message

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


# Settings field -> its key. Order is the order errors are found in. invoke.yaml shows the same defaults
# (a test holds them equal); a key left out of every config file takes its default here.
SCHEMA: dict[str, Key] = {
    # A Linux user name that is also a safe nginx/supervisor/directory name.
    "name": Key("app", "name", _app_name, "flaskdemo"),
    "src": Key("app", "src", _source_dir, "app"),
    "module": Key(
        "app",
        "module",
        _matching(
            r"[A-Za-z_][\w.]*:[A-Za-z_]\w*(\(\))?", "a WSGI entry point like 'app:app' (module:attribute)"
        ),
        "app:app",
    ),  # fmt: skip
    "port": Key("app", "port", _integer(1024, 65535), 8080),
    "server_name": Key("app", "server_name", _server_name, "_"),
    "workers": Key("app", "workers", _optional(_integer(1, 256)), None),
    "threads": Key("app", "threads", _integer(1, 256), 5),
    "health_path": Key("app", "health_path", _optional_path, None),
    "health_timeout": Key("app", "health_timeout", _integer(1, 600), 30),
    "gunicorn": Key(
        "app", "gunicorn", _matching(r"\d+(\.\d+){0,3}", "a gunicorn version like 23.0.0"), "27.0.1"
    ),
    # A mapping, also when empty: Invoke cannot merge a mapping given with -f FILE onto a null.
    "static": Key("app", "static", _static, {}),
    "env": Key("app", "env", _env, {}, secret=True),
    "keep_releases": Key("deploy", "keep_releases", _integer(2, 100), 5),
    "apt_cache_valid_time": Key("deploy", "apt_cache_valid_time", _integer(0, 10**7), 3600),
    "shared_dirs": Key("deploy", "shared_dirs", _shared_dirs, ["instance"]),
    "release_command": Key("deploy", "release_command", _optional_command, None),
    "release_timeout": Key("deploy", "release_timeout", _integer(1, 86400), 600),
    "hosts": Key("deploy", "hosts", _hosts, []),
    # A mapping, also when empty: Invoke cannot merge a mapping given with -f FILE onto a null.
    "groups": Key("deploy", "groups", _groups, {}),
    "group": Key("deploy", "group", _group, None),
    "parallel": Key("deploy", "parallel", _integer(1, 1000), 10),
    # Fabric's own (fab -t SECONDS and -T SECONDS set them for one run): giving up on a host that does not
    # answer, and on a remote command that does not end, so that a stalled server never hangs a run.
    # HTTPS: tasks/https.py validates how these go together (and the files' contents) after each alone.
    "https_mode": Key("https", "mode", _choice("off", "acme", "files"), "off"),
    "https_domains": Key("https", "domains", _domains, []),
    "https_email": Key("https", "email", _email, None),
    "https_directory": Key(
        "https", "directory", _https_url, "https://acme-v02.api.letsencrypt.org/directory"
    ),
    "https_ca_bundle": Key("https", "ca_bundle", _local_file, None),
    "https_cert": Key("https", "cert", _local_file, None),
    "https_key": Key("https", "key", _local_file, None),
    "https_hsts": Key("https", "hsts", _flag, False),
    "connect_timeout": Key("timeouts", "connect", _integer(1, 3600), 10),
    "command_timeout": Key("timeouts", "command", _integer(1, 86400), 1800),
}
SECTIONS = ("app", "deploy", "https", "timeouts")
# The other top-level keys a config may hold: Fabric's and Invoke's own (run, sudo, tasks, connect_kwargs,
# ...). Any other is a typo the kit would pass over without a word (`htps:` deploying an HTTP-only site).
FABRIC_KEYS = frozenset(fabric.Config.global_defaults())


def _unknown_section(name: Any) -> str:
    """Why a top-level key is refused: the key of a section it belongs in, else the closest known name."""
    owners = [k.name for k in SCHEMA.values() if k.key == name]
    known = difflib.get_close_matches(str(name), [*SECTIONS, *sorted(FABRIC_KEYS)], n=1)
    hint = f"did you mean {(owners or known)[0]}? " if owners or known else ""
    return f"{name}: unknown section ({hint}the kit's: {', '.join(SECTIONS)}) {WHERE}"


def parse(config: Mapping[str, Any]) -> Settings:
    """Validate the kit's sections of a config; raise SettingError naming the first bad key."""
    for name in config:
        if name not in SECTIONS and name not in FABRIC_KEYS:
            raise SettingError(_unknown_section(name))
    for section in SECTIONS:
        known = sorted(k.key for k in SCHEMA.values() if k.section == section)
        if not isinstance(config.get(section) or {}, Mapping):
            got = config[section]
            raise SettingError(
                f"{section}: must be a section of settings (key: value lines), got {got!r} {WHERE}"
            )
        for key in config.get(section) or {}:
            if key not in known:
                raise SettingError(f"{section}.{key}: unknown setting (known: {', '.join(known)}) {WHERE}")
    values: dict[str, Any] = {}
    for attribute, key in SCHEMA.items():
        value = (config.get(key.section) or {}).get(key.key)
        value = key.default if value is None else value  # left out, or null: the default
        try:
            values[attribute] = key.validate(value)
        except SettingError as error:
            got = "" if key.secret else f", got {value!r}"
            raise SettingError(f"{key.name}: {error}{got} {WHERE}") from None
    if values["group"] is not None and values["group"] not in values["groups"]:
        known = ", ".join(values["groups"]) or "none"
        raise SettingError(
            f"deploy.group: no group {values['group']!r} in deploy.groups (known: {known}) {WHERE}"
        )
    parsed = Settings(**values)
    problem = https.problem(parsed)
    if problem:
        raise SettingError(f"{problem} {WHERE}")
    return parsed


def load(c: Any) -> Settings:
    """Settings from a Fabric context's config, or a one-line Exit (code 2) naming the bad key. From here
    on, no line of the run shows a value of app.env (recap.hide)."""
    try:
        s = parse(c.config)
    except SettingError as error:
        raise Exit(str(error), code=2) from None
    if s.name == getattr(c, "user", None):
        raise Exit(
            f"app.name: {s.name!r} is the SSH login user: choose a name of the app's own {WHERE}", code=2
        )
    recap.hide(s.env.values())
    return s
