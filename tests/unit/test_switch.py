"""runtime/switch.sh and apply.sh run here under a scratch root: links switched atomically, a failure
after a switch undone exactly once, files replaced only when they differ."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.serverside import run_functions

LIVE, OLD, NEW = "20261126T100000Z-live", "20261125T090000Z-old", "20261127T110000Z-new"


def scratch_values(root: Path) -> dict[str, str]:
    releases = root / "releases"
    for release in (LIVE, OLD, NEW):
        (releases / release / ".deploy").mkdir(parents=True, exist_ok=True)
    if not (root / "current").is_symlink():
        (root / "current").symlink_to(releases / LIVE)
        (root / "previous").symlink_to(releases / OLD)
    return {
        "CURRENT": str(root / "current"), "PREVIOUS": str(root / "previous"), "RELEASES_DIR": str(releases),
        "META": ".deploy", "APP": "app", "HISTORY_FILE": str(root / "history.log"), "ACTION": "deploy",
        "WHO": "alice", "ERROR_LOG": str(root / "error.log"),
    }  # fmt: skip


def target(link: Path) -> str:
    return os.readlink(link).rstrip("/").rsplit("/", 1)[-1]


def test_switch_to_moves_current_and_previous(tmp_path):
    values = scratch_values(tmp_path)
    done = run_functions(
        values, ["note_live_release", f'switch_to "$RELEASES_DIR/{NEW}"', 'echo "$SWITCHED"']
    )
    assert done.stdout == "1\n", done.stderr
    assert (target(tmp_path / "current"), target(tmp_path / "previous")) == (NEW, LIVE)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failure_after_a_switch_switches_back_and_marks_the_release_failed(tmp_path):
    values = scratch_values(tmp_path)
    done = run_functions(values, [
        "reload_app() { :; }  # stub: no gunicorn here",
        "note_live_release", "begin_step push", f"note_release {NEW}", f'BUILT="$RELEASES_DIR/{NEW}"',
        'switch_to "$BUILT"', 'die "boom"',
    ])  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == f"::fail push boom; switched back to {LIVE}\n"
    assert (target(tmp_path / "current"), target(tmp_path / "previous")) == (LIVE, OLD)
    assert (tmp_path / "releases" / NEW / ".deploy" / "failed").read_text() == "push: boom\n"
    assert '"result": "failed"' in (tmp_path / "history.log").read_text()


def test_a_failure_while_switching_back_is_reported_once_and_ends_the_run(tmp_path):
    values = scratch_values(tmp_path)
    # The reload fails whichever release it goes to: switching back must not try again (and again).
    done = run_functions(values, [
        'reload_app() { die "graceful reload failed"; }',
        "note_live_release", "begin_step push", f'switch_to "$RELEASES_DIR/{NEW}"', 'reload_app "" ""',
    ], timeout=10)  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.count("::fail push") == 1, done.stdout
    assert target(tmp_path / "current") == LIVE


@pytest.mark.skipif(os.geteuid() != 0, reason="install -o root needs root")
def test_install_file_replaces_a_file_only_when_its_content_differs(tmp_path):
    source, dest = tmp_path / "new.conf", tmp_path / "live.conf"
    source.write_text("same\n")
    dest.write_text("same\n")
    os.utime(dest, (1_000_000_000, 1_000_000_000))
    check = f'install_file {source} {dest} 640; echo "$CHANGED"'
    assert run_functions({}, ["begin_step t", check]).stdout == "0\n"
    assert dest.stat().st_mtime == 1_000_000_000
    source.write_text("other\n")
    assert run_functions({}, ["begin_step t", check]).stdout == "1\n"
    assert dest.read_text() == "other\n" and oct(dest.stat().st_mode & 0o777) == "0o640"
    assert not (tmp_path / "live.conf.tmp").exists()
