"""tasks/source.py: the files of a release, read from the app's directory: caches and shared directories
left out, a link in the tree as a copy of its target, a link out of the tree refused."""

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import converge, probe, recap
from tasks.source import SourceError, read_source
from tasks.steps import PIPELINE
from tests.unit.conftest import default_config


@pytest.fixture
def app(tmp_path) -> Path:
    root = tmp_path / "app"
    (root / "static").mkdir(parents=True)
    (root / "app.py").write_text("app = None\n")
    (root / "static" / "site.css").write_text("body {}\n")
    (root / "requirements.txt").write_text("flask\n")
    return root


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file of the deployer's, beside the app's directory (as ~/.ssh/id_ed25519 is)."""
    key = tmp_path / "home" / ".ssh" / "id_ed25519"
    key.parent.mkdir(parents=True)
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return key


def refusal(root: Path) -> str:
    with pytest.raises(SourceError) as raised:
        read_source(root)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_the_release_holds_the_apps_files_but_caches_and_shared_directories(app):
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"cache")
    (app / "instance").mkdir()
    (app / "instance" / "app.db").write_bytes(b"data")
    (app / "a").mkdir()
    (app / "a" / "b.py").write_text("")
    (app / "a.txt").write_text("")
    found = read_source(app)
    # In the order of path components, as always: a release of unchanged files keeps its content hash.
    assert found.files == ("a/b.py", "a.txt", "app.py", "requirements.txt", "static/site.css")
    assert found.hashes["app.py"] == hashlib.sha256(b"app = None\n").hexdigest()
    assert (found.links, found.left_out, found.links_note()) == ((), (), "")


def test_a_link_to_a_file_outside_the_app_is_refused_naming_it_and_the_fix(app, secret):
    (app / "notes.txt").symlink_to(secret)
    assert refusal(app) == (
        f"notes.txt is a link to {secret}, outside the app's directory {app}: a release would carry what it"
        " points to from this machine; copy what the app needs into the directory, or remove the link"
    )


def test_a_link_out_through_a_link_inside_is_refused_too(app, secret):
    (app / "static" / "key").symlink_to(secret)
    (app / "notes.txt").symlink_to("static/key")
    assert refusal(app).startswith(f"notes.txt is a link to {secret}, outside the app's directory")


def test_a_link_to_a_directory_outside_the_app_is_refused(app, secret):
    (app / "static" / "ssh").symlink_to(secret.parent)
    assert refusal(app).startswith(f"static/ssh is a link to {secret.parent}, outside the app's directory")


def test_a_dangling_link_pointing_outside_the_app_is_refused(app, tmp_path):
    (app / "later.txt").symlink_to(tmp_path / "not-yet" / "there.txt")
    assert refusal(app).startswith(f"later.txt is a link to {tmp_path / 'not-yet' / 'there.txt'}, outside")


def test_links_where_the_release_never_looks_are_no_concern(app, secret):
    # A local venv links to the system's Python; a shared directory stays on this machine.
    (app / ".venv" / "bin").mkdir(parents=True)
    (app / ".venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    (app / "instance").mkdir()
    (app / "instance" / "key").symlink_to(secret)
    assert read_source(app).files == ("app.py", "requirements.txt", "static/site.css")


def test_a_link_to_a_file_inside_travels_as_a_copy_of_its_target_and_hashes_as_one(app, tmp_path):
    (app / "static" / "logo.svg").write_text("<svg/>\n")
    os.chmod(app / "static" / "logo.svg", 0o755)
    (app / "static" / "favicon.svg").symlink_to("logo.svg")
    linked = read_source(app)
    assert "static/favicon.svg" in linked.files
    assert linked.hashes["static/favicon.svg"] == linked.hashes["static/logo.svg"]
    assert linked.links == ("static/favicon.svg -> logo.svg",)
    assert linked.links_note() == "links travel as copies of their targets: static/favicon.svg -> logo.svg"
    # A copy in place of the link: the same release (content and exec bit).
    (app / "static" / "favicon.svg").unlink()
    (app / "static" / "favicon.svg").write_text("<svg/>\n")
    os.chmod(app / "static" / "favicon.svg", 0o755)
    assert read_source(app).content_hash == linked.content_hash
    os.chmod(app / "static" / "favicon.svg", 0o644)
    assert read_source(app).content_hash != linked.content_hash


def test_a_link_to_a_directory_inside_travels_as_its_files_without_its_caches(app):
    (app / "assets" / "img" / "__pycache__").mkdir(parents=True)
    (app / "assets" / "img" / "a.png").write_bytes(b"png")
    (app / "assets" / "img" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    (app / "static" / "img").symlink_to("../assets/img")
    found = read_source(app)
    assert [f for f in found.files if f.endswith("a.png")] == ["assets/img/a.png", "static/img/a.png"]
    assert not [f for f in found.files if "__pycache__" in f]
    assert found.links == ("static/img -> ../assets/img",)
    assert (app / found.files[-2]).read_bytes() == b"png"  # what push reads for it: through the link


def test_a_link_to_a_directory_it_is_in_is_walked_once_and_said(app):
    (app / "static" / "up").symlink_to("..")
    (app / "self").symlink_to(".")
    found = read_source(app)
    assert found.files == ("app.py", "requirements.txt", "static/site.css")
    assert found.left_out == (
        "self -> . (a directory it is in: a loop)",
        "static/up -> .. (a directory it is in: a loop)",
    )


def test_links_to_nothing_and_to_shared_directories_are_left_out_and_said(app):
    (app / "instance").mkdir()
    (app / "instance" / "app.db").write_bytes(b"data")
    (app / "data").symlink_to("instance")
    (app / "db").symlink_to("instance/app.db")
    (app / "gone.txt").symlink_to("nothing.txt")
    (app / "ping").symlink_to("pong")
    (app / "pong").symlink_to("ping")
    found = read_source(app)
    assert found.files == ("app.py", "requirements.txt", "static/site.css")
    assert found.left_out == (
        "data -> instance (a cache or a shared directory)",
        "db -> instance/app.db (a cache or a shared directory)",
        "gone.txt -> nothing.txt (points to nothing)",
        "ping -> pong (a loop of links)",
        "pong -> ping (a loop of links)",
    )
    assert found.links_note().startswith("links left out: data -> instance (a cache or a shared directory), ")


def test_an_app_directory_given_as_a_link_is_read_as_the_directory_it_is(app, tmp_path):
    (app / "static" / "favicon.css").symlink_to("site.css")
    given = tmp_path / "current"
    given.symlink_to(app)
    found = read_source(given)
    assert found.root == given and "static/favicon.css" in found.files
    assert found.content_hash == read_source(app).content_hash


def test_a_note_names_ten_links_at_most(app):
    for n in range(12):
        (app / "static" / f"copy{n:02d}.css").symlink_to("site.css")
    note = read_source(app).links_note()
    assert note.count(" -> ") == 10 and note.endswith("static/copy09.css -> site.css, and 2 more")


# The run: an app the kit refuses reaches no server.


@pytest.fixture
def host(monkeypatch):
    """A host a run reports on, whose server must not be reached: the probe connects first."""
    monkeypatch.setattr(probe, "run", lambda *args, **kwargs: pytest.fail("the run connected"))
    return "web-links"


def run_on(host: str, app: Path) -> bool:
    config = default_config()
    config["app"]["src"] = str(app)
    return converge._converge(
        SimpleNamespace(config=config, host=host, user="deploy"), PIPELINE, "deploy", True, False
    )


def test_a_link_out_of_the_app_fails_the_hosts_run_in_one_line_before_anything_connects(
    app, secret, host, capsys
):
    (app / "notes.txt").symlink_to(secret)
    assert run_on(host, app) is False
    assert capsys.readouterr().out == f"{host}  push  failed: {refusal(app)}\n"
    assert recap.current.hosts[host].tally == recap.Tally(failed=1)


def test_the_links_that_travel_as_copies_are_said_once_before_the_run_goes_on(app, host, capsys):
    (app / "static" / "favicon.css").symlink_to("site.css")
    with pytest.raises(pytest.fail.Exception, match="the run connected"):
        run_on(host, app)
    assert (
        capsys.readouterr().out
        == f"{host}  push: links travel as copies of their targets: static/favicon.css -> site.css\n"
    )


def test_a_plain_http_index_fails_the_hosts_run_in_one_line_before_anything_connects(app, host, capsys):
    (app / "requirements.txt").write_text("--extra-index-url http://mirror.example.org/simple\nflask\n")
    assert run_on(host, app) is False
    assert capsys.readouterr().out.startswith(
        f"{host}  push  failed: requirements.txt line 1: http://mirror.example.org/simple is plain http"
    )
