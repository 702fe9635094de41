"""The deploy history: entries appended on the server by runtime/history.py, parsed and shown back."""

import json
import subprocess
import sys

from tasks import history
from tasks.runtime import HERE


def append(path, *fields: str) -> None:
    subprocess.run([sys.executable, "-I", str(HERE / "history.py"), str(path), *fields], check=True)


def test_appended_entries_parse_back_in_order(tmp_path):
    log = tmp_path / "history.log"
    append(log, "alice", "20261126T010000Z-abc", "deploy", "ok", "")
    append(log, "bob", "20261126T020000Z-def", "rollback", "failed", "health: HTTP 500\nsecond line")
    entries = history.parse(log.read_text())
    assert [(e.user, e.action, e.result) for e in entries] == [
        ("alice", "deploy", "ok"),
        ("bob", "rollback", "failed"),
    ]
    assert entries[0].detail == "-"
    assert entries[1].detail == "health: HTTP 500 second line"
    assert entries[0].time.endswith("Z") and entries[0].time <= entries[1].time
    assert all(json.loads(line) for line in log.read_text().splitlines())  # one JSON object a line


def test_fields_with_quotes_and_tabs_stay_one_field_each(tmp_path):
    log = tmp_path / "history.log"
    append(log, "o'brién", "r1", "deploy", "ok", 'tab\there "$(touch pwned)"')
    (entry,) = history.parse(log.read_text())
    assert entry.user == "o'brién"
    assert entry.detail == 'tab here "$(touch pwned)"'
    assert not (tmp_path / "pwned").exists()


def test_entries_written_before_the_history_was_json_still_show():
    old = "2026-11-26T01:00:00Z\talice\tr1\tdeploy\tok\t-\n"
    new = '{"time": "2026-11-27T01:00:00Z", "user": "bob", "release": "r2", "action": "rollback", '
    new += '"result": "ok", "detail": "-"}\nnot an entry\n'
    assert [e.user for e in history.parse(old + new)] == ["alice", "bob"]


def test_render_as_table_and_json():
    entries = [history.Entry("2026-11-26T01:00:00Z", "alice", "r1", "deploy", "ok", "-")]
    table = history.render(entries).splitlines()
    assert table[0].split() == list(history.FIELDS)
    assert table[1].split() == ["2026-11-26T01:00:00Z", "alice", "r1", "deploy", "ok", "-"]
    document = history.render(entries, as_json=True)
    assert "\n" not in document  # one line per host
    assert json.loads(document) == [
        {"time": "2026-11-26T01:00:00Z", "user": "alice", "release": "r1", "action": "deploy",
         "result": "ok", "detail": "-"}
    ]  # fmt: skip
    assert history.render([]) == "no deploys recorded yet"
