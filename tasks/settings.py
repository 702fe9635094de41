"""Deploy settings: read from the layered Invoke config, validated before anything connects.

Each key is declared once, as a field of its section's class (`App`, `Deploy`, `Https`, `Services`,
`Timeouts`): its default as invoke.yaml writes it, its validator and its help (`setting`). `Settings`
holds the sections (`s.app.port`, `s.https.mode`); what needs the list of keys (`SCHEMA`: parsing, unknown
keys, secrets, the test that holds invoke.yaml to the declarations) derives it from them.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import fabric
from invoke.exceptions import Exit

from tasks import calendar, https, procfile, recap
from tasks.layout import META

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WHERE = "(invoke.yaml or -f FILE)"
T = TypeVar("T")


class SettingError(ValueError):
    """A setting with a wrong value; the message is one line naming the key and the fix."""


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SettingError(f"must be an integer {low}-{high}")
        return value

    return validate


# How "no value" is spelt: YAML's null spellings and Python's None, as an environment variable gives them
# (FABRIC_APP_WORKERS=null is the string "null": Invoke casts to the type of the key's default, None here).
EMPTY = ("", "~", "null", "none")


def is_empty(value: Any) -> bool:
    """Whether a value means "not set": None, or a string that is blank or spells null once stripped, in
    any case ('', '~', 'null', 'none'). Optional settings read it as None (`_optional`); a key left out
    of every config file, or null in one, takes its default (`parse`)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in EMPTY)


def _optional(validate: Callable[[Any], T], *words: str) -> Callable[[Any], T | None]:
    """validate, or None for an empty value (`is_empty`), and for `words` that mean the same for this key
    (app.workers: auto)."""

    def optional(value: Any) -> T | None:
        if is_empty(value) or (isinstance(value, str) and value.strip().lower() in words):
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


def _command(value: Any) -> str:
    if not isinstance(value, str) or "\n" in value.strip():
        raise SettingError("must be one shell command line, or null")
    # A NUL cuts the line short where the shell reads it; other control characters hide what it runs.
    control = next((c for c in value.strip() if c != "\t" and unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise SettingError(f"holds the control character U+{ord(control):04X}: write the command without it")
    return value.strip()


@dataclass(frozen=True)
class Process:
    """One of the app's processes (app.processes): its command line, and how many copies run."""

    command: str
    count: int = 1


def _process(name: Any, value: Any) -> Process:
    if not isinstance(name, str) or not _fullmatch(procfile.PROCESS_NAME, name):
        raise SettingError(f"{name!r} is no process name (lowercase letters, digits and -, like worker)")
    if name == procfile.WEB:
        raise SettingError("'web' is the kit's gunicorn (app.module): name the process otherwise")
    if isinstance(value, Mapping):
        unknown = set(value) - {"command", "count"}
        if unknown or "command" not in value:
            raise SettingError(f"{name}: must be a command, or {{command: ..., count: N}}")
        count = value.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
            raise SettingError(f"{name}: count must be an integer 1-64")
        value = value["command"]
    else:
        count = 1
    try:
        if is_empty(value):
            raise SettingError("must be one shell command line")
        return Process(_command(value), count)
    except SettingError as error:
        raise SettingError(f"{name}: the command {error}") from None


def _processes(value: Any) -> dict[str, Process]:
    if not isinstance(value, Mapping):
        raise SettingError("must map process names to commands, like {worker: rq worker microblog-tasks}")
    return {name: _process(name, command) for name, command in value.items()}


@dataclass(frozen=True)
class Job:
    """A scheduled job (app.schedule): its command line, run as a Procfile's line is, and when, as a
    systemd calendar expression (a timer's OnCalendar=)."""

    command: str
    when: str


def _job_name(name: Any) -> str:
    if not isinstance(name, str) or not _fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", name):
        raise SettingError(f"{name!r} is no job name: lowercase letters, digits and -, like nightly-report")
    return name


def _when(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.isprintable():
        raise SettingError(f"job {name!r}: when must be one line, a systemd calendar expression like daily")
    why = calendar.problem(value)
    if why:
        raise SettingError(
            f"job {name!r}: when {value!r} is no systemd calendar expression ({why}): write one like"
            f" {calendar.EXAMPLES}"
        )
    return " ".join(value.split())


def _schedule(value: Any) -> dict[str, Job]:
    if not isinstance(value, Mapping):
        raise SettingError("must map job names to {command: ..., when: ...}, like {report: {command: flask"
                           " report, when: daily}}")  # fmt: skip
    jobs = {}
    for name, job in value.items():
        name = _job_name(name)
        if not isinstance(job, Mapping) or set(job) != {"command", "when"}:
            raise SettingError(f"job {name!r} must be {{command: ..., when: ...}}, both and nothing else")
        command = job["command"]
        if not isinstance(command, str) or "\n" in command.strip():
            raise SettingError(f"job {name!r}: command must be one shell command line")
        try:
            command = _command(command)
        except SettingError as error:
            raise SettingError(f"job {name!r}: command {error}") from None
        if not command:
            raise SettingError(f"job {name!r}: command is empty: give the shell line it runs")
        jobs[name] = Job(command, _when(name, job["when"]))
    return jobs


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


_health_path = _matching(
    r"/[\w.~/?&=%:+-]*",
    "a URL path starting with '/' (ASCII: percent-encode other characters), or null (GET / answering"
    " below 500)",
)


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


def _group(value: Any) -> str:
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


_email = _matching(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", "an email address")


_https_url = _matching(r"https://[A-Za-z0-9.-]+(:\d{1,5})?(/[\w.~%/-]*)?", "an https:// URL")


def _local_file(value: Any) -> Path:
    if not isinstance(value, str):
        raise SettingError("must be the path of a file on this machine")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if not path.is_file():
        raise SettingError(f"must be an existing file on this machine (looked at {path})")
    return path


@dataclass(frozen=True)
class Key:
    """One setting as users write it (`section.key`): its default as invoke.yaml shows it, its validator
    (the value as written -> the value the kit uses, or SettingError), its help (invoke.yaml's comment on
    it: a test holds the two equal), and whether its value is secret (never in a repr or an error, its
    strings masked in what a run prints)."""

    section: str
    key: str
    default: Any
    validate: Callable[[Any], Any]
    help: str
    secret: bool = False

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def setting(default: Any, validate: Callable[[Any], Any], help: str, *, secret: bool = False) -> Any:
    """A key of a section, declared once: the field of its section class, which holds the validated
    default (a section made without arguments holds the defaults, as `parse` of an empty config does)."""
    return field(
        default_factory=lambda: validate(default),
        repr=not secret,
        metadata={"default": default, "validate": validate, "help": help, "secret": secret},
    )


@dataclass(frozen=True)
class App:
    """The `app` section: the Flask app, and how gunicorn and nginx serve it."""

    # A Linux user name that is also a safe nginx/supervisor/directory name.
    name: str = setting(
        "flaskdemo", _app_name, "supervisor program, nginx site, directory and system user names"
    )
    src: Path = setting(
        "app", _source_dir, "local directory of the Flask app (its requirements.txt, else its pyproject.toml)"
    )
    module: str = setting(
        "app:app",
        _matching(
            r"[A-Za-z_][\w.]*:[A-Za-z_]\w*(\(\))?", "a WSGI entry point like 'app:app' (module:attribute)"
        ),
        "WSGI entry point, as gunicorn takes it",
    )
    port: int = setting(8080, _integer(1024, 65535), "gunicorn binds 127.0.0.1:<port>, never 0.0.0.0")
    server_name: str = setting("_", _server_name, "nginx server_name")
    workers: int | None = setting(
        None,
        _optional(_integer(1, 256), "auto"),
        "gunicorn workers; null (or auto) = 2 x the server's CPU count + 1",
    )
    threads: int = setting(5, _integer(1, 256), "gunicorn gthread threads per worker")
    health_path: str | None = setting(
        None,
        _optional(_health_path),
        "Checked through nginx at the end of deploy and restart: this path must answer 2xx. With null, GET /"
        " passes on any answer below 500 (a login redirect too): the app answered.",
    )
    health_timeout: int = setting(30, _integer(1, 600), "seconds the health check keeps retrying")
    gunicorn: str = setting(
        "27.0.1",
        _matching(r"\d+(\.\d+){0,3}", "a gunicorn version like 23.0.0"),
        "gunicorn is the kit's: this version goes into every venv, unless the app's requirements name"
        " gunicorn.",
    )
    # A mapping, also when empty: Invoke cannot merge a mapping given with -f FILE onto a null.
    static: dict[str, str] = setting(
        {},
        _static,
        "URL prefix -> directory of the app that nginx serves itself, with caching headers (gunicorn never"
        " sees these requests), like {/static/: static, /media/: assets/img}. {}: the Flask app's static"
        " folder at /static/, when it has one.",
    )
    # A mapping, also when empty: Invoke cannot merge a mapping given with -f FILE onto a null.
    processes: dict[str, Process] = setting(
        {},
        _processes,
        "The app's other processes under supervisor, as the app user in the live release with app.env:"
        " name -> command (run by bash -c), or {command: ..., count: N}. {}: the app's Procfile, if it"
        " has one (but its web line; its release line is deploy.release_command when that is unset).",
    )
    stop_timeout: int = setting(
        30,
        _integer(1, 3600),
        "seconds a stopping process has after SIGTERM to finish its job, before it is killed",
    )
    schedule: dict[str, Job] = setting(
        {},
        _schedule,
        "Scheduled jobs: name -> {command: ..., when: ...}, like {report: {command: flask send-report,"
        " when: Mon 03:00}}; each a systemd timer running the command as the app user in the live release"
        " with app.env, `when` a systemd calendar expression (daily, hourly, *:0/15, Mon..Fri 09:00).",
    )
    env: dict[str, str] = setting(
        {},
        _env,
        "environment of the app and its release command (secret: never printed)",
        secret=True,
    )


@dataclass(frozen=True)
class Deploy:
    """The `deploy` section: releases, and the fleet (tasks/fleet.py)."""

    keep_releases: int = setting(
        5, _integer(2, 100), "releases kept on the server (the current and previous are never pruned)"
    )
    apt_cache_valid_time: int = setting(
        3600, _integer(0, 10**7), "seconds before provision runs `apt-get update` again"
    )
    shared_dirs: tuple[str, ...] = setting(
        ["instance"],
        _shared_dirs,
        "Directories of the app that outlive releases (SQLite databases, uploads): kept under"
        " /srv/<name>/shared/ and linked into every release; no deploy, rollback or prune touches them.",
    )
    release_command: str | None = setting(
        None,
        _optional(_command),
        "A shell line run once per deploy in the new release, as the app user with app.env and the"
        " release's venv first on PATH, before the switch (e.g. `flask db upgrade`); if it fails, nothing"
        " is switched.",
    )
    release_timeout: int = setting(
        600,
        _integer(1, 86400),
        "Seconds the release command may run before it is stopped and the release fails.",
    )
    hosts: tuple[str, ...] = setting(
        [],
        _hosts,
        "Hosts a run acts on when no -H is given: a list like [web1, deploy@web2.example.org:2222] (an"
        " entry as -H takes it: [user@]host[:port], or an alias of the SSH config, fab -S FILE).",
    )
    # A mapping, also when empty: Invoke cannot merge a mapping given with -f FILE onto a null.
    groups: dict[str, tuple[str, ...]] = setting(
        {},
        _groups,
        "Named lists of hosts, like {web: [web1, web2], db: [db1]}; a run acts on the one `group` names"
        " (instead of `hosts`): `fab -f web.yaml deploy`, or FABRIC_DEPLOY_GROUP=web fab deploy. -H wins.",
    )
    group: str | None = setting(None, _optional(_group), "the group of `groups` a run acts on; null: `hosts`")
    parallel: int = setting(
        10,
        _integer(1, 1000),
        "How many hosts a run acts on at once (a thread each); fab TASK --parallel N for one run (1: one"
        " host after the other).",
    )


@dataclass(frozen=True)
class Https:
    """The `https` section (tasks/https.py): off, a certificate from an ACME CA (certbot, HTTP-01), or
    files of the user's. tasks/https.py validates how the keys go together (and the files' contents)."""

    mode: str = setting(
        "off", _choice("off", "acme", "files"), "off (port 80 only), acme (certbot) or files (yours)"
    )
    domains: tuple[str, ...] = setting([], _domains, "the site's names, like [example.org, www.example.org]")
    email: str | None = setting(None, _optional(_email), "the ACME account's email (acme)")
    directory: str = setting(
        "https://acme-v02.api.letsencrypt.org/directory", _https_url, "the ACME directory (acme)"
    )
    ca_bundle: Path | None = setting(
        None,
        _optional(_local_file),
        "a CA bundle (a path here) the server trusts to reach a private ACME directory",
    )
    cert: Path | None = setting(None, _optional(_local_file), "files: the certificate (PEM)")
    key: Path | None = setting(
        None,
        _optional(_local_file),
        "files: its private key (PEM, no passphrase): installed 0600, never printed",
        secret=True,
    )
    hsts: bool = setting(
        False, _flag, "Strict-Transport-Security on the HTTPS answers (browsers then insist on it)"
    )


@dataclass(frozen=True)
class Services:
    """The `services` section: the servers from Debian's packages the app uses, one of each per app
    (steps/postgresql.py, steps/redis.py), their URLs in its environment unless app.env sets them."""

    postgresql: bool = setting(
        False,
        _flag,
        "a PostgreSQL role and database named after the app, reached over its Unix socket (DATABASE_URL)",
    )
    redis: bool = setting(
        False, _flag, "a Redis server of the app's own, on a Unix socket only its group can use (REDIS_URL)"
    )


@dataclass(frozen=True)
class Timeouts:
    """The `timeouts` section: Fabric's own (fab -t SECONDS and -T SECONDS set them for one run), so that
    a stalled server never hangs a run."""

    connect: int = setting(10, _integer(1, 3600), "seconds a host has to answer (fab -t for one run)")
    command: int = setting(1800, _integer(1, 86400), "seconds a remote command may run (fab -T for one run)")


@dataclass(frozen=True)
class Settings:
    """The validated settings, a section each: `s.app.port`, `s.deploy.keep_releases`, `s.https.mode`,
    `s.services.redis`, `s.timeouts.connect`. Where things go on a server is tasks/layout.py."""

    app: App = field(default_factory=App)
    deploy: Deploy = field(default_factory=Deploy)
    https: Https = field(default_factory=Https)
    services: Services = field(default_factory=Services)
    timeouts: Timeouts = field(default_factory=Timeouts)


# Section name -> its class, in the order invoke.yaml shows them (and errors are found in).
SECTIONS: dict[str, type] = {f.name: get_type_hints(Settings)[f.name] for f in fields(Settings)}
# "section.key" -> its declaration, in the order invoke.yaml shows them (and errors are found in).
SCHEMA: dict[str, Key] = {
    f"{section}.{f.name}": Key(section, f.name, **f.metadata)
    for section, kind in SECTIONS.items()
    for f in fields(kind)
}
# The other top-level keys a config may hold: Fabric's and Invoke's own (run, sudo, tasks, connect_kwargs,
# ...). Any other is a typo the kit would pass over without a word (`htps:` deploying an HTTP-only site).
FABRIC_KEYS = frozenset(fabric.Config.global_defaults())


def _unknown_section(name: Any) -> str:
    """Why a top-level key is refused: the key of a section it belongs in, else the closest known name."""
    owners = [k.name for k in SCHEMA.values() if k.key == name]
    known = difflib.get_close_matches(str(name), [*SECTIONS, *sorted(FABRIC_KEYS)], n=1)
    hint = f"did you mean {(owners or known)[0]}? " if owners or known else ""
    return f"{name}: unknown section ({hint}the kit's: {', '.join(SECTIONS)}) {WHERE}"


def _validated(key: Key, value: Any) -> Any:
    """A key's value as the kit uses it: left out, or null, its default; else the value, validated."""
    value = key.default if value is None else value
    try:
        return key.validate(value)
    except SettingError as error:
        got = "" if key.secret else f", got {value!r}"
        raise SettingError(f"{key.name}: {error}{got} {WHERE}") from None


def parse(config: Mapping[str, Any]) -> Settings:
    """Validate the kit's sections of a config; raise SettingError naming the first bad key."""
    for name in config:
        if name not in SECTIONS and name not in FABRIC_KEYS:
            raise SettingError(_unknown_section(name))
    sections = {}
    for section, kind in SECTIONS.items():
        given = config.get(section) or {}
        if not isinstance(given, Mapping):
            raise SettingError(
                f"{section}: must be a section of settings (key: value lines), got {given!r} {WHERE}"
            )
        keys = [key for key in SCHEMA.values() if key.section == section]
        for name in given:
            if name not in {key.key for key in keys}:
                known = ", ".join(sorted(key.key for key in keys))
                raise SettingError(f"{section}.{name}: unknown setting (known: {known}) {WHERE}")
        sections[section] = kind(**{key.key: _validated(key, given.get(key.key)) for key in keys})
    s = Settings(**sections)
    if s.deploy.group is not None and s.deploy.group not in s.deploy.groups:
        known = ", ".join(s.deploy.groups) or "none"
        raise SettingError(
            f"deploy.group: no group {s.deploy.group!r} in deploy.groups (known: {known}) {WHERE}"
        )
    s = _with_procfile(s)
    problem = https.problem(s)
    if problem:
        raise SettingError(f"{problem} {WHERE}")
    return s


def _with_procfile(s: Settings) -> Settings:
    """With app.processes unset, the app's Procfile (tasks/procfile.py): its processes, and its release
    line as deploy.release_command unless that is set."""
    if s.app.processes:
        return s
    try:
        found = procfile.read(s.app.src)
    except procfile.ProcfileError as error:
        raise SettingError(f"app.src: {error}") from None
    if found is None:
        return s
    try:
        processes = _processes(found.processes)
        release = s.deploy.release_command or (_command(found.release) if found.release else None)
    except SettingError as error:
        raise SettingError(f"app.src: {s.app.src / procfile.NAME}: {error}: fix that line") from None
    return replace(
        s, app=replace(s.app, processes=processes), deploy=replace(s.deploy, release_command=release)
    )


def secrets(s: Settings) -> list[str]:
    """The strings of the secret keys' values (app.env's values): what no line of a run may show. A path
    (https.key) names a secret file, whose content the kit never prints: it is no secret itself."""
    found = []
    for key in SCHEMA.values():
        if key.secret:
            value = getattr(getattr(s, key.section), key.key)
            found += (
                value.values() if isinstance(value, Mapping) else [value] if isinstance(value, str) else []
            )
    return found


def load(c: Any) -> Settings:
    """Settings from a Fabric context's config, or a one-line Exit (code 2) naming the bad key. From here
    on, no line of the run shows a secret setting's value (recap.hide)."""
    try:
        s = parse(c.config)
    except SettingError as error:
        raise Exit(str(error), code=2) from None
    if s.app.name == getattr(c, "user", None):
        raise Exit(
            f"app.name: {s.app.name!r} is the SSH login user: choose a name of the app's own {WHERE}", code=2
        )
    recap.hide(secrets(s))
    return s
