"""What the app printed, masked before the kit shows or keeps it: app.env's values and control characters
(runtime/mask.py, apply.sh's `masked`), run here as the server runs them."""

from __future__ import annotations

import json

from tests.unit.serverside import run_functions

SECRET = "postgres://app:hunter22@db/app"


def test_a_failure_masks_app_envs_values_in_its_line_its_record_and_the_history(tmp_path):
    releases = tmp_path / "releases"
    built = releases / "20261127T110000Z-new"
    (built / ".deploy").mkdir(parents=True)
    (built / ".deploy" / "env.json").write_text(json.dumps({"DATABASE_URL": SECRET, "DEBUG": "on"}))
    values = {
        "APP": "app", "META": ".deploy", "RELEASES_DIR": str(releases), "HISTORY_FILE": str(tmp_path / "h"),
        "ACTION": "deploy", "WHO": "alice", "CURRENT": str(tmp_path / "current"),
        "PREVIOUS": str(tmp_path / "previous"), "ERROR_LOG": str(tmp_path / "error.log"),
    }  # fmt: skip
    done = run_functions(values, [
        "note_live_release", "begin_step push", "note_release 20261127T110000Z-new", f"BUILT={built}",
        f'fail_release "exited 1: could not connect to {SECRET} \x1b[31mred\x1b[0m (DEBUG on)"',
    ])  # fmt: skip
    assert done.returncode == 1
    everything = done.stdout + (tmp_path / "h").read_text() + (built / ".deploy" / "failed").read_text()
    assert SECRET not in everything and "\x1b" not in everything
    assert "could not connect to **** ?[31mred?[0m (DEBUG on)" in done.stdout  # "on": too short to mask
    assert "could not connect to ****" in (built / ".deploy" / "failed").read_text()
