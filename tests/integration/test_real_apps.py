"""Apps as people publish them, deployed to a sandbox server as they are found (issue 13).

tests/apps/flaskr is shaped like Flask's own tutorial: a package with a `create_app()` factory, its
dependencies in pyproject.toml only (no gunicorn, and Flask-Mail 0.9.1, published as a pure-Python sdist
only), SQLite in instance/, a `flask init-db` command, static files, no health route. Other apps here are
made by the tests: a requirements.txt without gunicorn and with markers that differ between the control
machine and the server, one that pins its own gunicorn, and two the server cannot take.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker

from tasks.wheels import UV
from tests import fab as fab_cli
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

FLASKR = Path(__file__).resolve().parents[1] / "apps" / "flaskr"
# Everything a refused deploy must leave as it was.
WATCHED = "/etc/nginx /etc/supervisor /etc/tmpfiles.d /srv"


@dataclass
class Server:
    sandbox: Sandbox
    work: Path

    def ssh(self, command: str, check: bool = True) -> str:
        return self.sandbox.ssh(command, check=check).stdout

    def fab(self, config: Path | None, *args: str) -> fab_cli.Run:
        options = ["-f", str(config)] if config else []
        return fab_cli.run(self.sandbox.lab.ssh_config, self.sandbox.name, *options, *args)

    def config(self, **app: object) -> Path:
        """A runtime config holding only these app.* settings (and deploy.* ones given as deploy=...)."""
        deploy = app.pop("deploy", None)
        settings = {"app": {k: str(v) if isinstance(v, Path) else v for k, v in app.items()}}
        if deploy:
            settings["deploy"] = deploy
        path = self.work / f"config-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    def curl(self, path: str, *options: str) -> str:
        return self.ssh(f"curl -s -m 5 {' '.join(options)} http://127.0.0.1{path}", check=False)

    def python(self, app: str, code: str) -> str:
        """What the live release's venv python prints for code."""
        return self.ssh(f"/srv/{app}/current/.venv/bin/python -c '{code}'").strip()

    def state(self) -> str:
        listing = f"find {WATCHED} -xdev -printf '%p %y %u %g %m %l\\n' 2>/dev/null | sort"
        hashes = f"find {WATCHED} -xdev -type f -exec sha256sum {{}} + | sort"
        return self.ssh(f"{listing}; {hashes}")


@pytest.fixture(scope="module")
def server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    (sandbox,) = lab.start(1)
    try:
        yield Server(sandbox, tmp_path_factory.mktemp("realapps"))
    finally:
        lab.remove(sandbox)


def flaskr_copy(work: Path, version: str) -> Path:
    """A copy of tests/apps/flaskr whose / names `version` (a new release, its own wheel)."""
    src = work / f"flaskr-{version}-{uuid.uuid4().hex[:6]}"
    shutil.copytree(FLASKR, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "instance"))
    init = src / "flaskr" / "__init__.py"
    init.write_text(init.read_text().replace('VERSION = "v1"', f'VERSION = "{version}"'))
    return src


def test_a_published_app_deploys_with_only_src_and_module(server: Server):
    # The sample app first, as a new user starts: then their own app, another app.module on the same name.
    sample = server.fab(None, "deploy")
    assert sample.code == 0, str(sample)

    v1 = server.config(src=flaskr_copy(server.work, "v1"), module="flaskr:create_app()")
    run = server.fab(v1, "deploy")
    assert run.code == 0, str(run)
    assert (
        "dependencies from pyproject.toml [project].dependencies, gunicorn==27.0.1 (the kit's: app.gunicorn),"
        " flaskr built as a wheel" in run.stdout
    ), str(run)
    assert server.curl("/") == "flaskr v1\n"  # GET / is the health request: no /health route needed
    # The package is installed in the release (its metadata), its sdist-only dependency and the kit's
    # gunicorn in the venv: as the app, its release command and exec see them.
    packages = '"flaskr", "flask-mail", "gunicorn"'
    versions = f"python -c 'import importlib.metadata as m; print(*map(m.version, ({packages})))'"
    shown = server.fab(v1, "exec", versions)
    assert shown.stdout == "1.0.0 0.9.1 27.0.1\n", str(shown)
    # Compiled on the server once: the app's user cannot write there, each worker would compile again.
    assert server.ssh("find -L /srv/flaskdemo/current/.venv/ -path '*/flask/__pycache__/app.*.pyc'").strip()

    init = server.fab(v1, "exec", "flask --app flaskr init-db")
    assert init.code == 0, str(init)
    assert "Initialized the database." in init.stdout
    assert server.curl("/entries", "-d", "body=kept") == "added\n"

    # The record lives in shared/instance: it survives a deploy, a rollback, and pruning.
    v2 = server.config(src=flaskr_copy(server.work, "v2"), module="flaskr:create_app()")
    venv = server.ssh("readlink /srv/flaskdemo/current/.venv")
    assert server.fab(v2, "deploy").code == 0
    assert server.curl("/") == "flaskr v2\n"
    # A code change of an installable app keeps the venv: its wheel is in the release, the reload graceful.
    assert server.ssh("readlink /srv/flaskdemo/current/.venv") == venv
    assert server.curl("/entries") == "kept\n"
    rollback = server.fab(v2, "rollback")
    assert rollback.code == 0, str(rollback)
    assert server.curl("/") == "flaskr v1\n"
    assert server.curl("/entries") == "kept\n"
    first = server.ssh("ls /srv/flaskdemo/releases").split()
    for version in ("v3", "v4"):
        pruning = server.config(
            src=flaskr_copy(server.work, version), module="flaskr:create_app()", deploy={"keep_releases": 2}
        )
        assert server.fab(pruning, "deploy").code == 0
    left = server.ssh("ls /srv/flaskdemo/releases").split()
    assert len(left) <= 3 and not set(first[:2]) & set(left), (first, left)
    assert server.curl("/entries") == "kept\n"

    # Static files come from nginx: with the app stopped, they are still served, with caching headers.
    server.ssh("supervisorctl stop flaskdemo")
    headers = server.curl("/static/style.css", "-D", "-", "-o", "/dev/null")
    server.ssh("supervisorctl start flaskdemo")
    assert headers.startswith("HTTP/1.1 200"), headers
    assert "Cache-Control" in headers, headers


def plain_app(work: Path, requirements: str) -> Path:
    src = work / f"plain-{uuid.uuid4().hex[:6]}"
    src.mkdir()
    (src / "requirements.txt").write_text(textwrap.dedent(requirements))
    (src / "app.py").write_text(
        "from flask import Flask\n\napp = Flask(__name__)\n\n\n"
        "@app.get('/')\ndef index():\n    return 'plain\\n'\n"
    )
    return src


def test_requirements_without_gunicorn_get_the_kits_and_markers_are_the_servers(server: Server):
    server_python = server.ssh("python3 -c 'import platform; print(platform.python_version())'").strip()
    here, there = (
        {"python_full_version": v} for v in (".".join(map(str, sys.version_info[:3])), server_python)
    )
    marker = Marker(f'python_full_version <= "{server_python}"')
    assert marker.evaluate(there) and not marker.evaluate(here), "the control machine's Python must be newer"

    src = plain_app(
        server.work,
        f"""\
        flask==3.1.3
        tomli==2.2.1 ; python_full_version <= "{server_python}"
        six==1.17.0 ; python_full_version > "{server_python}"
        """,
    )
    # A gunicorn config of the app's own (for its Docker image, say), for a package not in its
    # requirements: the kit's master never reads it, and neither does the kit's import trial.
    (src / "gunicorn.conf.py").write_text(
        'bind = "0.0.0.0:8000"\n'
        "from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics\n"
    )
    # Beside flaskdemo (nginx's default server), under a name of its own.
    config = server.config(name="plainapp", port=8094, server_name="plain.test", src=src, module="app:app")
    run = server.fab(config, "deploy")
    assert run.code == 0, str(run)
    assert server.curl("/", "-H", "'Host: plain.test'") == "plain\n"
    installed = (
        'import importlib.metadata as m; print(sorted(d.metadata["Name"].lower() for d in m.distributions()))'
    )
    names = server.python("plainapp", installed)
    assert "'tomli'" in names and "'six'" not in names, names  # the server's set, not the control machine's
    assert server.python("plainapp", "import gunicorn; print(gunicorn.__version__)") == "27.0.1"

    # An app that pins its own gunicorn gets it.
    (src / "requirements.txt").write_text("flask==3.1.3\ngunicorn==23.0.0\n")
    run = server.fab(config, "deploy")
    assert run.code == 0, str(run)
    assert server.python("plainapp", "import gunicorn; print(gunicorn.__version__)") == "23.0.0"
    assert server.curl("/", "-H", "'Host: plain.test'") == "plain\n"


def native_sdist(work: Path) -> Path:
    """A find-links folder holding nativepkg 0.1, published as an sdist only, with a C extension."""
    project = work / "nativepkg"
    (project / "nativepkg").mkdir(parents=True)
    (project / "nativepkg" / "__init__.py").write_text("")
    (project / "nativepkg" / "speed.c").write_text(
        '#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "speed"};\n'
        "PyMODINIT_FUNC PyInit_speed(void) { return PyModule_Create(&m); }\n"
    )
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "nativepkg"\nversion = "0.1"\n'
    )
    (project / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        "setup(ext_modules=[Extension('nativepkg.speed', ['nativepkg/speed.c'])])\n"
    )
    links = work / "links"
    subprocess.run([*UV, "build", "--quiet", "--sdist", "--out-dir", str(links), str(project)], check=True)
    return links


def test_an_app_the_server_cannot_take_is_refused_in_one_line_with_the_server_unchanged(server: Server):
    too_new = server.work / "too-new"
    shutil.copytree(FLASKR, too_new, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = too_new / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('requires-python = ">=3.9"', 'requires-python = ">=3.99"')
    )
    native = plain_app(
        server.work, f"--find-links {native_sdist(server.work)}\nflask==3.1.3\nnativepkg==0.1\n"
    )
    cases = [
        (server.config(name="refused", port=8095, src=too_new, module="flaskr:create_app()"),
         r"requires Python >=3\.99 .* has Python 3\.\d+\.\d+"),
        (server.config(name="refused", port=8095, src=native, module="app:app"),
         r"nativepkg 0\.1 publishes only a source distribution, with native code"),
    ]  # fmt: skip
    for config, expected in cases:
        before = server.state()
        run = server.fab(config, "deploy")
        assert run.code == 1, str(run)
        assert re.search(expected, run.one_error_line()), str(run)
        assert server.state() == before, f"the server changed:\n{run}"
