"""The releases listing: from the probe's facts to a table for people and JSON for scripts."""

import json
from dataclasses import replace

from tasks import releases
from tasks.facts import PathState, ReleaseDir
from tasks.steps.push import Releases
from tests.unit.conftest import converged_facts, paths_of

OLD, LIVE, FAILED = (
    "20261125T090000Z-aaaaaaaaaaaa",
    "20261126T100000Z-c0e21f55007e",
    "20261126T110000Z-bbbbbbbbbbbb",
)


def listed(s):
    paths = paths_of(s)
    probed = replace(
        converged_facts(s),
        paths={
            **converged_facts(s).paths,
            paths.current: PathState.link(f"{paths.releases_dir}/{LIVE}"),
            paths.previous: PathState.link(f"{paths.releases_dir}/{OLD}/"),
        },
    ).having(
        Releases(
            releases=(
                ReleaseDir(OLD, "v1"),  # made before release.json existed: its time comes from its id
                ReleaseDir(
                    LIVE,
                    "v2",
                    {"time": "2026-11-26T10:00:00Z", "user": "alice", "host": "laptop", "venv": "v2"},
                ),
                ReleaseDir(
                    FAILED, "v2", {"user": "bob", "host": "ci", "venv": "v2"}, "release command exited 1"
                ),
            ),
        )
    )
    return releases.listing(probed, paths)


def test_the_listing_is_oldest_first_and_renders_as_one_line_of_json(settings):
    found = listed(settings)
    assert [r.id for r in found] == [OLD, LIVE, FAILED]
    document = releases.render(found, as_json=True)
    assert "\n" not in document
    rows = json.loads(document)
    assert rows[0] == {
        "id": OLD, "time": "2026-11-25T09:00:00Z", "user": "", "host": "",
        "venv": "", "current": False, "previous": True, "failed": "",
    }  # fmt: skip
    assert rows[1]["current"] and rows[1]["user"] == "alice" and not rows[1]["failed"]
    assert rows[2]["failed"] == "release command exited 1" and rows[2]["time"] == "2026-11-26T11:00:00Z"
    assert json.loads(releases.render([], as_json=True)) == []


def test_the_table_marks_current_previous_and_failed(settings):
    lines = releases.render(listed(settings)).splitlines()
    assert lines[0].split() == ["id", "time", "user"]
    assert lines[1].startswith("<") and lines[1].endswith("previous: rollback target")
    assert lines[2].startswith("*") and "alice@laptop" in lines[2] and lines[2].endswith("current")
    assert lines[3].endswith("failed: release command exited 1")
