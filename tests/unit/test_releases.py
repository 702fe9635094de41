"""Releases without SSH: rollback planning, the listing and its JSON, and the apply script's shell."""

import json
import subprocess
from dataclasses import replace

from tasks import releases
from tasks.facts import Facts
from tasks.pipeline import PLANNERS, apply_script, plan, prelude
from tasks.releases import plan_rollback
from tests.unit.conftest import context, converged_facts

OLD, LIVE = "20261125T090000Z-aaaaaaaaaaaa", "20261126T100000Z-c0e21f55007e"


def server_with_two_releases(s, old_venv: str = "v1") -> tuple[Facts, str]:
    """The live release (from converged_facts) and an older one, previous, on venv `old_venv`."""
    probed = converged_facts(s)
    values = dict(probed.values)
    live = probed.releases[-1]
    values[f"release.{OLD}"] = f"{s.venvs_dir}/{old_venv}"
    values[f"path.{s.previous}"] = f"L:{s.releases_dir}/{OLD}"
    values["venvs"] = f"{values['venvs']} v1"
    return Facts(values), live


def rollback_plan(s, probed: Facts, to: str = ""):
    return plan_rollback(context(s, probed, ("rollback",)), to)


def test_rollback_goes_to_the_previous_release_with_its_configs(settings):
    probed, _ = server_with_two_releases(settings)
    step = rollback_plan(settings, probed)
    assert not step.blocked
    assert f"RELEASE={OLD}" in step.script
    assert f"go_live /srv/flaskdemo/releases/{OLD}" in step.script
    assert f"/srv/flaskdemo/releases/{OLD}/.deploy/release.json" in step.script  # refuses without a record
    assert not step.files  # SSH only: no wheels, no code


def test_rollback_to_an_id_and_the_refusals(settings):
    probed, live = server_with_two_releases(settings)
    assert rollback_plan(settings, probed, to=OLD).script == rollback_plan(settings, probed).script
    assert not rollback_plan(settings, probed, to=live).acts  # already live: nothing to do
    assert rollback_plan(settings, probed, to="20200101T000000Z-x").blocked == (
        "no release 20200101T000000Z-x on the server (see `fab releases`)"
    )
    gone, _ = server_with_two_releases(settings, old_venv="pruned")
    assert rollback_plan(settings, gone).blocked == (
        f"release {OLD} cannot run: its venv pruned is gone; deploy instead"
    )
    no_previous = Facts({k: v for k, v in probed.values.items() if k != f"path.{settings.previous}"})
    assert rollback_plan(settings, no_previous).blocked.startswith("no previous release to roll back to")


LISTING = f"""current=/srv/flaskdemo/releases/{LIVE}
previous=/srv/flaskdemo/releases/{OLD}
release={LIVE}\t{{"time": "2026-11-26T10:00:00Z", "user": "alice", "host": "laptop", "venv": "v2"}}\t
release={OLD}\t\t
release=20261126T110000Z-bbbbbbbbbbbb\t{{"user": "bob", "host": "ci", "venv": "v2"}}\trelease command exited 1
"""


def test_the_listing_parses_oldest_first_and_renders_as_one_line_of_json():
    listed = releases.parse_listing(LISTING)
    assert [r.id for r in listed] == [OLD, LIVE, "20261126T110000Z-bbbbbbbbbbbb"]
    document = releases.render(listed, as_json=True)
    assert "\n" not in document
    rows = json.loads(document)
    assert rows[0] == {
        "id": OLD, "time": "2026-11-25T09:00:00Z", "user": "", "host": "",
        "venv": "", "current": False, "previous": True, "failed": "",
    }  # fmt: skip
    assert rows[1]["current"] and rows[1]["user"] == "alice" and not rows[1]["failed"]
    assert rows[2]["failed"] == "release command exited 1" and rows[2]["time"] == "2026-11-26T11:00:00Z"
    assert json.loads(releases.render([], as_json=True)) == []


def test_the_table_marks_current_previous_and_failed():
    lines = releases.render(releases.parse_listing(LISTING)).splitlines()
    assert lines[0].split() == ["id", "time", "user"]
    assert lines[1].startswith("<") and lines[1].endswith("previous: rollback target")
    assert lines[2].startswith("*") and "alice@laptop" in lines[2] and lines[2].endswith("current")
    assert lines[3].endswith("failed: release command exited 1")


def test_every_apply_script_is_valid_bash(settings, tmp_path):
    s = replace(settings, release_command="flask db upgrade", env={"A": "b"})
    probed, _ = server_with_two_releases(s)
    deploy = plan(replace(context(s, probed), facts=Facts({**probed.values, "fingerprint": "x"})), PLANNERS)
    assert any(p.name == "push" and p.acts for p in deploy)
    for action, plans in (("deploy", deploy), ("rollback", [rollback_plan(s, probed)])):
        script = apply_script(prelude(s, action, "alice@laptop", "alice"), plans, check_health=True)
        (tmp_path / "apply.sh").write_text(script)
        checked = subprocess.run(["bash", "-n", str(tmp_path / "apply.sh")], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        assert script.index("STEP=health") < script.index('rm -rf "${PRUNE[@]}"')  # prune after the gate
