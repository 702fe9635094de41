"""Render the Jinja2 templates in configs/ (nginx site, supervisor program, gunicorn config, tmpfiles, the
app's Redis server).

Templates see `s` (the settings), `paths` (the layout on the server) and a few computed values.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import jinja2

from tasks import static
from tasks.https import Tls
from tasks.layout import HTTP_PORT, META, Layout
from tasks.platform import Platform
from tasks.settings import Settings

TEMPLATES = Path(__file__).resolve().parent.parent / "configs"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,  # a missing variable is an error, never an empty string in a config
    keep_trailing_newline=True,
    autoescape=False,
)
# Hosts render at once: the first compiles a template, the others wait and find it in _env's cache (Jinja
# compiles it again for every thread that misses the cache at the same time).
_compiling = threading.Lock()


def workers(s: Settings, cpu_count: int) -> int:
    """gunicorn's rule of thumb, on the SERVER's CPUs: 2 x cores + 1, unless app.workers says otherwise."""
    return s.app.workers if s.app.workers is not None else 2 * cpu_count + 1


def render(template: str, s: Settings, paths: Layout, cpu_count: int = 1, **values: object) -> str:
    """A template rendered; `values` are what only this template needs."""
    with _compiling:
        compiled = _env.get_template(template)
    return compiled.render(
        **values,
        s=s,
        paths=paths,
        meta=META,
        http_port=HTTP_PORT,
        workers=workers(s, cpu_count),
        default_server=s.app.server_name == "_",  # a catch-all site replaces nginx's default one
    )


def gunicorn_conf(s: Settings, paths: Layout, cpu_count: int) -> str:
    return render("gunicorn.conf.py.j2", s, paths, cpu_count)


def nginx_site(s: Settings, paths: Layout, platform: Platform, tls: Tls | None = None) -> str:
    """The site: port 80 only, or with `tls` (tasks/https.py) a 443 server too, port 80 redirecting."""
    domains = " ".join(s.https.domains)
    if s.app.server_name == "_" or not domains:
        http_names = s.app.server_name
    else:  # the ACME challenge for each domain reaches port 80 of this site
        http_names = " ".join(dict.fromkeys([*s.app.server_name.split(" "), *s.https.domains]))
    return render(
        "nginx-site.conf.j2",
        s,
        paths,
        # The static directories depend on the local app (app.src, a directory the settings validated).
        static=static.folders(s, s.app.src),
        tls=tls,
        acme_webroot=paths.acme_webroot if s.https.mode == "acme" else None,
        http_names=http_names,
        https_names=domains or s.app.server_name,
        http2=platform.nginx_http2,
        hsts=s.https.hsts,
        remote="flaskdeploy_" + s.app.name.replace("-", "_") + "_remote",  # an nginx variable's name
    )


def supervisor_program(s: Settings, paths: Layout) -> str:
    return render("supervisor-program.conf.j2", s, paths)


# Seconds a process of the app must stay up to count as started (supervisor's startsecs): less, and a
# deploy fails (and switches back).
PROCESS_STARTSECS = 3


def process_program(s: Settings, paths: Layout, name: str) -> str:
    """The supervisor program of the app's process `name` (app.processes)."""
    return render(
        "supervisor-process.conf.j2",
        s,
        paths,
        name=name,
        program=paths.process_program(name),
        command_file=paths.process_command(name),
        count=s.app.processes[name].count,
        log=paths.process_log(name),
        startsecs=PROCESS_STARTSECS,
    )


def tmpfiles(s: Settings, paths: Layout) -> str:
    return render("tmpfiles.conf.j2", s, paths)


def redis_conf(s: Settings, paths: Layout) -> str:
    """The app's Redis server: a Unix socket only, persistence on (services.redis)."""
    return render("redis.conf.j2", s, paths)


def redis_dropin(s: Settings, paths: Layout, platform: Platform) -> str:
    """The drop-in of the app's Redis unit: its socket's directory, and the paths it may write."""
    return render("redis-dropin.conf.j2", s, paths, redis_user=platform.redis_user)


def sha256(content: str) -> str:
    """What the probe reports for a file holding `content`."""
    return hashlib.sha256(content.encode()).hexdigest()
