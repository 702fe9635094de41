"""Deploy settings: read from the layered Invoke config, validated before anything connects."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WHERE = "(invoke.yaml or -f FILE)"


class SettingError(ValueError):
    """A setting with a wrong value; the message is one line naming the key and the fix."""


@dataclass(frozen=True)
class Settings:
    name: str
    src: Path
    module: str
    port: int
    server_name: str
    workers: int | None
    threads: int
    health_path: str
    health_timeout: int
    keep_releases: int
    apt_cache_valid_time: int
    shared_dirs: tuple[str, ...]
    release_command: str | None
    env: dict[str, str] = field(repr=False)  # secret: never printed

    # Server layout. Everything the app owns lives under base_dir, except logs and runtime files.
    @property
    def base_dir(self) -> str:
        return f"/srv/{self.name}"

    @property
    def releases_dir(self) -> str:
        return f"{self.base_dir}/releases"

    @property
    def current(self) -> str:
        return f"{self.base_dir}/current"

    @property
    def previous(self) -> str:
        """The release that was live before the last switch: what `rollback` goes back to."""
        return f"{self.base_dir}/previous"

    @property
    def shared_dir(self) -> str:
        return f"{self.base_dir}/shared"

    @property
    def venvs_dir(self) -> str:
        return f"{self.base_dir}/venvs"

    @property
    def gunicorn_conf(self) -> str:
        return f"{self.base_dir}/gunicorn.conf.py"

    @property
    def log_dir(self) -> str:
        return f"/var/log/{self.name}"

    @property
    def error_log(self) -> str:
        return f"{self.log_dir}/error.log"

    @property
    def run_dir(self) -> str:
        return f"/run/{self.name}"

    @property
    def tmpfiles_conf(self) -> str:
        return f"/etc/tmpfiles.d/{self.name}.conf"

    @property
    def nginx_site(self) -> str:
        return f"/etc/nginx/sites-available/{self.name}"

    @property
    def nginx_link(self) -> str:
        return f"/etc/nginx/sites-enabled/{self.name}"

    @property
    def supervisor_conf(self) -> str:
        return f"/etc/supervisor/conf.d/{self.name}.conf"

    @property
    def health_host(self) -> str:
        """The Host header that reaches this site through nginx (`_` matches nothing, default_server does)."""
        first = self.server_name.split()[0]
        return "localhost" if first == "_" or "*" in first or first.startswith("~") else first


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SettingError(f"must be an integer {low}-{high}")
        return value

    return check


def _optional(check: Callable[[Any], int]) -> Callable[[Any], int | None]:
    def optional(value: Any) -> int | None:
        if value is None or (
            isinstance(value, str) and value.strip().lower() in ("", "null", "none", "auto")
        ):
            return None
        return check(value)

    return optional


def _matching(pattern: str, what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise SettingError(f"must be {what}")
        return value

    return check


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingError("must be a mapping of environment variable names to strings")
    for key, text in value.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingError(f"{key!r} is no environment variable name (letters, digits, _)")
        if not isinstance(text, str) or "\0" in text:
            raise SettingError(f"the value of {key} must be a string (quote it in YAML)")
    return dict(value)


# Inside each release: what shaped it (release.json, fingerprint, rendered configs, env.json, failed).
META = ".deploy"
# Names a release uses itself: a shared directory may not take them.
_RESERVED = (".venv", META)


def _shared_dirs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(d, str) for d in value):
        raise SettingError("must be a list of directories relative to the app, like [instance]")
    for d in value:
        parts = d.split("/")
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*", d) or {".", ".."} & set(parts) or parts[0] in _RESERVED:
            raise SettingError(f"{d!r} is no plain relative directory (like uploads or data/files)")
    return tuple(dict.fromkeys(value))


def _optional_command(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or "\n" in value.strip():
        raise SettingError("must be one shell command line, or null")
    return value.strip()


def _source_dir(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise SettingError("must be the path of the Flask app's directory")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if not path.is_dir():
        raise SettingError(f"must be an existing directory (looked in {path})")
    if not (path / "requirements.txt").is_file():
        raise SettingError(f"must hold a requirements.txt ({path} has none)")
    return path


# (section, key) -> (Settings field, validator). Order is the order errors are found in.
_SCHEMA: dict[tuple[str, str], tuple[str, Callable[[Any], Any]]] = {
    # A Linux user name that is also a safe nginx/supervisor/directory name.
    ("app", "name"): (
        "name",
        _matching(r"[a-z][a-z0-9_-]{0,30}", "a lowercase name like 'flaskdemo' (a-z 0-9 _ -)"),
    ),
    ("app", "src"): ("src", _source_dir),
    ("app", "module"): (
        "module",
        _matching(
            r"[A-Za-z_][\w.]*:[A-Za-z_]\w*(\(\))?", "a WSGI entry point like 'app:app' (module:attribute)"
        ),
    ),
    ("app", "port"): ("port", _integer(1024, 65535)),
    ("app", "server_name"): (
        "server_name",
        _matching(r"[^\s;{}'\"#]+( [^\s;{}'\"#]+)*", "nginx server names separated by spaces, like '_'"),
    ),
    ("app", "workers"): ("workers", _optional(_integer(1, 256))),
    ("app", "threads"): ("threads", _integer(1, 256)),
    ("app", "health_path"): ("health_path", _matching(r"/[\w.~/?&=%:+-]*", "a URL path starting with '/'")),
    ("app", "health_timeout"): ("health_timeout", _integer(1, 600)),
    ("app", "env"): ("env", _env),
    ("deploy", "keep_releases"): ("keep_releases", _integer(2, 100)),
    ("deploy", "apt_cache_valid_time"): ("apt_cache_valid_time", _integer(0, 10**7)),
    ("deploy", "shared_dirs"): ("shared_dirs", _shared_dirs),
    ("deploy", "release_command"): ("release_command", _optional_command),
}
# Never echoed in an error message: their values are secrets.
_SECRET = {("app", "env")}


def parse(config: Mapping[str, Any]) -> Settings:
    """Validate the `app` and `deploy` sections of a config; raise SettingError naming the first bad key."""
    values: dict[str, Any] = {}
    for section in ("app", "deploy"):
        given = config.get(section) or {}
        known = sorted(key for sec, key in _SCHEMA if sec == section)
        for key in given:
            if key not in known:
                raise SettingError(f"{section}.{key}: unknown setting (known: {', '.join(known)}) {WHERE}")
    for (section, key), (attribute, check) in _SCHEMA.items():
        given = config.get(section) or {}
        if key not in given:
            raise SettingError(f"{section}.{key}: missing; set it {WHERE}")
        try:
            values[attribute] = check(given[key])
        except SettingError as error:
            got = "" if (section, key) in _SECRET else f", got {given[key]!r}"
            raise SettingError(f"{section}.{key}: {error}{got} {WHERE}") from None
    return Settings(**values)


def load(c: Any) -> Settings:
    """Settings from a Fabric context's config, or a one-line Exit (code 2) naming the bad key."""
    try:
        return parse(c.config)
    except SettingError as error:
        raise Exit(str(error), code=2) from None
