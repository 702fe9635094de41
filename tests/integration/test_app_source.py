"""What the kit takes from the app's directory on this machine, on a sandbox server: links in the app's tree
travel as copies of their targets and a link out of it is refused with nothing sent; a change in a file the
requirements include builds a new venv.

One server (module scope) has a version of the test app (tests/apps) deployed whose files the app reads
and nginx serves are links within it. The dependencies' test needs no index for its own package: kitpin's
wheels are written into a find-links folder here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import fab as fab_cli
from tests.apps.versions import SAMPLE_REQUIREMENTS, AppVersions, Version
from tests.apps.wheels import pure_wheel
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "srcapp", 8096
CURRENT = f"/srv/{APP}/current"
# What a refused run must leave as it was; the lock's records too: a run that connected would have
# written them (its probe takes the lock), so they show that nothing connected.
WATCHED = "/srv /etc/nginx /etc/supervisor /run/flaskdeploy"


@dataclass
class Server:
    sandbox: Sandbox
    versions: AppVersions
    work: Path
    first: fab_cli.Run  # the deploy of the version with links

    def fab(self, version: Version, *args: str) -> fab_cli.Run:
        return fab_cli.run(self.sandbox.lab.ssh_config, self.sandbox.name, "-f", str(version.override), *args)

    def ssh(self, command: str, check: bool = True) -> str:
        return self.sandbox.ssh(command, check=check).stdout

    def get(self, path: str) -> str:
        """What nginx on the server answers for path."""
        return self.ssh(f"curl -s -m 5 http://127.0.0.1{path}", check=False)

    def state(self) -> str:
        """Type, owner, mode, link target and content hash of everything under the watched directories."""
        return self.ssh(
            f"find {WATCHED} -xdev -printf '%p %y %u %g %m %l\\n' 2>/dev/null | sort;"
            f" find {WATCHED} -xdev -type f -exec sha256sum {{}} + 2>/dev/null | sort"
        )


def with_links(version: Version) -> Version:
    """The version with what the app reads (release.json) and what nginx serves (static/) as links to
    other files of the app: a file, and a directory."""
    (version.src / "meta").mkdir()
    (version.src / "release.json").rename(version.src / "meta" / "release.json")
    (version.src / "release.json").symlink_to("meta/release.json")
    (version.src / "assets" / "img").mkdir(parents=True)
    (version.src / "assets" / "img" / "dot.txt").write_text("a dot\n")
    (version.src / "assets" / "site.css").write_text("body {}\n")
    (version.src / "static").mkdir()
    (version.src / "static" / "site.css").symlink_to("../assets/site.css")
    (version.src / "static" / "img").symlink_to("../assets/img")
    return version


@pytest.fixture(scope="module")
def server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    (sandbox,) = lab.start(1)
    work = tmp_path_factory.mktemp("source")
    versions = AppVersions(work, APP, PORT)
    try:
        linked = with_links(versions.make("linked"))
        first = fab_cli.run(sandbox.lab.ssh_config, sandbox.name, "-f", str(linked.override), "deploy")
        assert first.code == 0, str(first)
        yield Server(sandbox, versions, work, first)
    finally:
        lab.remove(sandbox)


def test_links_within_the_app_travel_as_copies_of_their_targets_and_are_served(server: Server):
    assert server.get("/") == "version linked"  # the app read its release.json through the link
    assert server.get("/static/site.css") == "body {}\n"  # nginx serves them from the release
    assert server.get("/static/img/dot.txt") == "a dot\n"
    notes = [line for line in server.first.output.splitlines() if "links travel as copies" in line]
    assert notes == [
        f"{server.sandbox.name}  push: links travel as copies of their targets: release.json ->"
        " meta/release.json, static/img -> ../assets/img, static/site.css -> ../assets/site.css"
    ], str(server.first)
    # On the server they are files of the release, not links (which would lead nowhere there).
    kinds = server.ssh(f"cd {CURRENT}/ && stat -c '%n %F' release.json static/site.css static/img/dot.txt")
    assert kinds.split("\n")[:3] == [
        "release.json regular file", "static/site.css regular file", "static/img/dot.txt regular file"
    ]  # fmt: skip


def test_a_link_out_of_the_app_is_refused_in_one_line_and_nothing_is_sent(server: Server):
    secret = server.work / "home" / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- not-to-be-shipped\n")
    leaky = server.versions.make("leaky")
    (leaky.src / "notes.txt").symlink_to(secret)
    before = server.state()
    run = server.fab(leaky, "deploy")
    assert run.code == 1, str(run)
    line = run.one_error_line()
    assert re.search(
        rf"push  failed: notes\.txt is a link to {re.escape(str(secret))}, outside the app's directory .*;"
        r" copy what the app needs into the directory, or remove the link$",
        line,
    ), line
    assert "not-to-be-shipped" not in run.output
    assert server.state() == before, "the refused run changed the server (or connected: the lock's records)"
    assert server.get("/") == "version linked"


def kitpin_app(server: Server, links: Path) -> Version:
    """A version whose requirements find kitpin in `links` and pin it in an included file, base.txt."""
    version = server.versions.make("kitpin")
    (version.src / "requirements.txt").write_text(
        f"{SAMPLE_REQUIREMENTS.read_text()}--find-links {links}\n-r base.txt\n"
    )
    (version.src / "app.py").write_text(
        (version.src / "app.py").read_text() + "\n\n@app.get('/kitpin')\ndef kitpin() -> str:\n"
        "    import kitpin\n\n    return kitpin.VERSION\n"
    )
    return version


def live_venv(server: Server) -> str:
    return server.ssh(f"readlink {CURRENT}/.venv").strip().rsplit("/", 1)[-1]


def test_a_change_in_an_included_requirements_file_builds_a_new_venv_with_the_new_version(server: Server):
    links = server.work / "links"
    for release in ("1.0", "2.0"):
        pure_wheel(links, "kitpin", release)
    version = kitpin_app(server, links)
    (version.src / "base.txt").write_text("kitpin==1.0\n")
    first = server.fab(version, "deploy")
    assert first.code == 0, str(first)
    assert server.get("/kitpin") == "1.0"
    before = live_venv(server)

    (version.src / "base.txt").write_text("kitpin==2.0\n")  # requirements.txt unchanged
    second = server.fab(version, "deploy")
    assert second.code == 0, str(second)
    assert live_venv(server) != before, "the old venv was reused"
    assert server.get("/kitpin") == "2.0"
    ran = server.fab(version, "exec", "python -c 'import kitpin; print(kitpin.VERSION)'")
    assert (ran.code, ran.stdout) == (0, "2.0\n"), str(ran)
