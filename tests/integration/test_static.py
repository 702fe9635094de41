"""Static files on a sandbox server: nginx serves the app's static folder itself, with caching headers,
from the live release; gunicorn never sees those requests; the rest of a release stays closed to others.

One server (module scope) with a version of the test app (tests/apps) that has a static/ folder.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "stattest", 8091
CURRENT = f"/srv/{APP}/current"
FILE, CONTENT = "hello.txt", "static hello\n"


@dataclass
class Site:
    server: Sandbox
    version: Version

    def fab(self, *args: str, version: Version | None = None) -> fab_cli.Run:
        override = str((version or self.version).override)
        return fab_cli.run(self.server.lab.ssh_config, self.server.name, "-f", override, *args, timeout=600)

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.server.address, 80, timeout=10)
        try:
            conn.request("GET", path)
            reply = conn.getresponse()
            headers = {}
            for name, value in reply.getheaders():  # repeated headers joined, as HTTP allows
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            return reply.status, headers, reply.read().decode(errors="replace")
        finally:
            conn.close()

    def ssh(self, command: str) -> str:
        return self.server.ssh(command).stdout


def recap(run: fab_cli.Run, host: str) -> str:
    lines = [line for line in run.stdout.splitlines() if line.startswith(f"{host}  ok=")]
    assert len(lines) == 1, f"no single recap line for {host}:\n{run}"
    return lines[0]


@pytest.fixture(scope="module")
def site(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    (server,) = lab.start(1)
    try:
        version = AppVersions(tmp_path_factory.mktemp("static"), APP, PORT).make("static")
        (version.src / "static" / "css").mkdir(parents=True)
        (version.src / "static" / FILE).write_text(CONTENT)
        (version.src / "static" / "css" / "site.css").write_text("body {}\n")
        site = Site(server, version)
        run = site.fab("deploy")
        assert run.code == 0, f"the cold deploy failed: {run}"
        yield site
    finally:
        lab.remove(server)


def test_nginx_serves_the_static_folder_with_caching_headers_even_with_the_app_stopped(site: Site):
    for path, body in ((f"/static/{FILE}", CONTENT), ("/static/css/site.css", "body {}\n")):
        status, headers, text = site.get(path)
        assert (status, text) == (200, body), path
        cache = {part.strip() for part in headers["cache-control"].split(",")}
        assert cache == {"max-age=3600", "public"}, headers
        assert "expires" in headers and "etag" in headers and "last-modified" in headers
    assert site.get("/")[0] == 200
    site.ssh(f"supervisorctl stop {APP}")
    try:
        assert site.get("/")[0] == 502, "the app is stopped: nginx finds no one behind it"
        # Served by nginx alone: gunicorn never sees these requests.
        status, _, text = site.get(f"/static/{FILE}")
        assert (status, text) == (200, CONTENT)
        assert site.get("/static/missing.txt")[0] == 404
    finally:
        site.ssh(f"supervisorctl start {APP}")
    wait_until(lambda: site.get("/")[0] == 200, timeout=30, what="the app answers again")


def test_a_no_op_deploy_after_that_changes_nothing(site: Site):
    run = site.fab("deploy")
    assert run.code == 0, str(run)
    line = recap(run, site.server.name)
    assert "changed=0 " in line and "failed=0" in line, run.stdout


def test_only_the_static_folder_of_a_release_is_open_to_others(site: Site):
    release = site.ssh(f"readlink -f {CURRENT}").strip()
    names = [".", "app.py", "release.json", "requirements.txt", ".deploy", ".deploy/release.json", "static",
             f"static/{FILE}", "static/css", "static/css/site.css"]  # fmt: skip
    modes = site.ssh(f"cd {release} && stat -c %a {' '.join(names)}").split()
    assert dict(zip(names, modes, strict=True)) == {
        ".": "751",  # passed through, never listed
        "app.py": "640", "release.json": "640", "requirements.txt": "640",
        ".deploy": "750", ".deploy/release.json": "640",
        "static": "755", f"static/{FILE}": "644", "static/css": "755", "static/css/site.css": "644",
    }  # fmt: skip

    def as_nginx(command: str) -> int:
        return site.server.ssh(f"cd / && runuser -u www-data -- {command}", check=False).returncode

    assert as_nginx(f"cat {release}/static/{FILE}") == 0
    assert as_nginx(f"cat {release}/app.py") != 0
    assert as_nginx(f"ls {release}") != 0
    # The app's directory and releases/ let nginx through to `current` (provision makes them 755).
    assert site.ssh(f"stat -c %a /srv/{APP} /srv/{APP}/releases").split() == ["755", "755"]


def test_a_static_directory_the_app_lacks_is_refused_before_anything_changes(site: Site, tmp_path):
    before = site.ssh(f"readlink {CURRENT}")
    settings = yaml.safe_load(site.version.override.read_text())
    settings["app"]["static"] = {"/assets/": "assets"}
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump(settings))
    run = fab_cli.run(site.server.lab.ssh_config, site.server.name, "-f", str(override), "deploy")
    assert run.code != 0
    failures = [line for line in run.output.splitlines() if "  failed: " in line]  # the step lines
    assert len(failures) == 1 and "app.static: assets is not a directory" in failures[0], str(run)
    assert "failed=1" in recap(run, site.server.name)
    assert site.ssh(f"readlink {CURRENT}") == before
    assert site.get(f"/static/{FILE}")[0] == 200
